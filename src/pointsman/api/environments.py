"""Connection environments (spec §5)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pointsman import policy
from pointsman.api.auth import Caller, caller
from pointsman.api.http import call, read_json, respond
from pointsman.errors import NotFound
from pointsman.policy import Action
from pointsman.services import environments


def _require_base_admin(who: Caller, base_id: str) -> None:
    base = who.snapshot.live_connection(base_id)
    if base is None:
        raise NotFound(f"Connection with id {base_id} does not exist")
    policy.require(who.snapshot, who.actor, Action.ADMINISTER_CONNECTION, base)


async def _require_link_admin(who: Caller, link_id: str) -> None:
    """Changing a link needs what making it needs: CONNECTION_ADMIN on the
    base and RESTRICTED_QUERIER or more on the environment connection."""
    base_id, target_id = await call(environments.link_ends, who.services.store, link_id)
    _require_base_admin(who, base_id)
    target = who.snapshot.live_connection(target_id)
    if target is not None:
        policy.require(who.snapshot, who.actor, Action.LINK_ENVIRONMENT, target)


async def create_environments(request: Request) -> Response:
    """
    summary: Link environment connections to a base connection (all or nothing)
    """
    who = await caller(request)
    body = await read_json(request)
    base_id, ids = environments.parse_create(body)
    _require_base_admin(who, base_id)
    for connection_id in ids:
        info = who.snapshot.live_connection(connection_id)
        if info is not None:
            policy.require(who.snapshot, who.actor, Action.LINK_ENVIRONMENT, info)
    created = await call(
        environments.create_environments, who.services.store, base_id, ids
    )
    return respond(created, status=201)


async def list_environments(request: Request) -> Response:
    """
    summary: List connection environments; filter baseConnectionId is an extension
    """
    who = await caller(request)
    visible = policy.visible_connections(
        who.snapshot, who.actor, Action.LIST_ENVIRONMENTS
    )
    base_id = request.query_params.get("baseConnectionId")
    result = await call(
        environments.list_environments,
        who.services.store,
        base_id.lower() if base_id else None,
        visible,
    )
    return respond(result)


async def update_environment(request: Request) -> Response:
    """
    summary: Replace the user-attribute values of one connection environment
    description: The path id may be the connection environment id or, when it is
      linked to a single base, the environment connection id.
    """
    who = await caller(request)
    link_id = request.path_params["id"]
    await _require_link_admin(who, link_id)
    body = await read_json(request)
    await call(environments.set_values, who.services.store, link_id, body)
    return respond({"success": True})


async def delete_environment(request: Request) -> Response:
    """
    summary: Remove one connection environment link (both connections stay)
    """
    who = await caller(request)
    link_id = request.path_params["id"]
    await _require_link_admin(who, link_id)
    await call(environments.delete_environment, who.services.store, link_id)
    return respond({"success": True})


routes = [
    Route("/api/v1/connection-environments", create_environments, methods=["POST"]),
    Route("/api/v1/connection-environments", list_environments, methods=["GET"]),
    Route("/api/v1/connection-environments/{id}", update_environment, methods=["PUT"]),
    Route(
        "/api/v1/connection-environments/{id}",
        delete_environment,
        methods=["DELETE"],
    ),
]
