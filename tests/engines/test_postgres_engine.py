"""PostgreSQL engine against the real local server."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from datetime import date, timedelta
from datetime import time as dt_time
from decimal import Decimal

import psycopg
import pytest
from outside import active_statements, outside, wait_until_gone

from pointsman.engines import ConnectionSpec, EngineRegistry, results
from pointsman.errors import (
    DatabaseUnavailableError,
    QueryFailedError,
    QueryTimeoutError,
)

pytestmark = pytest.mark.anyio

FAKE_PASSWORD = "Pw-never-shown-7f3a9c"


async def test_select_returns_typed_columns_and_rows(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    sql = (
        "select 1::int4 as i, 2::int8 as big, 1.5::float8 as f, 'x'::text as s,"
        " true as b, 1.25::numeric(10,2) as d, date '2024-01-02' as day,"
        " timestamp '2024-01-02 03:04:05' as ts, '\\x00ff'::bytea as raw,"
        " '{\"a\": 1}'::jsonb as doc, null as nothing"
    )

    result = await registry.run(postgres_spec, sql)

    assert [(c.name, c.type) for c in result.columns] == [
        ("i", "int32"),
        ("big", "int64"),
        ("f", "float64"),
        ("s", "string"),
        ("b", "bool"),
        ("d", "decimal128(10,2)"),
        ("day", "date32"),
        ("ts", "timestamp[us]"),
        ("raw", "binary"),
        ("doc", "string"),
        ("nothing", "string"),
    ]
    row = result.rows[0]
    assert row[:6] == (1, 2, 1.5, "x", True, Decimal("1.25"))
    assert row[8:] == (b"\x00\xff", '{"a": 1}', None)
    assert result.truncated is False


async def test_dates_and_times_python_cannot_hold_come_back_as_text(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    sql = (
        "select * from (values ('infinity'::timestamptz, '-infinity'::date,"
        " time '24:00', 'infinity'::timestamp),"
        " ('2024-01-02 03:04:05+00', '2024-01-02', time '12:00', '2024-01-02'))"
        " as t(moment, day, clock, naive)"
    )

    result = await registry.run(postgres_spec, sql)
    table = results.to_arrow_table(result)

    assert result.rows[0] == ("infinity", "-infinity", "24:00:00", "infinity")
    assert result.rows[1][1:3] == (date(2024, 1, 2), dt_time(12, 0))
    assert table.column("moment").to_pylist()[0] == "infinity"


async def test_a_database_with_other_date_and_interval_styles_still_reads(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    await registry.run(
        postgres_spec,
        f"alter database {postgres_spec.database} set datestyle = 'SQL, DMY'",
    )
    await registry.run(
        postgres_spec,
        f"alter database {postgres_spec.database} set intervalstyle = 'sql_standard'",
    )
    fresh = dataclasses.replace(postgres_spec, id=str(uuid.uuid4()))

    result = await registry.run(
        fresh,
        "select date '2024-02-03', interval '1 day 2 hours',"
        " current_setting('datestyle')",
    )

    assert result.rows == [(date(2024, 2, 3), timedelta(days=1, hours=2), "ISO, DMY")]


async def test_intervals_beyond_timedelta_and_ranges_keep_their_text(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    result = await registry.run(
        postgres_spec,
        "select interval '178000000 years', interval '-3000000 years 2 mons',"
        " '[,5)'::int4range, '(,)'::daterange, '{[1,2]}'::int4multirange",
    )

    assert result.rows == [
        ("178000000 years", "-2999999 years -10 mons", "(,5)", "(,)", "{[1,3)}")
    ]


async def test_limit_truncates_and_says_so(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    sql = "select g from generate_series(1, 100) as g"

    result = await registry.run(postgres_spec, sql, limit=10)

    assert [row[0] for row in result.rows] == list(range(1, 11))
    assert result.truncated is True


async def test_limit_above_row_count_is_not_truncated(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    result = await registry.run(postgres_spec, "select 1 as one", limit=1)

    assert result.rows == [(1,)]
    assert result.truncated is False


async def test_connection_is_reusable_after_a_truncated_fetch(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(postgres_spec, options={"poolSize": 1})
    await registry.run(spec, "select g from generate_series(1, 100000) as g", limit=5)

    result = await registry.run(spec, "select 42 as answer")

    assert result.rows == [(42,)]


async def test_statement_without_result_set_returns_no_columns(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    result = await registry.run(postgres_spec, "create table t (id int)")

    assert result.columns == [] and result.rows == []


async def test_syntax_error_raises_query_failed_with_database_message(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    with pytest.raises(QueryFailedError) as caught:
        await registry.run(postgres_spec, "selec 1")

    assert "syntax error" in caught.value.detail
    assert isinstance(caught.value.__cause__, psycopg.errors.SyntaxError)


async def test_missing_table_raises_query_failed(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    with pytest.raises(QueryFailedError, match="does not exist"):
        await registry.run(postgres_spec, "select * from no_such_table")


async def test_wrong_port_raises_unavailable_fast_without_password(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(
        postgres_spec, port=1, secrets={"password": FAKE_PASSWORD}
    )
    started = time.monotonic()

    with pytest.raises(DatabaseUnavailableError) as caught:
        await registry.run(spec, "select 1")

    assert time.monotonic() - started < 2.0
    assert caught.value.detail == (
        "Could not connect to connection 'postgres test': connection refused"
    )
    assert FAKE_PASSWORD not in str(caught.value)


async def test_timeout_cancels_the_statement_on_the_server(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(postgres_spec, query_timeout_seconds=1)
    marker = f"timeout_{uuid.uuid4().hex}"
    started = time.monotonic()

    with pytest.raises(QueryTimeoutError) as caught:
        await registry.run(spec, f"select pg_sleep(10) /* {marker} */")

    assert 0.9 < time.monotonic() - started < 2.0
    assert caught.value.detail == (
        "Query exceeded the 1s timeout of connection 'postgres test' and was cancelled"
    )
    assert await wait_until_gone(spec, marker) == 0


async def test_pooled_connection_is_usable_after_a_timeout(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(
        postgres_spec, query_timeout_seconds=1, options={"poolSize": 1}
    )
    with pytest.raises(QueryTimeoutError):
        await registry.run(spec, "select pg_sleep(10)")

    result = await registry.run(spec, "select 7 as seven")

    assert result.rows == [(7,)]


async def test_cancelled_run_cancels_the_statement_on_the_server(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    """psycopg sends a cancel request when the awaiting task is cancelled."""
    marker = f"cancel_{uuid.uuid4().hex}"
    task = asyncio.create_task(
        registry.run(postgres_spec, f"select pg_sleep(10) /* {marker} */")
    )
    await asyncio.sleep(0.5)
    assert await active_statements(postgres_spec, marker) == 1

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_until_gone(postgres_spec, marker) == 0


async def test_default_schema_sets_the_search_path(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    await registry.run(postgres_spec, "create schema sales")
    await registry.run(postgres_spec, "create table sales.orders (id int)")
    spec = dataclasses.replace(postgres_spec, default_schema="sales")

    result = await registry.run(spec, "select count(*) as n from orders")

    assert result.rows == [(0,)]


async def test_pool_is_reused_across_calls(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    first = await registry.run(postgres_spec, "select pg_backend_pid()")

    second = await registry.run(postgres_spec, "select pg_backend_pid()")

    assert first.rows == second.rows
    stats = registry.pool_stats(postgres_spec.id)
    assert stats is not None
    assert stats["connectionsOpened"] == 1 and stats["queries"] == 2


async def test_pool_is_replaced_when_credentials_version_changes(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    before = await registry.run(postgres_spec, "select pg_backend_pid()")
    rotated = dataclasses.replace(postgres_spec, credentials_version=2)

    after = await registry.run(rotated, "select pg_backend_pid()")

    assert after.rows != before.rows
    stats = registry.pool_stats(postgres_spec.id)
    assert stats is not None and stats["credentialsVersion"] == 2


async def test_connection_test_reports_the_server_version(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    report = await registry.test(postgres_spec)

    assert report["ok"] is True
    assert report["serverVersion"].startswith("PostgreSQL")
    assert report["latencyMs"] > 0
    assert registry.pool_stats(postgres_spec.id) is None


async def test_connection_test_reports_a_failure_without_password(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(
        postgres_spec, port=1, secrets={"password": FAKE_PASSWORD}
    )

    report = await registry.test(spec)

    assert report["ok"] is False
    assert report["error"].endswith("connection refused")
    assert FAKE_PASSWORD not in repr(report)


async def test_timeout_holds_when_the_session_statement_timeout_was_reset(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    """The client-side deadline cancels on the server if SQL disabled the GUC."""
    spec = dataclasses.replace(
        postgres_spec, query_timeout_seconds=1, options={"poolSize": 1}
    )
    await registry.run(spec, "set statement_timeout = 0")
    marker = f"backstop_{uuid.uuid4().hex}"
    started = time.monotonic()

    with pytest.raises(QueryTimeoutError):
        await registry.run(spec, f"select pg_sleep(10) /* {marker} */")

    assert time.monotonic() - started < 3.0
    assert await wait_until_gone(spec, marker) == 0


async def test_missing_database_raises_unavailable(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(postgres_spec, database="pointsman_no_such_db")

    with pytest.raises(DatabaseUnavailableError, match="database does not exist"):
        await registry.run(spec, "select 1")


async def _copy_csv(spec: ConnectionSpec, sql: str) -> str:
    """``sql``'s rows as PostgreSQL's ``COPY ... CSV HEADER`` writes them."""
    copied = bytearray()
    async with await outside(spec) as conn:
        statement = f"copy ({sql}) to stdout with csv header"
        async with conn.cursor().copy(statement) as copy:
            async for data in copy:
                copied += data
    return copied.decode()


async def test_csv_of_a_result_reads_as_postgresql_copy_writes_it(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    sql = (
        "select * from (values (null::text, ''::text, 1), ('a,\"b\"', null, null),"
        " ('', 'line\nbreak', 3)) v(a, b, c)"
    )
    copied = await _copy_csv(postgres_spec, sql)

    result = await registry.run(postgres_spec, sql)

    assert results.to_csv(result).replace("\r\n", "\n") == copied


async def test_a_one_column_csv_reads_as_postgresql_copy_writes_it(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    sql = "select * from (values (null::text), (''), ('x')) v(a)"
    copied = await _copy_csv(postgres_spec, sql)

    result = await registry.run(postgres_spec, sql)

    assert results.to_csv(result).replace("\r\n", "\n") == copied
