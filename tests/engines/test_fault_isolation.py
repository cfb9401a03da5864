"""A database that is down or slow fails its own users fast, nobody else's.

The database "goes down" behind a local TCP proxy that the test cuts off,
while a second connection to the same server keeps serving directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from tcp_proxy import Outage, TcpProxy

from pointsman.engines import ConnectionSpec, EngineRegistry, postgres_arrow
from pointsman.errors import (
    ConnectionBusyError,
    DatabaseUnavailableError,
    PointsmanError,
    QueryQueueFullError,
    QueryTimeoutError,
)

pytestmark = pytest.mark.anyio

FAKE_PASSWORD = "Pw-never-shown-5e1b2d"
THINK_SECONDS = 0.02


@dataclass(frozen=True)
class Outcome:
    started: float
    seconds: float
    error: PointsmanError | None


@pytest.fixture
async def proxy(postgres_spec: ConnectionSpec) -> AsyncIterator[TcpProxy]:
    assert postgres_spec.host is not None and postgres_spec.port is not None
    proxy = TcpProxy(postgres_spec.host, postgres_spec.port)
    await proxy.start()
    yield proxy
    await proxy.aclose()


def variant(spec: ConnectionSpec, name: str, **changes: Any) -> ConnectionSpec:
    """Another connection (its own id, so its own pool) to the same database."""
    return dataclasses.replace(
        spec, id=f"conn-{uuid.uuid4().hex[:8]}", name=name, **changes
    )


def through(
    proxy: TcpProxy, spec: ConnectionSpec, connect_timeout: int
) -> ConnectionSpec:
    return variant(
        spec,
        "behind proxy",
        host="127.0.0.1",
        port=proxy.port,
        connect_timeout_seconds=connect_timeout,
        secrets={"password": FAKE_PASSWORD},
    )


async def users(
    registry: EngineRegistry, spec: ConnectionSpec, count: int, until: float
) -> list[Outcome]:
    """``count`` users who query ``spec`` in a loop until ``until`` (loop time)."""
    loop = asyncio.get_running_loop()
    outcomes: list[Outcome] = []

    async def user() -> None:
        while loop.time() < until:
            started = loop.time()
            error: PointsmanError | None = None
            try:
                await registry.run(spec, "select pg_sleep(0.01)")
            except PointsmanError as exc:
                error = exc
            outcomes.append(Outcome(started, loop.time() - started, error))
            await asyncio.sleep(THINK_SECONDS)

    await asyncio.gather(*(user() for _ in range(count)))
    return outcomes


async def run_outage(
    registry: EngineRegistry,
    down: ConnectionSpec,
    healthy: ConnectionSpec,
    proxy: TcpProxy,
    outage: Outage,
    *,
    cut_after: float,
    total: float,
    down_users_before_cut: bool = True,
) -> tuple[float, list[Outcome], list[Outcome]]:
    """Users on both connections for ``total`` seconds, ``down`` cut off
    after ``cut_after``; returns the cut's loop time and each one's outcomes.

    Without ``down_users_before_cut``, nobody uses ``down`` before the cut,
    so that its pool holds no connection that the outage would leave hanging.
    """
    loop = asyncio.get_running_loop()
    until = loop.time() + total
    healthy_users = asyncio.create_task(users(registry, healthy, 8, until))
    if down_users_before_cut:
        down_users = asyncio.create_task(users(registry, down, 8, until))
    await asyncio.sleep(cut_after)
    cut_at = loop.time()
    proxy.cut(outage)
    if not down_users_before_cut:
        down_users = asyncio.create_task(users(registry, down, 8, until))
    return cut_at, await down_users, await healthy_users


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def report(label: str, outcomes: list[Outcome]) -> str:
    seconds = [o.seconds * 1000 for o in outcomes]
    return (
        f"{label}: n={len(seconds)} median={statistics.median(seconds):.1f}ms"
        f" p95={p95(seconds):.1f}ms max={max(seconds):.1f}ms"
    )


def assert_healthy_kept_its_latency(
    healthy: list[Outcome], cut_at: float, label: str
) -> None:
    before = [o for o in healthy if o.started < cut_at]
    during = [o for o in healthy if o.started >= cut_at]
    print(report(f"{label} healthy before", before))
    print(report(f"{label} healthy during", during))
    assert all(o.error is None for o in healthy)
    normal = statistics.median(o.seconds for o in before)
    assert statistics.median(o.seconds for o in during) < 2 * normal + 0.02
    assert (
        p95([o.seconds for o in during]) < 4 * p95([o.seconds for o in before]) + 0.05
    )


def assert_unavailable_naming(outcome: Outcome, name: str) -> None:
    assert isinstance(outcome.error, DatabaseUnavailableError)
    assert outcome.error.status == 502
    assert outcome.error.detail.startswith(f"Could not connect to connection {name!r}")
    assert FAKE_PASSWORD not in outcome.error.detail
    assert "postgresql://" not in outcome.error.detail


async def test_a_database_gone_down_fails_its_users_fast_and_no_one_else(
    registry: EngineRegistry, postgres_spec: ConnectionSpec, proxy: TcpProxy
) -> None:
    down = through(proxy, postgres_spec, connect_timeout=5)
    healthy = variant(postgres_spec, "direct")

    cut_at, down_outcomes, healthy_outcomes = await run_outage(
        registry, down, healthy, proxy, "refuse", cut_after=1.5, total=4.0
    )

    before = [o for o in down_outcomes if o.started + o.seconds < cut_at]
    after = [o for o in down_outcomes if o.started >= cut_at]
    print(report("refuse: down before", before))
    print(report("refuse: down after", after))
    assert before and all(o.error is None for o in before)
    assert after
    for outcome in after:
        assert_unavailable_naming(outcome, "behind proxy")
    assert max(o.seconds for o in after) < 1.0  # its connect timeout is 5s
    assert_healthy_kept_its_latency(healthy_outcomes, cut_at, "refuse:")
    stats = registry.pool_stats(down.id)
    assert stats is not None and stats["fastFailures"] > 0
    assert stats["connectFailures"] <= 6  # one per backoff window, not per query


async def test_a_host_that_stops_answering_costs_one_connect_timeout_then_fails_fast(
    registry: EngineRegistry, postgres_spec: ConnectionSpec, proxy: TcpProxy
) -> None:
    # libpq waits at least 2s, whatever smaller connect timeout it is given.
    down = through(proxy, postgres_spec, connect_timeout=2)
    healthy = variant(postgres_spec, "direct")

    cut_at, down_outcomes, healthy_outcomes = await run_outage(
        registry,
        down,
        healthy,
        proxy,
        "hang",
        cut_after=1.0,
        total=5.0,
        down_users_before_cut=False,
    )

    assert all(o.error is not None for o in down_outcomes)
    for outcome in down_outcomes:
        assert_unavailable_naming(outcome, "behind proxy")
    first_failure = min(o.started + o.seconds for o in down_outcomes)
    later = [o for o in down_outcomes if o.started >= first_failure]
    print(report("hang: down after the first failure", later))
    slow = [o for o in later if o.seconds > 0.5]
    print(f"hang: {len(slow)} of them waited for a connect timeout")
    # Only the one retry per backoff window waits out the connect timeout.
    assert len(slow) <= 3
    assert max(o.seconds for o in later) < 2 + 1.5
    assert statistics.median(o.seconds for o in later) < 0.05
    assert_healthy_kept_its_latency(healthy_outcomes, cut_at, "hang:")


async def test_a_slow_database_only_uses_its_own_slots(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    slow = variant(
        postgres_spec,
        "slow",
        options={
            "maxConcurrentQueries": 2,
            "maxQueuedQueries": 2,
            "acquireTimeoutSeconds": 1,
        },
    )
    healthy = variant(postgres_spec, "direct")
    await registry.run(healthy, "select 1")
    hanging = [
        asyncio.create_task(registry.run(slow, "select pg_sleep(3)")) for _ in range(10)
    ]
    await asyncio.sleep(0.2)

    loop = asyncio.get_running_loop()
    latencies = []
    for _ in range(20):
        started = loop.time()
        await registry.run(healthy, "select 1")
        latencies.append(loop.time() - started)
    answers = await asyncio.gather(*hanging, return_exceptions=True)

    print(f"slow: healthy median {statistics.median(latencies) * 1000:.1f}ms")
    assert statistics.median(latencies) < 0.05
    kinds = [type(answer).__name__ for answer in answers]
    assert kinds.count("QueryResult") == 2
    assert kinds.count(ConnectionBusyError.__name__) == 2
    assert kinds.count(QueryQueueFullError.__name__) == 6
    stats = registry.pool_stats(slow.id)
    assert stats is not None and stats["connectionsOpened"] == 2


class ProxyThread:
    """A TcpProxy on an event loop of its own thread, so that it keeps
    answering (or keeps silent) whatever the test's loop is doing."""

    def __init__(self, host: str, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = TcpProxy(host, port)
        self.port = self._run(self.proxy.start())

    def _run(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=10)

    def cut(self, outage: Outage) -> None:
        self.loop.call_soon_threadsafe(self.proxy.cut, outage)

    def close(self) -> None:
        self._run(self.proxy.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


async def test_a_frozen_server_mid_arrow_query_times_out_without_stopping_the_loop(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    """The statement's cancel goes to a server that no longer answers: the
    query still ends near its timeout, and the event loop (every other
    user's requests) never waits for the cancel."""
    assert postgres_spec.host is not None and postgres_spec.port is not None
    proxy = ProxyThread(postgres_spec.host, postgres_spec.port)
    # The outage ends by itself after a while, so that a loop blocked by the
    # cancel shows as a long gap here instead of hanging the test run.
    ends_after = 8.0
    timers: list[threading.Timer] = []
    try:
        spec = variant(
            postgres_spec,
            "frozen",
            host="127.0.0.1",
            port=proxy.port,
            query_timeout_seconds=1,
        )
        sql = "select v.x from (select pg_sleep(3)) s, (values (1), (2)) v(x)"
        gaps: list[float] = []
        stop = asyncio.Event()

        async def heartbeat() -> None:
            loop = asyncio.get_running_loop()
            last = loop.time()
            while not stop.is_set():
                await asyncio.sleep(0.02)
                now = loop.time()
                gaps.append(now - last)
                last = now

        beating = asyncio.create_task(heartbeat())
        freeze = threading.Timer(0.4, proxy.cut, ("hang",))
        thaw = threading.Timer(ends_after, proxy.cut, ("refuse",))
        timers.extend((freeze, thaw))
        freeze.start()
        thaw.start()
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError):
            await registry.stream(spec, sql, arrow=True)
        took = time.monotonic() - started
        stop.set()
        await beating
        assert max(gaps) < 0.5, f"the event loop stood still {max(gaps):.1f} s"
        # The timeout, the client's grace, then the wait for the cancel.
        assert took < 1 + 0.5 + postgres_arrow.CANCEL_WAIT_SECONDS + 1.5, took
        pool = registry.pool_stats(spec.id)
        assert pool is not None and pool["inUse"] == 0, pool
    finally:
        for timer in timers:
            timer.cancel()
        proxy.close()


async def test_a_frozen_mariadb_mid_query_times_out_after_one_try_to_kill_it(
    registry: EngineRegistry, mysql_spec: ConnectionSpec
) -> None:
    """The statement cannot be killed (the kill's connection cannot reach the
    server either): the link is dropped then, without waiting for a statement
    end that cannot come."""
    assert mysql_spec.host is not None and mysql_spec.port is not None
    proxy = ProxyThread(mysql_spec.host, mysql_spec.port)
    freeze = threading.Timer(0.4, proxy.cut, ("hang",))
    try:
        spec = variant(
            mysql_spec,
            "frozen",
            host="127.0.0.1",
            port=proxy.port,
            query_timeout_seconds=1,
            connect_timeout_seconds=1,
        )
        freeze.start()
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError):
            await registry.stream(spec, "select sleep(3) as slept")
        took = time.monotonic() - started
        # The timeout, then one connect timeout for the kill.
        assert took < 1 + 1 + 1.0, took
        pool = registry.pool_stats(spec.id)
        assert pool is not None and pool["inUse"] == 0, pool
    finally:
        freeze.cancel()
        proxy.close()
