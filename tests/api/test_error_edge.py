"""The outermost layer: a client that leaves mid-request is not an error."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from pointsman.api.edge import ErrorEdge

pytestmark = pytest.mark.anyio


async def reads_the_body(scope: Any, receive: Any, send: Any) -> None:
    await Request(scope, receive).body()
    await Response(b"read")(scope, receive, send)


async def test_a_client_leaving_before_its_body_is_logged_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    with caplog.at_level(logging.INFO, logger="pointsman.api.edge"):
        await ErrorEdge(reads_the_body)(scope, receive, send)

    assert sent == []
    levels = {record.levelname for record in caplog.records}
    assert "INFO" in levels and not levels & {"WARNING", "ERROR"}
