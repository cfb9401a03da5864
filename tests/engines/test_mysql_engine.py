"""MariaDB/MySQL engine against the real local server."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from datetime import date, datetime
from decimal import Decimal

import aiomysql
import pymysql
import pytest

from pointsman.engines import ConnectionSpec, EngineRegistry
from pointsman.errors import (
    DatabaseUnavailableError,
    QueryFailedError,
    QueryTimeoutError,
)

pytestmark = pytest.mark.anyio

FAKE_PASSWORD = "Pw-never-shown-7f3a9c"
_DIGITS = "(" + " union all ".join(f"select {d} as d" for d in range(10)) + ")"
# 100,000 rows, numbered from 0, on MySQL as on MariaDB.
MANY_ROWS = (
    "select a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d as n"
    f" from {_DIGITS} a, {_DIGITS} b, {_DIGITS} c, {_DIGITS} e, {_DIGITS} f"
)


async def _running_statements(spec: ConnectionSpec, marker: str) -> int:
    """How many statements containing ``marker`` run on the server now."""
    conn = await aiomysql.connect(
        host=spec.host,
        port=spec.port,
        user=spec.username,
        password=spec.password or "",
        autocommit=True,
    )
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(
                "select count(*) from information_schema.processlist"
                " where id <> connection_id() and info like %s",
                (f"%{marker}%",),
            )
            row = await cursor.fetchone()
    finally:
        await conn.ensure_closed()
    return int(row[0]) if row else 0


async def _wait_until_gone(spec: ConnectionSpec, marker: str) -> int:
    deadline = time.monotonic() + 2.0
    while (
        count := await _running_statements(spec, marker)
    ) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return count


async def test_unsigned_columns_keep_their_full_range(
    registry: EngineRegistry, mysql_spec: ConnectionSpec
) -> None:
    await registry.run(
        mysql_spec,
        "create table unsigned_values (small tinyint unsigned, big bigint unsigned,"
        " signed_big bigint)",
    )
    await registry.run(
        mysql_spec, "insert into unsigned_values values (255, 18446744073709551615, -1)"
    )

    result = await registry.run(mysql_spec, "select * from unsigned_values")

    assert [c.type for c in result.columns] == ["uint8", "uint64", "int64"]
    assert result.rows == [(255, 2**64 - 1, -1)]


async def test_select_returns_typed_columns_and_rows(
    registry: EngineRegistry, mysql_spec: ConnectionSpec
) -> None:
    sql = (
        "select 1 as i, cast(2 as signed) as big, 1.5e0 as f, 'x' as s,"
        " cast(1.25 as decimal(10,2)) as d, date '2024-01-02' as day,"
        " timestamp '2024-01-02 03:04:05' as ts, cast('ab' as binary) as raw,"
        " null as nothing"
    )

    result = await registry.run(mysql_spec, sql)

    assert [(c.name, c.type) for c in result.columns] == [
        ("i", "int64"),
        ("big", "int64"),
        ("f", "float64"),
        ("s", "string"),
        ("d", "decimal128(11,2)"),
        ("day", "date32"),
        ("ts", "timestamp[us]"),
        ("raw", "binary"),
        ("nothing", "null"),
    ]
    assert result.rows == [
        (
            1,
            2,
            1.5,
            "x",
            Decimal("1.25"),
            date(2024, 1, 2),
            datetime(2024, 1, 2, 3, 4, 5),
            b"ab",
            None,
        )
    ]
    assert result.truncated is False


async def test_limit_truncates_and_says_so(
    registry: EngineRegistry, mysql_spec: ConnectionSpec
) -> None:
    sql = f"select n from ({MANY_ROWS}) as numbers order by n"

    result = await registry.run(mysql_spec, sql, limit=10)

    assert [row[0] for row in result.rows] == list(range(10))
    assert result.truncated is True


async def test_connection_is_reusable_after_a_truncated_fetch(
    registry: EngineRegistry, mysql_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(mysql_spec, options={"poolSize": 1})
    await registry.run(spec, MANY_ROWS, limit=5)

    result = await registry.run(spec, "select 42 as answer")

    assert result.rows == [(42,)]


async def test_syntax_error_raises_query_failed_with_database_message(
    registry: EngineRegistry, mysql_spec: ConnectionSpec
) -> None:
    with pytest.raises(QueryFailedError) as caught:
        await registry.run(mysql_spec, "selec 1")

    assert "You have an error in your SQL syntax" in caught.value.detail
    assert isinstance(caught.value.__cause__, pymysql.err.ProgrammingError)


async def test_wrong_port_raises_unavailable_fast_without_password(
    registry: EngineRegistry, mysql_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(mysql_spec, port=1, secrets={"password": FAKE_PASSWORD})
    started = time.monotonic()

    with pytest.raises(DatabaseUnavailableError) as caught:
        await registry.run(spec, "select 1")

    assert time.monotonic() - started < 2.0
    assert caught.value.detail == (
        "Could not connect to connection 'mariadb test': connection refused"
    )
    assert FAKE_PASSWORD not in str(caught.value)


async def test_wrong_password_raises_unavailable_without_password(
    registry: EngineRegistry, mysql_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(
        mysql_spec, username="pointsman_nobody", secrets={"password": FAKE_PASSWORD}
    )

    with pytest.raises(DatabaseUnavailableError) as caught:
        await registry.run(spec, "select 1")

    assert caught.value.detail.endswith("authentication failed")
    assert FAKE_PASSWORD not in str(caught.value)


async def test_timeout_kills_the_statement_on_the_server(
    registry: EngineRegistry, mysql_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(mysql_spec, query_timeout_seconds=1)
    marker = f"timeout_{uuid.uuid4().hex}"
    started = time.monotonic()

    with pytest.raises(QueryTimeoutError) as caught:
        await registry.run(spec, f"select sleep(10) /* {marker} */")

    assert 0.9 < time.monotonic() - started < 2.0
    assert caught.value.detail == (
        "Query exceeded the 1s timeout of connection 'mariadb test' and was cancelled"
    )
    assert await _wait_until_gone(spec, marker) == 0


async def test_pooled_connection_is_usable_after_a_timeout(
    registry: EngineRegistry, mysql_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(
        mysql_spec, query_timeout_seconds=1, options={"poolSize": 1}
    )
    with pytest.raises(QueryTimeoutError):
        await registry.run(spec, "select sleep(10)")

    result = await registry.run(spec, "select 7 as seven")

    assert result.rows == [(7,)]


async def test_cancelled_run_kills_the_statement_on_the_server(
    registry: EngineRegistry, mysql_spec: ConnectionSpec
) -> None:
    marker = f"cancel_{uuid.uuid4().hex}"
    task = asyncio.create_task(
        registry.run(mysql_spec, f"select sleep(10) /* {marker} */")
    )
    await asyncio.sleep(0.5)
    assert await _running_statements(mysql_spec, marker) == 1

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _wait_until_gone(mysql_spec, marker) == 0


async def test_pool_is_reused_across_calls(
    registry: EngineRegistry, mysql_spec: ConnectionSpec
) -> None:
    first = await registry.run(mysql_spec, "select connection_id()")

    second = await registry.run(mysql_spec, "select connection_id()")

    assert first.rows == second.rows


async def test_pool_is_replaced_when_credentials_version_changes(
    registry: EngineRegistry, mysql_spec: ConnectionSpec
) -> None:
    before = await registry.run(mysql_spec, "select connection_id()")
    rotated = dataclasses.replace(mysql_spec, credentials_version=2)

    after = await registry.run(rotated, "select connection_id()")

    assert after.rows != before.rows


async def test_connection_test_reports_the_server_version(
    registry: EngineRegistry, mysql_spec: ConnectionSpec
) -> None:
    report = await registry.test(mysql_spec)

    assert report["ok"] is True
    assert "MariaDB" in report["serverVersion"] or report["serverVersion"][0].isdigit()
