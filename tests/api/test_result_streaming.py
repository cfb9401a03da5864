"""Results past the stream threshold are written batch by batch (spec §7
wire format), raw CSV and Arrow streams on request, limits cut on the
database side, failures part-way reported in the job line, and the
connection given back either way. On PostgreSQL, with a low threshold."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pyarrow.ipc
import pymysql
import pytest

from pointsman.engines import results
from pointsman.engines.spec import QueryResult
from pointsman.services.container import Services

pytestmark = pytest.mark.anyio

THRESHOLD = 100


def series(rows: int) -> str:
    """Rows made one at a time (generate_series in FROM would make them all
    before sending the first)."""
    made = f"select generate_series(1, {rows}) as n"
    return f"select n, 'row ' || n as label from ({made}) s"


@pytest.fixture
async def connection_id(
    api: httpx.AsyncClient,
    services: Services,
    postgres_admin_params: Any,
    make_postgres_database: Callable[[], str],
) -> str:
    services.settings = services.settings.with_overrides(
        stream_threshold_rows=THRESHOLD
    )
    params = postgres_admin_params
    body = {
        "dialect": "postgres",
        "name": "streamed",
        "host": params.host,
        "port": params.port,
        "database": make_postgres_database(),
        "username": params.user,
        "passwordUnencrypted": params.password or "unused-by-trust-auth",
    }
    response = await api.post("/api/v1/connections", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["data"])


async def run(
    api: httpx.AsyncClient,
    connection_id: str,
    sql: str,
    *,
    accept: str | None = None,
    limit: int | None = None,
    **fields: Any,
) -> httpx.Response:
    query: dict[str, Any] = {"connectionId": connection_id, "sql": sql}
    if limit is not None:
        query["limit"] = limit
    headers = {"Accept": accept} if accept else {}
    return await api.post(
        "/api/v1/query/run", json={"query": query, **fields}, headers=headers
    )


def lines_of(response: httpx.Response) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in response.content.splitlines() if line]


def arrow_rows(job: dict[str, Any]) -> list[dict[str, Any]]:
    table = pyarrow.ipc.open_stream(base64.b64decode(job["result"])).read_all()
    return table.to_pylist()


def expected(rows: int) -> list[dict[str, Any]]:
    return [{"n": n, "label": f"row {n}"} for n in range(1, rows + 1)]


async def pool_in_use(api: httpx.AsyncClient, connection_id: str) -> int:
    stats = (await api.get(f"/api/v1/connections/{connection_id}/pool")).json()
    return int(stats["inUse"])


async def test_a_long_result_streams_as_the_default_arrow_job_line(
    api: httpx.AsyncClient, connection_id: str
) -> None:
    response = await run(api, connection_id, series(2500))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    submitted, job, foot = lines_of(response)
    assert list(submitted["jobs_submitted"]) == [job["job_id"]]
    assert foot == {"remaining_job_ids": [], "timed_out": "false"}
    assert job["status"] == "COMPLETE"
    assert job["summary"]["row_count"] == 2500
    assert job["summary"]["truncated"] is False
    assert job["summary"]["fields"] == [
        {"name": "n", "type": "int32"},
        {"name": "label", "type": "string"},
    ]
    assert job["route"]["connectionId"] == connection_id
    assert arrow_rows(job) == expected(2500)
    assert await pool_in_use(api, connection_id) == 0


@pytest.mark.parametrize("result_type", ["json", "csv"])
async def test_a_long_result_streams_as_json_rows_and_csv_text(
    api: httpx.AsyncClient, connection_id: str, result_type: str
) -> None:
    response = await run(api, connection_id, series(1234), resultType=result_type)
    job = lines_of(response)[1]
    assert job["summary"]["row_count"] == 1234
    if result_type == "json":
        assert job["result"] == expected(1234)
    else:
        records = list(csv.DictReader(io.StringIO(job["result"])))
        assert [(int(r["n"]), r["label"]) for r in records] == [
            (n, f"row {n}") for n in range(1, 1235)
        ]


async def test_the_json_only_shape_streams_too(
    api: httpx.AsyncClient, connection_id: str
) -> None:
    response = await run(api, connection_id, series(500), accept="application/json")
    body = response.json()
    assert body["jobIds"] == []
    [job] = body["completedQueries"]
    assert job["summary"]["row_count"] == 500
    assert arrow_rows(job) == expected(500)


@pytest.mark.parametrize("rows", [0, 5, 2500])
async def test_accept_text_csv_returns_the_raw_csv(
    api: httpx.AsyncClient, connection_id: str, rows: int
) -> None:
    response = await run(api, connection_id, series(rows), accept="text/csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["x-pointsman-connection-id"] == connection_id
    records = list(csv.reader(io.StringIO(response.text)))
    assert records[0] == ["n", "label"]
    assert records[1:] == [[str(n), f"row {n}"] for n in range(1, rows + 1)]


async def test_an_empty_json_result_keeps_its_columns_and_their_types(
    api: httpx.AsyncClient, connection_id: str
) -> None:
    sql = (
        "select 1.5::numeric(10, 2) as price, 'x'::text as label,"
        " now()::timestamp as at"
    )
    one = lines_of(await run(api, connection_id, sql, resultType="json"))[1]
    response = await run(api, connection_id, f"{sql} where false", resultType="json")
    job = lines_of(response)[1]
    assert job["status"] == "COMPLETE", job
    assert job["result"] == []
    assert job["summary"]["row_count"] == 0
    assert (
        job["summary"]["fields"]
        == one["summary"]["fields"]
        == [
            {"name": "price", "type": "decimal128(10,2)"},
            {"name": "label", "type": "string"},
            {"name": "at", "type": "timestamp[us]"},
        ]
    )


async def test_a_statement_without_rows_still_has_no_columns(
    api: httpx.AsyncClient, connection_id: str
) -> None:
    response = await run(
        api, connection_id, "create temporary table t (a int)", resultType="json"
    )
    job = lines_of(response)[1]
    assert job["status"] == "COMPLETE", job
    assert job["summary"]["fields"] == []
    assert job["summary"]["row_count"] == 0
    assert await pool_in_use(api, connection_id) == 0


@pytest.mark.parametrize("rows", [0, 5, 2500])
async def test_accept_arrow_stream_returns_the_raw_ipc_stream(
    api: httpx.AsyncClient, connection_id: str, rows: int
) -> None:
    accept = "application/vnd.apache.arrow.stream"
    response = await run(api, connection_id, series(rows), accept=accept)
    assert response.status_code == 200
    assert response.headers["content-type"] == accept
    table = pyarrow.ipc.open_stream(response.content).read_all()
    assert table.column_names == ["n", "label"]
    assert table.to_pylist() == expected(rows)


@pytest.mark.parametrize(
    ("rows", "limit", "kept", "truncated"),
    [
        (2500, 1500, 1500, True),  # cut while streaming
        (2500, 2500, 2500, False),  # reached exactly: not a cut
        (2500, 50, 50, True),  # cut below the threshold
        (10**9, 300, 300, True),  # the database stops: a billion rows are not made
    ],
)
async def test_limit_is_honoured_while_streaming(
    api: httpx.AsyncClient,
    connection_id: str,
    rows: int,
    limit: int,
    kept: int,
    truncated: bool,
) -> None:
    response = await run(api, connection_id, series(rows), limit=limit)
    job = lines_of(response)[1]
    assert job["summary"]["row_count"] == kept
    assert job["summary"]["truncated"] is truncated
    assert arrow_rows(job) == expected(kept)
    assert await pool_in_use(api, connection_id) == 0


async def test_a_failure_part_way_ends_the_job_line_as_an_error(
    api: httpx.AsyncClient, connection_id: str
) -> None:
    sql = "select g as n, 1 / (g - 4000) as boom from generate_series(1, 5000) g"
    response = await run(api, connection_id, sql, resultType="json")
    assert response.status_code == 200
    submitted, job, foot = lines_of(response)
    assert job["status"] == "ERROR"
    assert job["error"]["status"] == 400
    assert "division by zero" in job["error"]["detail"]
    assert foot["timed_out"] == "false"
    assert await pool_in_use(api, connection_id) == 0
    log = (await api.get("/api/v1/query/log")).json()["records"]
    assert log[0]["status"] == "ERROR"
    assert "division by zero" in log[0]["error"]


@pytest.mark.parametrize(
    "extra",
    ["", ", interval '1 day' as psycopg_only"],
    ids=["read by ADBC", "read by psycopg"],
)
async def test_a_failure_part_way_in_arrow_leaves_the_rows_sent_readable(
    api: httpx.AsyncClient, connection_id: str, extra: str
) -> None:
    sql = (
        f"select g as n, 1 / (g - 150000) as boom{extra}"
        " from generate_series(1, 200000) g"
    )

    response = await run(api, connection_id, sql)

    submitted, job, foot = lines_of(response)
    assert job["status"] == "ERROR"
    assert "division by zero" in job["error"]["detail"]
    rows = arrow_rows(job)
    assert 0 < len(rows) == job["summary"]["row_count"] < 150000
    assert [row["n"] for row in rows] == list(range(1, len(rows) + 1))
    assert foot["timed_out"] == "false"


async def test_the_fields_say_string_where_a_column_went_to_arrow_as_text(
    api: httpx.AsyncClient, connection_id: str
) -> None:
    sql = (
        "select g as n, (case when g = 1 then 'NaN'::numeric else g end)"
        "::numeric(10,2) as amount from generate_series(1, 500) g"
    )

    response = await run(api, connection_id, sql)

    job = lines_of(response)[1]
    assert job["summary"]["fields"] == [
        {"name": "n", "type": "int32"},
        {"name": "amount", "type": "string"},
    ]
    assert arrow_rows(job)[:2] == [
        {"n": 1, "amount": "NaN"},
        {"n": 2, "amount": "2.00"},
    ]


async def test_an_unexpected_failure_part_way_still_ends_the_job_line(
    api: httpx.AsyncClient, connection_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded = 0

    def fails_on_the_third_batch(result: QueryResult) -> bytes:
        nonlocal encoded
        encoded += 1
        if encoded == 3:
            raise RuntimeError("a bug")
        return orjson.dumps([list(row) for row in result.rows])

    monkeypatch.setattr(results, "to_json_bytes", fails_on_the_third_batch)
    sql = "select g as n from generate_series(1, 5000) g"

    response = await run(api, connection_id, sql, resultType="json")

    submitted, job, foot = lines_of(response)
    assert job["status"] == "ERROR"
    assert job["error"] == {"detail": "Internal server error", "status": 500}
    assert foot == {"remaining_job_ids": [], "timed_out": "false"}
    assert await pool_in_use(api, connection_id) == 0


async def test_a_streamed_query_is_logged_with_its_row_count(
    api: httpx.AsyncClient, connection_id: str
) -> None:
    await run(api, connection_id, series(777))
    log = (await api.get("/api/v1/query/log")).json()["records"]
    assert log[0]["rowCount"] == 777
    assert log[0]["status"] == "COMPLETE"
    assert log[0]["connectionId"] == connection_id


async def test_a_long_result_left_running_is_collected_by_query_wait(
    api: httpx.AsyncClient, connection_id: str
) -> None:
    sql = "select g as n, 'row ' || g as label from generate_series(1, 900) g, "
    sql += "pg_sleep(0.5)"
    first = await run(api, connection_id, sql, waitSeconds=0)
    foot = lines_of(first)[-1]
    assert foot["timed_out"] == "true"
    [job_id] = foot["remaining_job_ids"]
    waited = await api.get("/api/v1/query/wait", params={"jobIds": job_id})
    job = lines_of(waited)[0]
    assert job["status"] == "COMPLETE"
    assert arrow_rows(job) == expected(900)
    assert await pool_in_use(api, connection_id) == 0


async def left_running(
    api: httpx.AsyncClient, connection_id: str, sql: str, **fields: Any
) -> str:
    """The id of the job ``sql`` is, left running by query/run."""
    first = await run(api, connection_id, sql, waitSeconds=0, **fields)
    [job_id] = lines_of(first)[-1]["remaining_job_ids"]
    return str(job_id)


async def held_then_collected(
    api: httpx.AsyncClient, connection_id: str, sql: str
) -> dict[str, Any]:
    """The job line of ``sql`` left running by query/run, from query/wait."""
    job_id = await left_running(api, connection_id, sql)
    waited = await api.get("/api/v1/query/wait", params={"jobIds": job_id})
    job: dict[str, Any] = lines_of(waited)[0]
    return job


async def test_the_fields_of_a_held_result_say_string_where_it_went_as_text(
    api: httpx.AsyncClient, connection_id: str
) -> None:
    sql = (
        "select (case when g = 1 then 'NaN'::numeric else g end)::numeric(10,2)"
        " as amount from generate_series(1, 50) g, pg_sleep(0.3)"
    )

    job = await held_then_collected(api, connection_id, sql)

    assert job["summary"]["fields"] == [{"name": "amount", "type": "string"}]
    assert arrow_rows(job)[0] == {"amount": "NaN"}


async def test_a_result_held_for_query_wait_is_cut_at_the_held_row_cap(
    api: httpx.AsyncClient, connection_id: str, services: Services
) -> None:
    services.settings = services.settings.with_overrides(held_result_max_rows=1200)
    sql = "select g as n, 'row ' || g as label from generate_series(1, 5000) g, "
    sql += "pg_sleep(0.5)"
    job = await held_then_collected(api, connection_id, sql)

    assert job["status"] == "COMPLETE"
    assert job["summary"]["truncated"] is True
    assert job["summary"]["row_count"] == 1200
    assert arrow_rows(job) == expected(1200)
    assert await pool_in_use(api, connection_id) == 0


async def test_a_result_held_for_query_wait_is_cut_at_the_held_byte_cap(
    api: httpx.AsyncClient, connection_id: str, services: Services
) -> None:
    services.settings = services.settings.with_overrides(held_result_max_bytes=200_000)
    sql = "select g as n, repeat('x', 1000) as wide from generate_series(1, 5000) g, "
    sql += "pg_sleep(0.5)"
    job = await held_then_collected(api, connection_id, sql)

    kept = job["summary"]["row_count"]
    assert job["status"] == "COMPLETE" and job["summary"]["truncated"] is True
    assert 150 <= kept <= 200
    assert [row["n"] for row in arrow_rows(job)] == list(range(1, kept + 1))


async def test_a_short_but_wide_result_held_for_query_wait_is_cut_too(
    api: httpx.AsyncClient, connection_id: str, services: Services
) -> None:
    services.settings = services.settings.with_overrides(held_result_max_bytes=20_000)
    sql = "select g as n, array[repeat('x', 1000)] as wide"
    sql += " from generate_series(1, 50) g, pg_sleep(0.5)"  # under the threshold
    job = await held_then_collected(api, connection_id, sql)

    assert job["summary"]["truncated"] is True
    assert 15 <= job["summary"]["row_count"] <= 20


async def test_results_held_together_stay_within_the_total_and_collecting_frees_it(
    api: httpx.AsyncClient, connection_id: str, services: Services
) -> None:
    services.settings = services.settings.with_overrides(
        held_result_max_bytes=200_000, held_results_total_bytes=300_000
    )

    def wide(sleep: float) -> str:
        return (
            "select g as n, repeat('x', 1000) as wide"
            f" from generate_series(1, 5000) g, pg_sleep({sleep})"
        )

    job_ids = []
    for sleep in (0.3, 0.6, 0.9):  # they finish, and are held, in this order
        job_ids.append(await left_running(api, connection_id, wide(sleep)))
    waited = await api.get("/api/v1/query/wait", params={"jobIds": ",".join(job_ids)})
    by_id = {line["job_id"]: line for line in lines_of(waited)[:-1]}
    whole, rest, none = (by_id[job_id] for job_id in job_ids)

    # The third finds little or no room left (a 503 where none is).
    counts = [
        line["summary"]["row_count"] if line["status"] == "COMPLETE" else 0
        for line in (whole, rest, none)
    ]
    assert 150 <= counts[0] <= 200
    assert 50 <= counts[1] <= 100 and rest["summary"]["truncated"] is True
    assert counts[2] <= 3
    assert sum(counts) * 1000 <= 300_000
    assert await pool_in_use(api, connection_id) == 0
    # Collected, they no longer count: the next one has the whole room again.
    again = await held_then_collected(api, connection_id, wide(0.3))
    assert again["summary"]["row_count"] == whole["summary"]["row_count"]


async def held_gauge(api: httpx.AsyncClient) -> float:
    text = (await api.get("/metrics")).text
    [line] = [x for x in text.splitlines() if x.startswith("pointsman_held_result_")]
    return float(line.split()[-1])


async def test_metrics_show_the_memory_held_results_take(
    api: httpx.AsyncClient, connection_id: str
) -> None:
    sql = "select g as n from generate_series(1, 5000) g, pg_sleep(0.2)"
    job_id = await left_running(api, connection_id, sql)
    held = 0.0
    for _ in range(100):
        held = await held_gauge(api)
        if held:
            break
        await asyncio.sleep(0.05)

    assert held >= 5000 * 4  # the int4 column, at least
    await api.get("/api/v1/query/wait", params={"jobIds": job_id})
    assert await held_gauge(api) == 0


async def test_a_held_read_that_fails_part_way_gives_its_room_back(
    api: httpx.AsyncClient, connection_id: str
) -> None:
    sql = (
        "select g as n, repeat('x', 1000) as pad, 1 / (3000 - g) as boom"
        " from generate_series(1, 5000) g, pg_sleep(0.2)"
    )
    job_id = await left_running(api, connection_id, sql, resultType="json")
    ended: list[Any] = []
    for _ in range(100):
        log = (await api.get("/api/v1/query/log")).json()
        ended = [e for e in log["records"] if e["status"] == "ERROR"]
        if ended:
            break
        await asyncio.sleep(0.05)

    assert ended, "the job failed"
    assert await held_gauge(api) == 0
    waited = await api.get("/api/v1/query/wait", params={"jobIds": job_id})
    assert lines_of(waited)[0]["status"] == "ERROR"
    assert await pool_in_use(api, connection_id) == 0


async def test_query_wait_in_plain_json_gives_each_finished_job_and_the_rest(
    api: httpx.AsyncClient, connection_id: str, services: Services
) -> None:
    services.settings = services.settings.with_overrides(query_wait_seconds=1.0)
    ids = []
    sleeping = (f"{series(3)}, pg_sleep(0.2)", f"{series(2500)}, pg_sleep(0.2)")
    for sql in (*sleeping, "select pg_sleep(30)"):
        ids.append(await left_running(api, connection_id, sql))
    await asyncio.sleep(1.0)

    response = await api.get(
        "/api/v1/query/wait",
        params={"jobIds": ",".join(ids)},
        headers={"Accept": "application/json"},
        timeout=60,
    )
    body = response.json()

    assert response.headers["content-type"].startswith("application/json")
    assert [line["job_id"] for line in body["results"]] == ids[:2]
    assert [arrow_rows(line) for line in body["results"]] == [
        expected(3),
        expected(2500),
    ]
    assert body["remaining_job_ids"] == [ids[2]]
    assert body["timed_out"] == "true"
    again = await api.get(
        "/api/v1/query/wait",
        params={"jobIds": ids[0]},
        headers={"Accept": "application/json"},
    )
    assert again.status_code == 404


async def test_a_job_asked_for_twice_in_one_wait_is_sent_once(
    api: httpx.AsyncClient, connection_id: str
) -> None:
    job_id = await left_running(api, connection_id, f"{series(3)}, pg_sleep(0.2)")

    waited = await api.get(
        "/api/v1/query/wait", params={"jobIds": f"{job_id},{job_id.upper()}"}
    )

    *jobs, foot = lines_of(waited)
    assert [job["job_id"] for job in jobs] == [job_id]
    assert foot == {"remaining_job_ids": [], "timed_out": "false"}


async def test_waits_at_once_for_one_job_hand_it_out_once(
    api: httpx.AsyncClient, connection_id: str
) -> None:
    job_id = await left_running(api, connection_id, f"{series(3)}, pg_sleep(0.3)")

    answers = await asyncio.gather(
        *(api.get("/api/v1/query/wait", params={"jobIds": job_id}) for _ in range(3))
    )

    sent = [a for a in answers if a.status_code == 200 and lines_of(a)[:-1]]
    assert len(sent) == 1
    assert arrow_rows(lines_of(sent[0])[0]) == expected(3)
    assert all(
        a.status_code == 404 or lines_of(a) == [lines_of(a)[-1]]
        for a in answers
        if a is not sent[0]
    )


async def test_a_result_being_read_holds_only_what_it_has_read(
    api: httpx.AsyncClient, connection_id: str, services: Services
) -> None:
    """A long result read slowly for query/wait takes its room as its rows
    come: a small result finishing meanwhile still finds room."""
    services.settings = services.settings.with_overrides(
        held_result_max_bytes=10_000_000, held_results_total_bytes=10_000_000
    )
    slow = (
        "select g as n, repeat('x', 100) as pad from generate_series(1, 20000) g,"
        " lateral (select pg_sleep(case when g % 1000 = 0 then 0.2 else 0 end)) s"
    )
    slow_id = await left_running(api, connection_id, slow, resultType="json")

    small = await held_then_collected(
        api, connection_id, "select 42 as answer from pg_sleep(0.8)"
    )
    waited = await api.get("/api/v1/query/wait", params={"jobIds": slow_id}, timeout=30)

    assert small["status"] == "COMPLETE", small
    assert arrow_rows(small) == [{"answer": 42}]
    [long] = lines_of(waited)[:-1]
    assert long["status"] == "COMPLETE" and long["summary"]["row_count"] == 20000


async def test_a_result_with_no_room_left_to_be_held_is_a_503(
    api: httpx.AsyncClient, connection_id: str, services: Services
) -> None:
    services.settings = services.settings.with_overrides(held_results_total_bytes=0)
    sql = "select g as n from generate_series(1, 5000) g, pg_sleep(0.3)"

    job = await held_then_collected(api, connection_id, sql)

    assert job["status"] == "ERROR"
    assert job["error"] == {
        "detail": "Too many results are held for query/wait right now; "
        "collect finished ones or try again later",
        "status": 503,
    }
    assert await pool_in_use(api, connection_id) == 0


async def test_copy_is_refused_saying_what_to_do_instead(
    api: httpx.AsyncClient, connection_id: str
) -> None:
    response = await run(api, connection_id, "copy (select 1) to stdout")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "COPY does not run through query/run: run its query instead"
        " (resultType csv, or Accept: text/csv, gives the rows as CSV)",
        "status": 400,
    }
    assert await pool_in_use(api, connection_id) == 0


@pytest.fixture
def mariadb_account(
    mysql_admin_params: Any, make_mysql_database: Callable[[], str]
) -> Iterator[tuple[str, str, str]]:
    """A database and an account with a password on it: (database, user, pw)."""
    params = mysql_admin_params
    database, user = make_mysql_database(), f"psm_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    admin = pymysql.connect(
        host=params.host, port=params.port, user=params.user, password=params.password
    )
    with admin.cursor() as cursor:
        cursor.execute(f"create user '{user}'@'%' identified by '{password}'")
        cursor.execute(f"grant all on `{database}`.* to '{user}'@'%'")
    yield database, user, password
    with admin.cursor() as cursor:
        cursor.execute(f"drop user if exists '{user}'@'%'")
    admin.close()


@pytest.fixture
async def mariadb_connection_id(
    api: httpx.AsyncClient,
    services: Services,
    mysql_admin_params: Any,
    mariadb_account: tuple[str, str, str],
) -> str:
    services.settings = services.settings.with_overrides(
        stream_threshold_rows=THRESHOLD
    )
    database, user, password = mariadb_account
    body = {
        "dialect": "mariadb",
        "name": "streamed maria",
        "host": mysql_admin_params.host,
        "port": mysql_admin_params.port,
        "database": database,
        "username": user,
        "passwordUnencrypted": password,
    }
    response = await api.post("/api/v1/connections", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["data"])


@pytest.mark.parametrize(("limit", "kept"), [(None, 2500), (1500, 1500)])
async def test_mariadb_results_stream_and_cut_at_the_limit(
    api: httpx.AsyncClient, mariadb_connection_id: str, limit: int | None, kept: int
) -> None:
    sql = "select seq as n, concat('row ', seq) as label from seq_1_to_2500"
    response = await run(api, mariadb_connection_id, sql, limit=limit)
    assert response.status_code == 200, response.text
    job = lines_of(response)[1]
    assert job["status"] == "COMPLETE"
    assert job["summary"]["row_count"] == kept
    assert job["summary"]["truncated"] is (limit is not None)
    assert arrow_rows(job) == expected(kept)
    # The session cut short is killed, drained and pooled again.
    again = await run(api, mariadb_connection_id, "select 7 as n", resultType="json")
    assert lines_of(again)[1]["result"] == [{"n": 7}]
