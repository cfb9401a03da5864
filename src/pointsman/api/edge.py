"""The outermost layer: whatever escapes a handler becomes the standard 500
body here, and the log gets one line without the exception's text (driver
and SQL errors can carry parameters, DSNs or secrets)."""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pointsman.api.http import dumps
from pointsman.errors import PointsmanError

log = logging.getLogger(__name__)

# Bodies above this are refused before they are read into memory.
MAX_BODY_BYTES = 10 * 1024 * 1024


class ErrorEdge:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited(receive), tracking_send)
        except ClientDisconnect:
            log.info("the client went away before sending its whole request")
        except Exception as exc:
            log.error(
                "unhandled %s on %s %s",
                type(exc).__name__,
                scope.get("method"),
                scope.get("path"),
            )
            if not started:
                await send_error(send, PointsmanError())


def limited(receive: Receive) -> Receive:
    """A receive that refuses a body above MAX_BODY_BYTES with a 413."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                raise PointsmanError(
                    f"Request body larger than {MAX_BODY_BYTES} bytes", status=413
                )
        return message

    return receive_limited


async def send_error(send: Send, error: PointsmanError) -> None:
    body = dumps(error.body())
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
