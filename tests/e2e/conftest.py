"""A real ``pointsman serve`` process on a fresh store, and the databases
the tests point it at."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from e2e_support import (
    AdminParams,
    MariaDBDatabases,
    PostgresDatabases,
    ServerProcess,
    create_attribute,
    init_store,
    new_secret_key,
    running,
    spawn_server,
    store_env,
)


@pytest.fixture(scope="session")
def store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The shared server's metadata store: SQLite, or a fresh PostgreSQL
    database when POINTSMAN_TEST_STORE=postgres."""
    if os.environ.get("POINTSMAN_TEST_STORE", "sqlite") != "postgres":
        yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
        return
    params: AdminParams = request.getfixturevalue("postgres_admin_params")
    databases = PostgresDatabases(params)
    target = databases.create(orders=False)
    yield databases.url(target.database)
    databases.close()


@pytest.fixture(scope="session")
def pointsman_server(
    tmp_path_factory: pytest.TempPathFactory, store_url: str
) -> Iterator[ServerProcess]:
    """``pointsman init`` then ``pointsman serve`` on a free port, with a fresh
    store and secret key; stdout and stderr go to ``server.log``."""
    data_dir = tmp_path_factory.mktemp("pointsman")
    env = store_env(data_dir, store_url, new_secret_key())
    token = init_store(env)
    server = spawn_server(env, token, data_dir / "server.log")

    with running(server):
        yield server


@pytest.fixture(scope="session")
def environment_attribute(pointsman_server: ServerProcess) -> str:
    """The ``environment`` user attribute the walkthrough's base routes on."""
    with pointsman_server.client() as client:
        return create_attribute(client)


@pytest.fixture(scope="module")
def api(pointsman_server: ServerProcess) -> Iterator[httpx.Client]:
    """A client holding the organization key printed by ``pointsman init``."""
    with pointsman_server.client() as client:
        yield client


@pytest.fixture(scope="module")
def postgres_databases(
    postgres_admin_params: AdminParams,
) -> Iterator[PostgresDatabases]:
    """PostgreSQL databases for one module, dropped after it."""
    databases = PostgresDatabases(postgres_admin_params)
    yield databases
    databases.close()


@pytest.fixture(scope="module")
def mariadb_databases(mysql_admin_params: AdminParams) -> Iterator[MariaDBDatabases]:
    """MariaDB databases and users for one module, dropped after it."""
    databases = MariaDBDatabases(mysql_admin_params)
    yield databases
    databases.close()
