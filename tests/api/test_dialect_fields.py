"""Optional-extra dialects over HTTP: each dialect's required fields on
create, the 400 naming the extra when a query runs without its driver, and
Redshift served from the local PostgreSQL."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from helpers import assert_error

pytestmark = pytest.mark.anyio

CONNECTIONS = "/api/v1/connections"
SERVER = {
    "host": "db.example.com",
    "port": 443,
    "database": "analytics",
    "username": "reader",
    "passwordUnencrypted": "server-password",
}
SERVICE_ACCOUNT = json.dumps(
    {"type": "service_account", "project_id": "acme", "private_key": "pk"}
)
# A complete create body for each dialect; the required fields come first.
BODIES: dict[str, dict[str, Any]] = {
    "snowflake": {
        "host": "acme-xy12345",
        "warehouse": "COMPUTE_WH",
        "username": "svc",
        "passwordUnencrypted": "snowflake-password",
    },
    "bigquery": {
        "passwordUnencrypted": SERVICE_ACCOUNT,
        "region": "us",
        "database": "acme",
    },
    "databricks": {
        "host": "dbc-1234.cloud.databricks.com",
        "warehouse": "/sql/1.0/warehouses/abc",
        "passwordUnencrypted": "dapi-token-1234",
    },
    "clickhouse": dict(SERVER),
    "mssql": {**SERVER, "defaultSchema": "dbo"},
    "sqlserver": {**SERVER, "defaultSchema": "dbo"},
    "trino": dict(SERVER),
    "athena": {"region": "us-east-1", "database": "AwsDataCatalog"},
    "redshift": dict(SERVER),
}
REQUIRED = {
    "snowflake": ["host", "warehouse", "username"],
    "bigquery": ["passwordUnencrypted", "region", "database"],
    "databricks": ["host", "warehouse", "passwordUnencrypted"],
    "clickhouse": list(SERVER),
    "mssql": [*SERVER, "defaultSchema"],
    "sqlserver": [*SERVER, "defaultSchema"],
    "trino": list(SERVER),
    "athena": ["region", "database"],
    "redshift": list(SERVER),
}
EXTRA_OF = {
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "databricks": "databricks",
    "clickhouse": "clickhouse",
    "mssql": "mssql",
    "sqlserver": "mssql",
    "trino": "trino",
    "athena": "athena",
}
DRIVER_PACKAGES = frozenset(
    {
        "snowflake",
        "sqlalchemy_bigquery",
        "google",
        "databricks",
        "clickhouse_connect",
        "pymssql",
        "trino",
        "pyathena",
        "boto3",
    }
)


def body_for(dialect: str, **changes: Any) -> dict[str, Any]:
    body = {"dialect": dialect, "name": f"{dialect} warehouse", **BODIES[dialect]}
    body.update(changes)
    return body


async def create(api: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await api.post(CONNECTIONS, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["data"])


@pytest.fixture
def drivers_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every optional driver looks uninstalled, whatever this venv holds."""
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        if name.split(".")[0] in DRIVER_PACKAGES:
            return None
        return real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize(
    ("dialect", "field"),
    [(dialect, field) for dialect, fields in REQUIRED.items() for field in fields],
)
async def test_a_missing_required_field_is_named(
    api: httpx.AsyncClient, dialect: str, field: str
) -> None:
    body = body_for(dialect)
    del body[field]

    response = await api.post(CONNECTIONS, json=body)

    assert_error(response, 400, f"Bad Request: {field}: Required")


@pytest.mark.parametrize("dialect", sorted(BODIES))
async def test_a_complete_body_creates_the_connection(
    api: httpx.AsyncClient, dialect: str
) -> None:
    connection_id = await create(api, body_for(dialect))

    got = await api.get(f"{CONNECTIONS}/{connection_id}")
    assert got.json()["connection"]["dialect"] == dialect


async def test_a_snowflake_private_key_is_accepted_instead_of_a_password(
    api: httpx.AsyncClient,
) -> None:
    body = body_for("snowflake", privateKey="MIIEvQIBADANBgkqhkiG9w0BAQEFAAS")
    del body["passwordUnencrypted"]

    await create(api, body)


@pytest.mark.parametrize(("dialect", "extra"), sorted(EXTRA_OF.items()))
async def test_running_a_query_without_the_extra_is_400_naming_it(
    api: httpx.AsyncClient, drivers_missing: None, dialect: str, extra: str
) -> None:
    connection_id = await create(api, body_for(dialect))

    response = await api.post(
        "/api/v1/query/run",
        json={"query": {"connectionId": connection_id, "sql": "select 1"}},
    )

    assert_error(
        response,
        400,
        f"Dialect {dialect} needs the optional extra: pip install 'pointsman[{extra}]'",
    )


async def test_testing_a_connection_without_the_extra_names_it(
    api: httpx.AsyncClient, drivers_missing: None
) -> None:
    connection_id = await create(api, body_for("trino"))

    response = await api.post(f"{CONNECTIONS}/{connection_id}/test")

    assert response.status_code == 200, response.text
    assert response.json()["ok"] is False
    assert response.json()["error"] == (
        "Dialect trino needs the optional extra: pip install 'pointsman[trino]'"
    )


async def test_a_redshift_connection_reads_the_local_postgresql(
    api: httpx.AsyncClient,
    postgres_admin_params: Any,
    make_postgres_database: Callable[[], str],
) -> None:
    params = postgres_admin_params
    body = body_for(
        "redshift",
        host=params.host,
        port=params.port,
        database=make_postgres_database(),
        username=params.user,
        passwordUnencrypted=params.password,
    )
    connection_id = await create(api, body)

    response = await api.post(
        "/api/v1/query/run",
        json={
            "query": {"connectionId": connection_id, "sql": "select 41 + 1 as answer"},
            "resultType": "json",
        },
    )

    assert response.status_code == 200, response.text
    job = [json.loads(line) for line in response.text.splitlines() if line][1]
    assert job["status"] == "COMPLETE"
    assert job["result"] == [{"answer": 42}]
