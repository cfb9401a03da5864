"""The audit log of configuration changes (org admin)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pointsman import policy
from pointsman.api.auth import caller
from pointsman.api.http import call, respond
from pointsman.policy import Action
from pointsman.services import audit


async def list_events(request: Request) -> Response:
    """
    summary: Who changed what, when (org admin)
    description: Extension. Every change to connections, environments, user
      attributes, users, groups, grants, switches and tokens, newest first, with
      the values before and after (secrets only as "set" or "changed").
      Filters action (create, update, delete), resourceType, resourceId,
      actorUserId and since (ISO 8601); paging with cursor and pageSize.
    x-pointsman-extension: true
    """
    who = await caller(request)
    policy.require(who.snapshot, who.actor, Action.ORG_ADMIN)
    params = dict(request.query_params)
    return respond(await call(audit.list_events, who.services.store, params))


routes = [Route("/api/v1/audit", list_events, methods=["GET"])]
