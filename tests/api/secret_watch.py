"""Watches the whole API test run for leaked secrets.

Every secret a test client sends (``passwordUnencrypted``, ``privateKey``,
``oauthClientSecretUnencrypted``) is remembered; every response body and
header is checked for all of them at once, and every log line of the run is
checked at the end of the session.
"""

from __future__ import annotations

import logging

import httpx
import orjson

SECRET_FIELDS = ("passwordUnencrypted", "privateKey", "oauthClientSecretUnencrypted")
SEEN: set[str] = set()


def remember(request: httpx.Request) -> None:
    try:
        body = orjson.loads(request.content or b"null")
    except orjson.JSONDecodeError:
        return
    if isinstance(body, dict):
        for field in SECRET_FIELDS:
            value = body.get(field)
            if isinstance(value, str) and len(value) >= 4:
                SEEN.add(value)


def leaked_in(text: str) -> list[str]:
    return [secret for secret in SEEN if secret in text]


async def on_request(request: httpx.Request) -> None:
    remember(request)


async def on_response(response: httpx.Response) -> None:
    await response.aread()
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    leaks = leaked_in(response.text + "\n" + headers)
    assert not leaks, f"a secret appeared in a response to {response.request.url}"


HOOKS = {"request": [on_request], "response": [on_response]}


class CapturingHandler(logging.Handler):
    """Keeps every formatted log line (with tracebacks) of the run."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
