"""PostgreSQL's own text for dates and timestamps Python cannot hold.

PostgreSQL keeps dates from 4713 BC to 5874897 AD and timestamps to 294276
AD; Python's ``date`` and ``datetime`` stop at 1 and 9999. The psycopg path
gives such a value as the text PostgreSQL prints (ISO ``DateStyle``); a
result read by ADBC has the number instead, which this module spells the same
way: the proleptic Gregorian calendar the server uses, ``BC`` for years
before 1, the fraction of a second without its trailing zeros, and for a
``timestamptz`` the session's time zone and its offset in PostgreSQL's form
(``+00``, ``+05:30``, ``+00:09:21``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

DAY_MICROS = 86_400_000_000
# The Gregorian calendar repeats itself every 400 years, weekdays included.
_CYCLE_DAYS = 146_097
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
# What Python's datetime holds (years 1 to 9999), in microseconds from
# 1970-01-01, and the instants it can still move to any zone.
PYTHON_MIN_MICROS = -62_135_596_800_000_000
PYTHON_MAX_MICROS = 253_402_300_799_999_999
_MIN_SHIFTED = PYTHON_MIN_MICROS + DAY_MICROS
_MAX_SHIFTED = PYTHON_MAX_MICROS - DAY_MICROS
# An instant early enough to place in any zone without leaving Python's
# years: before the time zone database's first rules (none predates 1800) a
# zone has its earliest offset, local mean time, as in PostgreSQL.
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
_FIRST_RULES = 1800


def civil(days: int) -> tuple[int, int, int]:
    """The (year, month, day) ``days`` after 1970-01-01; year 0 is 1 BC."""
    shifted = days + 719_468  # counted from 0000-03-01
    era, day_of_era = divmod(shifted, _CYCLE_DAYS)
    year_of_era = (
        day_of_era
        - day_of_era // 1460
        + day_of_era // 36_524
        - day_of_era // (_CYCLE_DAYS - 1)
    ) // 365
    day_of_year = day_of_era - (
        365 * year_of_era + year_of_era // 4 - year_of_era // 100
    )
    month_from_march = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_from_march + 2) // 5 + 1
    month = month_from_march + 3 if month_from_march < 10 else month_from_march - 9
    year = year_of_era + era * 400 + (month <= 2)
    return year, month, day


def date_text(days: int) -> str:
    """A date ``days`` after 1970-01-01 as PostgreSQL prints it."""
    year, month, day = civil(days)
    return f"{_year(year)}-{month:02d}-{day:02d}{_era(year)}"


def timestamp_text(micros: int, zone: str | None = None) -> str:
    """A timestamp ``micros`` after 1970-01-01 00:00 as PostgreSQL prints it:
    without a time zone, or (``zone``: the session's ``TimeZone``) as a
    ``timestamptz`` in that zone."""
    offset = 0 if zone is None else _offset_seconds(micros, zone)
    days, rest = divmod(micros + offset * 1_000_000, DAY_MICROS)
    year, month, day = civil(days)
    seconds, fraction = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = (
        f"{_year(year)}-{month:02d}-{day:02d} {hours:02d}:{minutes:02d}:{seconds:02d}"
    )
    if fraction:
        text += "." + f"{fraction:06d}".rstrip("0")
    if zone is not None:
        text += offset_text(offset)
    return text + _era(year)


def local_datetime(micros: int, zone: str) -> datetime | None:
    """The instant ``micros`` after 1970-01-01 UTC as psycopg gives it: a
    datetime in the session's zone (at that instant's offset); None where
    its local time is outside the years Python holds."""
    offset = _offset_seconds(micros, zone)
    local = micros + offset * 1_000_000
    if not PYTHON_MIN_MICROS <= local <= PYTHON_MAX_MICROS:
        return None
    naive = _NAIVE_EPOCH + timedelta(microseconds=local)
    place = _zone(zone)
    if place is not None and _MIN_SHIFTED <= micros <= _MAX_SHIFTED:
        return (_EPOCH + timedelta(microseconds=micros)).astimezone(place)
    return naive.replace(tzinfo=timezone(timedelta(seconds=offset)))


def offset_text(seconds: int) -> str:
    """A UTC offset as PostgreSQL prints it: ``+02``, ``-03:30``, ``+00:09:21``."""
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{hours:02d}"
    if minutes or seconds:
        text += f":{minutes:02d}"
    if seconds:
        text += f":{seconds:02d}"
    return text


def _year(year: int) -> str:
    return f"{year if year > 0 else 1 - year:04d}"


def _era(year: int) -> str:
    return "" if year > 0 else " BC"


def _offset_seconds(micros: int, zone: str) -> int:
    """The zone's offset at that instant: past 9999 taken at the same moment
    of an earlier 400-year cycle (zones repeat their last rule), before 1800
    the zone's earliest offset."""
    place = _zone(zone)
    if place is None:
        return 0
    year = civil(micros // DAY_MICROS)[0]
    if year < _FIRST_RULES:
        instant = _EARLIEST
    else:
        cycles = max(0, (year - 2400) // 400)
        shifted = micros - cycles * _CYCLE_DAYS * DAY_MICROS
        instant = _EPOCH + timedelta(microseconds=shifted)
    offset = instant.astimezone(place).utcoffset()
    return 0 if offset is None else int(offset.total_seconds())


@lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo | None:
    """The zone named by a session's ``TimeZone``; None (UTC) for a name that
    is not in the time zone database (a POSIX-style ``UTC+3``, say).

    TODO: such zones print their own offset in PostgreSQL; here they print
    the instant in UTC.
    """
    if name.upper() in ("UTC", "ETC/UTC", "GMT", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, KeyError):
        return None
