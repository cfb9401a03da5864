"""PostgreSQL's text for dates and timestamps, computed for any year: the
same calendar as Python's wherever Python's reaches."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from pointsman.engines.postgres_calendar import (
    civil,
    date_text,
    offset_text,
    timestamp_text,
)

EPOCH = date(1970, 1, 1)


def test_the_calendar_is_pythons_from_year_1_to_9999() -> None:
    rng = random.Random(7)
    first, last = date(1, 1, 1), date(9999, 12, 31)
    days = [(first - EPOCH).days, (last - EPOCH).days, 0, -1, 59, 60, 11_016]
    days += [rng.randint(days[0], days[1]) for _ in range(20_000)]

    for day in days:
        expected = EPOCH + timedelta(days=day)
        assert civil(day) == (expected.year, expected.month, expected.day)


def test_timestamps_read_as_pythons_isoformat_where_python_reaches() -> None:
    rng = random.Random(11)
    for _ in range(5_000):
        micros = rng.randint(-62_135_596_800_000_000, 253_402_300_799_999_999)
        moment = datetime(1970, 1, 1) + timedelta(microseconds=micros)
        expected = moment.isoformat(sep=" ")
        if moment.microsecond:
            expected = expected.rstrip("0")

        assert timestamp_text(micros) == expected
        assert timestamp_text(micros, "UTC") == expected + "+00"


@pytest.mark.parametrize(
    ("days", "text"),
    [
        (-2_440_222, "4713-11-24 BC"),  # PostgreSQL's earliest date
        (-2_440_588, "4714-11-24 BC"),  # its earliest timestamp's day
        ((date(1, 1, 1) - EPOCH).days - 1, "0001-12-31 BC"),
        ((date(1, 1, 1) - EPOCH).days - 366, "0001-01-01 BC"),  # 1 BC: a leap year
        (2_145_042_905, "5874897-12-31"),  # its latest date
    ],
)
def test_dates_beyond_python_read_as_postgresql_prints_them(
    days: int, text: str
) -> None:
    assert date_text(days) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "+00"), (7200, "+02"), (-12_600, "-03:30"), (561, "+00:09:21")],
)
def test_offsets_read_as_postgresql_prints_them(seconds: int, text: str) -> None:
    assert offset_text(seconds) == text


def test_a_zone_outside_the_database_prints_the_instant_in_utc() -> None:
    micros = int((datetime(12_000 - 10_000, 1, 1, tzinfo=UTC)).timestamp()) * 10**6

    assert timestamp_text(micros, "UTC+3") == "2000-01-01 00:00:00+00"


@pytest.mark.parametrize(
    ("zone", "text"),
    [
        ("America/New_York", "0001-12-31 19:03:58-04:56:02 BC"),
        ("Asia/Tokyo", "0001-01-01 09:18:59+09:18:59"),
    ],
)
def test_the_first_instants_of_year_1_in_zones_either_side_of_utc(
    zone: str, text: str
) -> None:
    first = (date(1, 1, 1) - EPOCH).days * 86_400_000_000

    assert timestamp_text(first, zone) == text
