"""Specs for each dialect against the real local servers, and a registry."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

import duckdb
import pytest

from pointsman.engines import ConnectionSpec, EngineRegistry

QUERY_TIMEOUT_SECONDS = 10
CONNECT_TIMEOUT_SECONDS = 3


class ServerParams(Protocol):
    """What the root conftest's ``*_admin_params`` fixtures give."""

    host: str
    port: int
    user: str
    password: str


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def registry() -> AsyncIterator[EngineRegistry]:
    registry = EngineRegistry()
    yield registry
    await registry.close_all()


def server_spec(dialect: str, params: ServerParams, database: str) -> ConnectionSpec:
    secrets = {"password": params.password} if params.password else {}
    return ConnectionSpec(
        id=f"conn-{uuid.uuid4().hex[:8]}",
        name=f"{dialect} test",
        dialect=dialect,
        host=params.host,
        port=params.port,
        database=database,
        username=params.user,
        query_timeout_seconds=QUERY_TIMEOUT_SECONDS,
        connect_timeout_seconds=CONNECT_TIMEOUT_SECONDS,
        secrets=secrets,
    )


@pytest.fixture
def postgres_spec(
    postgres_admin_params: ServerParams, make_postgres_database: Callable[[], str]
) -> ConnectionSpec:
    """A connection to a fresh, empty PostgreSQL database."""
    return server_spec("postgres", postgres_admin_params, make_postgres_database())


@pytest.fixture
def mysql_spec(
    mysql_admin_params: ServerParams, make_mysql_database: Callable[[], str]
) -> ConnectionSpec:
    """A connection to a fresh, empty MariaDB/MySQL database."""
    return server_spec("mariadb", mysql_admin_params, make_mysql_database())


def file_spec(dialect: str, path: Path) -> ConnectionSpec:
    return ConnectionSpec(
        id=f"conn-{uuid.uuid4().hex[:8]}",
        name=f"{dialect} test",
        dialect=dialect,
        database=str(path),
        query_timeout_seconds=QUERY_TIMEOUT_SECONDS,
        connect_timeout_seconds=CONNECT_TIMEOUT_SECONDS,
    )


@pytest.fixture
def sqlite_spec(tmp_path: Path) -> ConnectionSpec:
    """A SQLite file holding ``items(id, name, price, data)`` with 3 rows."""
    path = tmp_path / "items.sqlite"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "create table items (id integer, name text, price real, data blob)"
        )
        conn.executemany(
            "insert into items values (?, ?, ?, ?)",
            [
                (1, "apple", 0.5, b"\x00"),
                (2, "pear", 0.75, None),
                (3, "fig", 2.0, b"x"),
            ],
        )
    conn.close()
    return file_spec("sqlite", path)


@pytest.fixture
def duckdb_spec(tmp_path: Path) -> ConnectionSpec:
    """A DuckDB file holding ``items(id, name, price)`` with 3 rows."""
    path = tmp_path / "items.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("create table items (id integer, name varchar, price decimal(6,2))")
    conn.execute(
        "insert into items values (1, 'apple', 0.5), (2, 'pear', 0.75), (3, 'fig', 2)"
    )
    conn.close()
    return file_spec("duckdb", path)
