"""SCIM 2.0 users (organization key only), at ``Users`` and ``users``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pointsman import policy
from pointsman.api.auth import Caller, caller
from pointsman.api.http import call, read_json, respond
from pointsman.policy import Action
from pointsman.services import users

PATHS = ("/api/scim/v2/Users", "/api/scim/v2/users")


async def scim_caller(request: Request) -> Caller:
    """The caller, who must hold the organization key."""
    who = await caller(request)
    policy.require(who.snapshot, who.actor, Action.SCIM)
    return who


async def list_users(request: Request) -> Response:
    """
    summary: List SCIM users, in creation order
    description: filter userName eq|co|sw "<text>" (email compared without case;
      sw is a pointsman choice), startIndex (1-based), count (default 100).
    """
    who = await scim_caller(request)
    params = dict(request.query_params)
    return respond(await call(users.list_users, who.services.store, params))


async def create_user(request: Request) -> Response:
    """
    summary: Create a SCIM user
    """
    who = await scim_caller(request)
    body = await read_json(request)
    created = await call(users.create_user, who.services.store, body)
    return respond(created, status=201)


async def get_user(request: Request) -> Response:
    """
    summary: Get a SCIM user
    """
    who = await scim_caller(request)
    user_id = request.path_params["id"]
    return respond(await call(users.get_user, who.services.store, user_id))


async def replace_user(request: Request) -> Response:
    """
    summary: Update a SCIM user; only the fields given change
    description: userName must be the user's email (any case). Keys absent from
      the urn:omni:params:1.0:UserAttribute object keep their values (choice).
    """
    who = await scim_caller(request)
    body = await read_json(request)
    user_id = request.path_params["id"]
    return respond(await call(users.replace_user, who.services.store, user_id, body))


async def patch_user(request: Request) -> Response:
    """
    summary: Apply a SCIM PatchOp to a user
    description: All operations apply or none. Where Omni is silent, pointsman
      chose that add extends a multi-valued attribute, remove with a value
      removes just those values, active accepts "true"/"false" strings, and
      paths pointsman does not keep (name, emails, externalId, enterprise
      extension) are ignored.
    """
    who = await scim_caller(request)
    body = await read_json(request)
    user_id = request.path_params["id"]
    return respond(await call(users.patch_user, who.services.store, user_id, body))


async def delete_user(request: Request) -> Response:
    """
    summary: Delete a SCIM user and their user-attribute values
    """
    who = await scim_caller(request)
    await call(users.delete_user, who.services.store, request.path_params["id"])
    return Response(status_code=204)


def _routes(path: str, documented: bool) -> list[Route]:
    one = path + "/{id}"
    return [
        Route(path, list_users, methods=["GET"], include_in_schema=documented),
        Route(path, create_user, methods=["POST"], include_in_schema=documented),
        Route(one, get_user, methods=["GET"], include_in_schema=documented),
        Route(one, replace_user, methods=["PUT"], include_in_schema=documented),
        Route(one, patch_user, methods=["PATCH"], include_in_schema=documented),
        Route(one, delete_user, methods=["DELETE"], include_in_schema=documented),
    ]


# The lower-case spelling (Omni's docs) is served but not described twice.
routes = [*_routes(PATHS[0], True), *_routes(PATHS[1], False)]
