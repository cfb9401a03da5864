"""Dispatch on dialect, pool lifecycle and stats, independent of any server."""

from __future__ import annotations

import dataclasses

import pytest

from pointsman.engines import ConnectionSpec, EngineRegistry
from pointsman.errors import MissingDriverError

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("dialect", "extra"),
    [("snowflake", "snowflake"), ("bigquery", "bigquery"), ("sqlserver", "mssql")],
)
async def test_later_dialect_raises_missing_driver_naming_the_extra(
    registry: EngineRegistry, dialect: str, extra: str
) -> None:
    spec = ConnectionSpec(id="c1", name="warehouse", dialect=dialect)

    with pytest.raises(MissingDriverError) as caught:
        await registry.run(spec, "select 1")

    assert caught.value.detail == (
        f"Dialect {dialect} needs the optional extra: pip install 'pointsman[{extra}]'"
    )


async def test_unknown_dialect_raises_missing_driver(registry: EngineRegistry) -> None:
    spec = ConnectionSpec(id="c1", name="odd", dialect="nosuchdb")

    with pytest.raises(MissingDriverError, match="not supported"):
        await registry.run(spec, "select 1")


async def test_connection_test_of_a_later_dialect_is_not_ok(
    registry: EngineRegistry,
) -> None:
    spec = ConnectionSpec(id="c1", name="warehouse", dialect="snowflake")

    report = await registry.test(spec)

    assert report["ok"] is False
    assert "pointsman[snowflake]" in report["error"]


async def test_pool_stats_is_none_before_first_use(registry: EngineRegistry) -> None:
    assert registry.pool_stats("never-used") is None


async def test_pool_stats_counts_connections_and_queries(
    registry: EngineRegistry, sqlite_spec: ConnectionSpec
) -> None:
    await registry.run(sqlite_spec, "select 1")
    await registry.run(sqlite_spec, "select 2")

    stats = registry.pool_stats(sqlite_spec.id)

    assert stats is not None
    assert stats["size"] == 1 and stats["idle"] == 1 and stats["inUse"] == 0
    assert stats["maxSize"] == 5 and stats["queries"] == 2


async def test_pool_size_option_bounds_the_pool(
    registry: EngineRegistry, sqlite_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(sqlite_spec, options={"poolSize": 2})

    await registry.run(spec, "select 1")

    stats = registry.pool_stats(spec.id)
    assert stats is not None and stats["maxSize"] == 2


async def test_close_forgets_the_pool(
    registry: EngineRegistry, sqlite_spec: ConnectionSpec
) -> None:
    await registry.run(sqlite_spec, "select 1")

    await registry.close(sqlite_spec.id)

    assert registry.pool_stats(sqlite_spec.id) is None


async def test_close_idle_closes_only_unused_pools(
    registry: EngineRegistry, sqlite_spec: ConnectionSpec, duckdb_spec: ConnectionSpec
) -> None:
    await registry.run(sqlite_spec, "select 1")
    await registry.run(duckdb_spec, "select 1")

    closed = await registry.close_idle(idle_seconds=0)

    assert sorted(closed) == sorted([sqlite_spec.id, duckdb_spec.id])
    assert registry.pool_stats(sqlite_spec.id) is None


async def test_changed_settings_replace_the_pool(
    registry: EngineRegistry, sqlite_spec: ConnectionSpec
) -> None:
    await registry.run(sqlite_spec, "select 1")
    changed = dataclasses.replace(sqlite_spec, query_timeout_seconds=5)

    await registry.run(changed, "select 1")

    stats = registry.pool_stats(sqlite_spec.id)
    assert stats is not None and stats["queries"] == 1
