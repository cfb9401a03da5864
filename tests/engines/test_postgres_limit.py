"""A PostgreSQL query with a ``limit`` is planned and stopped by the database
for that many rows; a statement that cannot be wrapped runs as written."""

from __future__ import annotations

import pytest

from pointsman.engines import ConnectionSpec, EngineRegistry
from pointsman.engines.postgres_limit import as_in_the_query, wrap
from pointsman.errors import QueryFailedError

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("arrow", [False, True], ids=["psycopg", "arrow"])
async def test_the_database_makes_no_more_rows_than_the_limit_needs(
    registry: EngineRegistry, postgres_spec: ConnectionSpec, arrow: bool
) -> None:
    await registry.run(postgres_spec, "create sequence made")
    sql = "select nextval('made') as n from generate_series(1, 1000000) g"

    result = await registry.stream(postgres_spec, sql, limit=5, arrow=arrow)

    assert result.row_count == 5 and result.truncated
    made = await registry.run(postgres_spec, "select last_value from made")
    assert made.rows == [(6,)]  # the five kept and the one that says "cut"


@pytest.mark.parametrize(
    ("limit", "rows", "truncated"),
    [(3, 3, True), (4, 4, False), (9, 4, False), (2**63 - 1, 4, False)],
)
async def test_a_limit_says_whether_it_cut(
    registry: EngineRegistry,
    postgres_spec: ConnectionSpec,
    limit: int,
    rows: int,
    truncated: bool,
) -> None:
    sql = "select g from generate_series(1, 4) g order by g desc"

    result = await registry.run(postgres_spec, sql, limit=limit)

    assert result.rows == [(g,) for g in range(4, 4 - rows, -1)]
    assert result.truncated is truncated


AS_WRITTEN = {
    "a trailing semicolon": "select 1 as a;",
    "a trailing comment": "select 1 as a -- the end",
    "select into": "select 1 as a into temp table copied",
    "show": "show search_path",
}


@pytest.mark.parametrize("sql", AS_WRITTEN.values(), ids=AS_WRITTEN.keys())
async def test_statements_that_cannot_be_wrapped_run_as_written(
    registry: EngineRegistry, postgres_spec: ConnectionSpec, sql: str
) -> None:
    expected = await registry.run(postgres_spec, sql.replace("copied", "first"))

    result = await registry.run(postgres_spec, sql, limit=10)

    assert result.rows == expected.rows


async def test_a_data_modifying_query_with_a_limit_runs_once(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    await registry.run(postgres_spec, "create table kept (n int)")
    sql = "with m as (insert into kept values (1), (2) returning n) select n from m"

    result = await registry.run(postgres_spec, sql, limit=1)

    assert result.row_count == 1 and result.truncated
    kept = await registry.run(postgres_spec, "select count(*) from kept")
    assert kept.rows == [(2,)]


async def test_a_mistake_in_a_limited_query_reads_as_without_the_limit(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    sql = "select nope from pg_class"
    with pytest.raises(QueryFailedError) as plain:
        await registry.run(postgres_spec, sql)

    with pytest.raises(QueryFailedError) as limited:
        await registry.run(postgres_spec, sql, limit=5)

    assert limited.value.detail == plain.value.detail
    assert "pointsman_limited" not in limited.value.detail


@pytest.mark.parametrize("arrow", [False, True], ids=["psycopg", "arrow"])
@pytest.mark.parametrize("code", ["42601", "0A000", "42P01"])
async def test_a_limited_query_failing_as_it_runs_runs_once(
    registry: EngineRegistry, postgres_spec: ConnectionSpec, arrow: bool, code: str
) -> None:
    await registry.run(postgres_spec, "create sequence calls")
    await registry.run(
        postgres_spec,
        "create function boom(code text) returns int language plpgsql volatile as"
        " $$ begin perform nextval('calls');"
        " raise exception 'boom' using errcode = code; end $$",
    )

    with pytest.raises(QueryFailedError, match="boom"):
        await registry.stream(
            postgres_spec, f"select boom('{code}') as b", limit=10, arrow=arrow
        )

    calls = await registry.run(postgres_spec, "select last_value from calls")
    assert calls.rows == [(1,)]


@pytest.mark.parametrize("arrow", [False, True], ids=["psycopg", "arrow"])
async def test_a_statement_the_wrapper_would_complete_fails_as_written(
    registry: EngineRegistry, postgres_spec: ConnectionSpec, arrow: bool
) -> None:
    sql = "select 1 as a) s, (select 2 as b"
    with pytest.raises(QueryFailedError) as plain:
        await registry.run(postgres_spec, sql)

    with pytest.raises(QueryFailedError) as limited:
        await registry.stream(postgres_spec, sql, limit=1, arrow=arrow)

    assert limited.value.detail == plain.value.detail


@pytest.mark.parametrize("arrow", [False, True], ids=["psycopg", "arrow"])
@pytest.mark.parametrize(
    "sql",
    ["select 'abc'::int as n", "select 1 as n\nfrom generate_series(1, 'q') g"],
)
async def test_an_error_points_at_the_line_of_the_query(
    registry: EngineRegistry, postgres_spec: ConnectionSpec, arrow: bool, sql: str
) -> None:
    with pytest.raises(QueryFailedError) as plain:
        await registry.run(postgres_spec, sql)

    with pytest.raises(QueryFailedError) as limited:
        await registry.stream(postgres_spec, sql, limit=5, arrow=arrow)

    assert "LINE" in plain.value.detail
    assert limited.value.detail == plain.value.detail


def test_line_numbers_of_the_wrapped_statement_count_in_the_query() -> None:
    wrapped = wrap("\n".join(["select 1 as n"] * 8 + ["select x"]), 5)
    message = "bad value\nLINE 10: select x\n                ^"

    assert as_in_the_query(message, wrapped) == (
        "bad value\nLINE 9: select x\n               ^"
    )


def test_a_line_about_another_statement_keeps_its_number() -> None:
    wrapped = wrap("select f(g)\nfrom t", 5)
    message = "boom\nQUERY:  select\n\n  nosuchcol\nLINE 3:   nosuchcol\n          ^"

    assert as_in_the_query(message, wrapped) == message


async def test_a_decision_made_on_a_passing_mistake_is_not_kept(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    await registry.run(postgres_spec, "create sequence calls")
    await registry.run(
        postgres_spec,
        "create function counted(n int) returns int language sql volatile as"
        " $$ select n + 0 * nextval('calls')::int $$",
    )
    sql = "select counted(id) as n from late"
    with pytest.raises(QueryFailedError):
        await registry.run(postgres_spec, sql, limit=5)
    await registry.run(
        postgres_spec, "create table late as select generate_series(1, 100000) id"
    )

    result = await registry.run(postgres_spec, sql, limit=5)

    assert result.row_count == 5 and result.truncated
    calls = await registry.run(postgres_spec, "select last_value from calls")
    assert calls.rows == [(6,)]


async def test_a_query_that_looks_like_a_wrapped_one_runs_as_written(
    registry: EngineRegistry, postgres_spec: ConnectionSpec
) -> None:
    sql = (
        "select * from (\nselect 1 as a) x, (select 2 as b\n)"
        " as pointsman_limited limit 5"
    )

    result = await registry.run(postgres_spec, sql)

    assert result.rows == [(1, 2)]
