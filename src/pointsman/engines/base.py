"""What every engine offers the registry, and the small helpers they share."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Coroutine, Iterable, Sequence
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from typing import Any

from pointsman.engines.spec import ConnectionSpec, QueryResult

DEFAULT_POOL_SIZE = 5
MAX_POOL_SIZE = 100

Settings = tuple[Any, ...]


def settings_of(spec: ConnectionSpec) -> Settings:
    """Everything a pool was opened with: a change means a new pool."""
    return (
        spec.dialect,
        spec.host,
        spec.port,
        spec.database,
        spec.username,
        spec.default_schema,
        spec.query_timeout_seconds,
        spec.connect_timeout_seconds,
        spec.credentials_version,
        dict(spec.options),
    )


def pool_size(spec: ConnectionSpec) -> int:
    """``options.poolSize`` bounded to 1..MAX_POOL_SIZE (default 5)."""
    try:
        size = int(spec.options.get("poolSize", DEFAULT_POOL_SIZE))
    except (TypeError, ValueError):
        size = DEFAULT_POOL_SIZE
    return max(1, min(size, MAX_POOL_SIZE))


def split_rows(
    rows: Sequence[tuple[Any, ...]], limit: int | None
) -> tuple[list[tuple[Any, ...]], bool]:
    """Cut rows fetched with ``limit + 1`` back to ``limit``, flagging the cut."""
    if limit is None or len(rows) <= limit:
        return list(rows), False
    return list(rows[:limit]), True


class Engine(ABC):
    """One bounded pool for one resolved connection, and the way to run SQL."""

    def __init__(self, spec: ConnectionSpec) -> None:
        self.spec = spec
        self.settings = settings_of(spec)
        self.last_used_at = time.monotonic()
        self.counters: Counter[str] = Counter(
            queries=0, queryFailures=0, queryTimeouts=0
        )
        self._background: set[asyncio.Task[Any]] = set()

    @classmethod
    @abstractmethod
    async def server_version(cls, spec: ConnectionSpec) -> str:
        """Open a fresh connection (not pooled), return the server's version."""

    @abstractmethod
    async def run(self, sql: str, *, limit: int | None = None) -> QueryResult:
        """Run one statement on a pooled connection, within the query timeout."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close idle connections now and in-use ones when they come back."""

    @abstractmethod
    def pool_stats(self) -> dict[str, int]:
        """``size``, ``inUse``, ``idle``, ``maxSize`` and cheap counters."""

    def touch(self) -> None:
        self.last_used_at = time.monotonic()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run clean-up work in the background, keeping a reference to it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def wait_background(self) -> None:
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


_ARROW_BY_PYTHON: tuple[tuple[type, str], ...] = (
    (bool, "bool"),
    (int, "int64"),
    (float, "float64"),
    (str, "string"),
    (bytes, "binary"),
    (datetime, "timestamp[us]"),
    (date, "date32"),
    (clock_time, "time64[us]"),
    (timedelta, "duration[us]"),
    (Decimal, "string"),
)


def infer_arrow_type(values: Iterable[Any]) -> str:
    """The Arrow type name of a column known only by its values.

    Used where the driver declares no type (SQLite). Mixed kinds give
    ``string``; ints mixed with floats give ``float64``; all-NULL gives
    ``null``.
    """
    kinds = {_kind(value) for value in values if value is not None}
    if not kinds:
        return "null"
    if kinds == {"int64", "float64"}:
        return "float64"
    if len(kinds) == 1:
        return kinds.pop()
    return "string"


def _kind(value: Any) -> str:
    for python_type, arrow_type in _ARROW_BY_PYTHON:
        if isinstance(value, python_type):
            if isinstance(value, datetime) and value.tzinfo is not None:
                return "timestamp[us, tz=UTC]"
            return arrow_type
    return "string"
