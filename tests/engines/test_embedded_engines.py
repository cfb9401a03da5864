"""SQLite and DuckDB engines on database files."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from pointsman.engines import ConnectionSpec, EngineRegistry
from pointsman.errors import (
    DatabaseUnavailableError,
    QueryFailedError,
    QueryTimeoutError,
)

pytestmark = pytest.mark.anyio

# Both run for minutes: far past a one-second timeout on any machine.
SQLITE_SLOW = (
    "with recursive n(i) as (select 1 union all select i + 1 from n"
    " where i < 1000000000) select count(*) from n"
)
DUCKDB_SLOW = (
    "select count(*) from range(100000000) a, range(100000) b"
    " where (a.range * b.range) % 1000003 = 1"
)


async def test_sqlite_select_returns_typed_columns_and_rows(
    registry: EngineRegistry, sqlite_spec: ConnectionSpec
) -> None:
    result = await registry.run(sqlite_spec, "select * from items order by id")

    assert [(c.name, c.type) for c in result.columns] == [
        ("id", "int64"),
        ("name", "string"),
        ("price", "float64"),
        ("data", "binary"),
    ]
    assert result.rows[0] == (1, "apple", 0.5, b"\x00")
    assert len(result.rows) == 3


async def test_duckdb_select_returns_typed_columns_and_rows(
    registry: EngineRegistry, duckdb_spec: ConnectionSpec
) -> None:
    result = await registry.run(duckdb_spec, "select * from items order by id")

    assert [(c.name, c.type) for c in result.columns] == [
        ("id", "int32"),
        ("name", "string"),
        ("price", "decimal128(6,2)"),
    ]
    assert result.rows[0] == (1, "apple", Decimal("0.50"))


@pytest.mark.parametrize("spec_fixture", ["sqlite_spec", "duckdb_spec"])
async def test_limit_truncates_and_says_so(
    registry: EngineRegistry, spec_fixture: str, request: pytest.FixtureRequest
) -> None:
    spec: ConnectionSpec = request.getfixturevalue(spec_fixture)

    result = await registry.run(spec, "select id from items order by id", limit=2)

    assert result.rows == [(1,), (2,)]
    assert result.truncated is True


@pytest.mark.parametrize("spec_fixture", ["sqlite_spec", "duckdb_spec"])
async def test_syntax_error_raises_query_failed_with_database_message(
    registry: EngineRegistry, spec_fixture: str, request: pytest.FixtureRequest
) -> None:
    spec: ConnectionSpec = request.getfixturevalue(spec_fixture)

    with pytest.raises(QueryFailedError, match="(?i)syntax error"):
        await registry.run(spec, "selec 1")


@pytest.mark.parametrize("dialect", ["sqlite", "duckdb"])
async def test_missing_file_raises_unavailable_and_is_not_created(
    registry: EngineRegistry, dialect: str, tmp_path: Path
) -> None:
    path = tmp_path / "missing.db"
    spec = ConnectionSpec(id="c1", name="files", dialect=dialect, database=str(path))

    with pytest.raises(DatabaseUnavailableError, match="file does not exist"):
        await registry.run(spec, "select 1")

    assert not path.exists()


@pytest.mark.parametrize(
    ("spec_fixture", "slow_sql"),
    [("sqlite_spec", SQLITE_SLOW), ("duckdb_spec", DUCKDB_SLOW)],
    ids=["sqlite", "duckdb"],
)
async def test_timeout_interrupts_the_statement(
    registry: EngineRegistry,
    spec_fixture: str,
    slow_sql: str,
    request: pytest.FixtureRequest,
) -> None:
    spec = dataclasses.replace(
        request.getfixturevalue(spec_fixture), query_timeout_seconds=1
    )
    started = time.monotonic()

    with pytest.raises(QueryTimeoutError, match="exceeded the 1s timeout"):
        await registry.run(spec, slow_sql)

    assert time.monotonic() - started < 2.0
    # Closing waits for the interrupted thread to let go of its connection.
    closing = time.monotonic()
    await registry.close(spec.id)
    assert time.monotonic() - closing < 1.0


@pytest.mark.parametrize("spec_fixture", ["sqlite_spec", "duckdb_spec"])
async def test_pool_serves_again_after_a_timeout(
    registry: EngineRegistry, spec_fixture: str, request: pytest.FixtureRequest
) -> None:
    spec = dataclasses.replace(
        request.getfixturevalue(spec_fixture),
        query_timeout_seconds=1,
        options={"poolSize": 1},
    )
    slow = SQLITE_SLOW if spec.dialect == "sqlite" else DUCKDB_SLOW
    with pytest.raises(QueryTimeoutError):
        await registry.run(spec, slow)

    result = await registry.run(spec, "select count(*) from items")

    assert result.rows == [(3,)]


@pytest.fixture
def duckdb_locked_elsewhere(duckdb_spec: ConnectionSpec) -> Iterator[ConnectionSpec]:
    """The DuckDB file held read-write by another process."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]);"
            " print('locked', flush=True); sys.stdin.read()",
            str(duckdb_spec.database),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    yield duckdb_spec
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=10)
    holder.stdout.close()


async def test_duckdb_file_locked_by_another_process_is_unavailable(
    registry: EngineRegistry, duckdb_locked_elsewhere: ConnectionSpec
) -> None:
    with pytest.raises(DatabaseUnavailableError, match="locked by another process"):
        await registry.run(duckdb_locked_elsewhere, "select 1")


async def test_sqlite_connection_test_reports_the_version(
    registry: EngineRegistry, sqlite_spec: ConnectionSpec
) -> None:
    report = await registry.test(sqlite_spec)

    assert report["ok"] is True
    assert report["serverVersion"][0].isdigit()


async def test_duckdb_connection_test_reports_the_version(
    registry: EngineRegistry, duckdb_spec: ConnectionSpec
) -> None:
    report = await registry.test(duckdb_spec)

    assert report["ok"] is True
    assert report["serverVersion"].startswith("v")
