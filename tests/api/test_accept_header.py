"""Which raw stream ``Accept`` asks for: the one it prefers, by ``q``."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from pointsman.api.queries import wants_plain_json
from pointsman.api.streaming import ARROW_STREAM, CSV, raw_type


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("text/csv", CSV),
        ("application/vnd.apache.arrow.stream", ARROW_STREAM),
        ("text/csv, application/json", CSV),
        ("text/csv;q=0.5, application/json", None),
        ("application/json;q=0.2, text/csv;q=0.9", CSV),
        ("text/csv;q=0", None),
        ("text/csv;q=nan", None),
        ("TEXT/CSV; charset=utf-8", CSV),
        ("application/x-ndjson", None),
        ("", None),
    ],
)
def test_the_preferred_raw_stream_is_chosen(accept: str, chosen: str | None) -> None:
    assert raw_type(accept) == chosen


@pytest.mark.parametrize(
    ("accept", "plain"),
    [
        ("application/json", True),
        ("application/json;q=1", True),
        ("text/csv;q=0.5, application/json", True),
        ("application/json, text/csv;q=0", True),
        ("application/json, application/x-ndjson;q=0", True),
        ("application/json;q=0", False),
        ("application/json, application/x-ndjson", False),
        ("application/json, */*", False),
        ("application/json, */*;q=0.1", True),
        ("", False),
    ],
)
def test_the_json_only_shape_goes_to_clients_that_prefer_json(
    accept: str, plain: bool
) -> None:
    request = Request({"type": "http", "headers": [(b"accept", accept.encode())]})

    assert wants_plain_json(request) is plain
