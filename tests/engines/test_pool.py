"""The pool, the line of queries and the connect backoff, on a fake driver
whose connections are plain objects and whose database can be switched off."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from pointsman.engines import ConnectionSpec, QueryResult, failures
from pointsman.engines.base import Engine
from pointsman.engines.limits import ConnectBackoff
from pointsman.engines.pool import ConnectionBudget
from pointsman.errors import DatabaseUnavailableError

pytestmark = pytest.mark.anyio

CONNECT_SECONDS = 0.05


class FakeConnection:
    """A connection that knows nothing but whether it is open."""

    closed = False


class FakeEngine(Engine):
    """Runs "SQL" that is the number of seconds to hold a connection."""

    down = False
    connects = 0

    @classmethod
    async def server_version(cls, spec: ConnectionSpec) -> str:
        return "fake"

    async def _open_connection(self) -> FakeConnection:
        self.connects += 1
        await asyncio.sleep(CONNECT_SECONDS)
        if self.down:
            raise failures.unavailable(self.spec, "connection refused")
        return FakeConnection()

    async def _close_connection(self, conn: FakeConnection) -> None:
        conn.closed = True

    async def _run_admitted(
        self, sql: str, limit: int | None, acquire_deadline: float
    ) -> QueryResult:
        conn = await self.acquire(acquire_deadline)
        try:
            await asyncio.sleep(float(sql))
            return QueryResult(columns=[], rows=[(sql,)])
        finally:
            self.pool.release(conn)


def fake(budget: ConnectionBudget | None = None, **options: Any) -> FakeEngine:
    spec = ConnectionSpec(
        id=f"conn-{uuid.uuid4().hex[:8]}", name="fake", dialect="fake", options=options
    )
    return FakeEngine(
        spec,
        budget=budget,
        connect_backoff_seconds=0.3,
        max_connect_backoff_seconds=1.0,
    )


async def test_a_returned_connection_goes_to_the_longest_waiting_query() -> None:
    engine = fake(poolSize=1, maxConcurrentQueries=3)
    finished: list[str] = []

    async def query(seconds: str) -> None:
        await engine.run(seconds)
        finished.append(seconds)

    await asyncio.gather(query("0.1"), query("0.01"), query("0.0"))

    assert finished == ["0.1", "0.01", "0.0"]
    assert engine.pool_stats()["connectionsOpened"] == 1
    await engine.aclose()


async def test_a_crowd_never_opens_more_than_size_plus_overflow() -> None:
    engine = fake(poolSize=2, maxOverflow=3, maxQueuedQueries=1000)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, engine.pool_stats()["size"])
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(engine.run("0.01") for _ in range(200)))
    watcher.cancel()

    stats = engine.pool_stats()
    assert peak == 5
    assert (stats["size"], stats["idle"]) == (2, 2)  # the overflow closed
    await engine.aclose()


async def test_a_busy_pool_with_overflow_reuses_its_connections() -> None:
    engine = fake(poolSize=2, maxOverflow=3, maxQueuedQueries=1000)

    await asyncio.gather(*(engine.run("0.01") for _ in range(200)))

    stats = engine.pool_stats()
    assert (stats["connectionsOpened"], stats["connectionsClosed"]) == (5, 3)
    assert (stats["size"], stats["idle"]) == (2, 2)
    await engine.aclose()


async def test_pools_sharing_a_budget_stay_under_its_cap() -> None:
    budget = ConnectionBudget(3)
    engines = [fake(budget, poolSize=3) for _ in range(3)]
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, budget.open_connections)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(e.run("0.02") for e in engines for _ in range(6)))
    watcher.cancel()

    assert peak == 3
    assert sum(e.pool_stats()["size"] for e in engines) <= 3
    for engine in engines:
        await engine.aclose()
    assert budget.open_connections == 0


async def test_a_failed_connect_fails_the_waiting_queries_at_once() -> None:
    engine = fake(poolSize=2, maxConcurrentQueries=2)
    engine.down = True
    loop = asyncio.get_running_loop()
    before = loop.time()

    answers = await asyncio.gather(
        *(engine.run("0") for _ in range(6)), return_exceptions=True
    )

    assert all(isinstance(a, DatabaseUnavailableError) for a in answers)
    assert loop.time() - before < 3 * CONNECT_SECONDS
    assert engine.connects == 2  # the two first in line; the rest failed with them


async def test_inside_the_backoff_window_queries_fail_without_connecting() -> None:
    engine = fake()
    engine.down = True
    with pytest.raises(DatabaseUnavailableError):
        await engine.run("0")

    with pytest.raises(DatabaseUnavailableError) as caught:
        await engine.run("0")

    assert (
        caught.value.detail
        == "Could not connect to connection 'fake': connection refused"
    )
    assert engine.connects == 1
    stats = engine.pool_stats()
    assert stats["fastFailures"] == 1 and 0 < stats["connectBackoffSeconds"] <= 0.3


async def test_after_the_window_one_retry_finds_the_database_back() -> None:
    engine = fake()
    engine.down = True
    with pytest.raises(DatabaseUnavailableError):
        await engine.run("0")
    engine.down = False
    await asyncio.sleep(0.35)

    result = await engine.run("0")

    assert result.rows == [("0",)]
    assert engine.pool_stats()["connectBackoffSeconds"] == 0
    await engine.aclose()


def test_the_window_doubles_with_each_failed_retry_up_to_its_maximum() -> None:
    backoff = ConnectBackoff(initial_seconds=1.0, max_seconds=3.0)
    windows = []

    for now in (0.0, 10.0, 20.0, 30.0):
        backoff.attempt()
        backoff.failed(started_at=now, now=now, detail="down")
        windows.append(backoff.remaining_seconds(now))

    assert windows == [1.0, 2.0, 3.0, 3.0]


def test_parallel_attempts_that_fail_together_count_once() -> None:
    backoff = ConnectBackoff(initial_seconds=1.0, max_seconds=30.0)

    widened = [
        backoff.failed(started_at=0.0, now=0.5 + n / 10, detail="down")
        for n in range(5)
    ]

    assert widened == [True, False, False, False, False]
    assert backoff.failures == 1


def test_while_the_retry_runs_the_others_fail_fast() -> None:
    backoff = ConnectBackoff(initial_seconds=1.0, max_seconds=30.0)
    backoff.failed(started_at=0.0, now=0.0, detail="down")
    assert backoff.blocks(0.5) and not backoff.blocks(1.5)

    backoff.attempt()

    assert backoff.blocks(1.5)
    assert backoff.succeeded() and not backoff.blocks(1.5)


async def test_closing_lets_admitted_and_waiting_queries_finish() -> None:
    engine = fake(poolSize=2, maxConcurrentQueries=2)
    queries = [asyncio.create_task(engine.run("0.1")) for _ in range(5)]
    await asyncio.sleep(0)

    await engine.aclose()

    assert all(q.done() and not q.exception() for q in queries)
    assert engine.pool_stats()["size"] == 0
