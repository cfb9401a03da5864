"""SQLite and DuckDB reach their database file and nothing else on the server."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import duckdb
import pytest

from pointsman.demo import ROWS, SQL, make_database
from pointsman.engines import ConnectionSpec, EngineRegistry
from pointsman.errors import QueryFailedError

pytestmark = pytest.mark.anyio

SERVER_SECRET = "server-secret-never-shown-51c2"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the database file, with files a query must not read."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.csv").write_text(f"secret\n{SERVER_SECRET}\n")
    writer = duckdb.connect()
    try:
        writer.execute(
            f"copy (select '{SERVER_SECRET}' as secret)"
            f" to '{directory / 'secret.parquet'}' (format parquet)"
        )
    finally:
        writer.close()
    return directory


def duckdb_escapes(outside: Path) -> list[str]:
    return [
        "select content from read_text('/proc/self/environ')",
        f"select * from read_text('{outside / 'secret.csv'}')",
        f"select * from read_csv('{outside / 'secret.csv'}')",
        f"select * from '{outside / 'secret.csv'}'",
        f"select * from read_parquet('{outside / 'secret.parquet'}')",
        f"select * from glob('{outside}/*')",
        f"copy items to '{outside / 'copied.csv'}'",
        f"export database '{outside / 'exported'}'",
        f"attach '{outside / 'attached.duckdb'}' as other",
        "attach ':memory:' as other",
        "install httpfs",
        "load httpfs",
        "set enable_external_access = true",
        "set lock_configuration = false",
        "set autoload_known_extensions = true",
    ]


async def test_duckdb_reads_and_writes_no_other_file(
    registry: EngineRegistry,
    duckdb_spec: ConnectionSpec,
    outside: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POINTSMAN_SECRET_KEY", SERVER_SECRET)
    before = sorted(os.listdir(outside))

    for sql in duckdb_escapes(outside):
        with pytest.raises(QueryFailedError) as caught:
            await registry.run(duckdb_spec, sql)
        assert caught.value.status == 400, sql
        assert SERVER_SECRET not in caught.value.detail

    assert sorted(os.listdir(outside)) == before
    result = await registry.run(duckdb_spec, "select count(*) from items")
    assert result.rows == [(3,)]


async def test_duckdb_still_reads_and_writes_its_own_file(
    registry: EngineRegistry, duckdb_spec: ConnectionSpec
) -> None:
    await registry.run(duckdb_spec, "create table more as select * from range(5)")
    await registry.run(duckdb_spec, "insert into items values (4, 'kiwi', 1.25)")
    await registry.run(duckdb_spec, "checkpoint")
    report = await registry.test(duckdb_spec)  # opens the file a second time
    await registry.close(duckdb_spec.id)

    result = await registry.run(
        duckdb_spec,
        "select (select count(*) from items), (select sum(range) from more)",
    )

    assert report["ok"] is True
    assert result.rows == [(4, 10)]


def sqlite_escapes(outside: Path) -> list[str]:
    return [
        f"attach database '{outside / 'attached.db'}' as other",
        f"attach database '{outside}' || '/attached.db' as other",
        f"attach database 'file:{outside / 'attached.db'}?mode=rwc' as other",
        "attach database ':memory:' as other",
        f"vacuum into '{outside / 'copy.db'}'",
        "detach database main",
        f"pragma temp_store_directory = '{outside}'",
        "select load_extension('/nonexistent/extension')",
    ]


async def test_sqlite_reaches_no_other_file(
    registry: EngineRegistry, sqlite_spec: ConnectionSpec, outside: Path
) -> None:
    before = sorted(os.listdir(outside))

    for sql in sqlite_escapes(outside):
        with pytest.raises(QueryFailedError) as caught:
            await registry.run(sqlite_spec, sql)
        assert caught.value.status == 400, sql

    assert sorted(os.listdir(outside)) == before
    result = await registry.run(sqlite_spec, "select count(*) from items")
    assert result.rows == [(3,)]


async def test_sqlite_attach_is_refused_with_a_clear_message(
    registry: EngineRegistry, sqlite_spec: ConnectionSpec, outside: Path
) -> None:
    with pytest.raises(QueryFailedError, match="ATTACH of a database file is not"):
        await registry.run(
            sqlite_spec, f"attach database '{outside / 'x.db'}' as other"
        )


async def test_sqlite_vacuum_still_works(
    registry: EngineRegistry, sqlite_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(sqlite_spec, options={"poolSize": 1})
    await registry.run(spec, "delete from items where id = 3")

    await registry.run(spec, "vacuum")

    result = await registry.run(spec, "select id from items order by id")
    assert result.rows == [(1,), (2,)]


async def test_sqlite_demo_database_still_answers(
    registry: EngineRegistry, tmp_path: Path
) -> None:
    path = tmp_path / "prod.sqlite"
    make_database(path, ROWS["prod"])
    spec = ConnectionSpec(
        id="demo-prod", name="prod", dialect="sqlite", database=str(path)
    )

    result = await registry.run(spec, SQL)
    limited = await registry.run(spec, SQL, limit=1)

    assert result.rows == ROWS["prod"]
    assert limited.rows == ROWS["prod"][:1] and limited.truncated is True
    assert (await registry.test(spec))["ok"] is True
