"""Connection passwords are write-only: after the walkthrough, error cases,
reads, connection tests and the query log, none of them appears in a
response body, a response header or the server's log."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
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


def run_errors(
    client: httpx.Client,
    exchange: Exchange,
    pg: Walkthrough,
    maria: Walkthrough,
    pg_unreachable: str,
    maria_unreachable: str,
    maria_wrong: str,
    pg_slow: str,
    maria_slow: str,
) -> None:
    named = exchange.named
    missing_table = "select * from no_such_table_e2e"
    named["postgres bad sql"] = run_sql(client, pg.base_id, missing_table)
    named["mariadb bad sql"] = run_sql(client, maria.base_id, missing_table)
    named["bad sql, plain json"] = client.post(
        "/api/v1/query/run",
        json={"query": {"connectionId": pg.base_id, "sql": missing_table}},
        headers={"Accept": "application/json"},
    )
    named["postgres unreachable port"] = run_sql(client, pg_unreachable, "select 1")
    named["mariadb unreachable port"] = run_sql(client, maria_unreachable, "select 1")
    named["mariadb wrong password"] = run_sql(client, maria_wrong, "select 1")
    named["postgres timeout"] = run_sql(client, pg_slow, "select pg_sleep(5)")
    named["mariadb timeout"] = run_sql(client, maria_slow, "select sleep(5)")


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
) -> Iterator[Exchange]:
    """The walkthrough on PostgreSQL and MariaDB with PASSWORD, queries as
    users, the error cases, every read, a password rotation and a delete,
    all through one recording client."""
    exchange = Exchange()
    hooks = {"response": [exchange.keep]}
    with pointsman_server.client(event_hooks=hooks) as client:
        pg = run_walkthrough(
            client,
            "postgres",
            "Postgres secret",
            postgres_databases.create(PASSWORD),
            postgres_databases.create(PASSWORD),
        )
        maria_user = mariadb_databases.create_user(PASSWORD)
        maria = run_walkthrough(
            client,
            "mariadb",
            "MariaDB secret",
            mariadb_databases.create(maria_user, PASSWORD),
            mariadb_databases.create(maria_user, PASSWORD),
        )
        for value in ("prod", "dev"):
            user_id = create_user(client, f"{unique(value)}@example.com", value)
            for walkthrough in (pg, maria):
                run_sql(client, walkthrough.base_id, ORDERS_SQL, user_id)
                client.get(
                    f"/api/v1/connections/{walkthrough.base_id}/route",
                    params={"userId": user_id},
                )

        special_user = mariadb_databases.create_user(URL_SPECIAL_PASSWORD)
        exchange.special = mariadb_databases.create(special_user, URL_SPECIAL_PASSWORD)
        special = create_connection(
            client,
            connection_body("mariadb", "MariaDB special password", exchange.special),
        )
        exchange.named["special password query"] = run_sql(client, special, ORDERS_SQL)
        exchange.named["special password test"] = client.post(
            f"/api/v1/connections/{special}/test"
        )

        closed_port = free_port()
        pg_unreachable = create_connection(
            client,
            connection_body(
                "postgres", "Postgres unreachable", pg.dev, port=closed_port
            ),
        )
        maria_unreachable = create_connection(
            client,
            connection_body(
                "mariadb", "MariaDB unreachable", maria.dev, port=closed_port
            ),
        )
        maria_wrong = create_connection(
            client,
            connection_body(
                "mariadb",
                "MariaDB wrong password",
                maria.dev,
                passwordUnencrypted=WRONG_PASSWORD,
            ),
        )
        pg_slow = create_connection(
            client,
            connection_body("postgres", "Postgres slow", pg.dev, queryTimeoutSeconds=1),
        )
        maria_slow = create_connection(
            client,
            connection_body(
                "mariadb", "MariaDB slow", maria.dev, queryTimeoutSeconds=1
            ),
        )
        run_errors(
            client,
            exchange,
            pg,
            maria,
            pg_unreachable,
            maria_unreachable,
            maria_wrong,
            pg_slow,
            maria_slow,
        )

        client.patch(
            f"/api/v1/connections/{pg.prod_id}", json={"passwordUnencrypted": PASSWORD}
        )
        client.delete(f"/api/v1/connections/{pg_unreachable}")
        read_everything(
            client,
            [
                pg.base_id,
                pg.prod_id,
                maria.base_id,
                maria.prod_id,
                special,
                maria_unreachable,
                maria_wrong,
                pg_slow,
                maria_slow,
            ],
        )
    yield exchange


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
