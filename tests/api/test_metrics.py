"""/metrics and the pool endpoint."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
from helpers import assert_error
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.anyio


async def sqlite_connection(api: httpx.AsyncClient, tmp_path: Path) -> str:
    path = tmp_path / "m.sqlite"
    sqlite3.connect(path).close()
    body = {"dialect": "sqlite", "name": "m", "database": str(path)}
    return str((await api.post("/api/v1/connections", json=body)).json()["data"])


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_queries_by_connection_source_and_outcome(
    api: httpx.AsyncClient, anon: httpx.AsyncClient, tmp_path: Path
) -> None:
    connection_id = await sqlite_connection(api, tmp_path)
    query = {"query": {"connectionId": connection_id, "sql": "select 1"}}
    await api.post("/api/v1/query/run", json=query)
    await api.post("/api/v1/query/run", json=query)
    bad = {"query": {"connectionId": connection_id, "sql": "select nope"}}
    await api.post("/api/v1/query/run", json=bad)

    response = await anon.get("/metrics")

    found = samples(response.text)
    labels = (("connection_id", connection_id), ("source", "base"))
    assert (
        found[
            (
                "pointsman_queries_total",
                (*labels[:1], ("outcome", "complete"), labels[1]),
            )
        ]
        == 2
    )
    assert (
        found[
            ("pointsman_queries_total", (*labels[:1], ("outcome", "error"), labels[1]))
        ]
        == 1
    )
    assert found[("pointsman_query_duration_seconds_count", (("source", "base"),))] == 3
    assert found[("pointsman_pools_open", ())] == 1
    assert (
        "pointsman_pool_size_connections",
        (("connection_id", connection_id),),
    ) in found


async def test_pool_endpoint_shows_the_pool(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    connection_id = await sqlite_connection(api, tmp_path)
    before = (await api.get(f"/api/v1/connections/{connection_id}/pool")).json()
    await api.post(
        "/api/v1/query/run",
        json={"query": {"connectionId": connection_id, "sql": "select 1"}},
    )

    after = (await api.get(f"/api/v1/connections/{connection_id}/pool")).json()

    assert before == {"connectionId": connection_id, "open": False}
    assert after["open"] is True
    assert after["inUse"] == 0
    assert after["maxSize"] >= 1


async def test_pool_endpoint_needs_connection_admin(
    api: httpx.AsyncClient, tmp_path: Path, make_member: object
) -> None:
    connection_id = await sqlite_connection(api, tmp_path)
    _, member = make_member("member@example.com")  # type: ignore[operator]

    response = await member.get(f"/api/v1/connections/{connection_id}/pool")

    assert_error(response, 403, "Permission denied")
