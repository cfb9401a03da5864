"""The result encoders' speed on a synthetic 10,000-row result.

    python bench/encode_bench.py [--rows N] [--repeat N]   # prints one JSON object

The rows are shaped as psycopg returns them for PostgreSQL: ``int``,
``str``, ``Decimal`` for ``numeric(12,2)``, ``datetime`` with a
``ZoneInfo`` for ``timestamptz``, and ``None`` in a nullable text column.
A second result, ``items``, has the columns of ``bench/run.py``'s table
(``integer``, ``text``, ``double precision``, ``timestamptz``).

Each encoder is timed against the baseline of the same run: ``orjson.dumps``
of the raw rows (tuples as arrays, ``default=str`` for what orjson does not
take), which is what a bare endpoint pays to answer JSON. ``bare_json_dicts``
is the bare endpoint of ``bench/bare_server.py`` exactly: a dict per row,
then ``orjson.dumps``. Every figure is the best of ``--repeat`` runs (the
machine may be busy; the best run is the least disturbed), in rows per
second; ``vs_baseline`` is the encoder's rows/s over the baseline's.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from pointsman.engines import results
from pointsman.engines.spec import Column, QueryResult

UTC = ZoneInfo("Etc/UTC")


def mixed(rows: int) -> QueryResult:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return QueryResult(
        columns=[
            Column("id", "int64"),
            Column("name", "string"),
            Column("amount", "decimal128(12,2)"),
            Column("created_at", "timestamp[us, tz=UTC]"),
            Column("note", "string"),
        ],
        rows=[
            (
                i,
                f"customer-{i}",
                Decimal(i * 37 % 100_000) / 100,
                start + timedelta(seconds=i * 61, microseconds=i % 1000),
                None if i % 10 == 0 else f"note {i % 97}",
            )
            for i in range(rows)
        ],
    )


def items(rows: int) -> QueryResult:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return QueryResult(
        columns=[
            Column("id", "int32"),
            Column("name", "string"),
            Column("amount", "float64"),
            Column("created_at", "timestamp[us, tz=UTC]"),
        ],
        rows=[
            (i, f"value-item-{i}", i * 1.25, start + timedelta(seconds=i))
            for i in range(rows)
        ],
    )


def best(run: Callable[[], Any], repeat: int) -> float:
    run()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def measure(result: QueryResult, repeat: int) -> dict[str, Any]:
    rows = result.rows
    names = [column.name for column in result.columns]

    def json_rows() -> bytes:
        return orjson.dumps(results.to_json_rows(result))

    encoders: dict[str, Callable[[], Any]] = {
        "baseline_orjson_raw_rows": lambda: orjson.dumps(rows, default=str),
        "bare_json_dicts": lambda: orjson.dumps(
            [dict(zip(names, row, strict=True)) for row in rows], default=str
        ),
        "arrow_base64": lambda: results.to_arrow_base64(result),
        "arrow_table": lambda: results.to_arrow_table(result),
        "json_rows_then_orjson": json_rows,
        "json_rows": lambda: results.to_json_rows(result),
        "csv": lambda: results.to_csv(result),
    }
    to_json_bytes = getattr(results, "to_json_bytes", None)
    if to_json_bytes is not None:
        encoders["json_bytes"] = lambda: to_json_bytes(result)
    seconds = {name: best(run, repeat) for name, run in encoders.items()}
    baseline = seconds["baseline_orjson_raw_rows"]
    return {
        name: {
            "ms": round(elapsed * 1000, 3),
            "rows_per_s": round(len(rows) / elapsed),
            "vs_baseline": round(baseline / elapsed, 3),
        }
        for name, elapsed in seconds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    report = {
        "rows": args.rows,
        "repeat": args.repeat,
        "mixed": measure(mixed(args.rows), args.repeat),
        "items": measure(items(args.rows), args.repeat),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
