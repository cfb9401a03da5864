"""End to end: generated worlds built for real over HTTP, on connections to
databases that each hold a marker row naming themselves; every query, for
every user, base and branch, must read the marker of the database that the
rules of spec §6 choose.

The sample is decoded, with the property tests' decoder, from seeded random
bytes: the same worlds every run. Most use SQLite files; a few put every
connection on a PostgreSQL database of its own.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from routing_over_http import (
    USER_ATTRIBUTES,
    Built,
    Databases,
    PostgresDatabases,
    SqliteDatabases,
    as_built,
    build,
    run_marker_query,
    succeeded,
)
from routing_rules import decide
from routing_worlds import WORLD_BYTES, World, decode_world, describe

from pointsman.services.container import Services

pytestmark = pytest.mark.anyio

SQLITE_SEEDS = range(24)
POSTGRES_SEEDS = range(1000, 1004)


def sample_world(seed: int) -> World:
    return decode_world(random.Random(f"routing-e2e-{seed}").randbytes(WORLD_BYTES))


async def misrouted(api: httpx.AsyncClient, world: World, built: Built) -> list[str]:
    """Every query of the world that read another database than the rules
    choose, or reported another route, in words."""
    served_world = as_built(world, built)
    wrong = []
    for user, base, branch in world.requests():
        branch_id = built[branch] if branch is not None else None
        decision = decide(served_world, built[user], built[base], branch_id)
        served = await run_marker_query(api, built[user], built[base], branch_id)

        # The marker read, the header, then the route: connection, link, source.
        expected = (
            built.markers[decision.connection_id],
            decision.connection_id,
            decision.connection_id,
            decision.link_id,
            decision.source,
        )
        got = (
            served.marker,
            served.header,
            served.route["connectionId"],
            served.route["connectionEnvironmentId"],
            served.route["source"],
        )
        if got != expected:
            wrong.append(
                f"{user} on {base}, branch {branch}: read {served.marker} "
                f"({served.route['source']}: {served.route['reason']}), expected "
                f"{expected[0]} ({decision.source})"
            )
    return wrong


async def check_sample(
    api: httpx.AsyncClient, services: Services, seed: int, databases: Databases
) -> None:
    """Seeds vary the build too: links created one request each or all at
    once, values sent as they are or in another spelling of the same value."""
    world = sample_world(seed)
    built = await build(
        api,
        services,
        world,
        databases,
        one_link_per_request=seed % 2 == 1,
        spelled=seed % 4 >= 2,
    )

    wrong = await misrouted(api, world, built)

    assert not wrong, "\n".join([describe(world), "misrouted:", *wrong])


@pytest.mark.parametrize("seed", SQLITE_SEEDS)
async def test_every_query_reads_the_database_the_rules_choose(
    api: httpx.AsyncClient, services: Services, tmp_path: Path, seed: int
) -> None:
    await check_sample(api, services, seed, SqliteDatabases(tmp_path))


@pytest.mark.parametrize("seed", POSTGRES_SEEDS)
async def test_every_query_reads_the_postgresql_database_the_rules_choose(
    api: httpx.AsyncClient,
    services: Services,
    postgres_admin_params: Any,
    make_postgres_database: Callable[[], str],
    seed: int,
) -> None:
    databases = PostgresDatabases(postgres_admin_params, make_postgres_database)
    await check_sample(api, services, seed, databases)


def test_the_sample_reaches_every_source_and_every_skip() -> None:
    """Otherwise a sample could pass without testing a rule end to end."""
    reached: Counter[str] = Counter()
    for seed in [*SQLITE_SEEDS, *POSTGRES_SEEDS]:
        world = sample_world(seed)
        for user, base, branch in world.requests():
            decision = decide(world, user, base, branch)
            reached[decision.source] += 1
            reached["branch ignored"] += decision.branch_ignored
            reached["selection ignored"] += decision.selection_ignored

    wanted = {"branch", "user_selection", "user_attribute", "base"}
    wanted |= {"branch ignored", "selection ignored"}
    assert all(reached[name] >= 10 for name in wanted), dict(reached)


# -- a discrepancy found while building worlds in another order -------------------


async def _connection(api: httpx.AsyncClient, databases: Databases, name: str) -> str:
    body, _ = databases.connection(name)
    created = await succeeded(api.post("/api/v1/connections", json=body))
    return str(created["data"])


async def test_a_number_set_before_the_base_routes_on_a_number_attribute_matches(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    databases = SqliteDatabases(tmp_path)
    base = await _connection(api, databases, "base")
    environment = await _connection(api, databases, "environment")
    linked = await succeeded(
        api.post(
            "/api/v1/connection-environments",
            json={"baseConnectionId": base, "environmentConnectionIds": [environment]},
        )
    )
    link = linked["data"][0]["id"]
    values = {"userAttributeValues": ["01"]}
    await succeeded(api.put(f"/api/v1/connection-environments/{link}", json=values))
    await succeeded(
        api.post("/api/v1/user-attributes", json={"name": "tier", "type": "Number"})
    )
    routing = {"environmentUserAttribute": {"attributeName": "tier"}}
    await succeeded(api.patch(f"/api/v1/connections/{base}", json=routing))
    user = await succeeded(
        api.post(
            "/api/scim/v2/Users",
            json={
                "userName": "user@example.com",
                "displayName": "user",
                USER_ATTRIBUTES: {"tier": "1"},
            },
        )
    )

    served = await run_marker_query(api, user["id"], base, None)

    assert served.marker == "environment.sqlite", served.route
