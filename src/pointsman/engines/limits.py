"""What keeps one database from hurting its own users or anybody else's.

- :class:`PoolLimits`: a connection's pool size, overflow, acquire timeout,
  concurrency limit and queue bound, read from its ``options``.
- :class:`Admission`: at most ``maxConcurrentQueries`` queries of one
  connection run at once, a bounded line waits behind them, and the rest are
  refused at once instead of piling up.
- :class:`ConnectBackoff`: after a failed connect, requests that would need a
  new connection fail fast for a short, growing window instead of each
  waiting out the connect timeout again.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pointsman.engines.pool import Waiters
from pointsman.engines.spec import ConnectionSpec

DEFAULT_POOL_SIZE = 5
MAX_POOL_SIZE = 100
DEFAULT_MAX_OVERFLOW = 0
MAX_OVERFLOW = 100
DEFAULT_ACQUIRE_TIMEOUT_SECONDS = 10.0
MIN_ACQUIRE_TIMEOUT_SECONDS = 0.05
MAX_ACQUIRE_TIMEOUT_SECONDS = 600.0
QUEUED_PER_CONCURRENT_QUERY = 4
MAX_CONCURRENT_QUERIES = 1000
MAX_QUEUED_QUERIES = 10_000


@dataclass(frozen=True)
class PoolLimits:
    """A connection's pool and concurrency settings, each within its bounds.

    Read from ``spec.options``: ``poolSize`` (connections kept, default 5),
    ``maxOverflow`` (extra connections opened under load and closed as soon
    as they come back, default 0), ``acquireTimeoutSeconds`` (how long a
    query may wait for a connection, default 10), ``maxConcurrentQueries``
    (default: poolSize + maxOverflow) and ``maxQueuedQueries`` (default: four
    times the concurrency limit). A value of the wrong type or out of bounds
    falls back to its default or is clamped.
    """

    size: int = DEFAULT_POOL_SIZE
    max_overflow: int = DEFAULT_MAX_OVERFLOW
    acquire_timeout_seconds: float = DEFAULT_ACQUIRE_TIMEOUT_SECONDS
    max_concurrent_queries: int = DEFAULT_POOL_SIZE
    max_queued_queries: int = QUEUED_PER_CONCURRENT_QUERY * DEFAULT_POOL_SIZE

    @property
    def max_size(self) -> int:
        return self.size + self.max_overflow

    @classmethod
    def of(cls, spec: ConnectionSpec) -> PoolLimits:
        options = spec.options
        size = _number(options, "poolSize", DEFAULT_POOL_SIZE, 1, MAX_POOL_SIZE)
        overflow = _number(
            options, "maxOverflow", DEFAULT_MAX_OVERFLOW, 0, MAX_OVERFLOW
        )
        concurrent = _number(
            options, "maxConcurrentQueries", size + overflow, 1, MAX_CONCURRENT_QUERIES
        )
        queued = _number(
            options,
            "maxQueuedQueries",
            QUEUED_PER_CONCURRENT_QUERY * concurrent,
            0,
            MAX_QUEUED_QUERIES,
        )
        acquire = _number(
            options,
            "acquireTimeoutSeconds",
            DEFAULT_ACQUIRE_TIMEOUT_SECONDS,
            MIN_ACQUIRE_TIMEOUT_SECONDS,
            MAX_ACQUIRE_TIMEOUT_SECONDS,
            kind=float,
        )
        return cls(
            int(size), int(overflow), float(acquire), int(concurrent), int(queued)
        )


def _number(
    options: Mapping[str, Any],
    key: str,
    default: float,
    low: float,
    high: float,
    *,
    kind: type[int] | type[float] = int,
) -> float:
    value = options.get(key)
    if value is None or isinstance(value, bool):
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        return default
    if not math.isfinite(number):
        return default
    return max(low, min(number, high))


class QueueFull(Exception):
    """The line of waiting queries is at its bound."""


class Admission:
    """At most ``limit`` queries run at once; ``queue_limit`` more may wait.

    Entering and leaving never yield while counting, so a caller that starts
    :meth:`enter` is counted before any other task runs.
    """

    def __init__(self, limit: int, queue_limit: int) -> None:
        self.limit = limit
        self.queue_limit = queue_limit
        self.running = 0
        self._line: Waiters[None] = Waiters()
        self._drained: list[asyncio.Future[None]] = []

    @property
    def queued(self) -> int:
        return len(self._line)

    @property
    def in_flight(self) -> int:
        return self.running + len(self._line)

    async def enter(self, deadline: float) -> None:
        """Run now, or wait in line until ``deadline`` (loop time).

        Raises QueueFull when the line is full, TimeoutError past the deadline.
        """
        if self.running < self.limit and not self._line:
            self.running += 1
            return
        if len(self._line) >= self.queue_limit:
            raise QueueFull
        try:
            await self._line.wait(deadline, lambda _: self.leave())
        finally:
            self._notify_if_drained()

    def leave(self) -> None:
        if self._line.hand_over(None):
            return
        self.running -= 1
        self._notify_if_drained()

    def fail_waiting(self, make_error: Callable[[], BaseException]) -> int:
        failed = self._line.fail_all(make_error)
        self._notify_if_drained()
        return failed

    async def wait_drained(self) -> None:
        """Return once no query runs or waits."""
        if self.in_flight == 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drained.append(future)
        await future

    def _notify_if_drained(self) -> None:
        if self.in_flight:
            return
        drained, self._drained = self._drained, []
        for future in drained:
            if not future.done():
                future.set_result(None)


class ConnectBackoff:
    """When to try connecting again after a failed connect.

    The first failure opens a window of ``initial_seconds``; each failed
    retry doubles it, up to ``max_seconds``. Inside the window, and while the
    one retry after it (the probe) is under way, requests that need a new
    connection fail at once with the last failure's detail. Attempts that
    started before the latest failure do not widen the window: a burst of
    parallel connects that all fail counts once.
    """

    def __init__(self, initial_seconds: float, max_seconds: float) -> None:
        self.initial_seconds = initial_seconds
        self.max_seconds = max(max_seconds, initial_seconds)
        self.failures = 0
        self.detail = ""
        self._until = 0.0
        self._last_failure_at = -math.inf
        self._probing = False

    def blocks(self, now: float) -> bool:
        return self.failures > 0 and (now < self._until or self._probing)

    def remaining_seconds(self, now: float) -> float:
        return max(self._until - now, 0.0) if self.failures else 0.0

    def attempt(self) -> None:
        """An attempt starts; after a failure it is the probe."""
        if self.failures:
            self._probing = True

    def failed(self, started_at: float, now: float, detail: str) -> bool:
        """Record a failed attempt; True if it opened or widened the window."""
        if started_at < self._last_failure_at:
            return False
        self.failures += 1
        window = self.initial_seconds * 2 ** min(self.failures - 1, 30)
        self._until = now + min(window, self.max_seconds)
        self._last_failure_at = now
        self._probing = False
        self.detail = detail
        return True

    def succeeded(self) -> bool:
        """Record a successful connect; True if it ended a failure streak."""
        recovered = self.failures > 0
        self.failures = 0
        self._probing = False
        return recovered

    def abandoned(self) -> None:
        """The probe was cancelled before it knew: let the next request try."""
        self._probing = False
