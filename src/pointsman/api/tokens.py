"""API keys and whoami."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pointsman import policy
from pointsman.api.auth import caller
from pointsman.api.http import call, read_json, respond
from pointsman.errors import PermissionDenied
from pointsman.policy import Action
from pointsman.services import tokens


async def list_keys(request: Request) -> Response:
    """
    summary: List API keys (org admin)
    """
    who = await caller(request)
    policy.require(who.snapshot, who.actor, Action.ORG_ADMIN)
    params = dict(request.query_params)
    return respond(await call(tokens.list_tokens, who.services.store, params))


async def create_key(request: Request) -> Response:
    """
    summary: Create an organization key or a personal access token
    description: Extension. The token is in this response only.
    x-pointsman-extension: true
    """
    who = await caller(request)
    body = await read_json(request)
    kind = body.get("type", "personal")
    user_id = body.get("userId") or who.actor.user.id
    if not policy.may_create_token(who.actor, kind, str(user_id)):
        raise PermissionDenied()
    created = await call(
        tokens.create_token,
        who.services.store,
        name=body.get("name") or "",
        kind=kind,
        user_id=str(user_id),
    )
    return respond(created, status=201)


async def get_key(request: Request) -> Response:
    """
    summary: Get one API key (org admin)
    """
    who = await caller(request)
    policy.require(who.snapshot, who.actor, Action.ORG_ADMIN)
    key_id = request.path_params["id"]
    return respond(await call(tokens.get_token, who.services.store, key_id))


async def update_key(request: Request) -> Response:
    """
    summary: Enable or disable an organization key (org admin)
    """
    who = await caller(request)
    policy.require(who.snapshot, who.actor, Action.ORG_ADMIN)
    body = await read_json(request)
    key_id = request.path_params["id"]
    updated = await call(
        tokens.set_enabled, who.services.store, key_id, body.get("enabled")
    )
    return respond(updated)


async def delete_key(request: Request) -> Response:
    """
    summary: Revoke an API key (org admin)
    """
    who = await caller(request)
    policy.require(who.snapshot, who.actor, Action.ORG_ADMIN)
    key_id = request.path_params["id"]
    return respond(await call(tokens.delete_token, who.services.store, key_id))


async def whoami(request: Request) -> Response:
    """
    summary: The caller's identity; rolesByConnection is an extension
    """
    who = await caller(request)
    actor = who.actor
    roles = {
        info.id: policy.role_on(who.snapshot, actor, info)
        for info in who.snapshot.connections.values()
        if not info.archived
    }
    return respond(
        {
            "keyScope": actor.key_scope,
            "orgRole": "ORG_ADMIN" if actor.is_org_admin else "MEMBER",
            "user": {"id": actor.user.id, "membershipId": actor.user.membership_id},
            "rolesByModel": {},
            "rolesByConnection": roles,
        }
    )


routes = [
    Route("/api/v1/api-keys", list_keys, methods=["GET"]),
    Route("/api/v1/api-keys", create_key, methods=["POST"]),
    Route("/api/v1/api-keys/{id}", get_key, methods=["GET"]),
    Route("/api/v1/api-keys/{id}", update_key, methods=["PUT"]),
    Route("/api/v1/api-keys/{id}", delete_key, methods=["DELETE"]),
    Route("/api/v1/whoami", whoami, methods=["GET"]),
]
