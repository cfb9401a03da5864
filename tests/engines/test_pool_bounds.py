"""Pool size and overflow, acquire timeout, the bounded line of queries and
the server-wide cap on open database connections."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from outside import outside

from pointsman.engines import ConnectionSpec, EngineRegistry
from pointsman.engines.limits import PoolLimits
from pointsman.errors import ConnectionBusyError, QueryQueueFullError

pytestmark = pytest.mark.anyio

# A few milliseconds of work for SQLite, so that queries overlap.
SQLITE_BUSY = (
    "with recursive n(i) as (select 1 union all select i + 1 from n"
    " where i < 2000) select count(*) from n"
)

# Pools of at most 3 for the crowd; the acquire timeout is generous because
# these tests check the caps, not the latency of a loaded machine.
CROWDED_OPTIONS = {"poolSize": 2, "maxOverflow": 1, "acquireTimeoutSeconds": 60}

MakeRegistry = Callable[..., EngineRegistry]


@pytest.fixture
async def make_registry() -> AsyncIterator[MakeRegistry]:
    made: list[EngineRegistry] = []

    def make(**kwargs: Any) -> EngineRegistry:
        made.append(EngineRegistry(**kwargs))
        return made[-1]

    yield make
    for registry in made:
        await registry.close_all()


def variant(spec: ConnectionSpec, name: str, **options: Any) -> ConnectionSpec:
    """Another connection (its own id, so its own pool) to the same database."""
    return dataclasses.replace(
        spec, id=f"conn-{uuid.uuid4().hex[:8]}", name=name, options=options
    )


def size_of(registry: EngineRegistry, spec: ConnectionSpec) -> int:
    stats = registry.pool_stats(spec.id)
    assert stats is not None
    return int(stats["size"])


async def started(*calls: Any) -> list[asyncio.Task[Any]]:
    """Start the calls as tasks and let them reach their first wait."""
    tasks = [asyncio.create_task(call) for call in calls]
    await asyncio.sleep(0.3)
    return tasks


def test_limits_default_from_the_pool_size() -> None:
    spec = ConnectionSpec(id="c", name="c", dialect="sqlite", options={"poolSize": 3})

    limits = PoolLimits.of(spec)

    assert limits == PoolLimits(
        size=3,
        max_overflow=0,
        acquire_timeout_seconds=10.0,
        max_concurrent_queries=3,
        max_queued_queries=12,
    )


def test_limits_out_of_bounds_are_clamped_and_nonsense_ignored() -> None:
    options = {
        "poolSize": 10_000,
        "maxOverflow": -3,
        "acquireTimeoutSeconds": "soon",
        "maxConcurrentQueries": True,
        "maxQueuedQueries": 0,
    }
    spec = ConnectionSpec(id="c", name="c", dialect="sqlite", options=options)

    limits = PoolLimits.of(spec)

    assert (limits.size, limits.max_overflow, limits.max_size) == (100, 0, 100)
    assert limits.acquire_timeout_seconds == 10.0
    assert limits.max_concurrent_queries == 100
    assert limits.max_queued_queries == 0


async def test_a_full_line_refuses_at_once_with_429_naming_the_connection(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = variant(postgres_spec, "narrow", maxConcurrentQueries=1, maxQueuedQueries=1)
    running = await started(
        registry.run(spec, "select pg_sleep(1)"), registry.run(spec, "select 1")
    )
    loop = asyncio.get_running_loop()
    before = loop.time()

    with pytest.raises(QueryQueueFullError) as caught:
        await registry.run(spec, "select 2")

    assert loop.time() - before < 0.1
    assert caught.value.status == 429
    assert caught.value.retry_after_seconds >= 1
    assert caught.value.detail == (
        "Connection 'narrow' is running 1 queries with 1 more waiting: try again later"
    )
    await asyncio.gather(*running)
    stats = registry.pool_stats(spec.id)
    assert stats is not None and stats["queriesRejected"] == 1


async def test_waiting_in_line_past_the_acquire_timeout_gives_503(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = variant(
        postgres_spec, "narrow", maxConcurrentQueries=1, acquireTimeoutSeconds=0.5
    )
    running = await started(registry.run(spec, "select pg_sleep(2)"))
    loop = asyncio.get_running_loop()
    before = loop.time()

    with pytest.raises(ConnectionBusyError) as caught:
        await registry.run(spec, "select 1")

    assert 0.4 < loop.time() - before < 1.0
    assert caught.value.status == 503
    assert caught.value.detail == (
        "Connection 'narrow' is busy: no database connection came free within 0.5s"
    )
    await asyncio.gather(*running)


async def test_waiting_for_a_pooled_connection_past_the_acquire_timeout_gives_503(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = variant(
        postgres_spec,
        "small pool",
        poolSize=1,
        maxConcurrentQueries=2,
        acquireTimeoutSeconds=0.5,
    )
    running = await started(registry.run(spec, "select pg_sleep(2)"))

    with pytest.raises(ConnectionBusyError, match="'small pool' is busy"):
        await registry.run(spec, "select 1")

    await asyncio.gather(*running)
    stats = registry.pool_stats(spec.id)
    assert stats is not None
    assert stats["acquireTimeouts"] == 1 and stats["connectionsOpened"] == 1


async def test_overflow_connections_close_when_they_come_back(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = variant(postgres_spec, "bursty", poolSize=1, maxOverflow=2)
    burst = await started(
        *(registry.run(spec, "select pg_sleep(0.5)") for _ in range(3))
    )
    during = registry.pool_stats(spec.id)

    await asyncio.gather(*burst)

    after = registry.pool_stats(spec.id)
    assert during is not None and after is not None
    assert (during["maxSize"], during["size"], during["inUse"]) == (3, 3, 3)
    assert (after["size"], after["idle"], after["connectionsClosed"]) == (1, 1, 2)


async def test_the_server_wide_cap_gives_503_naming_the_connection_that_waited(
    make_registry: MakeRegistry, postgres_spec: ConnectionSpec
) -> None:
    registry = make_registry(max_open_connections=2)
    busy = [variant(postgres_spec, f"busy {n}") for n in range(2)]
    late = variant(postgres_spec, "late", acquireTimeoutSeconds=0.5)
    running = await started(
        *(registry.run(spec, "select pg_sleep(1.5)") for spec in busy)
    )

    with pytest.raises(ConnectionBusyError) as caught:
        await registry.run(late, "select 1")

    assert caught.value.detail == (
        "Connection 'late' is busy: this server already holds its limit"
        " of 2 open database connections"
    )
    await asyncio.gather(*running)
    assert registry.connection_stats()["openConnections"] == 2


async def test_the_server_wide_cap_closes_an_idle_connection_of_another_pool(
    make_registry: MakeRegistry, postgres_spec: ConnectionSpec
) -> None:
    registry = make_registry(max_open_connections=2)
    first, second, third = (variant(postgres_spec, f"c{n}") for n in range(3))
    await registry.run(first, "select 1")
    await registry.run(second, "select 1")

    result = await registry.run(third, "select 3")

    assert result.rows == [(3,)]
    sizes = [size_of(registry, spec) for spec in (first, second, third)]
    assert sizes == [0, 1, 1]
    assert registry.connection_stats()["openConnections"] == 2


def sqlite_files(tmp_path: Path, count: int) -> list[ConnectionSpec]:
    """``count`` connections, each to its own empty SQLite file."""
    specs = []
    for n in range(count):
        path = tmp_path / f"env{n}.sqlite"
        sqlite3.connect(path).close()
        specs.append(
            ConnectionSpec(
                id=f"conn-{uuid.uuid4().hex[:8]}",
                name=f"env {n}",
                dialect="sqlite",
                database=str(path),
                options=CROWDED_OPTIONS,
            )
        )
    return specs


async def hammer(
    registry: EngineRegistry,
    specs: list[ConnectionSpec],
    sql: str,
    *,
    users: int = 200,
    queries_each: int = 5,
) -> list[dict[str, Any]]:
    """``users`` concurrent users, each querying random connections; returns
    samples of every pool's stats taken while they run."""
    samples: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def user(seed: int) -> None:
        chooser = random.Random(seed)
        for _ in range(queries_each):
            await registry.run(chooser.choice(specs), sql)

    async def sample() -> None:
        while not done.is_set():
            pools = {
                cid: registry.pool_stats(cid) for cid in registry.open_connection_ids()
            }
            samples.append({"server": registry.connection_stats(), "pools": pools})
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(user(n) for n in range(users)))
    done.set()
    await sampler
    return samples


def assert_within_caps(samples: list[dict[str, Any]], cap: int) -> int:
    """Every sample within the caps; returns the most connections seen open."""
    peak = 0
    for sample in samples:
        pools = sample["pools"].values()
        assert all(p["size"] <= p["maxSize"] == 3 for p in pools)
        assert all(p["queriesRunning"] <= p["maxConcurrentQueries"] for p in pools)
        assert sum(p["size"] for p in pools) <= cap
        assert sample["server"]["openConnections"] <= cap
        peak = max(peak, sample["server"]["openConnections"])
    return peak


async def test_200_users_over_50_environments_stay_within_the_caps(
    make_registry: MakeRegistry, tmp_path: Path
) -> None:
    registry = make_registry(max_open_connections=40)
    specs = sqlite_files(tmp_path, 50)

    samples = await hammer(registry, specs, SQLITE_BUSY)

    peak = assert_within_caps(samples, cap=40)
    print(f"sqlite: {len(samples)} samples, at most {peak} of 40 connections open")
    assert len(samples) > 10 and peak > 20
    assert len(await registry.close_idle(0)) == 50
    assert registry.connection_stats()["openConnections"] == 0


async def server_connections(spec: ConnectionSpec) -> int:
    """Sessions pointsman holds open in ``spec``'s database right now."""
    async with await outside(spec) as conn:
        cursor = await conn.execute(
            "select count(*) from pg_stat_activity"
            " where datname = %s and application_name = 'pointsman'",
            (spec.database,),
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def test_200_users_over_50_postgres_environments_stay_within_the_caps(
    make_registry: MakeRegistry, postgres_spec: ConnectionSpec
) -> None:
    registry = make_registry(max_open_connections=20)
    specs = [variant(postgres_spec, f"env {n}", **CROWDED_OPTIONS) for n in range(50)]
    seen_on_server: list[int] = []

    async def watch_server() -> None:
        while True:
            seen_on_server.append(await server_connections(postgres_spec))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch_server())
    samples = await hammer(registry, specs, "select pg_sleep(0.005)", queries_each=3)
    watcher.cancel()

    peak = assert_within_caps(samples, cap=20)
    print(
        f"postgres: at most {peak} of 20 open by the stats,"
        f" {max(seen_on_server)} seen by the server"
    )
    assert max(seen_on_server) <= 20
    await registry.close_idle(0)
    assert registry.connection_stats()["openConnections"] == 0
    assert await server_connections_after_closing(postgres_spec) == 0


async def server_connections_after_closing(spec: ConnectionSpec) -> int:
    """Sessions still open in the database once the server has had up to two
    seconds to end those pointsman closed (a backend ends a moment after its
    client leaves, later when it was still answering a reset)."""
    deadline = time.monotonic() + 2.0
    while (count := await server_connections(spec)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return count


async def test_idle_pools_close_and_give_their_connections_back(
    make_registry: MakeRegistry, tmp_path: Path
) -> None:
    registry = make_registry(max_open_connections=10)
    quiet, busy = sqlite_files(tmp_path, 2)
    await registry.run(quiet, "select 1")
    await asyncio.sleep(0.2)
    await registry.run(busy, "select 1")

    closed = await registry.close_idle(0.1)

    assert closed == [quiet.id]
    assert registry.open_connection_ids() == [busy.id]
    assert registry.connection_stats()["openConnections"] == 1


async def test_pool_stats_show_limits_gauges_and_counters(
    registry: EngineRegistry, sqlite_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(
        sqlite_spec, options={"poolSize": 2, "maxOverflow": 1, "maxQueuedQueries": 7}
    )
    await registry.run(spec, "select 1")

    stats = registry.pool_stats(spec.id)

    assert stats is not None
    assert {k: stats[k] for k in ("poolSize", "maxOverflow", "maxSize")} == {
        "poolSize": 2,
        "maxOverflow": 1,
        "maxSize": 3,
    }
    assert stats["maxConcurrentQueries"] == 3 and stats["maxQueuedQueries"] == 7
    assert stats["acquireTimeoutSeconds"] == 10.0
    for gauge in (
        "size",
        "inUse",
        "idle",
        "waiting",
        "queriesRunning",
        "queriesQueued",
    ):
        assert stats[gauge] == (1 if gauge in ("size", "idle") else 0)
    for counter in ("connectionsOpened", "connectionsClosed", "queriesRejected"):
        assert counter in stats
    assert stats["connectBackoffSeconds"] == 0
