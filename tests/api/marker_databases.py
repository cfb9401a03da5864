"""SQLite databases that each hold one row naming themselves, so that a test
can tell which database a query read; a base with two environments routed on
a user attribute; groups written straight to the store."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from helpers import create_attribute

from pointsman.services.container import Services
from pointsman.store import models

SQL = "select name from marker"


def make_database(path: Path, name: str) -> str:
    with sqlite3.connect(path) as db:
        db.execute("create table marker (name text)")
        db.execute("insert into marker values (?)", (name,))
    return str(path)


async def connection(api: httpx.AsyncClient, tmp_path: Path, name: str) -> str:
    body = {
        "dialect": "sqlite",
        "name": name,
        "database": make_database(tmp_path / f"{name}.sqlite", name),
    }
    response = await api.post("/api/v1/connections", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["data"])


@dataclass(frozen=True)
class Environments:
    """Base ``dev`` (default value "dev") with environments ``staging`` and
    ``prod``, claimed by the values of the attribute ``environment``."""

    attribute_id: str
    dev: str
    staging: str
    prod: str
    staging_link: str
    prod_link: str


async def base_with_environments(
    api: httpx.AsyncClient, tmp_path: Path
) -> Environments:
    attribute = await create_attribute(api, "environment")
    dev = await connection(api, tmp_path, "dev")
    staging = await connection(api, tmp_path, "staging")
    prod = await connection(api, tmp_path, "prod")
    linked = await api.post(
        "/api/v1/connection-environments",
        json={"baseConnectionId": dev, "environmentConnectionIds": [staging, prod]},
    )
    assert linked.status_code == 201, linked.text
    await api.patch(
        f"/api/v1/connections/{dev}",
        json={
            "userAttributeNameForConnectionEnvironments": "environment",
            "userAttributeValuesForDefaultEnvironment": "dev",
        },
    )
    for name, target in (("staging", staging), ("prod", prod)):
        response = await api.put(
            f"/api/v1/connection-environments/{target}",
            json={"userAttributeValues": name},
        )
        assert response.status_code == 200, response.text
    staging_link, prod_link = (item["id"] for item in linked.json()["data"])
    return Environments(attribute["id"], dev, staging, prod, staging_link, prod_link)


async def run(client: httpx.AsyncClient, base: str, **fields: Any) -> httpx.Response:
    """query/run through ``base`` with JSON results."""
    body = {"query": {"connectionId": base, "sql": SQL}, "resultType": "json"}
    return await client.post("/api/v1/query/run", json={**body, **fields})


def job_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    lines = [orjson.loads(line) for line in response.text.splitlines() if line]
    job: dict[str, Any] = lines[1]
    assert job["status"] == "COMPLETE", job
    return job


def marker(response: httpx.Response) -> str:
    """The name of the database the query read."""
    return str(job_of(response)["result"][0]["name"])


def route_of(response: httpx.Response) -> dict[str, Any]:
    route: dict[str, Any] = job_of(response)["route"]
    return route


def add_group(services: Services, name: str, *user_ids: str) -> str:
    """A group with these members, written straight to the store."""
    with services.store.write() as session:
        group = models.Group(display_name=name)
        session.add(group)
        session.flush()
        session.add_all(
            models.GroupMember(group_id=group.id, user_id=user_id)
            for user_id in user_ids
        )
        return group.id


def leave_group(services: Services, group_id: str, user_id: str) -> None:
    with services.store.write() as session:
        member = session.get(models.GroupMember, (group_id, user_id))
        assert member is not None
        session.delete(member)
