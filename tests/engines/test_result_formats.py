"""Arrow, JSON rows, CSV and field list shapes of a query result."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest

from pointsman.engines import Column, QueryResult
from pointsman.engines.results import (
    arrow_type,
    field_list,
    to_arrow_base64,
    to_csv,
    to_json_rows,
)


@pytest.fixture
def result() -> QueryResult:
    return QueryResult(
        columns=[
            Column("id", "int64"),
            Column("name", "string"),
            Column("price", "decimal128(10,2)"),
            Column("at", "timestamp[us]"),
            Column("day", "date32"),
            Column("raw", "binary"),
            Column("ok", "bool"),
        ],
        rows=[
            (
                1,
                "apple",
                Decimal("0.50"),
                datetime(2024, 1, 2, 3, 4, 5),
                date(2024, 1, 2),
                b"\x00\xff",
                True,
            ),
            (2, None, None, None, None, None, False),
        ],
    )


def _read_arrow(encoded: str) -> pa.Table:
    with pa.ipc.open_stream(base64.b64decode(encoded)) as reader:
        return reader.read_all()


def test_arrow_base64_round_trips_through_an_ipc_stream(result: QueryResult) -> None:
    table = _read_arrow(to_arrow_base64(result))

    assert table.column_names == ["id", "name", "price", "at", "day", "raw", "ok"]
    assert table.to_pylist()[0] == dict(
        zip(table.column_names, result.rows[0], strict=True)
    )
    assert table.num_rows == 2


def test_arrow_schema_uses_the_declared_types(result: QueryResult) -> None:
    table = _read_arrow(to_arrow_base64(result))

    assert [str(field.type) for field in table.schema] == [
        "int64",
        "string",
        "decimal128(10, 2)",
        "timestamp[us]",
        "date32[day]",
        "binary",
        "bool",
    ]


def test_arrow_falls_back_to_string_for_values_it_cannot_take() -> None:
    odd = QueryResult(
        columns=[Column("tags", "string"), Column("n", "int64")],
        rows=[(["a", "b"], 2**70), ({"k": 1}, 1)],
    )

    table = _read_arrow(to_arrow_base64(odd))

    assert table.schema.types == [pa.string(), pa.string()]
    assert table.column("tags").to_pylist() == ['["a","b"]', '{"k":1}']
    assert table.column("n").to_pylist() == [str(2**70), "1"]


def test_arrow_of_an_empty_result_keeps_its_schema() -> None:
    empty = QueryResult(columns=[Column("id", "int32")], rows=[])

    table = _read_arrow(to_arrow_base64(empty))

    assert table.num_rows == 0 and table.schema.types == [pa.int32()]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("float64", pa.float64()),
        ("decimal128(38,9)", pa.decimal128(38, 9)),
        ("timestamp[us, tz=UTC]", pa.timestamp("us", tz="UTC")),
        ("duration[us]", pa.duration("us")),
        ("no-such-type", pa.string()),
    ],
)
def test_arrow_type_parses_type_names(name: str, expected: pa.DataType) -> None:
    assert arrow_type(name) == expected


def test_json_rows_are_dicts_of_json_values(result: QueryResult) -> None:
    rows = to_json_rows(result)

    assert rows[0] == {
        "id": 1,
        "name": "apple",
        "price": "0.50",
        "at": "2024-01-02T03:04:05",
        "day": "2024-01-02",
        "raw": "AP8=",
        "ok": True,
    }
    assert rows[1]["name"] is None
    json.dumps(rows, allow_nan=False)


def test_json_rows_convert_uuids_durations_nested_and_non_finite_values() -> None:
    value = uuid.UUID(int=1)
    odd = QueryResult(
        columns=[Column(n, "string") for n in ("u", "d", "nested", "nan", "tz")],
        rows=[
            (
                value,
                timedelta(minutes=1),
                [Decimal("1.5"), {"b": b"x"}],
                float("nan"),
                datetime(2024, 1, 1, tzinfo=UTC),
            )
        ],
    )

    (row,) = to_json_rows(odd)

    assert row == {
        "u": str(value),
        "d": 60.0,
        "nested": ["1.5", {"b": "eA=="}],
        "nan": None,
        "tz": "2024-01-01T00:00:00+00:00",
    }


def test_csv_has_a_header_and_one_line_per_row(result: QueryResult) -> None:
    text = to_csv(result)

    assert text.splitlines() == [
        "id,name,price,at,day,raw,ok",
        "1,apple,0.50,2024-01-02T03:04:05,2024-01-02,AP8=,true",
        "2,,,,,,false",
    ]


def test_csv_quotes_commas_and_quotes() -> None:
    tricky = QueryResult(columns=[Column("s", "string")], rows=[('a,"b"',)])

    assert to_csv(tricky).splitlines() == ["s", '"a,""b"""']


def test_field_list_names_each_column_and_its_type(result: QueryResult) -> None:
    assert field_list(result)[:2] == [
        {"name": "id", "type": "int64"},
        {"name": "name", "type": "string"},
    ]


def test_csv_tells_null_from_the_empty_string_as_postgresql_does() -> None:
    rows = QueryResult(
        columns=[Column("a", "string"), Column("b", "string"), Column("c", "int64")],
        rows=[(None, "", 1), ("", None, None)],
    )

    assert to_csv(rows).splitlines() == ["a,b,c", ',"",1', '"",,']


def test_a_one_column_csv_null_is_an_empty_line() -> None:
    rows = QueryResult(columns=[Column("a", "string")], rows=[(None,), ("",), ("x",)])

    assert to_csv(rows).split("\r\n") == ["a", "", '""', "x", ""]


def test_csv_text_holding_nul_is_kept_whole() -> None:
    rows = QueryResult(
        columns=[Column("a", "string"), Column("b", "string")],
        rows=[("x\x00y", ""), (None, "z")],
    )

    assert to_csv(rows).splitlines() == ["a,b", "x\x00y,", ",z"]
