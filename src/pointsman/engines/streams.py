"""Results too large to build in memory: an open stream of row batches.

A driver that can fetch incrementally yields ``(columns, rows)`` batches from
a connection it holds until the stream closes. :func:`collect` reads the
first batches: a result that ends within the threshold (the usual case)
becomes an ordinary :class:`QueryResult` and the connection goes back at
once; a longer one becomes a :class:`RowStream`, which the response reads
batch by batch and must close.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from decimal import Decimal
from typing import Any

from pointsman.engines.spec import Column, QueryResult

Batch = tuple[list[Column], list[tuple[Any, ...]]]
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
                pending = batch
                break
        # The source ran dry: a limit reached exactly is no cut.

    async def read_all(
        self, max_rows: int | None = None, max_bytes: int | None = None
    ) -> QueryResult:
        """The rest of the rows in memory, and the stream closed; no more
        than ``max_rows`` rows and ``max_bytes`` (see :func:`cut`), which cut
        the result as a limit does, and stop reading it."""
        if max_rows is not None and (self._limit is None or max_rows < self._limit):
            self._limit = max_rows
        rows: list[tuple[Any, ...]] = []
        size = 0
        try:
            async for batch in self.batches():
                kept, size = _within(batch, size, max_bytes)
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


def cut(result: QueryResult, max_rows: int, max_bytes: int) -> QueryResult:
    """The result within ``max_rows`` rows and roughly ``max_bytes`` of
    values (text and bytes by their length, anything else as 8), cut as a
    limit cuts it."""
    kept, _ = _within(result.rows[:max_rows], 0, max_bytes)
    if kept == len(result.rows):
        return result
    return QueryResult(result.columns, result.rows[:kept], truncated=True)


def _within(
    rows: list[tuple[Any, ...]], size: int, max_bytes: int | None
) -> tuple[int, int]:
    """How many of the first rows keep ``size`` within ``max_bytes``, and
    the size with them."""
    if max_bytes is None:
        return len(rows), size
    for index, row in enumerate(rows):
        grown = size + _size(row)
        if grown > max_bytes:
            return index, size
        size = grown
    return len(rows), size


def _size(value: Any) -> int:
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, list | tuple):
        return 8 + sum(map(_size, value))
    if isinstance(value, Decimal):
        return 8 + len(value.as_tuple().digits)
    return 8


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
    exhausted = True
    try:
        async for batch_columns, batch in source:
            columns = batch_columns
            rows.extend(batch)
            if want is not None and len(rows) > want:
                exhausted = False
                break
    except BaseException:
        await _close(source, on_close)
        raise
    if exhausted or (limit is not None and len(rows) > limit):
        await _close(source, on_close)
        if limit is not None and len(rows) > limit:
            return QueryResult(columns, rows[:limit], truncated=True)
        return QueryResult(columns, rows)
    return RowStream(columns, rows, source, limit, on_close)


async def _close(source: Batches, on_close: Callable[[], None]) -> None:
    try:
        await source.aclose()
    finally:
        on_close()
