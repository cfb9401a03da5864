"""Liveness and readiness, without auth."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pointsman.api.http import call, respond
from pointsman.errors import PointsmanError
from pointsman.store.migrate import check_current


async def healthz(request: Request) -> Response:
    """
    summary: The process is up
    x-pointsman-extension: true
    """
    return respond({"status": "ok"})


async def readyz(request: Request) -> Response:
    """
    summary: The metadata store is reachable and its migrations are current
    x-pointsman-extension: true
    """
    try:
        await call(check_current, request.app.state.services.store)
    except PointsmanError as exc:
        return respond({"status": "unavailable", "detail": exc.detail}, status=503)
    except Exception:
        return respond(
            {"status": "unavailable", "detail": "metadata store unreachable"},
            status=503,
        )
    return respond({"status": "ok"})


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
