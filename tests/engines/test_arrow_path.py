"""PostgreSQL results wanted in Arrow are read by ADBC's driver: the client
gets the very Arrow the psycopg path gives for the same statement, a
statement the driver cannot take runs on psycopg, failures read as they do
there, and a session leaves nothing to the next user."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pyarrow as pa
import pytest
from outside import active_statements, outside, wait_until_gone

from pointsman.engines import ConnectionSpec, EngineRegistry, results
from pointsman.engines.spec import QueryResult
from pointsman.engines.streams import ArrowStream, RowStream
from pointsman.errors import (
    DatabaseUnavailableError,
    QueryFailedError,
    QueryTimeoutError,
)

pytestmark = pytest.mark.anyio


async def arrow_result(registry: EngineRegistry, spec: ConnectionSpec, sql: str) -> Any:
    return await registry.stream(spec, sql, arrow=True)


async def psycopg_table(
    registry: EngineRegistry, spec: ConnectionSpec, sql: str
) -> pa.Table:
    result = await registry.stream(spec, sql, arrow=False)
    assert isinstance(result, QueryResult) and result.table is None
    return results.to_arrow_table(result)


def ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


SAME_ARROW = {
    "integers": "select 1::int2 as a, 2::int4 as b, 3::int8 as c, null::int8 as d",
    "floats": "select 1.5::float4 as a, 'NaN'::float8 as b, '-Infinity'::float8 as c",
    "text kinds": "select 'x'::text as a, 'y'::varchar(3) as b, 'z'::char(3) as c,"
    " 'q'::\"char\" as d, 'n'::name as e, 'ü€'::text as f",
    "bool bytea oid": "select true as a, '\\x00ff'::bytea as b, 4294967295::oid as c",
    "json uuid": "select '{\"a\": [1]}'::json as a, '{\"b\": 2}'::jsonb as b,"
    " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid as c",
    "dates and times": "select date '2024-02-29' as a, time '23:59:59.999999' as b,"
    " timestamp '2024-01-02 03:04:05.123456' as c,"
    " timestamptz '2024-01-02 03:04:05+02' as d",
    "infinities and beyond": "select 'infinity'::date as a,"
    " '-infinity'::timestamp as b, 'infinity'::timestamptz as c,"
    " time '24:00' as e",
    "beyond year 9999": "select '200000-06-01 00:00:00+00'::timestamptz as a,"
    " '200000-06-01 01:02:03.00045'::timestamp as b, '100000-01-01'::date as c,"
    " '294276-12-31 23:59:59.999999'::timestamp as d,"
    " '294250-01-01 00:00:00+00'::timestamptz as e, '5874897-12-31'::date as f",
    "before year 1": "select '0044-03-15 12:00:00.5 BC'::timestamp as a,"
    " '0044-03-15 12:00:00+00 BC'::timestamptz as b, '4713-11-24 BC'::date as c,"
    " '4714-11-24 00:00:00+00 BC'::timestamptz as d",
    "numerics": "select 1.25::numeric(10,2) as a, 12345678901234567890.5::numeric"
    " as b, 0.0000001::numeric as c, 'NaN'::numeric as d, null::numeric(5,1) as e",
    "wide numeric": "select 123456789012345678901234567890123456789::numeric(39,0)"
    " as a",
    "many rows": "select x, 'row ' || x as label, x * 0.5 as half,"
    " timestamp '2024-01-01' + x * interval '1 minute' as at"
    " from generate_series(1, 20000) x",
    "no rows": "select 1::int4 as a, 'x'::text as b where false",
    "a trailing comment": "select 1 as a -- the comment",
    "one column named twice": "select 1 as a, 2 as a",
}


@pytest.mark.parametrize("sql", SAME_ARROW.values(), ids=SAME_ARROW.keys())
async def test_adbc_gives_the_arrow_psycopg_gives(
    registry: EngineRegistry, postgres_spec: ConnectionSpec, sql: str
) -> None:
    expected = await psycopg_table(registry, postgres_spec, sql)

    result = await arrow_result(registry, postgres_spec, sql)

    assert result.table is not None  # read by ADBC
    assert expected.num_columns
    assert ipc_bytes(results.to_arrow_table(result)) == ipc_bytes(expected)


NUMERIC_TEXTS = [
    *("0.0000001", "-0.0000001", "0.0000000", "1.50", "100000000000000000000"),
    *("NaN", "Infinity", "-Infinity"),
]
NUMERICS = ", ".join(
    f"'{text}'::numeric as n{i}" for i, text in enumerate(NUMERIC_TEXTS)
)


async def test_numerics_without_a_scale_are_spelled_as_the_server_spells_them(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    sql = f"select {NUMERICS}"
    on_psycopg = await registry.stream(postgres_spec, sql, arrow=False)
    assert isinstance(on_psycopg, QueryResult)
    assert list(results.to_json_rows(on_psycopg)[0].values()) == NUMERIC_TEXTS
    assert results.csv_lines(on_psycopg.rows) == ",".join(NUMERIC_TEXTS) + "\r\n"
    assert list(results.to_arrow_table(on_psycopg).to_pylist()[0].values()) == (
        NUMERIC_TEXTS
    )
    on_adbc = await arrow_result(registry, postgres_spec, sql)
    assert on_adbc.table is not None
    assert list(on_adbc.table.to_pylist()[0].values()) == NUMERIC_TEXTS


async def test_timestamps_python_cannot_hold_are_spelled_in_the_session_zone(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    async with await outside(postgres_spec) as conn:
        await conn.execute(
            f"alter database \"{postgres_spec.database}\" set timezone = 'Europe/Paris'"
        )
    sql = (
        "select '200000-06-01 00:00:00+00'::timestamptz as summer,"
        " '200000-01-01 00:00:00+00'::timestamptz as winter,"
        " '0044-03-15 12:00:00+00 BC'::timestamptz as ancient"
    )
    expected = await psycopg_table(registry, postgres_spec, sql)

    result = await arrow_result(registry, postgres_spec, sql)

    assert result.table is not None
    assert result.table.to_pylist() == expected.to_pylist()
    assert expected.to_pylist() == [
        {
            "summer": "200000-06-01 02:00:00+02",
            "winter": "200000-01-01 01:00:00+01",
            "ancient": "0044-03-15 12:09:21+00:09:21 BC",
        }
    ]


ZONED = {
    "an instant past 9999 in UTC but not locally": "select v::timestamptz as v"
    " from (values ('2024-11-03 04:30:00+00'), ('10000-01-01 02:30:00+00')) x(v)",
    "an infinity among instants": "select v::timestamptz as v"
    " from (values ('infinity'), ('2024-11-03 04:30:00.5+00')) x(v)",
    "the first instant of year 1": "select v::timestamptz as v"
    " from (values ('0001-01-01 00:00:00+00'), ('2024-06-01 12:00+00')) x(v)",
    "an instant past 9999 locally": "select v::timestamptz as v"
    " from (values ('2024-01-01 00:00:00+00'), ('10000-01-01 05:00:00+00')) x(v)",
}


@pytest.mark.parametrize("sql", ZONED.values(), ids=ZONED.keys())
async def test_instants_read_as_psycopg_gives_them_in_the_session_zone(
    registry: EngineRegistry, postgres_spec: ConnectionSpec, sql: str
) -> None:
    async with await outside(postgres_spec) as conn:
        await conn.execute(
            f'alter database "{postgres_spec.database}"'
            " set timezone = 'America/St_Johns'"
        )
    expected = await psycopg_table(registry, postgres_spec, sql)

    result = await arrow_result(registry, postgres_spec, sql)

    assert result.table is not None
    assert ipc_bytes(results.to_arrow_table(result)) == ipc_bytes(expected)


ON_PSYCOPG = {
    "an interval": "select interval '1 day' as a",
    "an array": "select array[1, 2] as a",
    "a trailing semicolon": "select 1 as a;",
    "not a query": "show search_path",
}


@pytest.mark.parametrize("sql", ON_PSYCOPG.values(), ids=ON_PSYCOPG.keys())
async def test_statements_adbc_does_not_take_run_on_psycopg(
    registry: EngineRegistry, postgres_spec: ConnectionSpec, sql: str
) -> None:
    result = await arrow_result(registry, postgres_spec, sql)

    assert isinstance(result, QueryResult) and result.table is None
    assert result.row_count == 1


@pytest.mark.parametrize("ending", ["", ";"])
async def test_a_data_modifying_query_runs_once(
    registry: EngineRegistry, postgres_spec: ConnectionSpec, ending: str
) -> None:
    await registry.run(postgres_spec, "create table kept (n int)")
    sql = "with made as (insert into kept values (1) returning n) select n from made"

    result = await arrow_result(registry, postgres_spec, sql + ending)

    assert result.row_count == 1
    kept = await registry.run(postgres_spec, "select count(*) from kept")
    assert kept.rows == [(1,)]


async def test_a_syntax_error_reads_as_on_psycopg(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    with pytest.raises(QueryFailedError) as on_psycopg:
        await registry.run(postgres_spec, "select frm nowhere")

    with pytest.raises(QueryFailedError) as on_adbc:
        await arrow_result(registry, postgres_spec, "select frm nowhere")

    assert on_adbc.value.detail == on_psycopg.value.detail


async def test_a_failure_while_reading_rows_is_the_servers_message(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    sql = "select 100 / (x - 50000) as a from generate_series(1, 100000) x"

    with pytest.raises(QueryFailedError, match="^division by zero$"):
        await arrow_result(registry, postgres_spec, sql)

    again = await arrow_result(registry, postgres_spec, "select 7 as a")
    assert again.table.to_pylist() == [{"a": 7}]


async def test_the_query_timeout_cancels_an_adbc_statement_on_the_server(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(postgres_spec, query_timeout_seconds=1)
    sql = "select pg_sleep(30)::text as adbc_timeout_marker"

    started = time.monotonic()
    with pytest.raises(QueryTimeoutError):
        await arrow_result(registry, spec, sql)

    assert time.monotonic() - started < 5
    assert await wait_until_gone(spec, "adbc_timeout_marker") == 0


async def test_a_cancelled_adbc_query_is_cancelled_on_the_server(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    sql = "select pg_sleep(30)::text as adbc_cancel_marker"
    task = asyncio.ensure_future(arrow_result(registry, postgres_spec, sql))
    while not await active_statements(postgres_spec, "adbc_cancel_marker"):
        await asyncio.sleep(0.05)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await wait_until_gone(postgres_spec, "adbc_cancel_marker") == 0
    stats = registry.pool_stats(postgres_spec.id)
    assert stats is not None and stats["inUse"] == 0


async def test_a_session_ended_mid_stream_is_a_lost_connection(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    sql = (
        "select x, repeat('v', 200) as pad,"
        " pg_sleep(case when x = 30000 then 30 else 0 end)::text as adbc_lost_marker"
        " from generate_series(1, 60000) x"
    )
    stream = await registry.stream(postgres_spec, sql, threshold=100, arrow=True)
    assert isinstance(stream, ArrowStream)
    while not await active_statements(postgres_spec, "adbc_lost_marker"):
        await asyncio.sleep(0.05)
    async with await outside(postgres_spec) as conn:
        await conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where query like '%adbc_lost_marker%' and pid <> pg_backend_pid()"
        )

    with pytest.raises(DatabaseUnavailableError, match="Lost the connection"):
        async for _ in stream.tables():
            pass
    await stream.aclose()

    again = await arrow_result(registry, postgres_spec, "select 1 as a")
    assert again.table.to_pylist() == [{"a": 1}]


async def test_a_long_result_streams_in_parts_and_gives_its_session_back(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    sql = "select x, 'row ' || x as label from generate_series(1, 300000) x"

    stream = await registry.stream(postgres_spec, sql, threshold=1000, arrow=True)
    assert isinstance(stream, RowStream) and isinstance(stream, ArrowStream)
    parts = [table async for table in stream.tables()]
    await stream.aclose()

    assert len(parts) > 2
    assert sum(part.num_rows for part in parts) == 300000
    assert parts[-1].column("x")[-1].as_py() == 300000
    stats = registry.pool_stats(postgres_spec.id)
    assert stats is not None and stats["inUse"] == 0


async def test_an_adbc_session_leaves_nothing_to_the_next_user(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(postgres_spec, options={"poolSize": 1})
    before = await arrow_result(registry, spec, "select pg_backend_pid() as pid")

    for sql in (
        "select set_config('application_name', 'user-a', false) as a",
        "select set_config('search_path', 'elsewhere', false) as a",
        "select set_config('statement_timeout', '0', false) as a",
        "select pg_advisory_lock(4242)::text as a",
    ):
        await arrow_result(registry, spec, sql)
    after = await arrow_result(
        registry,
        spec,
        "select pg_backend_pid() as pid,"
        " current_setting('application_name') as app,"
        " current_setting('search_path') as path,"
        " current_setting('statement_timeout') as timeout,"
        " (select count(*) from pg_locks where locktype = 'advisory'"
        "   and pid = pg_backend_pid()) as locks",
    )

    [row] = after.table.to_pylist()
    assert row["pid"] == before.table.to_pylist()[0]["pid"]  # the same session
    assert (row["app"], row["timeout"], row["locks"]) == ("pointsman", "10s", 0)
    assert "elsewhere" not in row["path"]


async def test_a_small_result_runs_on_psycopg_the_next_time(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    sql = "select x, 'row ' || x as label from generate_series(1, 10) x"

    first = await arrow_result(registry, postgres_spec, sql)
    second = await arrow_result(registry, postgres_spec, sql)

    assert first.table is not None and second.table is None
    assert ipc_bytes(results.to_arrow_table(second)) == ipc_bytes(first.table)


async def test_a_statement_whose_result_grew_goes_back_to_adbc(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    await registry.run(postgres_spec, "create table grows as select 1 as n")
    sql = "select n from grows"
    await arrow_result(registry, postgres_spec, sql)  # small: remembered
    await registry.run(
        postgres_spec, "insert into grows select generate_series(2, 1000)"
    )

    grown = await arrow_result(registry, postgres_spec, sql)
    after = await arrow_result(registry, postgres_spec, sql)

    assert grown.table is None and grown.row_count == 1000  # on psycopg
    assert after.table is not None and after.row_count == 1000


async def test_a_password_with_quotes_and_backslashes_reaches_the_driver(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(postgres_spec, secrets={"password": "p'a\\ss w=rd"})

    result = await arrow_result(registry, spec, "select 1 as a")

    assert result.table is not None and result.table.to_pylist() == [{"a": 1}]


def test_a_connect_error_never_shows_the_password_as_the_driver_spelled_it() -> None:
    from pointsman.engines.postgres_arrow import _Scrubbed, conninfo

    secret = "p'a\\ss w=rd"
    spec = ConnectionSpec(id="c", name="c", dialect="postgres")
    spec = dataclasses.replace(spec, secrets={"password": secret})
    echoed = Exception(f"bad connection info: {conninfo({'password': secret})}")

    text = str(_Scrubbed(echoed, spec))

    assert "a\\\\ss" not in text and "w=rd" not in text and "ss w" not in text


async def test_a_small_statement_takes_an_idle_adbc_session_rather_than_swap(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(postgres_spec, options={"poolSize": 1})
    small = "select 1 as a"
    await arrow_result(registry, spec, small)  # on ADBC; remembered as small

    again = await arrow_result(registry, spec, small)

    assert again.table is not None  # the idle ADBC session served it
    stats = registry.pool_stats(spec.id)
    assert stats is not None and stats["connectionsOpened"] == 1


async def test_a_mixed_arrow_load_keeps_its_sessions(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    spec = dataclasses.replace(postgres_spec, options={"poolSize": 2})
    large = "select g, 'row ' || g as label from generate_series(1, 2000) g"

    async def client(n: int) -> None:
        for i in range(10):
            sql = large if (n + i) % 2 else f"select {n} as a"
            await arrow_result(registry, spec, sql)

    await asyncio.gather(*(client(n) for n in range(6)))

    stats = registry.pool_stats(spec.id)
    assert stats is not None and stats["connectionsOpened"] <= 4


@pytest.mark.parametrize("arrow", [False, True], ids=["psycopg", "adbc"])
async def test_a_parameter_without_a_value_is_a_query_error_not_a_lost_session(
    registry: EngineRegistry, postgres_spec: ConnectionSpec, arrow: bool
) -> None:
    with pytest.raises(QueryFailedError) as caught:
        await registry.stream(postgres_spec, "select $1 as a", arrow=arrow)

    assert "COPY" not in caught.value.detail
    stats = registry.pool_stats(postgres_spec.id)
    assert stats is not None and stats["connectionsLost"] == 0
