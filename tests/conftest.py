"""Shared fixtures: the real local database servers that tests run against.

The servers are named by environment variables:

- ``POINTSMAN_TEST_POSTGRES_URL`` (default
  ``postgresql://postgres@127.0.0.1:5432/postgres``)
- ``POINTSMAN_TEST_MYSQL_URL`` (default ``mysql://root@127.0.0.1:3306/mysql``)

A test that needs an unreachable server is skipped with the reason, unless
``POINTSMAN_REQUIRE_SERVICES=1`` (as in CI), which turns the skip into a
failure. Tests using these fixtures get the ``postgres`` / ``mysql`` marker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql
import pytest
from psycopg import sql

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/mysql"
PROBE_TIMEOUT_SECONDS = 3


@dataclass(frozen=True)
class ServerParams:
    """Where a test server is, parsed from its URL (the password stays here)."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def from_url(cls, url: str, default_port: int) -> ServerParams:
        parts = urlsplit(url)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or default_port,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            database=parts.path.lstrip("/"),
        )

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _services_required() -> bool:
    return os.environ.get("POINTSMAN_REQUIRE_SERVICES") == "1"


def _unreachable(service: str, where: ServerParams, exc: Exception) -> NoReturn:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    message = f"{service} at {where} is not reachable: {reason}"
    if _services_required():
        pytest.fail(f"{message} (POINTSMAN_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


# -- PostgreSQL -----------------------------------------------------------------


def _postgres_connect(
    params: ServerParams, dbname: str | None = None
) -> psycopg.Connection:
    return psycopg.connect(
        host=params.host,
        port=params.port,
        user=params.user,
        password=params.password or None,
        dbname=dbname or params.database,
        connect_timeout=PROBE_TIMEOUT_SECONDS,
        autocommit=True,
    )


def _postgres_version(params: ServerParams) -> str:
    with _postgres_connect(params) as conn:
        row = conn.execute("show server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    return os.environ.get("POINTSMAN_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@pytest.fixture(scope="session")
def postgres_admin_params(postgres_admin_url: str) -> ServerParams:
    """The admin server's parameters; skips (or fails) if it is unreachable."""
    params = ServerParams.from_url(postgres_admin_url, 5432)
    try:
        _postgres_version(params)
    except psycopg.Error as exc:
        _unreachable("PostgreSQL", params, exc)
    return params


@pytest.fixture
def make_postgres_database(
    postgres_admin_params: ServerParams,
) -> Iterator[Callable[[], str]]:
    """Create uniquely named databases; all are dropped at teardown."""
    created: list[str] = []

    def make() -> str:
        name = f"pointsman_test_{uuid.uuid4().hex[:12]}"
        with _postgres_connect(postgres_admin_params) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        created.append(name)
        return name

    yield make

    with _postgres_connect(postgres_admin_params) as conn:
        for name in created:
            drop = sql.SQL("drop database if exists {} with (force)")
            conn.execute(drop.format(sql.Identifier(name)))


# -- MySQL / MariaDB ------------------------------------------------------------


def _mysql_connect(
    params: ServerParams, database: str | None = None
) -> pymysql.Connection:
    return pymysql.connect(
        host=params.host,
        port=params.port,
        user=params.user,
        password=params.password,
        database=database or params.database or None,
        connect_timeout=PROBE_TIMEOUT_SECONDS,
        autocommit=True,
    )


def _mysql_version(params: ServerParams) -> str:
    conn = _mysql_connect(params)
    try:
        with conn.cursor() as cursor:
            cursor.execute("select version()")
            row = cursor.fetchone()
    finally:
        conn.close()
    version = str(row[0]) if row else "?"
    return version if "mariadb" in version.lower() else f"MySQL {version}"


@pytest.fixture(scope="session")
def mysql_admin_url() -> str:
    return os.environ.get("POINTSMAN_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)


@pytest.fixture(scope="session")
def mysql_admin_params(mysql_admin_url: str) -> ServerParams:
    """The admin server's parameters; skips (or fails) if it is unreachable."""
    params = ServerParams.from_url(mysql_admin_url, 3306)
    try:
        _mysql_version(params)
    except pymysql.err.Error as exc:
        _unreachable("MySQL/MariaDB", params, exc)
    return params


@pytest.fixture
def make_mysql_database(
    mysql_admin_params: ServerParams,
) -> Iterator[Callable[[], str]]:
    """Create uniquely named databases; all are dropped at teardown."""
    created: list[str] = []

    def make() -> str:
        name = f"pointsman_test_{uuid.uuid4().hex[:12]}"
        conn = _mysql_connect(mysql_admin_params)
        try:
            with conn.cursor() as cursor:
                cursor.execute(f"create database `{name}`")
        finally:
            conn.close()
        created.append(name)
        return name

    yield make

    conn = _mysql_connect(mysql_admin_params)
    try:
        with conn.cursor() as cursor:
            for name in created:
                cursor.execute(f"drop database if exists `{name}`")
    finally:
        conn.close()


# -- pytest hooks ---------------------------------------------------------------

_MARKER_BY_FIXTURE = {
    "postgres_admin_params": "postgres",
    "make_postgres_database": "postgres",
    "mysql_admin_params": "mysql",
    "make_mysql_database": "mysql",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for marker in {m for f, m in _MARKER_BY_FIXTURE.items() if f in fixtures}:
            item.add_marker(marker)


def pytest_report_header() -> list[str]:
    postgres = ServerParams.from_url(
        os.environ.get("POINTSMAN_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL), 5432
    )
    mysql = ServerParams.from_url(
        os.environ.get("POINTSMAN_TEST_MYSQL_URL", DEFAULT_MYSQL_URL), 3306
    )
    return [
        _header_line("postgres", postgres, _postgres_version),
        _header_line("mysql", mysql, _mysql_version),
    ]


def _header_line(
    label: str, params: ServerParams, version: Callable[[ServerParams], str]
) -> str:
    try:
        return f"{label}: {version(params)} at {params}"
    except (psycopg.Error, pymysql.err.Error) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"{label}: not reachable at {params} ({first_line})"
