"""Timestamp columns made for Arrow by their distance from the epoch hold
exactly what Arrow's own conversion of the datetimes holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pointsman.engines import results
from pointsman.engines.spec import Column, QueryResult

ZONES = [
    UTC,
    ZoneInfo("Etc/UTC"),
    ZoneInfo("Europe/Paris"),
    ZoneInfo("America/New_York"),
    timezone(timedelta(hours=5, minutes=45)),
    timezone(timedelta(hours=-3, seconds=30)),
]
TYPES = ["timestamp[us, tz=UTC]", "timestamp[us]"]
moments = st.datetimes(
    min_value=datetime(1800, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(ZONES),
)


def arrow_of(values: list[Any], type_name: str) -> pa.Array:
    result = QueryResult([Column("t", type_name)], [(value,) for value in values])
    return results.to_arrow_table(result).column("t").combine_chunks()


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    values=st.lists(st.one_of(st.none(), moments), max_size=8),
    type_name=st.sampled_from(TYPES),
    same_zone=st.booleans(),
)
def test_aware_timestamps_equal_arrows_own_conversion(
    zone: Any, values: list[datetime | None], type_name: str, same_zone: bool
) -> None:
    if same_zone:
        values = [None if v is None else v.astimezone(zone) for v in values]

    made = arrow_of(values, type_name)

    assert made.equals(pa.array(values, type=results.arrow_type(type_name)))


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.datetimes()), min_size=1, max_size=8))
def test_naive_timestamps_equal_arrows_own_conversion(
    values: list[datetime | None],
) -> None:
    made = arrow_of(values, "timestamp[us]")

    assert made.equals(pa.array(values, type=pa.timestamp("us")))


def test_naive_and_aware_together_still_convert() -> None:
    values = [datetime(2024, 1, 1), datetime(2024, 1, 1, tzinfo=UTC)]

    made = arrow_of(values, "timestamp[us, tz=UTC]")

    assert len(made) == 2


def test_one_zone_columns_take_the_epoch_way() -> None:
    zone = ZoneInfo("Etc/UTC")
    values = [datetime(2024, 1, 1, tzinfo=zone), None]

    made = results._timestamp_array(values, pa.timestamp("us", tz="UTC"))

    assert made is not None
    assert made.to_pylist() == [datetime(2024, 1, 1, tzinfo=UTC), None]
