"""Request parsing and response building shared by every handler."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from pointsman.errors import BadRequest, PointsmanError
from pointsman.services.values import ExactNumber

P = ParamSpec("P")
T = TypeVar("T")

EMPTY_BODY = "Bad Request: Empty request body"
NUL_ESCAPE = b"\\u0000"


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, ExactNumber):  # a body's number, echoed
        return float(value)
    raise TypeError


def iso(moment: datetime | None) -> str | None:
    """ISO 8601, UTC, milliseconds, ``Z``."""
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def respond(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def error_response(error: PointsmanError) -> JSONResponse:
    response = JSONResponse(error.body(), status_code=error.status)
    retry_after = getattr(error, "retry_after_seconds", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def read_json(
    request: Request, *, required: bool = True, exact_numbers: bool = True
) -> dict[str, Any]:
    """The JSON object in the body. An empty body is a 400 when ``required``,
    else ``{}``; anything but an object is a 400. With ``exact_numbers``,
    integers are exact whatever their size and a number with a fraction or
    an exponent is an :class:`ExactNumber`, a float that keeps the text it
    was written as (attribute values are compared as written)."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise BadRequest(EMPTY_BODY)
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("Bad Request: Invalid JSON") from None
    if exact_numbers and _MAYBE_INEXACT.search(raw):
        # orjson reads every fraction as a float and integers past 64 bits
        # as floats too: read again, keeping each number's own text.
        try:
            data = json.loads(raw, parse_float=ExactNumber)
        except ValueError:  # an integer of thousands of digits
            raise BadRequest("Bad Request: Invalid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("Bad Request: Expected a JSON object")
    # JSON text carries a NUL only as the escape \u0000 (a raw one is invalid
    # JSON): without one, no field needs walking.
    if NUL_ESCAPE in raw:
        refuse_nul(data, "")
    return data


# A fraction, an exponent or an integer too long for 64 bits, anywhere.
_MAYBE_INEXACT = re.compile(rb"[0-9][.eE]|[0-9]{19}")


def refuse_nul(value: Any, path: str) -> None:
    """NUL characters have no business in any field (and PostgreSQL cannot
    store them): refuse them naming the field."""
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest(
                f"Bad Request: {path or 'body'}: NUL characters are not allowed"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_nul(key, path)
            refuse_nul(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for item in value:
            refuse_nul(item, path)


async def call(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a (blocking) service function off the event loop."""
    return await run_in_threadpool(function, *args, **kwargs)
