"""Connections (spec §4)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pointsman import policy
from pointsman.api.auth import Caller, caller
from pointsman.api.http import call, read_json, respond
from pointsman.errors import NotFound
from pointsman.policy import Action
from pointsman.routing.snapshot import ConnectionInfo
from pointsman.services import connections


def live_connection(who: Caller, connection_id: str) -> ConnectionInfo:
    info = who.snapshot.live_connection(connection_id.lower())
    if info is None:
        raise NotFound("Connection not found")
    return info


async def create_connection(request: Request) -> Response:
    """
    summary: Create a connection (org admin)
    """
    who = await caller(request)
    policy.require(who.snapshot, who.actor, Action.CREATE_CONNECTION)
    body = await read_json(request)
    new_id = await call(
        connections.create_connection, who.services.store, who.services.secrets, body
    )
    return respond({"success": True, "data": new_id}, status=201)


async def list_connections(request: Request) -> Response:
    """
    summary: List connections; non-admins see those where their role is at least VIEWER
    """
    who = await caller(request)
    visible = policy.visible_connections(
        who.snapshot, who.actor, Action.LIST_CONNECTIONS
    )
    params = dict(request.query_params)
    return respond(
        await call(connections.list_connections, who.services.store, params, visible)
    )


async def get_connection(request: Request) -> Response:
    """
    summary: Get one connection (RESTRICTED_QUERIER or more on it)
    """
    who = await caller(request)
    info = live_connection(who, request.path_params["id"])
    policy.require(who.snapshot, who.actor, Action.VIEW_CONNECTION, info)
    return respond(await call(connections.get_connection, who.services.store, info.id))


async def update_connection(request: Request) -> Response:
    """
    summary: Update a connection, its environment attribute or its password
    """
    who = await caller(request)
    info = live_connection(who, request.path_params["id"])
    policy.require(who.snapshot, who.actor, Action.ADMINISTER_CONNECTION, info)
    body = await read_json(request)
    result = await call(
        connections.update_connection,
        who.services.store,
        who.services.secrets,
        info.id,
        body,
    )
    if connections.CREDENTIAL_FIELDS & body.keys():
        # Running queries finish on the old pool; new ones open a fresh one.
        await who.services.engines.close(info.id)
    return respond(result)


async def delete_connection(request: Request) -> Response:
    """
    summary: Archive a connection (soft delete; secrets wiped; links removed)
    """
    who = await caller(request)
    connection_id = request.path_params["id"].lower()
    info = who.snapshot.connections.get(connection_id)
    if info is not None and not info.archived:
        policy.require(who.snapshot, who.actor, Action.ADMINISTER_CONNECTION, info)
    elif info is not None:
        policy.require(who.snapshot, who.actor, Action.ORG_ADMIN)
    result = await call(
        connections.archive_connection, who.services.store, connection_id
    )
    await who.services.engines.close(connection_id)
    return respond(result)


async def test_connection(request: Request) -> Response:
    """
    summary: Connect to exactly this connection and report latency and version
    x-pointsman-extension: true
    """
    who = await caller(request)
    info = live_connection(who, request.path_params["id"])
    policy.require(who.snapshot, who.actor, Action.ADMINISTER_CONNECTION, info)
    spec = await call(
        connections.engine_spec, who.services.store, who.services.secrets, info.id
    )
    return respond(await who.services.engines.test(spec))


routes = [
    Route("/api/v1/connections", create_connection, methods=["POST"]),
    Route("/api/v1/connections", list_connections, methods=["GET"]),
    Route("/api/v1/connections/{id}", get_connection, methods=["GET"]),
    Route("/api/v1/connections/{id}", update_connection, methods=["PATCH"]),
    Route("/api/v1/connections/{id}", delete_connection, methods=["DELETE"]),
    Route("/api/v1/connections/{id}/test", test_connection, methods=["POST"]),
]
