"""Results held in memory are counted by the memory Python holds them in, so
that the caps on held results bound the server's memory, not a guess at it."""

from __future__ import annotations

import tracemalloc
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from pointsman.engines import streams
from pointsman.engines.spec import Column, QueryResult


def made_rows(make: Any) -> tuple[list[tuple[Any, ...]], int]:
    """Rows from ``make(i)``, and the memory their making took."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rows = [make(i) for i in range(2000)]
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return rows, used


SHAPES = {
    "60 short texts": lambda i: tuple(f"v{i}-{j}" for j in range(60)),
    "mixed": lambda i: (
        i * 1000,
        f"name {i}",
        datetime(2024, 1, 1, tzinfo=UTC).replace(microsecond=i),
        Decimal(i) / 7,
        i % 2 == 0,
        None,
        float(i),
    ),
    "json": lambda i: ({"id": i, "tags": [f"t{i}", f"u{i}"]},),
    "uuids": lambda i: (uuid.uuid4(), uuid.uuid4()),
}


@pytest.mark.parametrize("make", SHAPES.values(), ids=SHAPES.keys())
def test_a_rows_size_is_the_memory_python_holds_it_in(make: Any) -> None:
    rows, used = made_rows(make)

    counted = sum(map(streams._size, rows))

    # The list holding the rows is not the rows' (a pointer each); what rows
    # share (JSON keys) is counted for each, erring on the safe side.
    assert 0.85 * (used - 8 * len(rows)) <= counted <= 1.3 * used


class FakeRoom:
    def __init__(self, left: int) -> None:
        self.free = left
        self.taken = 0

    def left(self) -> int:
        return self.free

    def take(self, size: int) -> None:
        self.free -= size
        self.taken += size

    def none_left(self) -> Exception:
        return RuntimeError("no room")


def result_of(rows: list[tuple[Any, ...]]) -> QueryResult:
    return QueryResult([Column(f"c{j}", "string") for j in range(len(rows[0]))], rows)


def test_a_cut_result_takes_from_the_room_what_it_keeps() -> None:
    rows, _ = made_rows(SHAPES["60 short texts"])
    room = FakeRoom(100_000)

    held = streams.cut(result_of(rows), 10**6, 10**9, room)

    assert held.truncated and 0 < held.row_count < len(rows)
    assert room.taken == sum(map(streams._size, held.rows)) <= 100_000
    assert room.taken + streams._size(rows[held.row_count]) > 100_000


def test_a_result_of_which_no_row_fits_the_room_is_refused() -> None:
    rows, _ = made_rows(SHAPES["60 short texts"])

    with pytest.raises(RuntimeError, match="no room"):
        streams.cut(result_of(rows), 10**6, 10**9, FakeRoom(100))


def test_the_per_result_cap_cuts_without_refusing() -> None:
    rows, _ = made_rows(SHAPES["60 short texts"])
    room = FakeRoom(10**9)

    held = streams.cut(result_of(rows), 10**6, 100, room)

    assert held.truncated and held.row_count == 0 and room.taken == 0
