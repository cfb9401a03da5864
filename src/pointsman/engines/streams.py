"""Results too large to build in memory: an open stream of row batches.

A driver that can fetch incrementally yields ``(columns, rows)`` batches from
a connection it holds until the stream closes. :func:`collect` reads the
first batches: a result that ends within the threshold (the usual case)
becomes an ordinary :class:`QueryResult` and the connection goes back at
once; a longer one becomes a :class:`RowStream`, which the response reads
batch by batch and must close.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import pyarrow as pa

from pointsman.engines.spec import Column, QueryResult


@dataclass(frozen=True)
class ArrowPart:
    """Rows a driver read straight into Arrow (see ``postgres_arrow``), and
    how to type them as the rest of pointsman does: ``normalize(table,
    None)`` for a whole result or a stream's first part, ``normalize(table,
    schema)`` for a later part of the stream that part began."""

    table: pa.Table
    normalize: Callable[[pa.Table, pa.Schema | None], pa.Table]


Batch = tuple[list[Column], list[tuple[Any, ...]] | ArrowPart]
Batches = AsyncGenerator[Batch, None]


class RowStream:
    """An open result: its columns, the rows fetched so far, and the rest.

    It holds a pooled connection (and its connection's concurrency slot)
    until :meth:`aclose`. ``row_count`` and ``truncated`` are final once
    :meth:`batches` is exhausted.
    """

    def __init__(
        self,
        columns: list[Column],
        first: list[tuple[Any, ...]],
        more: Batches,
        limit: int | None,
        on_close: Callable[[], None],
    ) -> None:
        self.columns = columns
        self.row_count = 0
        self.truncated = False
        self._first = first
        self._more = more
        self._limit = limit
        self._on_close: Callable[[], None] | None = on_close

    @property
    def first_rows(self) -> list[tuple[Any, ...]]:
        """The rows fetched so far (before :meth:`batches` is read)."""
        return self._first

    async def batches(self) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The rows, batch by batch, cut at ``limit`` (which sets ``truncated``)."""
        pending: list[tuple[Any, ...]] | None = self._first
        self._first = []
        while pending is not None:
            rows, pending = pending, None
            if self._limit is not None:
                room = self._limit - self.row_count
                if len(rows) > room:
                    rows, self.truncated = rows[:room], True
            if rows:
                self.row_count += len(rows)
                yield rows
            if self.truncated:
                return
            async for _, batch in self._more:
                assert not isinstance(batch, ArrowPart)
                pending = batch
                break
        # The source ran dry: a limit reached exactly is no cut.

    async def read_all(
        self,
        max_rows: int | None = None,
        max_bytes: int | None = None,
        room: Room | None = None,
    ) -> QueryResult:
        """The rest of the rows in memory, and the stream closed; no more
        than ``max_rows`` rows, ``max_bytes`` and what ``room`` has left
        (see :func:`cut`), which cut the result as a limit does, and stop
        reading it."""
        if max_rows is not None and (self._limit is None or max_rows < self._limit):
            self._limit = max_rows
        rows: list[tuple[Any, ...]] = []
        size = 0
        try:
            async for batch in self.batches():
                bound, binding = _bound(size, max_bytes, room)
                kept, grown = _within(batch, size, bound, sized=room is not None)
                if room is not None:
                    room.take(grown - size)
                size = grown
                if kept == 0 and not rows and binding is not None:
                    raise binding.none_left()
                rows.extend(batch[:kept])
                if kept < len(batch):
                    self.row_count -= len(batch) - kept
                    self.truncated = True
                    break
        finally:
            await self.aclose()
        return QueryResult(self.columns, rows, truncated=self.truncated)

    async def aclose(self) -> None:
        """Give the connection back (cancelling what is left on the server)."""
        try:
            await self._more.aclose()
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()


class Room(Protocol):
    """Memory that several held results share (see ``services.jobs``)."""

    def left(self) -> int:
        """The bytes still free."""
        ...

    def take(self, size: int) -> None:
        """Count ``size`` more bytes as held."""
        ...

    def none_left(self) -> Exception:
        """The error for a result of which not one row fits."""
        ...


def cut(
    result: QueryResult, max_rows: int, max_bytes: int, room: Room | None = None
) -> QueryResult:
    """The result within ``max_rows`` rows, about ``max_bytes`` of memory
    (Python's objects for rows, the buffers for Arrow) and what ``room`` has
    left, cut as a limit cuts it; taken from ``room``."""
    bound, binding = _bound(0, max_bytes, room)
    if result.table is not None:
        table = result.table
        kept = _table_within(table, max_rows, bound)
        if room is not None:
            room.take(_table_part(table, kept))
        if kept == 0 and table.num_rows and binding is not None:
            raise binding.none_left()
        if kept == table.num_rows:
            return result
        return QueryResult(result.columns, truncated=True, table=table.slice(0, kept))
    kept, size = _within(result.rows[:max_rows], 0, bound, sized=room is not None)
    if room is not None:
        room.take(size)
    if kept == 0 and result.rows and binding is not None:
        raise binding.none_left()
    if kept == len(result.rows):
        return result
    return QueryResult(result.columns, result.rows[:kept], truncated=True)


def _bound(
    size: int, max_bytes: int | None, room: Room | None
) -> tuple[int | None, Room | None]:
    """What the held values may grow to from ``size``, and the room where
    what it has left (rather than ``max_bytes``) is what bounds them."""
    if room is None:
        return max_bytes, None
    reach = size + room.left()
    if max_bytes is None or reach < max_bytes:
        return reach, room
    return max_bytes, None


def _table_part(table: pa.Table, rows: int) -> int:
    """The bytes of a table's first ``rows``, counting each as its average."""
    return int(table.nbytes * rows // table.num_rows) if table.num_rows else 0


def _within(
    rows: list[tuple[Any, ...]],
    size: int,
    max_bytes: int | None,
    *,
    sized: bool = False,
) -> tuple[int, int]:
    """How many of the first rows keep ``size`` within ``max_bytes``, and
    the size with them (counted without a bound only when ``sized``)."""
    if max_bytes is None and not sized:
        return len(rows), size
    for index, row in enumerate(rows):
        grown = size + _size(row)
        if max_bytes is not None and grown > max_bytes:
            return index, size
        size = grown
    return len(rows), size


def _table_within(table: pa.Table, max_rows: int | None, max_bytes: int | None) -> int:
    """How many of a table's first rows stay within both caps, counting each
    row as the table's average row (its buffers over its rows)."""
    rows: int = table.num_rows
    kept = rows if max_rows is None else min(max_rows, rows)
    if max_bytes is not None and kept and table.nbytes > max_bytes:
        kept = max(0, min(kept, int(max_bytes * rows // table.nbytes)))
    return kept


def _size(value: Any) -> int:
    """The memory a value takes as Python holds it (a row: its tuple and
    every value in it); None and booleans are shared, so free."""
    kind = type(value)
    if kind is tuple or kind is list:
        return sys.getsizeof(value) + sum(map(_size, value))
    if kind is dict:
        return sys.getsizeof(value) + sum(
            _size(key) + _size(item) for key, item in value.items()
        )
    if value is None or kind is bool:
        return 0
    if kind is UUID:  # and the integer inside it
        return sys.getsizeof(value) + sys.getsizeof(value.int)
    return sys.getsizeof(value)


async def collect(
    source: Batches,
    limit: int | None,
    threshold: int | None,
    on_close: Callable[[], None],
) -> QueryResult | RowStream:
    """Read ``source`` up to the threshold: all of it as a :class:`QueryResult`
    if it ends by then (or ``limit`` cuts it), else an open :class:`RowStream`.

    ``threshold`` None reads everything. ``on_close`` runs once the source is
    closed, whichever way.
    """
    want = threshold
    if limit is not None and (threshold is None or limit <= threshold):
        want = limit
    columns: list[Column] = []
    rows: list[tuple[Any, ...]] = []
    parts: list[ArrowPart] = []
    count = 0
    exhausted = True
    try:
        async for batch_columns, batch in source:
            columns = batch_columns
            if isinstance(batch, ArrowPart):
                parts.append(batch)
                count += batch.table.num_rows
            else:
                rows.extend(batch)
                count = len(rows)
            if want is not None and count > want:
                exhausted = False
                break
    except BaseException:
        await _close(source, on_close)
        raise
    cut_by_limit = limit is not None and count > limit
    if exhausted or cut_by_limit:
        await _close(source, on_close)
    if parts:
        return _arrow_result(columns, parts, source, limit, on_close, exhausted)
    if cut_by_limit:
        return QueryResult(columns, rows[:limit], truncated=True)
    if exhausted:
        return QueryResult(columns, rows)
    return RowStream(columns, rows, source, limit, on_close)


def _arrow_result(
    columns: list[Column],
    parts: list[ArrowPart],
    source: Batches,
    limit: int | None,
    on_close: Callable[[], None],
    exhausted: bool,
) -> QueryResult | RowStream:
    normalize = parts[0].normalize
    table = pa.concat_tables([part.table for part in parts])
    if limit is not None and table.num_rows > limit:
        return QueryResult(
            columns, truncated=True, table=normalize(table.slice(0, limit), None)
        )
    if exhausted:
        return QueryResult(columns, table=normalize(table, None))
    return ArrowStream(columns, normalize(table, None), source, limit, on_close)


class ArrowStream(RowStream):
    """A :class:`RowStream` of Arrow tables: the first part typed on its
    own, every later part typed to the first part's schema."""

    def __init__(
        self,
        columns: list[Column],
        first: pa.Table,
        more: Batches,
        limit: int | None,
        on_close: Callable[[], None],
    ) -> None:
        super().__init__(columns, [], more, limit, on_close)
        self.first_table: pa.Table = first
        self.schema: pa.Schema = first.schema

    async def tables(self) -> AsyncIterator[pa.Table]:
        """The rows, part by part, cut at ``limit`` (which sets ``truncated``)."""
        pending: pa.Table | None = self.first_table
        self.first_table = self.first_table.slice(0, 0)
        while pending is not None:
            table, pending = pending, None
            if self._limit is not None:
                room = self._limit - self.row_count
                if table.num_rows > room:
                    table, self.truncated = table.slice(0, room), True
            if table.num_rows:
                self.row_count += table.num_rows
                yield table
            if self.truncated:
                return
            async for _, part in self._more:
                assert isinstance(part, ArrowPart)
                pending = part.normalize(part.table, self.schema)
                break

    async def batches(self) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The rows as Python values (for a shape other than Arrow)."""
        async for table in self.tables():
            yield QueryResult(self.columns, table=table).rows

    async def read_all(
        self,
        max_rows: int | None = None,
        max_bytes: int | None = None,
        room: Room | None = None,
    ) -> QueryResult:
        if max_rows is not None and (self._limit is None or max_rows < self._limit):
            self._limit = max_rows
        tables: list[pa.Table] = []
        size = 0
        try:
            async for table in self.tables():
                bound, binding = _bound(size, max_bytes, room)
                kept = _table_within(
                    table, None, None if bound is None else bound - size
                )
                grown = _table_part(table, kept)
                if room is not None:
                    room.take(grown)
                size += grown
                if (
                    kept == 0
                    and not any(t.num_rows for t in tables)
                    and binding is not None
                ):
                    raise binding.none_left()
                tables.append(table.slice(0, kept))
                if kept < table.num_rows:
                    self.row_count -= table.num_rows - kept
                    self.truncated = True
                    break
        finally:
            await self.aclose()
        whole = pa.concat_tables(tables) if tables else self.first_table
        return QueryResult(self.columns, truncated=self.truncated, table=whole)


async def _close(source: Batches, on_close: Callable[[], None]) -> None:
    try:
        await source.aclose()
    finally:
        on_close()
