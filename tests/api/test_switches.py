"""Switchable attribute values (spec §3): provisioning by org admins, the
caller's own switches, and their effect on the very next query."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import assert_error, create_attribute, set_attributes
from marker_databases import (
    Environments,
    add_group,
    base_with_environments,
    leave_group,
    marker,
    route_of,
    run,
)

from pointsman.services.container import Services

pytestmark = pytest.mark.anyio

SWITCHES = "/api/v1/user-attribute-selections"
UNKNOWN = "9b6c1f3e-0000-4000-8000-000000000000"


def selectable(attribute_id: str) -> str:
    return f"/api/v1/user-attributes/{attribute_id}/selectable-values"


async def provision(api: httpx.AsyncClient, attribute_id: str, **body: Any) -> None:
    response = await api.put(selectable(attribute_id), json=body)
    assert response.status_code == 200, response.text


async def switch(
    client: httpx.AsyncClient, attribute_id: str, values: Any
) -> httpx.Response:
    return await client.put(
        SWITCHES, json={"userAttributeId": attribute_id, "values": values}
    )


@pytest.fixture
async def envs(api: httpx.AsyncClient, tmp_path: Path) -> Environments:
    return await base_with_environments(api, tmp_path)


@pytest.fixture
async def member(
    api: httpx.AsyncClient, envs: Environments, make_member: Any
) -> tuple[str, httpx.AsyncClient]:
    """A member assigned environment = "staging"."""
    user_id, client = make_member("member@example.com")
    await set_attributes(api, user_id, {"environment": "staging"})
    return user_id, client


# -- provisioning: shapes and errors -------------------------------------------


async def test_provisioning_answers_success(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, Any]
) -> None:
    response = await api.put(
        selectable(envs.attribute_id),
        json={"user_id": member[0], "values": ["prod"], "allow_any_value": False},
    )

    assert response.json() == {"success": True}


async def test_provisioning_is_listed_per_user_and_per_group(
    api: httpx.AsyncClient,
    envs: Environments,
    member: tuple[str, Any],
    services: Services,
) -> None:
    group_id = add_group(services, "analysts")
    await provision(api, envs.attribute_id, user_id=member[0], values=["prod", "qa"])
    await provision(api, envs.attribute_id, group_id=group_id, allow_any_value=True)

    response = await api.get(selectable(envs.attribute_id))

    assert response.json() == {
        "records": [
            {"user_id": member[0], "values": ["prod", "qa"], "allow_any_value": False},
            {"group_id": group_id, "values": [], "allow_any_value": True},
        ]
    }


async def test_the_list_filters_by_user_id(
    api: httpx.AsyncClient,
    envs: Environments,
    member: tuple[str, Any],
    services: Services,
) -> None:
    group_id = add_group(services, "analysts")
    await provision(api, envs.attribute_id, user_id=member[0], values=["prod"])
    await provision(api, envs.attribute_id, group_id=group_id, values=["qa"])

    response = await api.get(
        selectable(envs.attribute_id), params={"user_id": member[0]}
    )

    assert [record["values"] for record in response.json()["records"]] == [["prod"]]


async def test_a_second_put_replaces_the_values(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, Any]
) -> None:
    await provision(api, envs.attribute_id, user_id=member[0], values=["prod"])

    await provision(api, envs.attribute_id, user_id=member[0], values=" qa , prod ")

    listed = (await api.get(selectable(envs.attribute_id))).json()["records"]
    assert [record["values"] for record in listed] == [["qa", "prod"]]


async def test_number_values_are_stored_in_canonical_form(
    api: httpx.AsyncClient, member: tuple[str, Any]
) -> None:
    attribute = await create_attribute(api, "region", type="Number")

    await provision(api, attribute["id"], user_id=member[0], values=["01", "1.0", 2])

    listed = (await api.get(selectable(attribute["id"]))).json()["records"]
    assert listed[0]["values"] == ["1", "2"]


async def test_no_values_and_no_allow_any_value_withdraws_the_provisioning(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, Any]
) -> None:
    await provision(api, envs.attribute_id, user_id=member[0], values=["prod"])

    await provision(
        api, envs.attribute_id, user_id=member[0], values=[], allow_any_value=False
    )

    assert (await api.get(selectable(envs.attribute_id))).json() == {"records": []}


@pytest.mark.parametrize("both", [True, False])
async def test_exactly_one_of_user_id_and_group_id_is_required(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, Any], both: bool
) -> None:
    body: dict[str, Any] = {"values": ["prod"]}
    if both:
        body.update(user_id=member[0], group_id="abc")

    response = await api.put(selectable(envs.attribute_id), json=body)

    assert_error(
        response,
        400,
        "Bad Request: user_id: Exactly one of user_id and group_id is required",
    )


async def test_more_than_300_values_is_400(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, Any]
) -> None:
    values = [f"v{number}" for number in range(301)]

    response = await api.put(
        selectable(envs.attribute_id), json={"user_id": member[0], "values": values}
    )

    assert_error(response, 400, "Bad Request: values: At most 300 values are allowed")


async def test_300_values_of_512_characters_are_accepted(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, Any]
) -> None:
    values = [f"{number:03d}".ljust(512, "x") for number in range(300)]

    response = await api.put(
        selectable(envs.attribute_id), json={"user_id": member[0], "values": values}
    )

    assert response.status_code == 200, response.text


async def test_a_value_over_512_characters_is_400(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, Any]
) -> None:
    response = await api.put(
        selectable(envs.attribute_id),
        json={"user_id": member[0], "values": ["x" * 513]},
    )

    assert_error(
        response, 400, "Bad Request: values: Values must be at most 512 characters"
    )


async def test_a_non_boolean_allow_any_value_is_400(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, Any]
) -> None:
    response = await api.put(
        selectable(envs.attribute_id),
        json={"user_id": member[0], "allow_any_value": "yes"},
    )

    assert_error(response, 400, "Bad Request: allow_any_value: Expected a boolean")


async def test_an_unknown_attribute_is_404(
    api: httpx.AsyncClient, member: tuple[str, Any]
) -> None:
    response = await api.put(
        selectable(UNKNOWN), json={"user_id": member[0], "values": ["prod"]}
    )

    assert_error(response, 404, "User attribute not found")


async def test_a_system_attribute_is_400(
    api: httpx.AsyncClient, member: tuple[str, Any]
) -> None:
    response = await api.put(
        selectable("omni_user_email"), json={"user_id": member[0], "values": ["x"]}
    )

    assert_error(
        response,
        400,
        "Bad Request: userAttributeId: omni_user_email is a system attribute",
    )


@pytest.mark.parametrize(
    ("field", "value", "detail"),
    [
        ("user_id", UNKNOWN, "User not found"),
        ("group_id", "nogroup", "Group not found"),
    ],
)
async def test_an_unknown_user_or_group_is_404(
    api: httpx.AsyncClient, envs: Environments, field: str, value: str, detail: str
) -> None:
    response = await api.put(
        selectable(envs.attribute_id), json={field: value, "values": ["prod"]}
    )

    assert_error(response, 404, detail)


async def test_provisioning_needs_an_org_admin(
    envs: Environments, member: tuple[str, httpx.AsyncClient]
) -> None:
    user_id, client = member

    listed = await client.get(selectable(envs.attribute_id))
    written = await client.put(
        selectable(envs.attribute_id), json={"user_id": user_id, "values": ["prod"]}
    )

    assert_error(listed, 403, "Permission denied")
    assert_error(written, 403, "Permission denied")


# -- the caller's switches: shapes and errors ----------------------------------


async def test_the_caller_sees_switchable_attributes_and_the_active_switch(
    api: httpx.AsyncClient,
    envs: Environments,
    member: tuple[str, httpx.AsyncClient],
    services: Services,
) -> None:
    user_id, client = member
    group_id = add_group(services, "analysts", user_id)
    await provision(api, envs.attribute_id, user_id=user_id, values=["prod"])
    await provision(api, envs.attribute_id, group_id=group_id, values=["qa"])
    await switch(client, envs.attribute_id, ["prod"])

    response = await client.get(SWITCHES)

    assert response.json() == {
        "records": [
            {
                "userAttributeId": envs.attribute_id,
                "name": "environment",
                "multipleValues": False,
                "selectableValues": ["prod", "qa"],
                "allowAnyValue": False,
                "assignedValues": ["staging"],
                "selectedValues": ["prod"],
                "effectiveValues": ["prod"],
            }
        ]
    }


async def test_an_attribute_without_provisioning_is_not_listed(
    envs: Environments, member: tuple[str, httpx.AsyncClient]
) -> None:
    response = await member[1].get(SWITCHES)

    assert response.json() == {"records": []}


async def test_a_switch_answers_success(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, httpx.AsyncClient]
) -> None:
    await provision(api, envs.attribute_id, user_id=member[0], values=["prod"])

    response = await switch(member[1], envs.attribute_id, ["prod"])

    assert response.json() == {"success": True}


async def test_a_switch_to_a_value_not_provisioned_is_400_naming_it(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, httpx.AsyncClient]
) -> None:
    await provision(api, envs.attribute_id, user_id=member[0], values=["prod"])

    response = await switch(member[1], envs.attribute_id, ["qa"])

    assert_error(
        response,
        400,
        'Bad Request: values: "qa" is not a selectable value of environment',
    )


async def test_a_single_valued_attribute_takes_one_value(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, httpx.AsyncClient]
) -> None:
    await provision(api, envs.attribute_id, user_id=member[0], allow_any_value=True)

    response = await switch(member[1], envs.attribute_id, ["prod", "qa"])

    assert_error(response, 400, "Bad Request: values: environment takes a single value")


async def test_a_multi_valued_attribute_takes_several_values(
    api: httpx.AsyncClient, member: tuple[str, httpx.AsyncClient]
) -> None:
    attribute = await create_attribute(api, "regions", multiple_values=True)
    await provision(api, attribute["id"], user_id=member[0], values=["eu", "us"])

    await switch(member[1], attribute["id"], ["us", "eu"])

    [record] = (await member[1].get(SWITCHES)).json()["records"]
    assert record["selectedValues"] == ["us", "eu"]


async def test_allow_any_value_accepts_any_value(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, httpx.AsyncClient]
) -> None:
    await provision(api, envs.attribute_id, user_id=member[0], allow_any_value=True)

    response = await switch(member[1], envs.attribute_id, "anything")

    assert response.status_code == 200, response.text


async def test_a_switch_without_values_is_400(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, httpx.AsyncClient]
) -> None:
    response = await switch(member[1], envs.attribute_id, [])

    assert_error(response, 400, "Bad Request: values: Required")


async def test_a_switch_without_an_attribute_is_400(
    member: tuple[str, httpx.AsyncClient],
) -> None:
    response = await member[1].put(SWITCHES, json={"values": ["prod"]})

    assert_error(response, 400, "Bad Request: userAttributeId: Required")


async def test_a_switch_of_an_unknown_attribute_is_404(
    member: tuple[str, httpx.AsyncClient],
) -> None:
    response = await switch(member[1], UNKNOWN, ["prod"])

    assert_error(response, 404, "User attribute not found")


async def test_clearing_nothing_succeeds(
    envs: Environments, member: tuple[str, httpx.AsyncClient]
) -> None:
    response = await member[1].delete(
        SWITCHES, params={"userAttributeId": envs.attribute_id}
    )

    assert response.json() == {"success": True}


@pytest.mark.parametrize("where", ["query", "body"])
async def test_clearing_takes_the_attribute_from_the_query_or_the_body(
    api: httpx.AsyncClient,
    envs: Environments,
    member: tuple[str, httpx.AsyncClient],
    where: str,
) -> None:
    client = member[1]
    await provision(api, envs.attribute_id, user_id=member[0], values=["prod"])
    await switch(client, envs.attribute_id, ["prod"])
    named = {"userAttributeId": envs.attribute_id}

    if where == "query":
        await client.delete(SWITCHES, params=named)
    else:
        await client.request("DELETE", SWITCHES, json=named)

    [record] = (await client.get(SWITCHES)).json()["records"]
    assert record["selectedValues"] is None


async def test_clearing_without_an_attribute_is_400(
    member: tuple[str, httpx.AsyncClient],
) -> None:
    response = await member[1].delete(SWITCHES)

    assert_error(response, 400, "Bad Request: userAttributeId: Required")


# -- end to end: the next query ------------------------------------------------


async def test_a_switch_routes_the_next_query(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, httpx.AsyncClient]
) -> None:
    user_id, client = member
    await provision(api, envs.attribute_id, user_id=user_id, values=["prod"])
    before = await run(client, envs.dev)

    await switch(client, envs.attribute_id, ["prod"])
    after = await run(client, envs.dev)

    assert (marker(before), marker(after)) == ("staging", "prod")
    assert route_of(after)["reason"] == 'environment = "prod" matched environment prod'


async def test_withdrawing_the_provisioning_voids_the_switch_at_the_next_query(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, httpx.AsyncClient]
) -> None:
    user_id, client = member
    await provision(api, envs.attribute_id, user_id=user_id, values=["prod"])
    await switch(client, envs.attribute_id, ["prod"])
    switched = await run(client, envs.dev)

    await provision(api, envs.attribute_id, user_id=user_id, values=[])
    after = await run(client, envs.dev)

    assert (marker(switched), marker(after)) == ("prod", "staging")


async def test_narrowing_the_provisioning_voids_a_switch_it_no_longer_covers(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, httpx.AsyncClient]
) -> None:
    user_id, client = member
    await provision(api, envs.attribute_id, user_id=user_id, values=["prod", "qa"])
    await switch(client, envs.attribute_id, ["prod"])

    await provision(api, envs.attribute_id, user_id=user_id, values=["qa"])

    assert marker(await run(client, envs.dev)) == "staging"


async def test_a_voided_switch_does_not_return_when_provisioning_is_restored(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, httpx.AsyncClient]
) -> None:
    user_id, client = member
    await provision(api, envs.attribute_id, user_id=user_id, values=["prod"])
    await switch(client, envs.attribute_id, ["prod"])
    await provision(api, envs.attribute_id, user_id=user_id, values=[])

    await provision(api, envs.attribute_id, user_id=user_id, values=["prod"])

    assert marker(await run(client, envs.dev)) == "staging"


async def test_clearing_the_switch_routes_the_next_query_by_the_assigned_value(
    api: httpx.AsyncClient, envs: Environments, member: tuple[str, httpx.AsyncClient]
) -> None:
    user_id, client = member
    await provision(api, envs.attribute_id, user_id=user_id, values=["prod"])
    await switch(client, envs.attribute_id, ["prod"])

    await client.delete(SWITCHES, params={"userAttributeId": envs.attribute_id})

    assert marker(await run(client, envs.dev)) == "staging"


async def test_a_group_provisioning_lets_its_members_switch(
    api: httpx.AsyncClient,
    envs: Environments,
    member: tuple[str, httpx.AsyncClient],
    services: Services,
) -> None:
    user_id, client = member
    group_id = add_group(services, "analysts", user_id)
    await provision(api, envs.attribute_id, group_id=group_id, values=["prod"])

    await switch(client, envs.attribute_id, ["prod"])

    assert marker(await run(client, envs.dev)) == "prod"


async def test_withdrawing_a_group_provisioning_voids_members_switches(
    api: httpx.AsyncClient,
    envs: Environments,
    member: tuple[str, httpx.AsyncClient],
    services: Services,
) -> None:
    user_id, client = member
    group_id = add_group(services, "analysts", user_id)
    await provision(api, envs.attribute_id, group_id=group_id, values=["prod"])
    await switch(client, envs.attribute_id, ["prod"])

    await provision(api, envs.attribute_id, group_id=group_id, values=[])

    assert marker(await run(client, envs.dev)) == "staging"


async def test_a_switch_still_covered_by_another_provisioning_is_kept(
    api: httpx.AsyncClient,
    envs: Environments,
    member: tuple[str, httpx.AsyncClient],
    services: Services,
) -> None:
    user_id, client = member
    group_id = add_group(services, "analysts", user_id)
    await provision(api, envs.attribute_id, group_id=group_id, values=["prod"])
    await provision(api, envs.attribute_id, user_id=user_id, values=["prod"])
    await switch(client, envs.attribute_id, ["prod"])

    await provision(api, envs.attribute_id, group_id=group_id, values=[])

    assert marker(await run(client, envs.dev)) == "prod"


async def test_leaving_the_group_voids_the_switch_at_the_next_query(
    api: httpx.AsyncClient,
    envs: Environments,
    member: tuple[str, httpx.AsyncClient],
    services: Services,
) -> None:
    user_id, client = member
    group_id = add_group(services, "analysts", user_id)
    await provision(api, envs.attribute_id, group_id=group_id, values=["prod"])
    await switch(client, envs.attribute_id, ["prod"])

    leave_group(services, group_id, user_id)

    assert marker(await run(client, envs.dev)) == "staging"


async def test_switch_routes_are_omnis_so_not_marked_as_extensions(
    api: httpx.AsyncClient,
) -> None:
    paths = (await api.get("/api/openapi.json")).json()["paths"]

    assert "x-pointsman-extension" not in paths[selectable("{id}")]["put"]
    assert "x-pointsman-extension" not in paths[SWITCHES]["put"]


async def test_leaving_the_group_voids_the_switch_for_good(
    api: httpx.AsyncClient,
    envs: Environments,
    member: tuple[str, httpx.AsyncClient],
) -> None:
    user_id, client = member
    created = await api.post(
        "/api/scim/v2/Groups",
        json={"displayName": "analysts", "members": [{"value": user_id}]},
    )
    group_path = f"/api/scim/v2/Groups/{created.json()['id']}"
    await provision(
        api, envs.attribute_id, group_id=created.json()["id"], values=["prod"]
    )
    await switch(client, envs.attribute_id, ["prod"])
    patch = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}

    await api.patch(
        group_path,
        json={
            **patch,
            "Operations": [{"op": "remove", "path": f'members[value eq "{user_id}"]'}],
        },
    )
    await api.patch(
        group_path,
        json={
            **patch,
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": user_id}]}
            ],
        },
    )

    assert marker(await run(client, envs.dev)) == "staging"
