"""Shapes of a :class:`QueryResult` for the wire: Arrow, JSON rows and CSV.

Choices made once for every format: decimals travel as strings (exact),
bytes as base64, dates and times as ISO 8601, durations as seconds, and
non-finite floats as null in JSON.

JSON rows are written by orjson itself wherever it writes a value as
:func:`_jsonable` would (text, 64-bit integers, floats, dates, most
datetimes, UUIDs), with :func:`_jsonable` as its ``default`` for the rest;
a result holding anything it spells otherwise takes the per-value path.
``tests/engines/test_json_rows.py`` holds the two to the same bytes.
"""

from __future__ import annotations

import base64
import csv
import io
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from functools import lru_cache
from itertools import repeat
from operator import attrgetter, itemgetter, sub
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa

from pointsman.engines.spec import Column, QueryResult

_DECIMAL = re.compile(r"decimal(128|256)\((\d+),\s*(-?\d+)\)")
_TIMESTAMP = re.compile(r"timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]")
_ARROW_FAILURES = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    OverflowError,
    TypeError,
    ValueError,
)
_PLAIN = frozenset({str, int, bool, type(None)})


@lru_cache(maxsize=256)
def arrow_type(name: str) -> pa.DataType:
    """The pyarrow type for a column type name; ``string`` if unknown."""
    if match := _DECIMAL.fullmatch(name):
        factory = pa.decimal128 if match[1] == "128" else pa.decimal256
        return factory(int(match[2]), int(match[3]))
    if match := _TIMESTAMP.fullmatch(name):
        return pa.timestamp(match[1], tz=match[2])
    try:
        return pa.type_for_alias(name)
    except (KeyError, ValueError):
        return pa.string()


def field_list(result: QueryResult) -> list[dict[str, str]]:
    return [{"name": column.name, "type": column.type} for column in result.columns]


def fields_in(columns: list[Column], schema: pa.Schema) -> list[dict[str, str]]:
    """The fields of a result sent in Arrow as ``schema``: a column whose
    values did not fit its declared type went as text, and says so."""
    return [
        {
            "name": column.name,
            "type": column.type if field.type == arrow_type(column.type) else "string",
        }
        for column, field in zip(columns, schema, strict=True)
    ]


def to_arrow_table(result: QueryResult) -> pa.Table:
    """The result as a table of the declared types (string where they fail)."""
    if result.table is not None:
        return result.table
    columns = _transpose(result)
    arrays = [
        _array(values, arrow_type(column.type))
        for column, values in zip(result.columns, columns, strict=True)
    ]
    names = [column.name for column in result.columns]
    return pa.Table.from_arrays(arrays, names=names)


def to_arrow_base64(result: QueryResult) -> str:
    """The result in Arrow IPC *stream* format, base64-encoded."""
    return table_base64(to_arrow_table(result))


def table_base64(table: pa.Table) -> str:
    """A table in Arrow IPC *stream* format, base64-encoded."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return base64.b64encode(sink.getvalue()).decode("ascii")


def unique_names(result: QueryResult) -> list[str]:
    """Column names made unique (``a``, ``a_2``), so that row objects keep
    every column of ``select 1 a, 2 a``."""
    seen: set[str] = set()
    names = []
    for column in result.columns:
        name, suffix = column.name, 2
        while name in seen:
            name, suffix = f"{column.name}_{suffix}", suffix + 1
        seen.add(name)
        names.append(name)
    return names


def to_json_rows(result: QueryResult) -> list[dict[str, Any]]:
    """One dict per row, every value JSON-serialisable."""
    names = unique_names(result)
    return [
        {name: _jsonable(value) for name, value in zip(names, row, strict=True)}
        for row in result.rows
    ]


def to_json_bytes(result: QueryResult) -> bytes:
    """``orjson.dumps(to_json_rows(result))``, without converting each value
    in Python where orjson already writes it the same way. To embed the rows
    in a larger document, wrap them in ``orjson.Fragment``."""
    if _orjson_spells_like_jsonable(result):
        names = unique_names(result)
        objects = [dict(zip(names, row, strict=True)) for row in result.rows]
        try:
            return orjson.dumps(objects, default=_jsonable)
        except orjson.JSONEncodeError:
            pass  # an integer past 64 bits, a zoned time, a non-text key ...
    return orjson.dumps(to_json_rows(result))


def _orjson_spells_like_jsonable(result: QueryResult) -> bool:
    """Whether orjson writes every value of the result as :func:`_jsonable`
    would. Its spelling differs for a zoned time, for a list or a mapping
    (which may hold either), and for a datetime whose offset has seconds (as
    Paris had before 1911): orjson leaves the seconds out.

    Looked at column by column with C-level iteration only: a Python loop
    over every value would cost as much as the encoding saves."""
    width = len(result.rows[0]) if result.rows else 0
    for index in range(width):
        column = itemgetter(index)
        try:
            kinds = set(map(type, map(column, result.rows)))
        except IndexError:  # a short row: the per-value path says so
            return False
        if not kinds <= _ORJSON_AS_JSONABLE:
            return False
        if datetime in kinds and not _offsets_in_whole_minutes(
            list(filter(None, map(column, result.rows))), kinds
        ):
            return False
    return True


def _offsets_in_whole_minutes(values: list[Any], kinds: set[type]) -> bool:
    moments = values if kinds <= _DATETIME_OR_NULL else _datetimes_in(values)
    for zone in set(map(_TZINFO, moments)):
        if zone is None or (isinstance(zone, ZoneInfo) and zone.key in _UTC_KEYS):
            continue
        offsets: set[timedelta | None]
        if isinstance(zone, timezone):
            offsets = {zone.utcoffset(None)}
        else:  # a zone whose offset moved over the years
            offsets = {
                moment.utcoffset() for moment in moments if moment.tzinfo is zone
            }
        if any(offset is not None and offset % _MINUTE for offset in offsets):
            return False
    return True


def _datetimes_in(values: list[Any]) -> list[datetime]:
    return [value for value in values if type(value) is datetime]


_TZINFO = attrgetter("tzinfo")
_DATETIME_OR_NULL = frozenset({datetime, type(None)})


# Exact types that orjson writes as _jsonable writes them, or hands to it.
_ORJSON_AS_JSONABLE = frozenset(
    {str, int, float, bool, type(None), date, datetime, Decimal, UUID, bytes}
    | {bytearray, memoryview, timedelta}
)
_MINUTE = timedelta(minutes=1)
_UTC_KEYS = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu"})


def to_csv(result: QueryResult) -> str:
    """A header row and one line per row (see :func:`csv_lines`)."""
    return csv_header(result.columns) + csv_lines(result.rows)


def csv_header(columns: list[Column]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(column.name for column in columns)
    return out.getvalue()


# The csv module writes NULL and the empty string alike (an empty field):
# while it writes, an empty string is this character, then becomes "".
_EMPTY_TEXT = "\x00"


def csv_lines(rows: Sequence[Sequence[Any]]) -> str:
    """Rows as CSV lines, as PostgreSQL's ``COPY ... CSV`` writes them: NULL
    an empty field, the empty string ``""``."""
    out = io.StringIO()
    writer = csv.writer(out)
    if rows and len(rows[0]) == 1:
        # The csv module writes a lone empty field as "", to tell it from an
        # empty line; a NULL is that empty line here.
        for row in rows:
            field = _csv_field(row[0])
            if field is None:
                out.write("\r\n")
            else:
                writer.writerow((field,))
    else:
        writer.writerows([_csv_field(value) for value in row] for row in rows)
    text = out.getvalue()
    if _EMPTY_TEXT not in text:
        return text
    if not _holds_nul(rows):
        return text.replace(_EMPTY_TEXT, '""')
    # A value of its own holds NUL (not from PostgreSQL, whose text cannot):
    # NULL and the empty string are both written as empty fields.
    out = io.StringIO()
    csv.writer(out).writerows(
        [_csv_field(value, empty="") for value in row] for row in rows
    )
    return out.getvalue()


def _transpose(result: QueryResult) -> list[Sequence[Any]]:
    if not result.rows:
        return [() for _ in result.columns]
    return list(zip(*result.rows, strict=True))


def _array(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    try:
        if pa.types.is_timestamp(type_) and type_.unit == "us":
            timestamps = _timestamp_array(values, type_)
            if timestamps is not None:
                return timestamps
        return pa.array(values, type=type_)
    except _ARROW_FAILURES:
        return pa.array([_text(value) for value in values], type=pa.string())


def _timestamp_array(values: Sequence[Any], type_: pa.DataType) -> pa.Array | None:
    """``pa.array(values, type_)`` for a ``timestamp[us]`` column of
    datetimes, in a third of the time; None where this way does not apply.

    Arrow asks every aware datetime for its ``utcoffset()``, which is most of
    the cost. Its distance from the epoch is the same number of microseconds,
    and Python subtracts two datetimes of one zone object without asking
    the zone anything (for other zones it asks, more cheaply than Arrow).
    """
    kinds = set(map(type, values))
    if not kinds <= _DATETIME_OR_NULL or datetime not in kinds:
        return None
    present = list(filter(None, values))
    epoch = _epoch_for(set(map(_TZINFO, present)))
    if epoch is None:
        return None
    try:
        if len(present) < len(values):
            deltas = [None if value is None else value - epoch for value in values]
        else:
            deltas = list(map(sub, values, repeat(epoch)))
    except TypeError:  # naive and aware datetimes in one column
        return None
    return pa.array(deltas, type=_DURATION_US).view(type_)


def _epoch_for(zones: set[tzinfo | None]) -> datetime | None:
    """The Unix epoch to subtract from datetimes of these zones; None where
    Arrow could differ from Python (it drops an offset's microseconds)."""
    if zones == {None}:
        return _NAIVE_EPOCH
    for zone in zones:
        if type(zone) is timezone:
            if zone.utcoffset(None).microseconds:
                return None
        elif type(zone) is not ZoneInfo:  # a ZoneInfo offset is whole seconds
            return None
    if len(zones) == 1:
        (zone,) = zones
        if type(zone) is timezone or (
            isinstance(zone, ZoneInfo) and zone.key in _UTC_KEYS
        ):
            # One fixed offset: the epoch in that very zone object, so that no
            # subtraction asks it for its offset.
            epoch = _UTC_EPOCH.astimezone(zone)
            if epoch.tzinfo is zone:
                return epoch
    return _UTC_EPOCH


_NAIVE_EPOCH = datetime(1970, 1, 1)
_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DURATION_US = pa.duration("us")


def _text(value: Any) -> str | None:
    """A value as text, for a column that Arrow could not take as declared."""
    if value is None or isinstance(value, str):
        return value
    converted = _jsonable(value)
    if isinstance(converted, list | dict):
        return orjson.dumps(converted).decode()
    if isinstance(converted, bool):
        return "true" if converted else "false"
    return str(converted) if converted is not None else None


def _jsonable(value: Any) -> Any:
    plain = type(value)
    if plain in _PLAIN:
        return _integer(value) if plain is int else value
    for kind, convert in _JSON_CONVERTERS:
        if isinstance(value, kind):
            return convert(value)
    return str(value)


def _decimal(value: Decimal) -> str:
    """A numeric as the database spells it: ``0.0000001``, ``1.50``,
    ``NaN``, never Decimal's own ``1E-7``."""
    return format(value, "f") if value.is_finite() else str(value)


def _integer(value: int) -> int | str:
    """Integers beyond 64 bits (DuckDB HUGEINT) as text, which JSON keeps exact."""
    return value if -(2**63) <= value < 2**64 else str(value)


def _float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _base64(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(value).decode("ascii")


def _iso(value: date | time) -> str:
    return value.isoformat()


def _seconds(value: timedelta) -> float:
    return value.total_seconds()


def _list(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    return [_jsonable(item) for item in value]


def _dict(value: dict[Any, Any]) -> dict[str, Any]:
    return {str(key): _jsonable(item) for key, item in value.items()}


_JSON_CONVERTERS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    (bool, bool),
    (int, _integer),
    (float, _float),
    (Decimal, _decimal),
    ((bytes, bytearray, memoryview), _base64),
    ((datetime, date, time), _iso),
    (timedelta, _seconds),
    ((list, tuple), _list),
    (dict, _dict),
)


def _csv_field(value: Any, empty: str = _EMPTY_TEXT) -> Any:
    if value is None:
        return None
    text = _text(value)
    if text is None:
        return None
    return empty if text == "" else text


def _holds_nul(rows: Sequence[Sequence[Any]]) -> bool:
    return any(
        isinstance(value, str) and _EMPTY_TEXT in value for row in rows for value in row
    )
