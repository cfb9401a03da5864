"""What every engine offers the registry, and the small helpers they share.

An engine is one connection's pool and the way to run SQL on it. The base
class owns what is the same for every driver: the concurrency limit and its
bounded line (:class:`Admission`), the bounded pool (:class:`Pool`), the
fail-fast window after a failed connect (:class:`ConnectBackoff`), draining
on close, and the stats. A driver supplies how to open, check, close and use
one connection.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Coroutine, Hashable, Iterable, Sequence
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from typing import Any

from pointsman.engines import failures
from pointsman.engines.limits import Admission, ConnectBackoff, PoolLimits, QueueFull
from pointsman.engines.pool import (
    BudgetTimeout,
    ConnectionBudget,
    Pool,
    PoolClosed,
    PoolTimeout,
)
from pointsman.engines.spec import ConnectionSpec, QueryResult
from pointsman.engines.streams import Batches, RowStream, collect
from pointsman.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

MAX_IDLE_SECONDS = 300.0
MAX_LIFETIME_SECONDS = 3600.0
DEFAULT_CONNECT_BACKOFF_SECONDS = 1.0
MAX_CONNECT_BACKOFF_SECONDS = 30.0
# Draining waits for the slowest admitted query: its wait for a connection,
# its run, and this much for cancelling it on the server.
DRAIN_GRACE_SECONDS = 10.0
MAX_RETRY_AFTER_SECONDS = 60
_QUERY_SECONDS_SMOOTHING = 0.2

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


def split_rows(
    rows: Sequence[tuple[Any, ...]], limit: int | None
) -> tuple[list[tuple[Any, ...]], bool]:
    """Cut rows fetched with ``limit + 1`` back to ``limit``, flagging the cut."""
    if limit is None or len(rows) <= limit:
        return list(rows), False
    return list(rows[:limit]), True


class EngineRetired(Exception):
    """A replaced engine was asked to open a connection: its successor,
    which has the connection's new settings, should run the query."""


class Engine(ABC):
    """One bounded pool for one resolved connection, and the way to run SQL."""

    def __init__(
        self,
        spec: ConnectionSpec,
        *,
        budget: ConnectionBudget | None = None,
        connect_backoff_seconds: float = DEFAULT_CONNECT_BACKOFF_SECONDS,
        max_connect_backoff_seconds: float = MAX_CONNECT_BACKOFF_SECONDS,
    ) -> None:
        self.spec = spec
        self.settings = settings_of(spec)
        self.limits = PoolLimits.of(spec)
        self.last_used_at = time.monotonic()
        self.retired = False
        self.counters: Counter[str] = Counter(
            queries=0,
            queryFailures=0,
            queryTimeouts=0,
            queriesRejected=0,
            acquireTimeouts=0,
            connectFailures=0,
            fastFailures=0,
            connectionsLost=0,
        )
        self.admission = Admission(
            self.limits.max_concurrent_queries, self.limits.max_queued_queries
        )
        self.backoff = ConnectBackoff(
            connect_backoff_seconds, max_connect_backoff_seconds
        )
        self._budget = budget if budget is not None else ConnectionBudget(None)
        self.pool: Pool[Any] = Pool(
            size=self.limits.size,
            max_size=self.limits.max_size,
            budget=self._budget,
            connect=self._connect_guarded,
            disconnect=self._close_connection,
            alive=self._alive,
            max_idle_seconds=MAX_IDLE_SECONDS,
            max_lifetime_seconds=MAX_LIFETIME_SECONDS,
            demand=lambda: self.admission.in_flight,
        )
        self._query_seconds = 0.1
        self._background: set[asyncio.Task[Any]] = set()

    # -- what each driver provides --------------------------------------------

    @classmethod
    @abstractmethod
    async def server_version(cls, spec: ConnectionSpec) -> str:
        """Open a fresh connection (not pooled), return the server's version."""

    @abstractmethod
    async def _open_connection(self) -> Any:
        """Open one connection; raise DatabaseUnavailableError if impossible."""

    @abstractmethod
    async def _close_connection(self, conn: Any) -> None:
        """Close one connection (errors are logged, not raised)."""

    def _alive(self, conn: Any) -> bool:
        """Whether an idle connection still looks usable (cheap, no I/O)."""
        return True

    async def _run_admitted(
        self, sql: str, limit: int | None, acquire_deadline: float
    ) -> QueryResult:
        """Take a connection (see :meth:`acquire`), run, give it back: for a
        driver without :meth:`_open_batches`."""
        raise NotImplementedError

    def _open_batches(self, sql: str, acquire_deadline: float) -> Batches | None:
        """Row batches from a connection held until the generator closes, for
        a driver that can fetch incrementally; None (the default) runs the
        statement through :meth:`_run_admitted` and keeps the whole result."""
        return None

    def _open_arrow_batches(self, sql: str, acquire_deadline: float) -> Batches | None:
        """Like :meth:`_open_batches`, for a result wanted in Arrow, from a
        driver that reads results straight into Arrow; None (the default)
        where it does not."""
        return None

    async def _close_shared(self) -> None:
        """Close what all connections share (nothing, unless overridden)."""
        return None

    # -- running ---------------------------------------------------------------

    async def run(self, sql: str, *, limit: int | None = None) -> QueryResult:
        """Run one statement on a pooled connection, within the query timeout,
        and keep the whole result.

        Raises QueryQueueFullError (429) when the line is full,
        ConnectionBusyError (503) past the acquire timeout, and
        DatabaseUnavailableError (502) at once while connecting is failing.
        """
        result = await self.stream(sql, limit=limit, threshold=None)
        assert isinstance(result, QueryResult)
        return result

    async def stream(
        self,
        sql: str,
        *,
        limit: int | None,
        threshold: int | None,
        arrow: bool = False,
    ) -> QueryResult | RowStream:
        """Like :meth:`run`, but a result longer than ``threshold`` rows comes
        back as an open :class:`RowStream` (holding its connection and its
        concurrency slot until closed), where the driver can stream.
        ``arrow``: the result is wanted in Arrow, which a driver may read
        into Arrow directly (``QueryResult.table``, ``ArrowStream``)."""
        self.touch()
        loop = asyncio.get_running_loop()
        acquire_deadline = loop.time() + self.limits.acquire_timeout_seconds
        self._fail_fast_if_down()
        await self._admit(acquire_deadline)
        started = loop.time()

        def leave() -> None:
            self.admission.leave()
            self._observe(loop.time() - started)
            self.touch()

        try:
            self._fail_fast_if_down()
            source = None
            if arrow:
                source = self._open_arrow_batches(sql, acquire_deadline)
            if source is None:
                source = self._open_batches(sql, acquire_deadline)
        except BaseException:
            leave()
            raise
        if source is None:
            try:
                return await self._run_admitted(sql, limit, acquire_deadline)
            finally:
                leave()
        return await collect(source, limit, threshold, leave)

    async def acquire(
        self, deadline: float, kind: Hashable = None, *, any_kind: bool = False
    ) -> Any:
        """A pooled connection (of ``kind``, see :meth:`Pool.acquire`), with
        the pool's failures made client-safe."""
        try:
            return await self.pool.acquire(deadline, kind, any_kind=any_kind)
        except PoolTimeout as exc:
            self.counters["acquireTimeouts"] += 1
            raise failures.busy(
                self.spec, self.limits.acquire_timeout_seconds, self._retry_after()
            ) from exc
        except BudgetTimeout as exc:
            self.counters["acquireTimeouts"] += 1
            cap = self._budget.max_open_connections or 0
            raise failures.over_cap(self.spec, cap, self._retry_after()) from exc
        except PoolClosed as exc:
            raise failures.closed(self.spec) from exc

    async def _admit(self, deadline: float) -> None:
        try:
            await self.admission.enter(deadline)
        except QueueFull:
            self.counters["queriesRejected"] += 1
            raise failures.queue_full(
                self.spec,
                self.admission.running,
                self.admission.queued,
                self._retry_after(),
            ) from None
        except TimeoutError as exc:
            self.counters["acquireTimeouts"] += 1
            raise failures.busy(
                self.spec, self.limits.acquire_timeout_seconds, self._retry_after()
            ) from exc

    def _fail_fast_if_down(self) -> None:
        if self.pool.idle == 0 and self.backoff.blocks(time.monotonic()):
            self.counters["fastFailures"] += 1
            raise DatabaseUnavailableError(self.backoff.detail)

    async def _open_kind(self, kind: Hashable) -> Any:
        """Open one connection of ``kind`` (drivers with one kind ignore it)."""
        return await self._open_connection()

    async def _connect_guarded(self, kind: Hashable = None) -> Any:
        """Open a connection unless connecting is known to fail right now."""
        if self.retired:
            raise EngineRetired
        started = time.monotonic()
        if self.backoff.blocks(started):
            self.counters["fastFailures"] += 1
            raise DatabaseUnavailableError(self.backoff.detail)
        self.backoff.attempt()
        try:
            conn = await self._open_kind(kind)
        except DatabaseUnavailableError as exc:
            self._connect_failed(started, exc)
            raise
        except BaseException:
            self.backoff.abandoned()
            raise
        if self.backoff.succeeded():
            logger.info("%s accepts connections again", self.spec)
        return conn

    def _connect_failed(self, started: float, exc: DatabaseUnavailableError) -> None:
        """Fail everyone waiting on this connection at once, then back off."""
        self.counters["connectFailures"] += 1
        now = time.monotonic()
        if self.backoff.failed(started, now, exc.detail):
            logger.warning(
                "%s; failing fast for %.1fs",
                exc.detail,
                self.backoff.remaining_seconds(now),
            )

        def make() -> DatabaseUnavailableError:
            return DatabaseUnavailableError(exc.detail)

        failed = self.pool.fail_waiting(make) + self.admission.fail_waiting(make)
        self.counters["fastFailures"] += failed

    def connection_lost(self) -> None:
        """A pooled connection was cut off: its idle siblings likely were too."""
        self.counters["connectionsLost"] += 1
        self.pool.discard_idle()

    def _observe(self, seconds: float) -> None:
        smoothing = _QUERY_SECONDS_SMOOTHING
        self._query_seconds += smoothing * (seconds - self._query_seconds)

    def _retry_after(self) -> int:
        """Seconds until the line ahead has likely moved on (1..60)."""
        ahead = self.admission.queued + 1
        estimate = self._query_seconds * ahead / self.limits.max_concurrent_queries
        return max(1, min(math.ceil(estimate), MAX_RETRY_AFTER_SECONDS))

    # -- lifecycle -------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Queries running or waiting in line on this engine."""
        return self.admission.in_flight

    @property
    def drain_seconds(self) -> float:
        limits, spec = self.limits, self.spec
        waited = limits.acquire_timeout_seconds + spec.connect_timeout_seconds
        return waited + spec.query_timeout_seconds + DRAIN_GRACE_SECONDS

    async def aclose(self, grace_seconds: float | None = None) -> None:
        """Let admitted queries finish (up to the grace), then close the pool.

        Connections still in use after the grace are closed when they come
        back; queries still waiting in line then fail with a 503.
        """
        grace = self.drain_seconds if grace_seconds is None else grace_seconds
        try:
            async with asyncio.timeout(grace):
                await self.admission.wait_drained()
                await self.wait_background()
        except TimeoutError:
            logger.warning("closing %s with queries still running", self.spec)
            self.admission.fail_waiting(lambda: failures.closed(self.spec))
        opened = self.pool.opened
        await self.pool.aclose()
        await self._close_shared()
        if opened:
            logger.info("closed pool for %s", self.spec)

    def pool_stats(self) -> dict[str, Any]:
        """The pool's gauges, the limits it runs under, and cheap counters."""
        limits = self.limits
        backoff = self.backoff.remaining_seconds(time.monotonic())
        return {
            **self.pool.stats(),
            "poolSize": limits.size,
            "maxOverflow": limits.max_overflow,
            "acquireTimeoutSeconds": limits.acquire_timeout_seconds,
            "maxConcurrentQueries": limits.max_concurrent_queries,
            "maxQueuedQueries": limits.max_queued_queries,
            "queriesRunning": self.admission.running,
            "queriesQueued": self.admission.queued,
            "connectBackoffSeconds": round(backoff, 3),
            **self.counters,
        }

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
