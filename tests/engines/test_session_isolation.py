"""What one user leaves on a pooled session never reaches the next user.

Every test here runs its users one after the other on a pool of one
connection, so that the second user gets the very session the first one
used (the tests check that it is the same server session), and a query
string runs one statement, on every dialect.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pymysql
import pytest
from outside import outside

from pointsman.engines import ConnectionSpec, EngineRegistry, postgres
from pointsman.engines.postgres import PostgresEngine
from pointsman.errors import DatabaseUnavailableError, QueryFailedError

pytestmark = pytest.mark.anyio

ONE_POOLED_SESSION = {"poolSize": 1}


def one_session(spec: ConnectionSpec, **changes: Any) -> ConnectionSpec:
    return dataclasses.replace(spec, options=ONE_POOLED_SESSION, **changes)


async def run_all(registry: EngineRegistry, spec: ConnectionSpec, *sqls: str) -> None:
    for sql in sqls:
        await registry.run(spec, sql)


# -- PostgreSQL ---------------------------------------------------------------


async def test_postgres_session_state_does_not_reach_the_next_user(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = one_session(postgres_spec)
    await run_all(
        registry,
        spec,
        "create table items as select 'mine' as who",
        "create schema other",
        "create table other.items as select 'not mine' as who",
    )
    before = await registry.run(spec, "select pg_backend_pid()")

    # User A changes everything a session holds.
    await run_all(
        registry,
        spec,
        "set search_path to other",
        "set application_name = 'user-a'",
        "set statement_timeout = 0",
        "create temp table scratch as select 'left by a' as note",
        "prepare a_plan as select 1",
        "listen a_channel",
        "select set_config('pointsman.owner', 'user-a', false)",
        "select pg_advisory_lock(4242)",
        "declare held cursor with hold for select 1",
    )

    # User B, on the same server session, sees none of it.
    after = await registry.run(
        spec,
        "select pg_backend_pid(), (select who from items),"
        " current_setting('application_name'),"
        " current_setting('statement_timeout'),"
        " to_regclass('scratch') is null,"
        " (select count(*) from pg_prepared_statements),"
        " (select count(*) from pg_listening_channels()),"
        " coalesce(current_setting('pointsman.owner', true), ''),"
        " (select count(*) from pg_locks"
        "   where locktype = 'advisory' and pid = pg_backend_pid()),"
        " (select count(*) from pg_cursors where name = 'held')",
    )

    assert after.rows[0][0] == before.rows[0][0]  # the very same session
    assert after.rows[0][1:] == ("mine", "pointsman", "10s", True, 0, 0, "", 0, 0)


async def test_postgres_default_schema_and_timeout_survive_the_reset(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = one_session(postgres_spec, default_schema="configured")
    await run_all(
        registry,
        spec,
        "create schema configured",
        "create schema elsewhere",
        "create table configured.items as select 'configured' as who",
        "create table elsewhere.items as select 'elsewhere' as who",
        "set search_path to elsewhere",
        "reset statement_timeout",
    )

    result = await registry.run(
        spec, "select who, current_setting('statement_timeout') from items"
    )

    assert result.rows == [("configured", "10s")]
    stats = registry.pool_stats(spec.id)
    assert stats is not None and stats["connectionsOpened"] == 1


async def test_postgres_transaction_left_open_is_rolled_back(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = one_session(postgres_spec)
    await registry.run(spec, "create table t (id int)")
    # A leaves a transaction open; B's insert runs in its own, not in A's.
    await run_all(registry, spec, "begin", "insert into t values (1)")
    await run_all(registry, spec, "begin", "insert into t values (2)")

    async with await outside(spec) as other:
        cursor = await other.execute("select id from t order by id")
        assert await cursor.fetchall() == [(1,), (2,)]
    stats = registry.pool_stats(spec.id)
    assert stats is not None and stats["connectionsOpened"] == 1


async def test_postgres_session_whose_reset_fails_is_not_reused(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = one_session(postgres_spec)
    (first,) = (await registry.run(spec, "select pg_backend_pid()")).rows
    engine = registry._engine_for(spec)
    assert isinstance(engine, PostgresEngine)

    # The reset sent when the session went back fails on the server.
    engine._reset_bytes = b"select 1 / 0"
    await registry.run(spec, "select 1")
    engine._reset_bytes = None
    (last,) = (await registry.run(spec, "select pg_backend_pid()")).rows

    assert last[0] != first[0]
    stats = registry.pool_stats(spec.id)
    assert stats is not None and stats["connectionsOpened"] == 2


async def test_postgres_reset_still_running_is_waited_for_by_the_next_user(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = one_session(postgres_spec)
    (first,) = (await registry.run(spec, "select pg_backend_pid()")).rows
    engine = registry._engine_for(spec)
    assert isinstance(engine, PostgresEngine)

    # A reset whose answer comes well after the next user asks.
    engine._reset_bytes = b"select pg_sleep(0.4)"
    await registry.run(spec, "select 1")
    engine._reset_bytes = None
    loop = asyncio.get_running_loop()
    started = loop.time()
    (last,) = (await registry.run(spec, "select pg_backend_pid()")).rows

    assert last[0] == first[0]
    assert loop.time() - started >= 0.3
    stats = registry.pool_stats(spec.id)
    assert stats is not None and stats["connectionsOpened"] == 1


async def test_postgres_reset_that_never_answers_is_given_up_on(
    registry: EngineRegistry,
    postgres_spec: ConnectionSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = one_session(postgres_spec)
    (first,) = (await registry.run(spec, "select pg_backend_pid()")).rows
    engine = registry._engine_for(spec)
    assert isinstance(engine, PostgresEngine)
    monkeypatch.setattr(postgres, "MAX_RESET_SECONDS", 0.3)

    engine._reset_bytes = b"select pg_sleep(2)"
    await registry.run(spec, "select 1")
    engine._reset_bytes = None
    loop = asyncio.get_running_loop()
    started = loop.time()
    (last,) = (await registry.run(spec, "select pg_backend_pid()")).rows

    assert last[0] != first[0]
    assert loop.time() - started < 1.5
    stats = registry.pool_stats(spec.id)
    assert stats is not None and stats["connectionsOpened"] == 2


async def terminate_sessions(spec: ConnectionSpec, pids: list[int]) -> None:
    async with await outside(spec) as other:
        for pid in pids:
            await other.execute("select pg_terminate_backend(%s)", (pid,))


async def test_postgres_sessions_the_server_ended_while_idle_are_replaced(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(postgres_spec, options={"poolSize": 4})
    warm = await asyncio.gather(
        *(
            registry.run(spec, "select pg_backend_pid(), pg_sleep(0.2)")
            for _ in range(4)
        )
    )
    pids = [result.rows[0][0] for result in warm]

    # A restart or failover as the pool sees it: every idle session ends.
    await terminate_sessions(spec, pids)
    await asyncio.sleep(0.2)
    after = await asyncio.gather(
        *(registry.run(spec, "select pg_backend_pid()") for _ in range(4))
    )

    assert not {result.rows[0][0] for result in after} & set(pids)


async def test_postgres_session_lost_during_a_query_says_so(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    (pid,) = (await registry.run(postgres_spec, "select pg_backend_pid()")).rows[0]
    running = asyncio.ensure_future(registry.run(postgres_spec, "select pg_sleep(5)"))
    await asyncio.sleep(0.3)

    await terminate_sessions(postgres_spec, [pid])

    with pytest.raises(DatabaseUnavailableError) as failed:
        await running
    assert failed.value.detail.startswith(
        "Lost the connection to connection 'postgres test' while the query ran:"
        " the server ended the session"
    )


async def test_postgres_query_cancelled_while_its_session_settles_gives_it_back(
    registry: EngineRegistry,
    postgres_spec: ConnectionSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = one_session(postgres_spec)
    await registry.run(spec, "select 1")
    settling = asyncio.Event()

    async def slow_settle(conn: Any) -> bool:
        settling.set()
        await asyncio.sleep(60)
        return True

    monkeypatch.setattr(postgres, "_settled", slow_settle)
    query = asyncio.ensure_future(registry.run(spec, "select 1"))
    await settling.wait()
    query.cancel()
    with pytest.raises(asyncio.CancelledError):
        await query
    monkeypatch.undo()

    stats = registry.pool_stats(spec.id)
    assert stats is not None and stats["inUse"] == 0
    assert (await registry.run(spec, "select 'served'")).rows == [("served",)]


async def test_postgres_interval_python_cannot_hold_comes_back_as_text(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    result = await registry.run(
        postgres_spec, "select interval '3000000 years', interval '1 day'"
    )

    assert result.rows == [("3000000 years", timedelta(days=1))]


# -- MariaDB / MySQL ----------------------------------------------------------


# The registry comes last: its pools close before the databases are dropped.


async def test_mysql_session_state_does_not_reach_the_next_user(
    mysql_spec: ConnectionSpec,
    make_mysql_database: Callable[[], str],
    registry: EngineRegistry,
) -> None:
    spec = one_session(mysql_spec)
    other = make_mysql_database()
    await run_all(
        registry,
        spec,
        "create table items (who varchar(20))",
        "insert into items values ('mine')",
        f"create table `{other}`.items (who varchar(20))",
        f"insert into `{other}`.items values ('not mine')",
    )
    before = await registry.run(spec, "select connection_id()")

    # User A changes everything a session holds.
    await run_all(
        registry,
        spec,
        f"use `{other}`",
        "set @owner = 'user-a'",
        "set session sql_mode = 'ANSI_QUOTES'",
        "create temporary table scratch (note varchar(20))",
        "set names latin1",
        "set autocommit = 0",
        "select get_lock('pointsman_isolation_test', 0)",
    )

    # User B, on the same server session, sees none of it.
    after = await registry.run(
        spec,
        "select connection_id(), database(), (select who from items), @owner,"
        " @@session.sql_mode = @@global.sql_mode, @@character_set_client,"
        " @@autocommit, is_used_lock('pointsman_isolation_test') is null",
    )

    assert after.rows[0][0] == before.rows[0][0]  # the very same session
    assert after.rows[0][1:] == (spec.database, "mine", None, 1, "utf8mb4", 1, 1)
    with pytest.raises(QueryFailedError, match="doesn't exist"):
        await registry.run(spec, "select * from scratch")


async def test_mysql_role_set_by_one_user_does_not_reach_the_next(
    mysql_spec: ConnectionSpec, registry: EngineRegistry
) -> None:
    spec = one_session(mysql_spec)
    role = f"psm_role_{spec.database}"[:60]
    await run_all(registry, spec, f"create role if not exists `{role}`")
    await run_all(registry, spec, f"grant `{role}` to current_user()")
    try:
        await registry.run(spec, f"set role `{role}`")

        after = await registry.run(spec, "select current_role()")

        assert after.rows[0][0] in (None, "NONE")
    finally:
        await run_all(registry, spec, f"drop role if exists `{role}`")


async def test_mysql_transaction_left_open_is_rolled_back(
    mysql_spec: ConnectionSpec, registry: EngineRegistry
) -> None:
    spec = one_session(mysql_spec)
    await registry.run(spec, "create table t (id int) engine = InnoDB")
    await run_all(registry, spec, "begin", "insert into t values (1)")
    await run_all(registry, spec, "set autocommit = 0", "insert into t values (2)")

    conn = pymysql.connect(
        host=spec.host,
        port=spec.port or 3306,
        user=spec.username,
        password=spec.password or "",
        database=spec.database,
        autocommit=True,
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute("select id from t order by id")
            assert cursor.fetchall() == ((1,), (2,))
    finally:
        conn.close()
    stats = registry.pool_stats(spec.id)
    assert stats is not None and stats["connectionsOpened"] == 1


async def test_mysql_without_a_database_keeps_none_selected(
    mysql_spec: ConnectionSpec, registry: EngineRegistry
) -> None:
    spec = one_session(mysql_spec, database=None)
    await registry.run(spec, f"use `{mysql_spec.database}`")

    result = await registry.run(spec, "select database()")

    assert result.rows == [(None,)]


# -- SQLite and DuckDB --------------------------------------------------------


@pytest.mark.parametrize("spec_fixture", ["sqlite_spec", "duckdb_spec"])
async def test_embedded_transaction_left_open_is_rolled_back(
    registry: EngineRegistry, spec_fixture: str, request: pytest.FixtureRequest
) -> None:
    spec = one_session(request.getfixturevalue(spec_fixture))
    # A leaves a transaction open; B's delete runs (and commits) on its own.
    await run_all(registry, spec, "begin", "delete from items where id = 1")

    # Closing the pool would roll back a transaction still open.
    await registry.close(spec.id)
    result = await registry.run(spec, "select id from items order by id")

    assert result.rows == [(2,), (3,)]


async def test_duckdb_session_settings_do_not_reach_the_next_user(
    registry: EngineRegistry, duckdb_spec: ConnectionSpec
) -> None:
    spec = one_session(duckdb_spec)
    await run_all(
        registry,
        spec,
        "create schema other",
        "create table other.items as select 'not mine' as name",
        "set schema = 'other'",
        "set variable owner = 'user-a'",
        "create temp table scratch as select 1 as x",
        "prepare a_plan as select 1",
    )

    result = await registry.run(
        spec,
        "select current_schema(), getvariable('owner'),"
        " (select count(*) from duckdb_tables() where table_name = 'scratch'),"
        " (select min(name) from items)",
    )

    assert result.rows == [("main", None, 0, "apple")]
    with pytest.raises(QueryFailedError):
        await registry.run(spec, "execute a_plan")


async def test_sqlite_temporary_objects_and_settings_are_refused(
    registry: EngineRegistry, sqlite_spec: ConnectionSpec
) -> None:
    """A temporary table would shadow the file's table for the next user."""
    spec = one_session(sqlite_spec)
    for sql in (
        "create temp table items (id integer)",
        "create temporary view v as select 1",
        "create table temp.t (id integer)",
        "pragma case_sensitive_like = 1",
        "pragma query_only = 1",
    ):
        with pytest.raises(QueryFailedError, match="is not allowed") as caught:
            await registry.run(spec, sql)
        assert caught.value.status == 400

    result = await registry.run(spec, "select count(*) from items")
    assert result.rows == [(3,)]
    # Reporting PRAGMAs still work.
    info = await registry.run(spec, "pragma table_info(items)")
    assert [row[1] for row in info.rows] == ["id", "name", "price", "data"]


# -- one statement per query --------------------------------------------------

DIALECT_SPECS = ["postgres_spec", "mysql_spec", "sqlite_spec", "duckdb_spec"]


@pytest.mark.parametrize("limit", [None, 10])
@pytest.mark.parametrize("spec_fixture", DIALECT_SPECS)
async def test_several_statements_are_refused_and_none_runs(
    registry: EngineRegistry,
    spec_fixture: str,
    limit: int | None,
    request: pytest.FixtureRequest,
) -> None:
    spec: ConnectionSpec = request.getfixturevalue(spec_fixture)

    with pytest.raises(QueryFailedError) as caught:
        await registry.run(
            spec, "select 1 as a; create table smuggled (id int)", limit=limit
        )

    assert caught.value.status == 400
    assert caught.value.detail.startswith("Only one SQL statement per query")
    with pytest.raises(QueryFailedError):
        await registry.run(spec, "select * from smuggled")


@pytest.mark.parametrize("spec_fixture", DIALECT_SPECS)
async def test_one_statement_with_semicolons_still_runs(
    registry: EngineRegistry, spec_fixture: str, request: pytest.FixtureRequest
) -> None:
    spec: ConnectionSpec = request.getfixturevalue(spec_fixture)

    quoted = await registry.run(spec, "select 'a;b' as x")
    trailing = await registry.run(spec, "select 2 as y;")

    assert quoted.rows == [("a;b",)]
    assert trailing.rows == [(2,)]


async def test_postgres_statement_without_rows_runs_with_a_limit(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    created = await registry.run(postgres_spec, "create table t (id int)", limit=10)
    inserted = await registry.run(postgres_spec, "insert into t values (1)", limit=10)
    only_comment = await registry.run(postgres_spec, "-- nothing to run")

    assert created.columns == inserted.columns == only_comment.columns == []
    result = await registry.run(postgres_spec, "select id from t", limit=10)
    assert result.rows == [(1,)]
