"""A result of a million rows streams through a real server without the
server holding it: its resident memory stays bounded while every row
arrives, as raw CSV and as the NDJSON job line."""

from __future__ import annotations

import base64
import csv
import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pyarrow.ipc
import pytest
from e2e_support import (
    ServerProcess,
    connection_body,
    create_connection,
    init_store,
    new_secret_key,
    postgres_connect,
    running,
    spawn_server,
    store_env,
    unique,
)

pytestmark = pytest.mark.postgres

ROWS = 1_000_000
# Rows of (integer, 40-character text): held whole in Python they would take
# about 150 MB; streamed, the server needs a few batches at a time.
SQL = (
    "select g as n, repeat(chr(97 + g % 26), 40) as word "
    f"from generate_series(1, {ROWS}) g"
)
MAX_GROWTH_MB = 60


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


@contextmanager
def peak_memory(pid: int) -> Iterator[list[float]]:
    """Samples the process's resident memory every 20 ms; the list holds
    [baseline, peak] when the block ends."""
    figures = [resident_mb(pid), 0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            figures[1] = max(figures[1], resident_mb(pid))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield figures
    finally:
        stop.set()
        sampler.join()
        figures[1] = max(figures[1], resident_mb(pid))


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own, so that no other test's work shows in its memory."""
    data_dir = tmp_path_factory.mktemp("streaming")
    env = store_env(data_dir, f"sqlite:///{data_dir / 'store.db'}", new_secret_key())
    server = spawn_server(env, init_store(env), data_dir / "server.log")
    with running(server):
        yield server


@pytest.fixture(scope="module")
def big_connection(own_server: ServerProcess, postgres_databases: object) -> str:
    target = postgres_databases.create(orders=False)  # type: ignore[attr-defined]
    with own_server.client() as client:
        body = connection_body("postgres", unique("stream"), target)
        connection_id = create_connection(client, body)
        # Warm the pool and the code paths, so the baseline is the steady state.
        warm = {
            "query": {
                "connectionId": connection_id,
                "sql": SQL.replace(str(ROWS), "20000"),
            }
        }
        response = client.post(
            "/api/v1/query/run", json=warm, headers={"Accept": "text/csv"}
        )
        assert response.status_code == 200, response.text
    return connection_id


def test_a_million_rows_stream_as_csv_with_bounded_server_memory(
    own_server: ServerProcess, big_connection: str
) -> None:
    body = {"query": {"connectionId": big_connection, "sql": SQL}}
    rows, sample = 0, None
    headers = {"Accept": "text/csv"}
    with (
        own_server.client() as client,
        peak_memory(own_server.process.pid) as mb,
        client.stream(
            "POST", "/api/v1/query/run", json=body, headers=headers
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert response.headers["x-pointsman-connection-id"] == big_connection
        reader = csv.reader(response.iter_lines())
        assert next(reader) == ["n", "word"]
        for record in reader:
            rows += 1
            if rows == 500_000:
                sample = record
    assert rows == ROWS
    assert sample == ["500000", chr(97 + 500_000 % 26) * 40]
    growth = mb[1] - mb[0]
    assert growth < MAX_GROWTH_MB, f"server memory grew {growth:.0f} MB"


def test_a_million_rows_stream_as_the_ndjson_job_line(
    own_server: ServerProcess, big_connection: str
) -> None:
    body = {"query": {"connectionId": big_connection, "sql": SQL}}
    with own_server.client() as client, peak_memory(own_server.process.pid) as mb:
        response = client.post("/api/v1/query/run", json=body)
    assert response.status_code == 200
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    assert list(lines[0]) == ["jobs_submitted"]
    job, foot = lines[1], lines[-1]
    assert foot == {"remaining_job_ids": [], "timed_out": "false"}
    assert job["status"] == "COMPLETE"
    assert job["summary"]["row_count"] == ROWS
    assert job["summary"]["truncated"] is False
    table = pyarrow.ipc.open_stream(base64.b64decode(job["result"])).read_all()
    assert table.num_rows == ROWS
    assert table.column("n")[ROWS - 1].as_py() == ROWS
    growth = mb[1] - mb[0]
    assert growth < MAX_GROWTH_MB, f"server memory grew {growth:.0f} MB"


def test_the_query_log_records_the_streamed_rows(
    own_server: ServerProcess, big_connection: str
) -> None:
    with own_server.client() as client:
        log = client.get(
            "/api/v1/query/log", params={"connectionId": big_connection}
        ).json()
    counts = {record["rowCount"] for record in log["records"]}
    assert ROWS in counts
    assert all(record["status"] == "COMPLETE" for record in log["records"])


def test_csv_fields_survive_streaming(
    own_server: ServerProcess, big_connection: str
) -> None:
    sql = (
        "select 'a,b' as comma, 'say \"hi\"' as quoted, null::text as nothing, "
        "E'two\\nlines' as newline from generate_series(1, 30000)"
    )
    body = {"query": {"connectionId": big_connection, "sql": sql}}
    with own_server.client() as client:
        response = client.post(
            "/api/v1/query/run", json=body, headers={"Accept": "text/csv"}
        )
    records = list(csv.reader(io.StringIO(response.text)))
    assert records[0] == ["comma", "quoted", "nothing", "newline"]
    assert len(records) == 30_001
    assert set(map(tuple, records[1:])) == {("a,b", 'say "hi"', "", "two\nlines")}


def test_a_failure_part_way_cuts_the_raw_csv_short(
    own_server: ServerProcess, big_connection: str
) -> None:
    sql = "select g as n, 1 / (g - 40000) as boom from generate_series(1, 50000) g"
    body = {"query": {"connectionId": big_connection, "sql": sql}}
    received = []
    headers = {"Accept": "text/csv"}
    with (
        own_server.client() as client,
        pytest.raises(httpx.RemoteProtocolError),
        client.stream(
            "POST", "/api/v1/query/run", json=body, headers=headers
        ) as response,
    ):
        assert response.status_code == 200
        received.extend(response.iter_lines())
    # Rows arrived before the failure; the body was cut, not completed.
    assert len(received) > 1000
    with own_server.client() as client:
        pool = client.get(f"/api/v1/connections/{big_connection}/pool").json()
        log = client.get("/api/v1/query/log").json()["records"]
    assert pool["inUse"] == 0
    assert log[0]["status"] == "ERROR"
    assert "division by zero" in log[0]["error"]


def test_a_client_leaving_mid_stream_cancels_the_statement(
    own_server: ServerProcess, big_connection: str, postgres_databases: object
) -> None:
    marker = unique("left_mid_stream")
    sql = f"{SQL.replace(str(ROWS), str(50 * ROWS))} /* {marker} */"
    body = {"query": {"connectionId": big_connection, "sql": sql}}
    headers = {"Accept": "text/csv"}
    with (
        own_server.client() as client,
        client.stream("POST", "/api/v1/query/run", json=body, headers=headers) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(lines) == "n,word"
        next(lines)
    # The client hung up with most of 50 million rows unsent.
    with own_server.client() as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pool = client.get(f"/api/v1/connections/{big_connection}/pool").json()
            if pool["inUse"] == 0:
                break
            time.sleep(0.1)
        assert pool["inUse"] == 0
        log = client.get("/api/v1/query/log").json()["records"]
    assert log[0]["status"] == "CANCELLED"
    assert log[0]["rowCount"] < 50 * ROWS
    with postgres_connect(postgres_databases.params) as conn:  # type: ignore[attr-defined]
        active = conn.execute(
            "select count(*) from pg_stat_activity where state = 'active' "
            "and query like %s and pid <> pg_backend_pid()",
            (f"%{marker}%",),
        ).fetchone()
    assert active == (0,)
