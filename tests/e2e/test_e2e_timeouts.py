"""A statement past its connection's ``queryTimeoutSeconds`` answers 408 at
once and is cancelled on the database server, not just abandoned."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from e2e_support import (
    ORDERS_SQL,
    Target,
    connection_body,
    create_connection,
    expect,
    run_sql,
    served_by,
    unique,
)

QUERY_TIMEOUT_SECONDS = 1
ANSWERED_WITHIN_SECONDS = 5.0
SEEN_WITHIN_SECONDS = 3.0
GONE_WITHIN_SECONDS = 3.0
SLEEP_SQL = {
    "postgres": "select pg_sleep(30) as {marker}",
    "mariadb": "select sleep(30) as {marker}",
}


@dataclass(frozen=True)
class TimedOutRun:
    connection_id: str
    target: Target
    marker: str
    response: httpx.Response
    elapsed_seconds: float
    running_statements: Callable[[str, str], int]

    def still_running(self) -> bool:
        return self.running_statements(self.target.database, self.marker) > 0


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mysql),
    ],
)
def timed_out(request: pytest.FixtureRequest, api: httpx.Client) -> TimedOutRun:
    """A 30 s sleep on a connection whose timeout was PATCHed down to 1 s,
    seen running on the server before its answer came."""
    backend = request.param
    if backend == "postgres":
        databases = request.getfixturevalue("postgres_databases")
        target = databases.create()
    else:
        databases = request.getfixturevalue("mariadb_databases")
        password = unique("pw")
        target = databases.create(databases.create_user(password), password)
    name = f"{backend} timeout {unique('c')}"
    connection_id = create_connection(api, connection_body(backend, name, target))
    patch = {"queryTimeoutSeconds": QUERY_TIMEOUT_SECONDS}
    expect(api.patch(f"/api/v1/connections/{connection_id}", json=patch), 200)
    marker = unique("e2e_timeout")
    text = SLEEP_SQL[backend].format(marker=marker)

    with ThreadPoolExecutor(max_workers=1) as pool:
        started = time.monotonic()
        answer = pool.submit(run_sql, api, connection_id, text)
        seen = wait_until(
            lambda: databases.running_statements(target.database, marker) > 0,
            SEEN_WITHIN_SECONDS,
        )
        response = answer.result()
        elapsed = time.monotonic() - started

    assert seen, "the sleeping statement never showed up on the database server"
    return TimedOutRun(
        connection_id, target, marker, response, elapsed, databases.running_statements
    )


def test_a_statement_past_its_timeout_answers_408_with_the_error_body(
    timed_out: TimedOutRun,
) -> None:
    body = expect(timed_out.response, 408)

    assert set(body) == {"detail", "status"}
    assert body["status"] == 408


def test_a_statement_past_its_timeout_is_answered_within_a_few_seconds(
    timed_out: TimedOutRun,
) -> None:
    assert timed_out.elapsed_seconds < ANSWERED_WITHIN_SECONDS


def test_a_statement_past_its_timeout_is_cancelled_on_the_database_server(
    timed_out: TimedOutRun,
) -> None:
    gone = wait_until(lambda: not timed_out.still_running(), GONE_WITHIN_SECONDS)

    assert gone, f"{timed_out.marker} still runs on {timed_out.target.database}"


def test_the_connection_serves_the_next_query_after_a_timeout(
    api: httpx.Client, timed_out: TimedOutRun
) -> None:
    response = run_sql(api, timed_out.connection_id, ORDERS_SQL)

    assert served_by(response) == {timed_out.target.database}
