"""JSON rows: the fast path writes exactly the bytes of the per-value path."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pointsman.engines import results
from pointsman.engines.spec import Column, QueryResult

PARIS = ZoneInfo("Europe/Paris")
ZONES = [None, UTC, ZoneInfo("Etc/UTC"), PARIS, ZoneInfo("Asia/Kolkata")]
ZONES += [timezone(timedelta(hours=-3, minutes=-30)), timezone(timedelta(seconds=61))]

scalars = st.one_of(
    st.none(),
    st.text(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.binary(max_size=8),
    st.dates(),
    st.times(timezones=st.sampled_from([None, UTC])),
    st.datetimes(timezones=st.sampled_from(ZONES)),
    st.timedeltas(),
    st.uuids(),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3))
TYPES = ["string", "int64", "float64", "timestamp[us, tz=UTC]", "timestamp[us]"]


def per_value(result: QueryResult) -> bytes:
    return orjson.dumps(results.to_json_rows(result))


@st.composite
def query_results(draw: Any) -> QueryResult:
    width = draw(st.integers(min_value=1, max_value=4))
    columns = [Column(f"c{i}", draw(st.sampled_from(TYPES))) for i in range(width)]
    rows = draw(st.lists(st.tuples(*[values] * width), max_size=6))
    return QueryResult(columns, rows)


@settings(max_examples=400, deadline=None)
@given(query_results())
def test_fast_json_rows_equal_the_per_value_rows(result: QueryResult) -> None:
    assert results.to_json_bytes(result) == per_value(result)


def test_a_typical_result_keeps_every_value() -> None:
    moment = datetime(2024, 5, 1, 12, 30, 0, 250, tzinfo=ZoneInfo("Etc/UTC"))
    row = (1, "a", 2.5, moment, Decimal("1.10"), b"\x00", uuid.UUID(int=1), None)
    columns = [Column(name, "string") for name in "abcdefgh"]

    decoded = orjson.loads(results.to_json_bytes(QueryResult(columns, [row])))

    assert decoded == [
        {
            "a": 1,
            "b": "a",
            "c": 2.5,
            "d": "2024-05-01T12:30:00.000250+00:00",
            "e": "1.10",
            "f": "AA==",
            "g": "00000000-0000-0000-0000-000000000001",
            "h": None,
        }
    ]


def test_an_offset_with_seconds_is_kept() -> None:
    paris_1900 = datetime(1900, 1, 1, tzinfo=PARIS)
    result = QueryResult([Column("t", "timestamp[us, tz=UTC]")], [(paris_1900,)])

    (row,) = orjson.loads(results.to_json_bytes(result))

    assert row["t"] == "1900-01-01T00:00:00+00:09:21"


def test_wide_integers_and_zoned_times_stay_exact() -> None:
    zoned = time(1, 2, 3, tzinfo=UTC)
    result = QueryResult(
        [Column("n", "int64"), Column("t", "string")], [(2**70, zoned)]
    )

    (row,) = orjson.loads(results.to_json_bytes(result))

    assert row == {"n": str(2**70), "t": "01:02:03+00:00"}


def test_repeated_column_names_keep_every_column() -> None:
    result = QueryResult([Column("a", "int64"), Column("a", "int64")], [(1, 2)])

    assert orjson.loads(results.to_json_bytes(result)) == [{"a": 1, "a_2": 2}]


def test_dates_are_iso_dates() -> None:
    result = QueryResult([Column("d", "date32")], [(date(2024, 2, 29),)])

    assert orjson.loads(results.to_json_bytes(result)) == [{"d": "2024-02-29"}]
