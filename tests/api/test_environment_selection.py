"""User-selected environments (spec §6): access grants, the caller's pick,
and the fallback when a pick stops holding, each seen by the next query."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import assert_error, set_attributes
from marker_databases import (
    Environments,
    add_group,
    base_with_environments,
    connection,
    leave_group,
    marker,
    route_of,
    run,
)

from pointsman.services.container import Services

pytestmark = pytest.mark.anyio

UNKNOWN = "9b6c1f3e-0000-4000-8000-000000000000"
Member = tuple[str, httpx.AsyncClient]


def access(link: str) -> str:
    return f"/api/v1/connection-environments/{link}/access"


def selection(base: str) -> str:
    return f"/api/v1/connections/{base}/environment-selection"


async def grant(api: httpx.AsyncClient, link: str, **ids: list[str]) -> None:
    response = await api.put(access(link), json=ids)
    assert response.status_code == 200, response.text


async def withdraw(api: httpx.AsyncClient, link: str, **ids: list[str]) -> None:
    response = await api.request("DELETE", access(link), json=ids)
    assert response.status_code == 200, response.text


async def pick(
    client: httpx.AsyncClient, base: str, link: str | None
) -> httpx.Response:
    return await client.put(selection(base), json={"connectionEnvironmentId": link})


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


@pytest.fixture
async def picked(api: httpx.AsyncClient, envs: Environments, member: Member) -> Member:
    """The member was granted staging and picked it."""
    await grant(api, envs.staging_link, userIds=[member[0]])
    response = await pick(member[1], envs.dev, envs.staging_link)
    assert response.status_code == 200, response.text
    return member


# -- access: shapes and errors ----------------------------------------------------


async def test_granted_users_and_groups_are_listed(
    api: httpx.AsyncClient, envs: Environments, member: Member, services: Services
) -> None:
    group_id = add_group(services, "analysts")

    response = await api.put(
        access(envs.staging_link), json={"userIds": [member[0]], "groupIds": group_id}
    )

    assert response.json() == {"success": True}
    listed = await api.get(access(envs.staging_link))
    assert listed.json() == {"userIds": [member[0]], "groupIds": [group_id]}


async def test_granting_twice_keeps_one_grant(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    await grant(api, envs.staging_link, userIds=[member[0]])

    await grant(api, envs.staging_link, userIds=[member[0], member[0]])

    listed = await api.get(access(envs.staging_link))
    assert listed.json() == {"userIds": [member[0]], "groupIds": []}


async def test_withdrawing_removes_only_the_named_grants(
    api: httpx.AsyncClient, envs: Environments, member: Member, services: Services
) -> None:
    group_id = add_group(services, "analysts")
    await grant(api, envs.staging_link, userIds=[member[0]], groupIds=[group_id])

    response = await api.request(
        "DELETE", access(envs.staging_link), json={"userIds": [member[0]]}
    )

    assert response.json() == {"success": True}
    listed = await api.get(access(envs.staging_link))
    assert listed.json() == {"userIds": [], "groupIds": [group_id]}


async def test_withdrawing_a_grant_never_given_succeeds(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    response = await api.request(
        "DELETE", access(envs.staging_link), json={"userIds": [member[0]]}
    )

    assert response.json() == {"success": True}


async def test_access_is_found_by_the_environment_connection_id(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    await grant(api, envs.staging, userIds=[member[0]])

    listed = await api.get(access(envs.staging_link))

    assert listed.json()["userIds"] == [member[0]]


async def test_access_of_an_unknown_environment_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get(access(UNKNOWN))

    assert_error(
        response, 404, f"Connection environment with id {UNKNOWN} does not exist"
    )


@pytest.mark.parametrize(
    ("field", "value", "detail"),
    [
        ("userIds", UNKNOWN, f"Bad Request: userIds: Unknown user id(s): {UNKNOWN}"),
        ("userIds", "nope", "Bad Request: userIds: Invalid uuid: nope"),
        ("groupIds", "nogroup", "Bad Request: groupIds: Unknown group id(s): nogroup"),
    ],
)
async def test_granting_an_unknown_user_or_group_is_400(
    api: httpx.AsyncClient, envs: Environments, field: str, value: str, detail: str
) -> None:
    response = await api.put(access(envs.staging_link), json={field: [value]})

    assert_error(response, 400, detail)


async def test_a_grant_is_all_or_nothing(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    await api.put(access(envs.staging_link), json={"userIds": [member[0], UNKNOWN]})

    listed = await api.get(access(envs.staging_link))

    assert listed.json() == {"userIds": [], "groupIds": []}


async def test_granting_nobody_is_400(
    api: httpx.AsyncClient, envs: Environments
) -> None:
    response = await api.put(access(envs.staging_link), json={"userIds": []})

    assert_error(
        response, 400, "Bad Request: userIds: Give at least one of userIds and groupIds"
    )


async def test_access_needs_an_org_admin(envs: Environments, member: Member) -> None:
    user_id, client = member

    listed = await client.get(access(envs.staging_link))
    granted = await client.put(access(envs.staging_link), json={"userIds": [user_id]})

    assert_error(listed, 403, "Permission denied")
    assert_error(granted, 403, "Permission denied")


# -- the pick: shapes and errors ------------------------------------------------


async def test_a_pick_answers_success(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    await grant(api, envs.staging_link, userIds=[member[0]])

    response = await pick(member[1], envs.dev, envs.staging_link)

    assert response.json() == {"success": True}


async def test_a_pick_without_access_is_403(envs: Environments, member: Member) -> None:
    response = await pick(member[1], envs.dev, envs.staging_link)

    assert_error(response, 403, "Permission denied")


async def test_get_answers_the_pick_and_the_route_it_gives(
    envs: Environments, picked: Member
) -> None:
    response = await picked[1].get(selection(envs.dev))

    assert response.json() == {
        "connectionEnvironmentId": envs.staging_link,
        "valid": True,
        "route": {
            "baseConnectionId": envs.dev,
            "connectionId": envs.staging,
            "connectionEnvironmentId": envs.staging_link,
            "source": "user_selection",
            "reason": "the user picked environment staging",
        },
    }


async def test_get_without_a_pick_is_404(envs: Environments, member: Member) -> None:
    response = await member[1].get(selection(envs.dev))

    assert_error(response, 404, "Environment selection not found")


async def test_get_says_when_a_pick_no_longer_holds(
    api: httpx.AsyncClient, envs: Environments, picked: Member
) -> None:
    await withdraw(api, envs.staging_link, userIds=[picked[0]])

    response = await picked[1].get(selection(envs.dev))

    assert response.json()["valid"] is False
    assert response.json()["route"]["source"] == "user_attribute"


async def test_a_pick_by_the_environment_connection_id_stores_the_link(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    await grant(api, envs.staging_link, userIds=[member[0]])

    await pick(member[1], envs.dev, envs.staging)

    stored = await member[1].get(selection(envs.dev))
    assert stored.json()["connectionEnvironmentId"] == envs.staging_link


async def test_a_link_of_another_base_is_400(
    api: httpx.AsyncClient, envs: Environments, member: Member, tmp_path: Path
) -> None:
    other = await connection(api, tmp_path, "other")

    response = await pick(member[1], other, envs.staging_link)

    assert_error(
        response,
        400,
        "Bad Request: connectionEnvironmentId: Connection environment "
        f"{envs.staging_link} is not an environment of {other}",
    )


async def test_an_unknown_link_is_404(envs: Environments, member: Member) -> None:
    response = await pick(member[1], envs.dev, UNKNOWN)

    assert_error(
        response, 404, f"Connection environment with id {UNKNOWN} does not exist"
    )


async def test_an_unknown_base_is_404(member: Member) -> None:
    response = await pick(member[1], UNKNOWN, None)

    assert_error(response, 404, "Connection not found")


async def test_a_pick_needs_the_connection_environment_id(
    envs: Environments, member: Member
) -> None:
    response = await member[1].put(selection(envs.dev), json={})

    assert_error(response, 400, "Bad Request: connectionEnvironmentId: Required")


async def test_an_environment_connection_is_no_base_to_pick_on(
    api: httpx.AsyncClient, envs: Environments
) -> None:
    response = await pick(api, envs.staging, None)

    assert_error(
        response,
        400,
        f"Bad Request: baseId: Connection {envs.staging} is an environment of "
        "another base",
    )


async def test_a_pick_needs_querier_on_the_base(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    await api.patch(f"/api/v1/connections/{envs.dev}", json={"baseRole": "VIEWER"})

    response = await pick(member[1], envs.dev, None)

    assert_error(response, 403, "Permission denied")


async def test_an_org_admin_may_pick_without_a_grant(
    api: httpx.AsyncClient, envs: Environments
) -> None:
    response = await pick(api, envs.dev, envs.staging_link)

    assert response.status_code == 200, response.text
    assert marker(await run(api, envs.dev)) == "staging"


async def test_clearing_nothing_succeeds(envs: Environments, member: Member) -> None:
    response = await member[1].delete(selection(envs.dev))

    assert response.json() == {"success": True}


# -- end to end: the next query -------------------------------------------------


async def test_a_pick_routes_the_next_query(
    api: httpx.AsyncClient, envs: Environments, member: Member
) -> None:
    user_id, client = member
    await grant(api, envs.staging_link, userIds=[user_id])
    before = await run(client, envs.dev)

    await pick(client, envs.dev, envs.staging_link)
    after = await run(client, envs.dev)

    assert (marker(before), marker(after)) == ("prod", "staging")
    assert route_of(after)["source"] == "user_selection"


async def test_picking_the_base_outranks_the_attribute(
    envs: Environments, member: Member
) -> None:
    await pick(member[1], envs.dev, None)

    response = await run(member[1], envs.dev)

    assert marker(response) == "dev"
    assert route_of(response)["reason"] == "the user picked the base dev"


async def test_a_restored_grant_honours_the_kept_pick_at_the_next_query(
    api: httpx.AsyncClient, envs: Environments, picked: Member
) -> None:
    await withdraw(api, envs.staging_link, userIds=[picked[0]])
    withdrawn = await run(picked[1], envs.dev)

    await grant(api, envs.staging_link, userIds=[picked[0]])
    restored = await run(picked[1], envs.dev)

    assert (marker(withdrawn), marker(restored)) == ("prod", "staging")


async def test_withdrawn_access_falls_back_to_the_attribute(
    api: httpx.AsyncClient, envs: Environments, picked: Member
) -> None:
    await withdraw(api, envs.staging_link, userIds=[picked[0]])

    response = await run(picked[1], envs.dev)

    assert marker(response) == "prod"
    assert route_of(response)["reason"] == (
        "selection ignored: access to staging was withdrawn; "
        'environment = "prod" matched environment prod'
    )


async def test_withdrawn_access_falls_back_to_the_base_without_a_value(
    api: httpx.AsyncClient, envs: Environments, picked: Member
) -> None:
    await set_attributes(api, picked[0], {"environment": None})

    await withdraw(api, envs.staging_link, userIds=[picked[0]])
    response = await run(picked[1], envs.dev)

    assert marker(response) == "dev"
    assert route_of(response)["reason"] == (
        "selection ignored: access to staging was withdrawn; "
        "environment is not set for this user, so the base serves"
    )


async def test_a_deleted_link_falls_back_to_the_attribute(
    api: httpx.AsyncClient, envs: Environments, picked: Member
) -> None:
    await api.delete(f"/api/v1/connection-environments/{envs.staging_link}")

    response = await run(picked[1], envs.dev)

    assert marker(response) == "prod"
    assert route_of(response)["reason"] == (
        "selection ignored: its environment link was deleted; "
        'environment = "prod" matched environment prod'
    )


async def test_an_archived_environment_connection_falls_back_to_the_attribute(
    api: httpx.AsyncClient, envs: Environments, picked: Member
) -> None:
    await api.delete(f"/api/v1/connections/{envs.staging}")

    response = await run(picked[1], envs.dev)

    # Archiving removes the connection's links (spec §4), so the pick's link
    # is gone too.
    assert marker(response) == "prod"
    assert route_of(response)["reason"].startswith(
        "selection ignored: its environment link was deleted; "
    )


async def test_clearing_the_pick_routes_the_next_query_by_the_attribute(
    envs: Environments, picked: Member
) -> None:
    await picked[1].delete(selection(envs.dev))

    response = await run(picked[1], envs.dev)

    assert route_of(response)["source"] == "user_attribute"


async def test_a_group_grant_lets_members_pick(
    api: httpx.AsyncClient, envs: Environments, member: Member, services: Services
) -> None:
    group_id = add_group(services, "analysts", member[0])
    await grant(api, envs.staging_link, groupIds=[group_id])

    await pick(member[1], envs.dev, envs.staging_link)

    assert marker(await run(member[1], envs.dev)) == "staging"


async def test_withdrawing_a_group_grant_falls_back_at_the_next_query(
    api: httpx.AsyncClient, envs: Environments, member: Member, services: Services
) -> None:
    group_id = add_group(services, "analysts", member[0])
    await grant(api, envs.staging_link, groupIds=[group_id])
    await pick(member[1], envs.dev, envs.staging_link)

    await withdraw(api, envs.staging_link, groupIds=[group_id])
    response = await run(member[1], envs.dev)

    assert marker(response) == "prod"
    assert route_of(response)["reason"].startswith(
        "selection ignored: access to staging was withdrawn"
    )


async def test_leaving_the_granted_group_falls_back_at_the_next_query(
    api: httpx.AsyncClient, envs: Environments, member: Member, services: Services
) -> None:
    group_id = add_group(services, "analysts", member[0])
    await grant(api, envs.staging_link, groupIds=[group_id])
    await pick(member[1], envs.dev, envs.staging_link)

    leave_group(services, group_id, member[0])

    assert marker(await run(member[1], envs.dev)) == "prod"


async def test_access_and_pick_routes_are_marked_as_extensions(
    api: httpx.AsyncClient,
) -> None:
    paths = (await api.get("/api/openapi.json")).json()["paths"]

    for path in (access("{id}"), selection("{id}")):
        for method in ("get", "put", "delete"):
            assert paths[path][method]["x-pointsman-extension"] is True
