"""SCIM 2.0 groups (organization key only), at ``Groups`` and ``groups``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pointsman.api.http import call, read_json, respond
from pointsman.api.scim_users import scim_caller
from pointsman.services import groups

PATHS = ("/api/scim/v2/Groups", "/api/scim/v2/groups")


async def list_groups(request: Request) -> Response:
    """
    summary: List SCIM groups, in creation order
    description: filter displayName eq "<name>" (compared without case, a
      pointsman choice), startIndex (1-based), count (default 100),
      excludedAttributes=members.
    """
    who = await scim_caller(request)
    params = dict(request.query_params)
    return respond(await call(groups.list_groups, who.services.store, params))


async def create_group(request: Request) -> Response:
    """
    summary: Create a SCIM group
    description: Member values are user ids or membership ids. A name already
      taken, in any case, is a 409.
    """
    who = await scim_caller(request)
    body = await read_json(request)
    created = await call(groups.create_group, who.services.store, body)
    return respond(created, status=201)


async def get_group(request: Request) -> Response:
    """
    summary: Get a SCIM group
    """
    who = await scim_caller(request)
    with_members = not groups.excludes_members(request.query_params)
    found = await call(
        groups.get_group,
        who.services.store,
        request.path_params["id"],
        with_members=with_members,
    )
    return respond(found)


async def replace_group(request: Request) -> Response:
    """
    summary: Replace a SCIM group's name and its whole member list
    """
    who = await scim_caller(request)
    body = await read_json(request)
    group_id = request.path_params["id"]
    return respond(await call(groups.replace_group, who.services.store, group_id, body))


async def patch_group(request: Request) -> Response:
    """
    summary: Apply a SCIM PatchOp to a group
    description: add/replace/remove members, members[value eq "<id>"] and
      displayName; all operations apply or none. Removing without a value
      empties the group (pointsman choice).
    """
    who = await scim_caller(request)
    body = await read_json(request)
    group_id = request.path_params["id"]
    return respond(await call(groups.patch_group, who.services.store, group_id, body))


async def delete_group(request: Request) -> Response:
    """
    summary: Delete a SCIM group, its memberships and its role grants
    """
    who = await scim_caller(request)
    await call(groups.delete_group, who.services.store, request.path_params["id"])
    return Response(status_code=204)


def _routes(path: str, documented: bool) -> list[Route]:
    one = path + "/{id}"
    return [
        Route(path, list_groups, methods=["GET"], include_in_schema=documented),
        Route(path, create_group, methods=["POST"], include_in_schema=documented),
        Route(one, get_group, methods=["GET"], include_in_schema=documented),
        Route(one, replace_group, methods=["PUT"], include_in_schema=documented),
        Route(one, patch_group, methods=["PATCH"], include_in_schema=documented),
        Route(one, delete_group, methods=["DELETE"], include_in_schema=documented),
    ]


# The lower-case spelling is served but not described twice.
routes = [*_routes(PATHS[0], True), *_routes(PATHS[1], False)]
