"""Connection roles of users and groups (org admin)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pointsman import policy
from pointsman.api.auth import Caller, caller
from pointsman.api.http import call, read_json, respond
from pointsman.errors import PermissionDenied
from pointsman.policy import Action
from pointsman.services import roles

USER_ROLES = "/api/v1/users/{id}/model-roles"
GROUP_ROLES = "/api/v1/user-groups/{id}/model-roles"


async def admin_caller(request: Request) -> Caller:
    who = await caller(request)
    policy.require(who.snapshot, who.actor, Action.ORG_ADMIN)
    return who


def _asked_connection(request: Request) -> str | None:
    return roles.optional_connection_id(request.query_params.get("connectionId"))


async def list_user_roles(request: Request) -> Response:
    """
    summary: Every candidate role of a user on each connection, the winner resolved
    description: The path id is the user id or the membership id. Optional
      connectionId narrows to one connection; modelId is ignored (pointsman has
      no models). Org admins carry an ORG candidate of CONNECTION_ADMIN. A
      member may read their own.
    """
    who = await caller(request)
    asked = request.path_params["id"].lower()
    if not policy.may_read_roles_of(who.actor, asked):
        raise PermissionDenied()
    found = roles.user_roles(
        who.snapshot, request.path_params["id"], _asked_connection(request)
    )
    return respond(found)


async def grant_user_role(request: Request) -> Response:
    """
    summary: Give a user a role on a connection (replaces their earlier grant)
    description: Body {roleName, connectionId}; connectionId is required and
      modelId is accepted and ignored (extension, pointsman has no models).
      QUERY_TOPICS is read as RESTRICTED_QUERIER.
    """
    who = await admin_caller(request)
    grant = roles.parse_grant(await read_json(request))
    user_ref = request.path_params["id"]
    return respond(await call(roles.grant_to_user, who.services.store, user_ref, grant))


async def revoke_user_role(request: Request) -> Response:
    """
    summary: Take back a user's grant on a connection (?connectionId=)
    description: Extension. The base role and group grants still apply.
      Revoking a grant that does not exist succeeds.
    x-pointsman-extension: true
    """
    who = await admin_caller(request)
    connection = roles.required_connection_id(request.query_params.get("connectionId"))
    user_ref = request.path_params["id"]
    return respond(
        await call(roles.revoke_from_user, who.services.store, user_ref, connection)
    )


async def list_group_roles(request: Request) -> Response:
    """
    summary: A group's grants and the base role on each connection, the winner resolved
    description: Optional connectionId narrows to one connection; modelId is
      ignored. BASE candidates are listed too (pointsman choice).
    """
    who = await admin_caller(request)
    found = roles.group_roles(
        who.snapshot, request.path_params["id"], _asked_connection(request)
    )
    return respond(found)


async def grant_group_role(request: Request) -> Response:
    """
    summary: Give a group's members a role on a connection
    description: Body {roleName, connectionId}; connectionId is required and
      modelId is accepted and ignored (extension, pointsman has no models).
    """
    who = await admin_caller(request)
    grant = roles.parse_grant(await read_json(request))
    group_id = request.path_params["id"]
    return respond(
        await call(roles.grant_to_group, who.services.store, group_id, grant)
    )


async def revoke_group_role(request: Request) -> Response:
    """
    summary: Take back a group's grant on a connection (?connectionId=)
    description: Extension. Revoking a grant that does not exist succeeds.
    x-pointsman-extension: true
    """
    who = await admin_caller(request)
    connection = roles.required_connection_id(request.query_params.get("connectionId"))
    group_id = request.path_params["id"]
    return respond(
        await call(roles.revoke_from_group, who.services.store, group_id, connection)
    )


routes = [
    Route(USER_ROLES, list_user_roles, methods=["GET"]),
    Route(USER_ROLES, grant_user_role, methods=["POST"]),
    Route(USER_ROLES, revoke_user_role, methods=["DELETE"]),
    Route(GROUP_ROLES, list_group_roles, methods=["GET"]),
    Route(GROUP_ROLES, grant_group_role, methods=["POST"]),
    Route(GROUP_ROLES, revoke_group_role, methods=["DELETE"]),
]
