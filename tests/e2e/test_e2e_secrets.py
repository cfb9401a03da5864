"""Connection passwords are write-only: after the walkthrough, error cases,
reads, connection tests and the query log, none of them appears in a
response body, a response header or the server's log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from e2e_support import (
    ORDERS_SQL,
    MariaDBDatabases,
    PostgresDatabases,
    ServerProcess,
    Target,
    Walkthrough,
    connection_body,
    create_connection,
    create_user,
    expect,
    free_port,
    run_sql,
    run_walkthrough,
    served_by,
    unique,
)

PASSWORD = f"pw-e2e-{uuid.uuid4().hex[:12]}"
WRONG_PASSWORD = f"pw-e2e-wrong-{uuid.uuid4().hex[:12]}"
URL_SPECIAL_PASSWORD = f"p@ss:w/rd%-{uuid.uuid4().hex[:8]}"
SECRETS = (PASSWORD, WRONG_PASSWORD, URL_SPECIAL_PASSWORD)

# Error cases and the status each must answer with.
ERROR_CASES = {
    "postgres bad sql": 400,
    "mariadb bad sql": 400,
    "bad sql, plain json": 400,
    "postgres unreachable port": 502,
    "mariadb unreachable port": 502,
    "mariadb wrong password": 502,
    "postgres timeout": 408,
    "mariadb timeout": 408,
}


def spellings(secret: str) -> set[str]:
    """The secret as written, and as it would appear inside a URL."""
    return {secret, quote(secret, safe=""), quote_plus(secret)}


@dataclass
class Exchange:
    """Every response the server gave in this module, and some by name."""

    responses: list[httpx.Response] = field(default_factory=list)
    named: dict[str, httpx.Response] = field(default_factory=dict)
    special: Target | None = None

    def keep(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response)


def connect(client: httpx.Client, dialect: str, target: Target, **changes: Any) -> str:
    """A connection to ``target`` under a name of its own."""
    name = f"{dialect} {unique('secret')}"
    return create_connection(client, connection_body(dialect, name, target, **changes))


def walkthroughs(
    client: httpx.Client, postgres: PostgresDatabases, mariadb: MariaDBDatabases
) -> list[Walkthrough]:
    """The walkthrough with PASSWORD, on PostgreSQL and on MariaDB, then the
    same SQL (and the route explanation) for a prod and a dev user."""
    user = mariadb.create_user(PASSWORD)
    done = [
        run_walkthrough(
            client,
            "postgres",
            "PG",
            postgres.create(PASSWORD),
            postgres.create(PASSWORD),
        ),
        run_walkthrough(
            client,
            "mariadb",
            "Maria",
            mariadb.create(user, PASSWORD),
            mariadb.create(user, PASSWORD),
        ),
    ]
    for value in ("prod", "dev"):
        user_id = create_user(client, f"{unique(value)}@example.com", value)
        for walkthrough in done:
            base = walkthrough.base_id
            run_sql(client, base, ORDERS_SQL, user_id)
            client.get(f"/api/v1/connections/{base}/route", params={"userId": user_id})
    return done


def error_cases(
    client: httpx.Client, exchange: Exchange, pg: Target, maria: Target
) -> list[str]:
    """Each of ERROR_CASES, kept by name; the connections made for them."""
    closed = free_port()
    unreachable_pg = connect(client, "postgres", pg, port=closed)
    unreachable_maria = connect(client, "mariadb", maria, port=closed)
    wrong = connect(client, "mariadb", maria, passwordUnencrypted=WRONG_PASSWORD)
    slow_pg = connect(client, "postgres", pg, queryTimeoutSeconds=1)
    slow_maria = connect(client, "mariadb", maria, queryTimeoutSeconds=1)
    sound_pg = connect(client, "postgres", pg)
    sound_maria = connect(client, "mariadb", maria)
    bad_sql = "select * from no_such_table_e2e"

    named = exchange.named
    named["postgres bad sql"] = run_sql(client, sound_pg, bad_sql)
    named["mariadb bad sql"] = run_sql(client, sound_maria, bad_sql)
    named["bad sql, plain json"] = client.post(
        "/api/v1/query/run",
        json={"query": {"connectionId": sound_pg, "sql": bad_sql}},
        headers={"Accept": "application/json"},
    )
    named["postgres unreachable port"] = run_sql(client, unreachable_pg, "select 1")
    named["mariadb unreachable port"] = run_sql(client, unreachable_maria, "select 1")
    named["mariadb wrong password"] = run_sql(client, wrong, "select 1")
    named["postgres timeout"] = run_sql(client, slow_pg, "select pg_sleep(5)")
    named["mariadb timeout"] = run_sql(client, slow_maria, "select sleep(5)")
    return [
        unreachable_pg,
        unreachable_maria,
        wrong,
        slow_pg,
        slow_maria,
        sound_pg,
        sound_maria,
    ]


def special_password(
    client: httpx.Client, exchange: Exchange, mariadb: MariaDBDatabases
) -> str:
    """A query and a connection test as a user whose password is URL-special."""
    user = mariadb.create_user(URL_SPECIAL_PASSWORD)
    exchange.special = mariadb.create(user, URL_SPECIAL_PASSWORD)
    special = connect(client, "mariadb", exchange.special)
    exchange.named["special password query"] = run_sql(client, special, ORDERS_SQL)
    exchange.named["special password test"] = client.post(
        f"/api/v1/connections/{special}/test"
    )
    return special


def read_everything(client: httpx.Client, connection_ids: list[str]) -> None:
    """Every read that shows a connection, a route or a logged query."""
    for connection_id in connection_ids:
        client.get(f"/api/v1/connections/{connection_id}")
        client.post(f"/api/v1/connections/{connection_id}/test")
    client.get("/api/v1/connections")
    client.get("/api/v1/connections", params={"includeDeleted": "true"})
    client.get("/api/v1/connection-environments")
    cursor = None
    while True:
        params = {"pageSize": "100"} | ({"cursor": cursor} if cursor else {})
        page = expect(client.get("/api/v1/query/log", params=params), 200)
        cursor = page["pageInfo"]["nextCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break


@pytest.fixture(scope="module")
def exchange(
    pointsman_server: ServerProcess,
    environment_attribute: str,
    postgres_databases: PostgresDatabases,
    mariadb_databases: MariaDBDatabases,
) -> Exchange:
    """The walkthrough, the error cases, a password rotation, an archive and
    every read, all through one client that keeps every response."""
    exchange = Exchange()
    hooks = {"response": [exchange.keep]}
    with pointsman_server.client(event_hooks=hooks) as client:
        pg, maria = walkthroughs(client, postgres_databases, mariadb_databases)
        special = special_password(client, exchange, mariadb_databases)
        made = error_cases(client, exchange, pg.dev, maria.dev)

        rotate = {"passwordUnencrypted": PASSWORD}
        expect(client.patch(f"/api/v1/connections/{pg.prod_id}", json=rotate), 200)
        expect(client.delete(f"/api/v1/connections/{made[0]}"), 200)
        ids = [pg.base_id, pg.prod_id, maria.base_id, maria.prod_id, special]
        read_everything(client, ids + made[1:])
    return exchange


@pytest.mark.parametrize("case", ERROR_CASES)
def test_an_error_case_answers_its_status_with_the_error_body(
    exchange: Exchange, case: str
) -> None:
    response = exchange.named[case]

    body = expect(response, ERROR_CASES[case])
    assert set(body) == {"detail", "status"}


def test_a_mariadb_password_with_url_special_characters_connects(
    exchange: Exchange,
) -> None:
    response = exchange.named["special password query"]

    assert exchange.special is not None
    assert served_by(response) == {exchange.special.database}


def test_the_connection_test_accepts_a_password_with_url_special_characters(
    exchange: Exchange,
) -> None:
    response = exchange.named["special password test"]

    assert expect(response, 200)["ok"] is True


@pytest.mark.parametrize("secret", SECRETS, ids=["password", "wrong", "url-special"])
def test_no_response_body_contains_a_password(exchange: Exchange, secret: str) -> None:
    leaks = [
        f"{r.request.method} {r.request.url.path} -> {r.status_code}: {r.text}"
        for r in exchange.responses
        if any(form in r.text for form in spellings(secret))
    ]

    assert len(exchange.responses) > 50
    assert leaks == []


@pytest.mark.parametrize("secret", SECRETS, ids=["password", "wrong", "url-special"])
def test_no_response_header_contains_a_password(
    exchange: Exchange, secret: str
) -> None:
    leaks = [
        f"{r.request.method} {r.request.url.path}: {name}: {value}"
        for r in exchange.responses
        for name, value in r.headers.multi_items()
        if any(form in value or form in name for form in spellings(secret))
    ]

    assert leaks == []


@pytest.mark.parametrize("secret", SECRETS, ids=["password", "wrong", "url-special"])
def test_the_server_log_contains_no_password(
    exchange: Exchange, pointsman_server: ServerProcess, secret: str
) -> None:
    log = pointsman_server.log_text()

    assert "POST /api/v1/query/run" in log, "the log capture holds no requests"
    leaks = [
        line
        for line in log.splitlines()
        if any(form in line for form in spellings(secret))
    ]
    assert leaks == []
