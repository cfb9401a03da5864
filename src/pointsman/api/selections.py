"""What users switch for themselves: attribute values (spec §3) and the
environment of a base (spec §6), with the provisioning and grants behind
them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pointsman import policy
from pointsman.api.auth import Caller, caller
from pointsman.api.connections import live_connection
from pointsman.api.http import call, read_json, respond
from pointsman.errors import NotFound, PermissionDenied, ValidationFailed
from pointsman.policy import Action
from pointsman.routing.resolver import resolve
from pointsman.routing.snapshot import ConnectionInfo
from pointsman.services import switches

SUCCESS = {"success": True}


async def _admin(request: Request) -> Caller:
    who = await caller(request)
    policy.require(who.snapshot, who.actor, Action.ORG_ADMIN)
    return who


# -- provisioning (org admin) --------------------------------------------------


async def get_selectable_values(request: Request) -> Response:
    """
    summary: Who may switch this attribute, and to which values (org admin)
    description: Filter with user_id or group_id.
    """
    who = await _admin(request)
    params = request.query_params
    listed = await call(
        switches.list_provisioning,
        who.services.store,
        request.path_params["id"],
        params.get("user_id") or params.get("userId"),
        params.get("group_id") or params.get("groupId"),
    )
    return respond(listed)


async def put_selectable_values(request: Request) -> Response:
    """
    summary: Set the values one user or group may switch this attribute to
    description: Exactly one of user_id and group_id; at most 300 values of at
      most 512 characters. values [] with allow_any_value false withdraws the
      provisioning and deletes the switches it no longer covers.
    """
    who = await _admin(request)
    body = await read_json(request)
    await call(
        switches.set_provisioning, who.services.store, request.path_params["id"], body
    )
    return respond(SUCCESS)


# -- the caller's switches -----------------------------------------------------


async def list_switches(request: Request) -> Response:
    """
    summary: The caller's switchable attributes, their values and active switches
    """
    who = await caller(request)
    return respond(switches.list_switches(who.snapshot, who.actor.user))


async def put_switch(request: Request) -> Response:
    """
    summary: Switch the caller's value(s) of an attribute to provisioned values
    """
    who = await caller(request)
    body = await read_json(request)
    await call(switches.save_switch, who.services.store, who.actor.user.id, body)
    return respond(SUCCESS)


async def delete_switch(request: Request) -> Response:
    """
    summary: Clear the caller's switch (userAttributeId in the query or the body)
    """
    who = await caller(request)
    body = await read_json(request, required=False)
    await call(
        switches.clear_switch,
        who.services.store,
        who.actor.user.id,
        body,
        dict(request.query_params),
    )
    return respond(SUCCESS)


# -- environment access (org admin) --------------------------------------------


async def get_access(request: Request) -> Response:
    """
    summary: Who may pick this connection environment (org admin)
    description: The path id is the connection environment id or, when it is
      linked to a single base, the environment connection id.
    x-pointsman-extension: true
    """
    who = await _admin(request)
    access = await call(
        switches.list_access, who.services.store, request.path_params["id"]
    )
    return respond(access)


async def grant_access(request: Request) -> Response:
    """
    summary: Let users and groups pick this connection environment (org admin)
    x-pointsman-extension: true
    """
    who = await _admin(request)
    body = await read_json(request)
    await call(
        switches.grant_access, who.services.store, request.path_params["id"], body
    )
    return respond(SUCCESS)


async def withdraw_access(request: Request) -> Response:
    """
    summary: Withdraw users' and groups' access to this connection environment
    description: Their picks of it are kept but ignored from the next request on.
    x-pointsman-extension: true
    """
    who = await _admin(request)
    body = await read_json(request)
    await call(
        switches.withdraw_access, who.services.store, request.path_params["id"], body
    )
    return respond(SUCCESS)


# -- the caller's pick of an environment ---------------------------------------


def _queryable_base(who: Caller, request: Request) -> ConnectionInfo:
    base = live_connection(who, request.path_params["id"])
    policy.require(who.snapshot, who.actor, Action.QUERY_BASE, base)
    if base.id in who.snapshot.links_by_environment:
        raise ValidationFailed(
            "baseId", f"Connection {base.id} is an environment of another base"
        )
    return base


async def get_pick(request: Request) -> Response:
    """
    summary: The caller's pick of an environment for this base, and whether it holds
    description: 404 when the caller has no pick. connectionEnvironmentId null is
      the base itself. valid is false when routing skips the pick (access
      withdrawn, link deleted, environment archived); route says where the
      caller's queries go now.
    x-pointsman-extension: true
    """
    who = await caller(request)
    base = _queryable_base(who, request)
    key = (who.actor.user.id, base.id)
    if key not in who.snapshot.selections:
        raise NotFound("Environment selection not found")
    route = resolve(who.snapshot, who.actor.user, base)
    return respond(
        {
            "connectionEnvironmentId": who.snapshot.selections[key],
            "valid": route.source == "user_selection",
            "route": route.as_dict(),
        }
    )


async def put_pick(request: Request) -> Response:
    """
    summary: Pick the environment the caller's queries through this base use
    description: connectionEnvironmentId (or the environment connection id) of one
      of this base's environments, or null for the base. 403 without access.
    x-pointsman-extension: true
    """
    who = await caller(request)
    base = _queryable_base(who, request)
    body = await read_json(request)
    link_id = await _pickable_link(who, base, body)
    await call(
        switches.save_pick, who.services.store, who.actor.user.id, base.id, link_id
    )
    return respond(SUCCESS)


async def _pickable_link(
    who: Caller, base: ConnectionInfo, body: dict[str, Any]
) -> str | None:
    field = "connectionEnvironmentId"
    if field not in body:
        raise ValidationFailed(field, "Required")
    if body[field] is None:
        return None
    link_id = await call(
        switches.find_base_link, who.services.store, base.id, body[field], field
    )
    link = who.snapshot.links.get(link_id)
    if link is None:
        raise NotFound(f"Connection environment with id {body[field]} does not exist")
    # The resolver's own rule, so that a stored pick is one it honours.
    if not policy.may_pick_environment(who.snapshot, who.actor.user, link):
        raise PermissionDenied()
    return link_id


async def delete_pick(request: Request) -> Response:
    """
    summary: Forget the caller's pick for this base (clearing nothing succeeds)
    x-pointsman-extension: true
    """
    who = await caller(request)
    base = _queryable_base(who, request)
    await call(switches.clear_pick, who.services.store, who.actor.user.id, base.id)
    return respond(SUCCESS)


SELECTABLE = "/api/v1/user-attributes/{id}/selectable-values"
SWITCHES = "/api/v1/user-attribute-selections"
ACCESS = "/api/v1/connection-environments/{id}/access"
PICK = "/api/v1/connections/{id}/environment-selection"

routes = [
    Route(SELECTABLE, get_selectable_values, methods=["GET"]),
    Route(SELECTABLE, put_selectable_values, methods=["PUT"]),
    Route(SWITCHES, list_switches, methods=["GET"]),
    Route(SWITCHES, put_switch, methods=["PUT"]),
    Route(SWITCHES, delete_switch, methods=["DELETE"]),
    Route(ACCESS, get_access, methods=["GET"]),
    Route(ACCESS, grant_access, methods=["PUT"]),
    Route(ACCESS, withdraw_access, methods=["DELETE"]),
    Route(PICK, get_pick, methods=["GET"]),
    Route(PICK, put_pick, methods=["PUT"]),
    Route(PICK, delete_pick, methods=["DELETE"]),
]
