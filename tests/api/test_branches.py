"""Branches (spec §6): create, list, delete, and the route of a query that
names one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import assert_error, set_attributes
from marker_databases import (
    Environments,
    base_with_environments,
    connection,
    marker,
    route_of,
    run,
)

from pointsman.services.container import Services
from pointsman.store import models

pytestmark = pytest.mark.anyio

BRANCHES = "/api/v1/branches"
UNKNOWN = "9b6c1f3e-0000-4000-8000-000000000000"
Member = tuple[str, httpx.AsyncClient]


async def create_branch(
    api: httpx.AsyncClient, base: str, link: str, name: str = "feature"
) -> dict[str, Any]:
    response = await api.post(
        BRANCHES,
        json={"name": name, "baseConnectionId": base, "connectionEnvironmentId": link},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def allow_branches(api: httpx.AsyncClient, base: str, allow: bool) -> None:
    response = await api.patch(
        f"/api/v1/connections/{base}",
        json={"allowBranchConnectionEnvironments": allow},
    )
    assert response.status_code == 200, response.text


def grant_role(services: Services, user_id: str, connection_id: str, role: str) -> None:
    with services.store.write() as session:
        session.add(
            models.RoleGrant(connection_id=connection_id, user_id=user_id, role=role)
        )


@pytest.fixture
async def envs(api: httpx.AsyncClient, tmp_path: Path) -> Environments:
    return await base_with_environments(api, tmp_path)


@pytest.fixture
async def member(
    api: httpx.AsyncClient, envs: Environments, make_member: Any
) -> Member:
    """A member assigned environment = "prod"."""
    user_id, client = make_member("member@example.com")
    await set_attributes(api, user_id, {"environment": "prod"})
    return user_id, client


# -- shapes and errors ------------------------------------------------------------


async def test_create_answers_201_with_the_branch(
    api: httpx.AsyncClient, envs: Environments
) -> None:
    response = await api.post(
        BRANCHES,
        json={
            "name": " feature ",
            "baseConnectionId": envs.dev,
            "connectionEnvironmentId": envs.staging_link,
        },
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "id",
        "name",
        "baseConnectionId",
        "connectionEnvironmentId",
        "createdAt",
    }
    assert body["name"] == "feature"
    assert body["baseConnectionId"] == envs.dev
    assert body["connectionEnvironmentId"] == envs.staging_link
    assert body["createdAt"].endswith("Z")


async def test_create_accepts_the_environment_connection_id(
    api: httpx.AsyncClient, envs: Environments
) -> None:
    branch = await create_branch(api, envs.dev, envs.staging)

    assert branch["connectionEnvironmentId"] == envs.staging_link


@pytest.mark.parametrize(
    ("field", "detail"),
    [
        ("name", "Bad Request: name: Required"),
        ("baseConnectionId", "Bad Request: baseConnectionId: Required"),
        ("connectionEnvironmentId", "Bad Request: connectionEnvironmentId: Required"),
    ],
)
async def test_a_missing_field_is_400(
    api: httpx.AsyncClient, envs: Environments, field: str, detail: str
) -> None:
    body = {
        "name": "feature",
        "baseConnectionId": envs.dev,
        "connectionEnvironmentId": envs.staging_link,
    }
    del body[field]

    response = await api.post(BRANCHES, json=body)

    assert_error(response, 400, detail)


async def test_an_unknown_base_is_404(
    api: httpx.AsyncClient, envs: Environments
) -> None:
    response = await api.post(
        BRANCHES,
        json={
            "name": "feature",
            "baseConnectionId": UNKNOWN,
            "connectionEnvironmentId": envs.staging_link,
        },
    )

    assert_error(response, 404, f"Connection with id {UNKNOWN} does not exist")


async def test_an_unknown_environment_is_404(
    api: httpx.AsyncClient, envs: Environments
) -> None:
    response = await api.post(
        BRANCHES,
        json={
            "name": "feature",
            "baseConnectionId": envs.dev,
            "connectionEnvironmentId": UNKNOWN,
        },
    )

    assert_error(
        response, 404, f"Connection environment with id {UNKNOWN} does not exist"
    )


async def test_an_environment_of_another_base_is_400(
    api: httpx.AsyncClient, envs: Environments, tmp_path: Path
) -> None:
    other = await connection(api, tmp_path, "other")

    response = await api.post(
        BRANCHES,
        json={
            "name": "feature",
            "baseConnectionId": other,
            "connectionEnvironmentId": envs.staging_link,
        },
    )

    assert_error(
        response,
        400,
        "Bad Request: connectionEnvironmentId: Connection environment "
        f"{envs.staging_link} is not an environment of {other}",
    )


async def test_create_needs_connection_admin_on_the_base(
    envs: Environments, member: Member
) -> None:
    response = await member[1].post(
        BRANCHES,
        json={
            "name": "feature",
            "baseConnectionId": envs.dev,
            "connectionEnvironmentId": envs.staging_link,
        },
    )

    assert_error(response, 403, "Permission denied")


async def test_a_connection_admin_of_the_base_may_create(
    envs: Environments, member: Member, services: Services
) -> None:
    grant_role(services, member[0], envs.dev, "CONNECTION_ADMIN")

    branch = await create_branch(member[1], envs.dev, envs.staging_link)

    assert branch["baseConnectionId"] == envs.dev


async def test_the_list_filters_by_base(
    api: httpx.AsyncClient, envs: Environments, tmp_path: Path
) -> None:
    other_base = await connection(api, tmp_path, "other")
    other_env = await connection(api, tmp_path, "other_env")
    linked = await api.post(
        "/api/v1/connection-environments",
        json={"baseConnectionId": other_base, "environmentConnectionIds": other_env},
    )
    mine = await create_branch(api, envs.dev, envs.staging_link)
    await create_branch(api, other_base, linked.json()["data"][0]["id"])

    response = await api.get(BRANCHES, params={"baseConnectionId": envs.dev})

    assert response.json() == {"branches": [mine]}


async def test_a_member_sees_only_branches_of_bases_they_may_query(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    await create_branch(api, envs.dev, envs.staging_link)
    visible = (await member[1].get(BRANCHES)).json()["branches"]

    await api.patch(f"/api/v1/connections/{envs.dev}", json={"baseRole": "VIEWER"})
    hidden = (await member[1].get(BRANCHES)).json()["branches"]

    assert (len(visible), hidden) == (1, [])


async def test_a_bad_base_filter_is_400(api: httpx.AsyncClient) -> None:
    response = await api.get(BRANCHES, params={"baseConnectionId": "nope"})

    assert_error(response, 400, "Bad Request: baseConnectionId: Invalid uuid")


async def test_delete_answers_success_and_the_branch_is_gone(
    api: httpx.AsyncClient, envs: Environments
) -> None:
    branch = await create_branch(api, envs.dev, envs.staging_link)

    response = await api.delete(f"{BRANCHES}/{branch['id']}")

    assert response.json() == {"success": True}
    assert (await api.get(BRANCHES)).json() == {"branches": []}


async def test_deleting_an_unknown_branch_is_404(api: httpx.AsyncClient) -> None:
    response = await api.delete(f"{BRANCHES}/{UNKNOWN}")

    assert_error(response, 404, f"Branch {UNKNOWN} not found")


async def test_delete_needs_connection_admin_on_the_base(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    branch = await create_branch(api, envs.dev, envs.staging_link)

    response = await member[1].delete(f"{BRANCHES}/{branch['id']}")

    assert_error(response, 403, "Permission denied")


async def test_branch_routes_are_marked_as_extensions(
    api: httpx.AsyncClient,
) -> None:
    paths = (await api.get("/api/openapi.json")).json()["paths"]

    assert paths[BRANCHES]["post"]["x-pointsman-extension"] is True
    assert paths[BRANCHES]["get"]["x-pointsman-extension"] is True
    assert paths[f"{BRANCHES}/{{id}}"]["delete"]["x-pointsman-extension"] is True


# -- end to end: the next query -------------------------------------------------


async def test_a_branch_routes_the_next_query(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    branch = await create_branch(api, envs.dev, envs.staging_link)
    await allow_branches(api, envs.dev, True)

    response = await run(member[1], envs.dev, branchId=branch["id"])

    assert marker(response) == "staging"
    assert route_of(response) == {
        "baseConnectionId": envs.dev,
        "connectionId": envs.staging,
        "connectionEnvironmentId": envs.staging_link,
        "source": "branch",
        "reason": "branch feature pins environment staging",
    }


async def test_a_branch_is_ignored_where_the_base_does_not_allow_it(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    branch = await create_branch(api, envs.dev, envs.staging_link)

    response = await run(member[1], envs.dev, branchId=branch["id"])

    assert marker(response) == "prod"
    assert route_of(response)["reason"] == (
        "branch feature ignored: dev does not allow branch environments; "
        'environment = "prod" matched environment prod'
    )


async def test_disallowing_branch_environments_takes_effect_on_the_next_query(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    branch = await create_branch(api, envs.dev, envs.staging_link)
    await allow_branches(api, envs.dev, True)
    allowed = await run(member[1], envs.dev, branchId=branch["id"])

    await allow_branches(api, envs.dev, False)
    disallowed = await run(member[1], envs.dev, branchId=branch["id"])

    assert (marker(allowed), marker(disallowed)) == ("staging", "prod")


async def test_a_branch_outranks_a_selection_and_an_attribute(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    user_id, client = member
    await api.put(
        f"/api/v1/connection-environments/{envs.prod_link}/access",
        json={"userIds": [user_id]},
    )
    await client.put(
        f"/api/v1/connections/{envs.dev}/environment-selection",
        json={"connectionEnvironmentId": envs.prod_link},
    )
    branch = await create_branch(api, envs.dev, envs.staging_link)
    await allow_branches(api, envs.dev, True)

    without = await run(client, envs.dev)
    with_branch = await run(client, envs.dev, branchId=branch["id"])

    assert route_of(without)["source"] == "user_selection"
    assert (marker(without), marker(with_branch)) == ("prod", "staging")


async def test_a_branch_whose_link_was_deleted_is_skipped(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    branch = await create_branch(api, envs.dev, envs.staging_link)
    await allow_branches(api, envs.dev, True)

    await api.delete(f"/api/v1/connection-environments/{envs.staging_link}")
    response = await run(member[1], envs.dev, branchId=branch["id"])

    assert marker(response) == "prod"
    assert route_of(response)["reason"].startswith(
        "branch feature ignored: its environment link was deleted; "
    )


async def test_after_deleting_a_branch_a_query_naming_it_is_404(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    branch = await create_branch(api, envs.dev, envs.staging_link)
    await allow_branches(api, envs.dev, True)

    await api.delete(f"{BRANCHES}/{branch['id']}")
    response = await run(member[1], envs.dev, branchId=branch["id"])

    assert_error(response, 404, f"Branch {branch['id']} not found")


async def test_route_takes_the_branch_id(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    branch = await create_branch(api, envs.dev, envs.staging_link)
    await allow_branches(api, envs.dev, True)

    response = await member[1].get(
        f"/api/v1/connections/{envs.dev}/route", params={"branchId": branch["id"]}
    )

    assert response.json()["source"] == "branch"
    assert response.json()["connectionId"] == envs.staging
