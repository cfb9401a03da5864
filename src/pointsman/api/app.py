"""The ASGI application: routes, the error edge, and the OpenAPI description."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import DataError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator

from pointsman.api import (
    attributes,
    audit,
    branches,
    connections,
    environments,
    health,
    metrics,
    queries,
    roles,
    scim_groups,
    scim_users,
    selections,
    tokens,
)
from pointsman.api.auth import RateLimiter
from pointsman.api.edge import ErrorEdge
from pointsman.api.http import error_response, respond
from pointsman.errors import (
    MethodNotAllowed,
    NotFound,
    PointsmanError,
)
from pointsman.services.container import Services

log = logging.getLogger(__name__)

schemas = SchemaGenerator(
    {
        "openapi": "3.0.3",
        "info": {
            "title": "pointsman",
            "version": "1",
            "description": "Omni Analytics' connection-environment API, self-hosted. "
            "Operations marked x-pointsman-extension are pointsman's own.",
        },
    }
)


async def openapi(request: Request) -> Response:
    """
    summary: This server's OpenAPI description
    x-pointsman-extension: true
    """
    return respond(schemas.get_schema(routes=all_routes()))


async def on_pointsman_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PointsmanError)
    return error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(MethodNotAllowed())
    if exc.status_code == 404:
        return error_response(NotFound())
    return error_response(PointsmanError(str(exc.detail), status=exc.status_code))


async def on_store_data_error(request: Request, exc: Exception) -> Response:
    """The metadata store refused a value (too long for its column, say)."""
    log.info("store refused a value on %s %s", request.method, request.url.path)
    return error_response(
        PointsmanError("Bad Request: a value is too long or not allowed", status=400)
    )


def all_routes() -> list[BaseRoute]:
    return [
        *health.routes,
        Route("/api/openapi.json", openapi, methods=["GET"]),
        *tokens.routes,
        *scim_users.routes,
        *scim_groups.routes,
        *attributes.routes,
        *roles.routes,
        *selections.routes,
        *connections.routes,
        *environments.routes,
        *branches.routes,
        *queries.routes,
        *metrics.routes,
        *audit.routes,
    ]


# The router tries its routes in order, one regular expression each: the
# path every query takes goes first, not after seventy others. No two routes
# match the same path and method (tests/api/test_routing_table.py), so the
# order decides nothing else; the OpenAPI description keeps all_routes' order.
HOT_PATHS = ("/api/v1/query/run", "/api/v1/query/wait")


def dispatch_order(routes: list[BaseRoute]) -> list[BaseRoute]:
    hot = [route for route in routes if getattr(route, "path", None) in HOT_PATHS]
    return hot + [route for route in routes if route not in hot]


def create_app(services: Services) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await queries.start(app)
        try:
            yield
        finally:
            await queries.stop(app)

    app = Starlette(
        routes=dispatch_order(all_routes()),
        exception_handlers={
            PointsmanError: on_pointsman_error,
            HTTPException: on_http_error,
            DataError: on_store_data_error,
        },
        middleware=[Middleware(ErrorEdge)],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.rate_limiter = RateLimiter(services.settings.rate_limit_per_minute)
    return app
