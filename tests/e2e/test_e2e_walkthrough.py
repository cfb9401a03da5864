"""The walkthrough over HTTP against a real server and real databases.

Dev is the base connection, prod its environment; the same SQL, run as users
whose ``environment`` is prod, dev, qa or unset, reads the rows of the
database their value selects. Once per backend: PostgreSQL, and MariaDB
spoken to as ``mariadb`` and as ``mysql`` (with a real password).
"""

from __future__ import annotations

import httpx
import pytest
from e2e_support import (
    ORDERS_SQL,
    Walkthrough,
    check,
    create_user,
    job_line,
    run_sql,
    run_walkthrough,
    served_by,
    unique,
)

LABELS = {"postgres": "Postgres", "mariadb": "MariaDB", "mysql": "MySQL"}
DIALECTS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mysql),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
ENVIRONMENTS = {"prod": "prod", "dev": "dev", "qa": "qa", "unset": None}


@pytest.fixture(scope="module", params=DIALECTS)
def walkthrough(
    request: pytest.FixtureRequest, api: httpx.Client, environment_attribute: str
) -> Walkthrough:
    """The five requests, against two databases made for the dialect."""
    dialect = request.param
    if dialect == "postgres":
        databases = request.getfixturevalue("postgres_databases")
        dev, prod = databases.create(), databases.create()
    else:
        databases = request.getfixturevalue("mariadb_databases")
        password = unique("pw")
        user = databases.create_user(password)
        dev, prod = databases.create(user, password), databases.create(user, password)
    return run_walkthrough(api, dialect, LABELS[dialect], dev, prod)


@pytest.fixture(scope="module")
def users(api: httpx.Client, environment_attribute: str) -> dict[str, str]:
    """User ids by their ``environment`` value ("unset" has none)."""
    return {
        key: create_user(api, f"{unique(key)}@example.com", value)
        for key, value in ENVIRONMENTS.items()
    }


def expected_route(walkthrough: Walkthrough, user: str) -> dict[str, object]:
    if user == "prod":
        return {
            "baseConnectionId": walkthrough.base_id,
            "connectionId": walkthrough.prod_id,
            "connectionEnvironmentId": walkthrough.link_id,
            "source": "user_attribute",
        }
    return {
        "baseConnectionId": walkthrough.base_id,
        "connectionId": walkthrough.base_id,
        "connectionEnvironmentId": None,
        "source": "base",
    }


def test_the_five_walkthrough_requests_succeed(walkthrough: Walkthrough) -> None:
    assert walkthrough.statuses == (201, 201, 201, 200, 200)


@pytest.mark.parametrize("user", ENVIRONMENTS)
def test_a_user_reads_the_rows_of_the_database_their_environment_selects(
    api: httpx.Client, walkthrough: Walkthrough, users: dict[str, str], user: str
) -> None:
    expected = walkthrough.prod if user == "prod" else walkthrough.dev

    response = run_sql(api, walkthrough.base_id, ORDERS_SQL, users[user])

    assert served_by(response) == {expected.database}


@pytest.mark.parametrize("user", ENVIRONMENTS)
def test_the_route_names_the_connection_and_source_that_served_the_user(
    api: httpx.Client, walkthrough: Walkthrough, users: dict[str, str], user: str
) -> None:
    response = run_sql(api, walkthrough.base_id, ORDERS_SQL, users[user])

    check(response, 200)
    route = job_line(response)["route"]
    expected = expected_route(walkthrough, user)
    assert {key: route[key] for key in expected} == expected


@pytest.mark.parametrize("user", ENVIRONMENTS)
def test_the_connection_id_header_matches_the_route(
    api: httpx.Client, walkthrough: Walkthrough, users: dict[str, str], user: str
) -> None:
    response = run_sql(api, walkthrough.base_id, ORDERS_SQL, users[user])

    check(response, 200)
    header = response.headers["X-Pointsman-Connection-Id"]
    assert header == job_line(response)["route"]["connectionId"]
    assert header == expected_route(walkthrough, user)["connectionId"]
