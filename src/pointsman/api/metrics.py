"""Prometheus metrics and pool statistics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pointsman import policy
from pointsman.api.auth import caller
from pointsman.api.connections import live_connection
from pointsman.api.http import respond
from pointsman.policy import Action


async def metrics(request: Request) -> Response:
    """
    summary: Prometheus metrics of this process (no auth; ids only, no names)
    x-pointsman-extension: true
    """
    registry = request.app.state.services.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def pool(request: Request) -> Response:
    """
    summary: This process's pool for exactly this connection (CONNECTION_ADMIN)
    x-pointsman-extension: true
    """
    who = await caller(request)
    info = live_connection(who, request.path_params["id"])
    policy.require(who.snapshot, who.actor, Action.ADMINISTER_CONNECTION, info)
    stats = who.services.engines.pool_stats(info.id)
    return respond(
        {"connectionId": info.id, "open": stats is not None, **(stats or {})}
    )


routes = [
    Route("/metrics", metrics, methods=["GET"]),
    Route("/api/v1/connections/{id}/pool", pool, methods=["GET"]),
]
