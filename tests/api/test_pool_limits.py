"""Pool limits over HTTP: options set on the connection bound its pool, a full
line answers 429 with Retry-After, and the pool endpoint shows the counters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from helpers import assert_error

pytestmark = pytest.mark.anyio

LIMITS = {
    "poolSize": 1,
    "maxOverflow": 1,
    "maxConcurrentQueries": 1,
    "maxQueuedQueries": 0,
    "acquireTimeoutSeconds": 2,
}


async def postgres_connection(
    api: httpx.AsyncClient, params: Any, database: str, **options: Any
) -> str:
    body = {
        "dialect": "postgres",
        "name": "narrow",
        "host": params.host,
        "port": params.port,
        "database": database,
        "username": params.user,
        "passwordUnencrypted": params.password or "unused-by-trust-auth",
        **options,
    }
    response = await api.post("/api/v1/connections", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["data"])


async def run(api: httpx.AsyncClient, connection_id: str, sql: str) -> httpx.Response:
    body = {"query": {"connectionId": connection_id, "sql": sql}, "resultType": "json"}
    return await api.post("/api/v1/query/run", json=body)


async def test_a_full_line_answers_429_with_retry_after_naming_the_connection(
    api: httpx.AsyncClient,
    postgres_admin_params: Any,
    make_postgres_database: Callable[[], str],
) -> None:
    connection_id = await postgres_connection(
        api, postgres_admin_params, make_postgres_database(), **LIMITS
    )
    slow = asyncio.create_task(run(api, connection_id, "select pg_sleep(1)"))
    await asyncio.sleep(0.5)

    response = await run(api, connection_id, "select 1")

    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json() == {
        "detail": "Connection 'narrow' is running 1 queries with 0 more waiting:"
        " try again later",
        "status": 429,
    }
    assert (await slow).status_code == 200


async def test_the_pool_endpoint_shows_the_limits_and_counters(
    api: httpx.AsyncClient,
    postgres_admin_params: Any,
    make_postgres_database: Callable[[], str],
) -> None:
    connection_id = await postgres_connection(
        api, postgres_admin_params, make_postgres_database(), **LIMITS
    )
    await run(api, connection_id, "select 1")

    pool = (await api.get(f"/api/v1/connections/{connection_id}/pool")).json()

    assert pool["open"] is True
    assert {key: pool[key] for key in LIMITS} == LIMITS
    assert (pool["maxSize"], pool["size"], pool["inUse"], pool["idle"]) == (2, 1, 0, 1)
    assert (pool["waiting"], pool["queriesQueued"], pool["queriesRejected"]) == (
        0,
        0,
        0,
    )
    assert (pool["connectionsOpened"], pool["connectionsClosed"]) == (1, 0)


async def test_a_patch_of_pool_settings_reopens_the_pool_with_them(
    api: httpx.AsyncClient,
    postgres_admin_params: Any,
    make_postgres_database: Callable[[], str],
) -> None:
    connection_id = await postgres_connection(
        api, postgres_admin_params, make_postgres_database()
    )
    assert (await run(api, connection_id, "select 1")).status_code == 200

    patched = await api.patch(
        f"/api/v1/connections/{connection_id}",
        json={"poolSize": 2, "maxOverflow": 1, "acquireTimeoutSeconds": 0.5},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["message"] == "Updated connection settings."
    assert (await run(api, connection_id, "select 1")).status_code == 200

    pool = (await api.get(f"/api/v1/connections/{connection_id}/pool")).json()
    assert (pool["poolSize"], pool["maxSize"], pool["acquireTimeoutSeconds"]) == (
        2,
        3,
        0.5,
    )
    record = (await api.get(f"/api/v1/connections/{connection_id}")).json()
    assert record["connection"]["poolSize"] == 2


async def test_a_pool_setting_set_to_null_goes_back_to_its_default(
    api: httpx.AsyncClient,
    postgres_admin_params: Any,
    make_postgres_database: Callable[[], str],
) -> None:
    connection_id = await postgres_connection(
        api, postgres_admin_params, make_postgres_database(), poolSize=1
    )

    patched = await api.patch(
        f"/api/v1/connections/{connection_id}", json={"poolSize": None}
    )
    await run(api, connection_id, "select 1")

    assert patched.status_code == 200, patched.text
    pool = (await api.get(f"/api/v1/connections/{connection_id}/pool")).json()
    assert pool["poolSize"] == 5


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("poolSize", "abc", "Expected number"),
        ("poolSize", "\u00b2", "Expected number"),
        ("queryTimeoutSeconds", "\u00b3", "Expected number"),
        ("port", "\u0663", "Expected number"),
        ("poolSize", 0, "Must be between 1 and 100"),
        ("poolSize", 100_000, "Must be between 1 and 100"),
        ("maxOverflow", -1, "Must be between 0 and 100"),
        ("maxQueuedQueries", 1.5, "Expected number"),
        ("acquireTimeoutSeconds", 0, "Must be between 0.05 and 600.0"),
        ("acquireTimeoutSeconds", "soon", "Expected number"),
        ("acquireTimeoutSeconds", "nan", "Must be between 0.05 and 600.0"),
    ],
)
async def test_a_pool_setting_out_of_bounds_is_refused(
    api: httpx.AsyncClient,
    postgres_admin_params: Any,
    make_postgres_database: Callable[[], str],
    field: str,
    value: Any,
    message: str,
) -> None:
    body = {
        "dialect": "postgres",
        "name": "bounded",
        "host": postgres_admin_params.host,
        "port": postgres_admin_params.port,
        "database": make_postgres_database(),
        "username": postgres_admin_params.user,
        "passwordUnencrypted": "unused-by-trust-auth",
    }
    created = await api.post("/api/v1/connections", json={**body, field: value})
    good = await api.post("/api/v1/connections", json=body)
    patched = await api.patch(
        f"/api/v1/connections/{good.json()['data']}", json={field: value}
    )

    assert_error(created, 400, f"Bad Request: {field}: {message}")
    assert_error(patched, 400, f"Bad Request: {field}: {message}")
