"""Branches (spec §6): named pins of an environment, used with ``branchId``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pointsman import policy
from pointsman.api.auth import caller
from pointsman.api.http import call, read_json, respond
from pointsman.errors import NotFound
from pointsman.policy import Action
from pointsman.services import branches


async def create_branch(request: Request) -> Response:
    """
    summary: Create a branch pinning one environment of a base (CONNECTION_ADMIN)
    description: The branch routes queries that name it only while the base's
      allowBranchConnectionEnvironments is true.
    x-pointsman-extension: true
    """
    who = await caller(request)
    body = await read_json(request)
    base_id = branches.parse_base_id(body.get("baseConnectionId"))
    base = who.snapshot.live_connection(base_id)
    if base is None:
        raise NotFound(f"Connection with id {base_id} does not exist")
    policy.require(who.snapshot, who.actor, Action.ADMINISTER_CONNECTION, base)
    created = await call(branches.create_branch, who.services.store, base_id, body)
    return respond(created, status=201)


async def list_branches(request: Request) -> Response:
    """
    summary: List branches whose base the caller may query (admins see all)
    x-pointsman-extension: true
    """
    who = await caller(request)
    raw = request.query_params.get("baseConnectionId")
    base_id = branches.parse_base_id(raw) if raw is not None else None
    visible = policy.visible_connections(who.snapshot, who.actor, Action.QUERY_BASE)
    listed = await call(branches.list_branches, who.services.store, base_id, visible)
    return respond(listed)


async def delete_branch(request: Request) -> Response:
    """
    summary: Delete a branch (CONNECTION_ADMIN on its base)
    description: A query naming it afterwards is a 404.
    x-pointsman-extension: true
    """
    who = await caller(request)
    branch_id = request.path_params["id"].lower()
    branch = who.snapshot.branches.get(branch_id)
    if branch is None:
        raise NotFound(f"Branch {request.path_params['id']} not found")
    base = who.snapshot.live_connection(branch.base_connection_id)
    policy.require(who.snapshot, who.actor, Action.ADMINISTER_CONNECTION, base)
    await call(branches.delete_branch, who.services.store, branch_id)
    return respond({"success": True})


routes = [
    Route("/api/v1/branches", create_branch, methods=["POST"]),
    Route("/api/v1/branches", list_branches, methods=["GET"]),
    Route("/api/v1/branches/{id}", delete_branch, methods=["DELETE"]),
]
