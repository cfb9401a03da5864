"""One bounded pool of database connections, and the server-wide cap over all.

The pool is the same for every driver: an engine hands it a ``connect`` and a
``disconnect`` coroutine and it keeps the rest. It never holds more than
``max_size`` connections (``size`` of them kept idle, the overflow closed
when it comes back and no query waits for it), hands a returned connection
straight to the longest waiting request, closes connections idle or alive
past their limits, and asks the :class:`ConnectionBudget` before it opens
one, so that all pools of a process together stay under one cap.

A pool may hold connections of more than one *kind* (PostgreSQL keeps
psycopg sessions and ADBC sessions for Arrow results in one pool, under one
size): a request names the kind it wants, takes an idle one of that kind, or
opens one while there is room; when there is none, it has an idle or
handed-over connection of another kind closed and its own opened in its
place (unless it will take any kind). A returned connection goes to the
first waiter that wants its kind, passing over at most
:data:`MAX_PASSED_OVER` times any waiter ahead of it that wants another, so
that a mixed load swaps few connections and nobody waits for long.

Everything here runs on the event loop: no locks, and every wait is a future
in a first-in, first-out line that a releasing task resolves directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C")

# How often a waiter can see a connection of another kind than its own go to
# someone behind it before it takes the next one whatever its kind.
MAX_PASSED_OVER = 3
# What a value of no particular kind (a free slot, a budget's room) is: it
# goes to the first waiter.
ANY_KIND: Hashable = object()


class PoolTimeout(Exception):
    """No connection came free before the acquire deadline."""


class PoolClosed(Exception):
    """The pool was closed while the request waited for a connection."""


class BudgetTimeout(Exception):
    """The server-wide cap left no room before the acquire deadline."""


class Waiters(Generic[T]):
    """Tasks waiting in line for a value that another task hands over."""

    def __init__(self) -> None:
        self._line: deque[_Waiter[T]] = deque()

    def __len__(self) -> int:
        return len(self._line)

    async def wait(
        self,
        deadline: float | None,
        give_back: Callable[[T], None],
        wants: Hashable = None,
    ) -> T:
        """Wait for a value until ``deadline`` (loop time); TimeoutError after.
        ``wants``: the kind of value this waiter prefers (see :meth:`hand_over`).

        A value handed over just as the waiter gave up goes to ``give_back``,
        so that nothing handed over is ever lost.
        """
        waiter = _Waiter[T](asyncio.get_running_loop().create_future(), wants)
        self._line.append(waiter)
        future = waiter.future
        try:
            async with asyncio.timeout_at(deadline):
                return await future
        except BaseException:
            with suppress(ValueError):
                self._line.remove(waiter)
            if future.done() and not future.cancelled() and not future.exception():
                give_back(future.result())
            raise

    def hand_over(self, value: T, kind: Hashable = ANY_KIND) -> bool:
        """Give ``value`` to the first live waiter that wants ``kind`` or was
        passed over often enough (the first live waiter if none); False if
        nobody waits."""
        while self._line and self._line[0].future.done():
            self._line.popleft()
        if not self._line:
            return False
        chosen = self._line[0]
        if kind is not ANY_KIND and chosen.wants != kind:
            for waiter in self._line:
                if not waiter.future.done() and (
                    waiter.wants == kind or waiter.passed_over >= MAX_PASSED_OVER
                ):
                    chosen = waiter
                    break
        for waiter in self._line:
            if waiter is chosen:
                break
            waiter.passed_over += 1
        self._line.remove(chosen)
        chosen.future.set_result(value)
        return True

    def fail_all(self, make_error: Callable[[], BaseException]) -> int:
        """Wake every waiter with an error of its own; return how many."""
        failed = 0
        line, self._line = self._line, deque()
        for waiter in line:
            if not waiter.future.done():
                waiter.future.set_exception(make_error())
                failed += 1
        return failed


@dataclass(eq=False)
class _Waiter(Generic[T]):
    future: asyncio.Future[T]
    wants: Hashable
    passed_over: int = 0


class ConnectionBudget:
    """How many database connections all pools of this process may hold open.

    A connection counts from the moment a pool decides to open it until its
    close has finished. When the cap is reached, the request that needs a new
    connection first asks the pools to close their longest-idle connection,
    then waits in line for the next slot that comes free.
    """

    def __init__(self, max_open_connections: int | None) -> None:
        self.max_open_connections = max_open_connections
        self.open_connections = 0
        self.timeouts = 0
        self._line: Waiters[None] = Waiters()
        self._pools: weakref.WeakSet[Pool[Any]] = weakref.WeakSet()

    @property
    def waiting(self) -> int:
        return len(self._line)

    def register(self, pool: Pool[Any]) -> None:
        self._pools.add(pool)

    def unregister(self, pool: Pool[Any]) -> None:
        self._pools.discard(pool)

    async def reserve(self, deadline: float | None) -> None:
        """Take one slot, waiting until ``deadline``; BudgetTimeout after."""
        cap = self.max_open_connections
        if cap is None or (self.open_connections < cap and not self._line):
            self.open_connections += 1
            return
        self._reclaim_idle()
        try:
            await self._line.wait(deadline, lambda _: self.release())
        except TimeoutError as exc:
            self.timeouts += 1
            raise BudgetTimeout from exc

    def release(self) -> None:
        """Give a slot back: to the first waiter, or to the free count."""
        if not self._line.hand_over(None):
            self.open_connections -= 1

    def stats(self) -> dict[str, int | None]:
        return {
            "openConnections": self.open_connections,
            "maxOpenConnections": self.max_open_connections,
            "waiting": self.waiting,
            "capTimeouts": self.timeouts,
        }

    def _reclaim_idle(self) -> None:
        idle = [(pool.oldest_idle_since(), pool) for pool in self._pools]
        candidates = [(since, pool) for since, pool in idle if since is not None]
        if candidates:
            min(candidates, key=lambda pair: pair[0])[1].evict_oldest_idle()


@dataclass(eq=False)
class _Pooled(Generic[C]):
    conn: C
    created_at: float
    idle_since: float
    kind: Hashable = None


class _Slot:
    """Handed to a waiter instead of a connection: open one in this slot."""


_SLOT = _Slot()


class Pool(Generic[C]):
    """A bounded pool of one connection's database connections."""

    def __init__(
        self,
        *,
        size: int,
        max_size: int,
        budget: ConnectionBudget,
        connect: Callable[[Hashable], Awaitable[C]],
        disconnect: Callable[[C], Awaitable[None]],
        alive: Callable[[C], bool],
        max_idle_seconds: float,
        max_lifetime_seconds: float,
        demand: Callable[[], int] = lambda: 0,
    ) -> None:
        """``demand``: how many requests run or wait to run, the one giving a
        connection back included (those without a connection keep a returned
        one from being closed as overflow)."""
        self.size_kept = size
        self.max_size = max_size
        self.max_idle_seconds = max_idle_seconds
        self.max_lifetime_seconds = max_lifetime_seconds
        self.opened = 0
        self.closed = 0
        self._budget = budget
        self._connect = connect
        self._disconnect = disconnect
        self._alive = alive
        self._demand = demand
        self._idle: deque[_Pooled[C]] = deque()
        self._in_use: dict[int, _Pooled[C]] = {}
        self._connecting = 0
        self._awaiting_budget = 0
        self._line: Waiters[_Pooled[C] | _Slot] = Waiters()
        self._closing: set[asyncio.Task[None]] = set()
        self._is_closed = False
        budget.register(self)

    @property
    def size(self) -> int:
        return len(self._idle) + len(self._in_use) + self._connecting

    @property
    def idle(self) -> int:
        return len(self._idle)

    # -- taking and giving back ---------------------------------------------------

    async def acquire(
        self, deadline: float | None, kind: Hashable = None, *, any_kind: bool = False
    ) -> C:
        """A connection of ``kind``, opened if needed (in the place of one of
        another kind if there is no room), before ``deadline`` (loop time).
        With ``any_kind``, one of another kind rather than none: an idle one
        if none of ``kind`` is, or the one handed over (the caller looks at
        what it got).

        Raises PoolTimeout, BudgetTimeout, PoolClosed, or whatever ``connect``
        raises.
        """
        if self._is_closed:
            raise PoolClosed
        record = self._take_idle(kind)
        if record is not None:
            return record.conn
        if self.size < self.max_size and not self._line:
            self._connecting += 1
            return (await self._open(deadline, kind)).conn
        if self._idle:
            other = self._take_idle(None, any_kind=True)
            if other is not None:
                if any_kind:
                    return other.conn
                return (await self._swap(other, deadline, kind)).conn
        try:
            got = await self._line.wait(deadline, self._give_back, kind)
        except TimeoutError as exc:
            raise PoolTimeout from exc
        if isinstance(got, _Slot):
            return (await self._open(deadline, kind)).conn
        if got.kind != kind and not any_kind:
            return (await self._swap(got, deadline, kind)).conn
        return got.conn

    def release(self, conn: C, *, reusable: bool = True) -> None:
        """Take ``conn`` back: to a waiter, to the idle set, or closed."""
        record = self._in_use.pop(id(conn), None)
        if record is None:
            return
        now = time.monotonic()
        if not reusable or self._is_closed or self._past_lifetime(record, now):
            self._discard(record)
            return
        self._return(record, now)

    def forget(self, conn: C) -> None:
        """Give up a connection that cannot be closed now (a stuck thread)."""
        if self._in_use.pop(id(conn), None) is not None:
            self.closed += 1
            self._budget.release()
            self._slot_freed()

    def fail_waiting(self, make_error: Callable[[], BaseException]) -> int:
        return self._line.fail_all(make_error)

    # -- closing ----------------------------------------------------------------

    def discard_idle(self) -> int:
        """Close every idle connection (after one was found cut off)."""
        idle, self._idle = self._idle, deque()
        for record in idle:
            self._discard(record)
        return len(idle)

    def close_expired(self) -> int:
        """Close idle connections past their idle or lifetime limit."""
        now = time.monotonic()
        expired = [r for r in self._idle if self._expired(r, now)]
        for record in expired:
            self._idle.remove(record)
            self._discard(record)
        return len(expired)

    def oldest_idle_since(self) -> float | None:
        return self._idle[0].idle_since if self._idle else None

    def evict_oldest_idle(self) -> bool:
        if not self._idle:
            return False
        self._discard(self._idle.popleft())
        return True

    async def aclose(self) -> None:
        """Close idle connections now, in-use ones when they come back."""
        self._is_closed = True
        self.fail_waiting(PoolClosed)
        self.discard_idle()
        await self.wait_closing()
        self._budget.unregister(self)

    async def wait_closing(self) -> None:
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def stats(self) -> dict[str, int]:
        """Gauges count open connections only: a slot still waiting for room
        under the server-wide cap counts as a waiting request."""
        connecting = self._connecting - self._awaiting_budget
        return {
            "maxSize": self.max_size,
            "size": len(self._idle) + len(self._in_use) + connecting,
            "inUse": len(self._in_use),
            "idle": len(self._idle),
            "connecting": connecting,
            "closing": len(self._closing),
            "waiting": len(self._line) + self._awaiting_budget,
            "connectionsOpened": self.opened,
            "connectionsClosed": self.closed,
        }

    # -- inside -----------------------------------------------------------------

    def _take_idle(
        self, kind: Hashable, *, any_kind: bool = False
    ) -> _Pooled[C] | None:
        """The most recently used idle connection of ``kind`` (of any kind
        with ``any_kind``); expired or dead ones met on the way are closed."""
        now = time.monotonic()
        for index in range(len(self._idle) - 1, -1, -1):
            record = self._idle[index]
            if self._expired(record, now) or not self._alive(record.conn):
                del self._idle[index]
                self._discard(record)
                continue
            if any_kind or record.kind == kind:
                del self._idle[index]
                self._in_use[id(record.conn)] = record
                return record
        return None

    async def _swap(
        self, record: _Pooled[C], deadline: float | None, kind: Hashable
    ) -> _Pooled[C]:
        """Close ``record`` (taken, of another kind) and open one of ``kind``
        in its place, without giving its place to anyone else."""
        self._in_use.pop(id(record.conn), None)
        self._closing_task(record.conn)
        self._connecting += 1
        return await self._open(deadline, kind)

    async def _open(self, deadline: float | None, kind: Hashable) -> _Pooled[C]:
        """Open a connection in a slot already counted in ``_connecting``."""
        try:
            self._awaiting_budget += 1
            try:
                await self._budget.reserve(deadline)
            finally:
                self._awaiting_budget -= 1
            try:
                conn = await self._connect(kind)
            except BaseException:
                self._budget.release()
                raise
        except BaseException:
            self._connecting -= 1
            self._slot_freed()
            raise
        self._connecting -= 1
        self.opened += 1
        now = time.monotonic()
        record = _Pooled(conn, created_at=now, idle_since=now, kind=kind)
        self._in_use[id(conn)] = record
        return record

    def _return(self, record: _Pooled[C], now: float) -> None:
        key = id(record.conn)
        if self._line:
            self._in_use[key] = record
            if self._line.hand_over(record, record.kind):
                return
            del self._in_use[key]
        without = self._demand() - 1 - len(self._in_use)
        if len(self._idle) >= max(self.size_kept, without) or self._budget.waiting:
            # Overflow nobody waits for, or another pool needs the slot more
            # than we need it idle. (Queries queue before they ask the pool:
            # closing what comes back while they wait would reconnect on
            # almost every query of a busy pool with overflow.)
            self._discard(record)
            return
        record.idle_since = now
        self._idle.append(record)

    def _give_back(self, got: _Pooled[C] | _Slot) -> None:
        """A waiter gave up just as it was handed something: pass it on."""
        if isinstance(got, _Slot):
            self._connecting -= 1
            self._slot_freed()
        else:
            self.release(got.conn)

    def _slot_freed(self) -> None:
        if self._is_closed or not self._line:
            return
        self._connecting += 1
        if not self._line.hand_over(_SLOT):
            self._connecting -= 1

    def _discard(self, record: _Pooled[C]) -> None:
        self._closing_task(record.conn)
        self._slot_freed()

    def _closing_task(self, conn: C) -> None:
        task = asyncio.get_running_loop().create_task(self._close(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, conn: C) -> None:
        try:
            await self._disconnect(conn)
        except Exception:
            logger.debug("closing a connection failed", exc_info=True)
        finally:
            self.closed += 1
            self._budget.release()

    def _past_lifetime(self, record: _Pooled[C], now: float) -> bool:
        return now - record.created_at >= self.max_lifetime_seconds

    def _expired(self, record: _Pooled[C], now: float) -> bool:
        idle_for = now - record.idle_since
        return idle_for >= self.max_idle_seconds or self._past_lifetime(record, now)
