"""SCIM 2.0 groups at /api/scim/v2/Groups (organization key only), and how
membership shows in users' resources and in ``omni_user_groups``."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from bodies import connection_body
from helpers import USERS, assert_error, create_user, pat_client

from pointsman.services.container import Services

pytestmark = pytest.mark.anyio

GROUPS = "/api/scim/v2/Groups"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
UNKNOWN_USER = "00000000-0000-4000-8000-000000000000"


async def create_group(
    api: httpx.AsyncClient, name: str, *user_ids: str
) -> dict[str, Any]:
    members = [{"value": user_id} for user_id in user_ids]
    response = await api.post(GROUPS, json={"displayName": name, "members": members})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def patch(
    api: httpx.AsyncClient, group_id: str, *operations: dict[str, Any]
) -> httpx.Response:
    return await api.patch(
        f"{GROUPS}/{group_id}",
        json={"schemas": [PATCH_SCHEMA], "Operations": list(operations)},
    )


async def member_ids(api: httpx.AsyncClient, group_id: str) -> list[str]:
    response = await api.get(f"{GROUPS}/{group_id}")
    assert response.status_code == 200, response.text
    return [member["value"] for member in response.json()["members"]]


async def names(api: httpx.AsyncClient, **params: Any) -> list[str]:
    response = await api.get(GROUPS, params=params)
    assert response.status_code == 200, response.text
    return [group["displayName"] for group in response.json()["Resources"]]


@pytest.fixture
async def ann(api: httpx.AsyncClient) -> dict[str, Any]:
    return await create_user(api, "ann@example.com")


@pytest.fixture
async def bob(api: httpx.AsyncClient) -> dict[str, Any]:
    return await create_user(api, "bob@example.com")


# -- create ---------------------------------------------------------------------


async def test_create_answers_201_with_the_group_resource(
    api: httpx.AsyncClient, ann: dict[str, Any]
) -> None:
    body = {"displayName": "Analysts", "members": [{"value": ann["id"]}]}

    response = await api.post(GROUPS, json=body)

    assert response.status_code == 201
    group = response.json()
    assert group == {
        "schemas": [GROUP_SCHEMA],
        "id": group["id"],
        "displayName": "Analysts",
        "members": [{"display": "ann@example.com", "value": ann["id"]}],
        "meta": {
            "created": group["meta"]["created"],
            "lastModified": group["meta"]["lastModified"],
            "resourceType": "Group",
        },
    }
    assert ISO.fullmatch(group["meta"]["created"])


async def test_group_ids_are_short_opaque_strings(api: httpx.AsyncClient) -> None:
    group = await create_group(api, "Analysts")

    assert re.fullmatch(r"[A-Za-z0-9]{8}", group["id"])


async def test_create_without_members_makes_an_empty_group(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(GROUPS, json={"displayName": "Analysts"})

    assert response.status_code == 201
    assert response.json()["members"] == []


async def test_a_member_may_be_named_by_membership_id(
    api: httpx.AsyncClient, services: Services, ann: dict[str, Any]
) -> None:
    membership_id = services.snapshot().users[ann["id"]].membership_id

    group = await create_group(api, "Analysts", membership_id)

    assert group["members"] == [{"display": "ann@example.com", "value": ann["id"]}]


async def test_create_with_an_unknown_member_is_400(api: httpx.AsyncClient) -> None:
    body = {"displayName": "Analysts", "members": [{"value": UNKNOWN_USER}]}

    response = await api.post(GROUPS, json=body)

    assert_error(response, 400, f'Bad Request: members: Unknown user "{UNKNOWN_USER}"')


async def test_create_with_an_unknown_member_creates_nothing(
    api: httpx.AsyncClient,
) -> None:
    body = {"displayName": "Analysts", "members": [{"value": UNKNOWN_USER}]}

    await api.post(GROUPS, json=body)

    assert await names(api) == []


async def test_create_without_a_display_name_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post(GROUPS, json={"members": []})

    assert_error(response, 400, "Bad Request: displayName: Required")


async def test_a_taken_name_is_409(api: httpx.AsyncClient) -> None:
    await create_group(api, "Analysts")

    response = await api.post(GROUPS, json={"displayName": "Analysts"})

    assert_error(response, 409, "Group with name Analysts already exists")


async def test_a_name_taken_in_another_case_is_409(api: httpx.AsyncClient) -> None:
    await create_group(api, "Analysts")

    response = await api.post(GROUPS, json={"displayName": "ANALYSTS"})

    assert_error(response, 409, "Group with name ANALYSTS already exists")


# -- list and get ---------------------------------------------------------------


async def test_list_is_a_scim_list_response(api: httpx.AsyncClient) -> None:
    group = await create_group(api, "Analysts")

    response = await api.get(GROUPS)

    assert response.json() == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 1,
        "startIndex": 1,
        "itemsPerPage": 1,
        "Resources": [group],
    }


async def test_list_is_in_creation_order(api: httpx.AsyncClient) -> None:
    for name in ("Zeta", "Alpha", "Mid"):
        await create_group(api, name)

    assert await names(api) == ["Zeta", "Alpha", "Mid"]


async def test_filter_display_name_eq_finds_one_group(api: httpx.AsyncClient) -> None:
    await create_group(api, "Analysts")
    await create_group(api, "Engineers")

    assert await names(api, filter='displayName eq "Engineers"') == ["Engineers"]


async def test_filter_compares_names_without_case(api: httpx.AsyncClient) -> None:
    await create_group(api, "Engineers")

    assert await names(api, filter='DISPLAYNAME EQ "engineers"') == ["Engineers"]


async def test_an_unsupported_filter_is_400(api: httpx.AsyncClient) -> None:
    response = await api.get(GROUPS, params={"filter": 'displayName co "Eng"'})

    assert_error(response, 400, 'Bad Request: filter: Expected displayName eq "<name>"')


async def test_start_index_and_count_select_a_page(api: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c", "d"):
        await create_group(api, name)

    response = await api.get(GROUPS, params={"startIndex": 2, "count": 2})

    body = response.json()
    assert [group["displayName"] for group in body["Resources"]] == ["b", "c"]
    assert (body["totalResults"], body["startIndex"], body["itemsPerPage"]) == (
        4,
        2,
        2,
    )


async def test_list_can_leave_members_out(
    api: httpx.AsyncClient, ann: dict[str, Any]
) -> None:
    await create_group(api, "Analysts", ann["id"])

    response = await api.get(GROUPS, params={"excludedAttributes": "members"})

    assert "members" not in response.json()["Resources"][0]


async def test_get_can_leave_members_out(
    api: httpx.AsyncClient, ann: dict[str, Any]
) -> None:
    group = await create_group(api, "Analysts", ann["id"])

    response = await api.get(
        f"{GROUPS}/{group['id']}", params={"excludedAttributes": "members"}
    )

    assert response.status_code == 200
    assert "members" not in response.json()


async def test_get_answers_the_group(api: httpx.AsyncClient) -> None:
    group = await create_group(api, "Analysts")

    response = await api.get(f"{GROUPS}/{group['id']}")

    assert response.json() == group


async def test_get_of_an_unknown_group_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{GROUPS}/nosuchid")

    assert_error(response, 404, "Group not found")


async def test_the_lower_case_path_serves_groups_too(api: httpx.AsyncClient) -> None:
    group = await create_group(api, "Analysts")

    response = await api.get(f"/api/scim/v2/groups/{group['id']}")

    assert response.json()["displayName"] == "Analysts"


# -- PUT ------------------------------------------------------------------------


async def test_put_replaces_the_name_and_the_members(
    api: httpx.AsyncClient, ann: dict[str, Any], bob: dict[str, Any]
) -> None:
    group = await create_group(api, "Analysts", ann["id"])

    response = await api.put(
        f"{GROUPS}/{group['id']}",
        json={
            "displayName": "Readers",
            "members": [{"display": "bob", "value": bob["id"]}],
        },
    )

    assert response.status_code == 200
    assert response.json()["displayName"] == "Readers"
    assert await member_ids(api, group["id"]) == [bob["id"]]


async def test_put_without_members_is_400(api: httpx.AsyncClient) -> None:
    group = await create_group(api, "Analysts")

    response = await api.put(f"{GROUPS}/{group['id']}", json={"displayName": "X"})

    assert_error(response, 400, "Bad Request: members: Required")


async def test_put_to_a_taken_name_is_409(api: httpx.AsyncClient) -> None:
    await create_group(api, "Analysts")
    group = await create_group(api, "Readers")

    response = await api.put(
        f"{GROUPS}/{group['id']}", json={"displayName": "Analysts", "members": []}
    )

    assert_error(response, 409, "Group with name Analysts already exists")


async def test_put_of_an_unknown_group_is_404(api: httpx.AsyncClient) -> None:
    response = await api.put(
        f"{GROUPS}/nosuchid", json={"displayName": "X", "members": []}
    )

    assert_error(response, 404, "Group not found")


# -- PATCH ----------------------------------------------------------------------


async def test_patch_replace_with_a_display_name_value_renames(
    api: httpx.AsyncClient,
) -> None:
    group = await create_group(api, "Analysts")

    response = await patch(
        api, group["id"], {"op": "replace", "value": {"displayName": "Readers"}}
    )

    assert response.status_code == 200
    assert response.json()["displayName"] == "Readers"


async def test_patch_replace_path_display_name_renames(
    api: httpx.AsyncClient,
) -> None:
    group = await create_group(api, "Analysts")

    response = await patch(
        api, group["id"], {"op": "Replace", "path": "displayName", "value": "Readers"}
    )

    assert response.json()["displayName"] == "Readers"


async def test_patch_add_members_adds_them(
    api: httpx.AsyncClient, ann: dict[str, Any], bob: dict[str, Any]
) -> None:
    group = await create_group(api, "Analysts", ann["id"])

    await patch(
        api,
        group["id"],
        {"op": "Add", "path": "members", "value": [{"value": bob["id"]}]},
    )

    assert await member_ids(api, group["id"]) == [ann["id"], bob["id"]]


async def test_patch_remove_a_member_by_filter(
    api: httpx.AsyncClient, ann: dict[str, Any], bob: dict[str, Any]
) -> None:
    group = await create_group(api, "Analysts", ann["id"], bob["id"])

    await patch(
        api,
        group["id"],
        {"op": "remove", "path": f'members[value eq "{ann["id"]}"]'},
    )

    assert await member_ids(api, group["id"]) == [bob["id"]]


async def test_patch_replace_members_replaces_them(
    api: httpx.AsyncClient, ann: dict[str, Any], bob: dict[str, Any]
) -> None:
    group = await create_group(api, "Analysts", ann["id"])

    await patch(
        api,
        group["id"],
        {"op": "replace", "path": "members", "value": [{"value": bob["id"]}]},
    )

    assert await member_ids(api, group["id"]) == [bob["id"]]


async def test_patch_remove_members_without_a_value_empties_the_group(
    api: httpx.AsyncClient, ann: dict[str, Any]
) -> None:
    group = await create_group(api, "Analysts", ann["id"])

    await patch(api, group["id"], {"op": "remove", "path": "members"})

    assert await member_ids(api, group["id"]) == []


async def test_patch_adding_an_unknown_user_changes_nothing(
    api: httpx.AsyncClient, ann: dict[str, Any]
) -> None:
    group = await create_group(api, "Analysts")

    response = await patch(
        api,
        group["id"],
        {"op": "add", "path": "members", "value": [{"value": ann["id"]}]},
        {"op": "add", "path": "members", "value": [{"value": UNKNOWN_USER}]},
    )

    assert_error(
        response, 400, f'Bad Request: Operations.1.value: Unknown user "{UNKNOWN_USER}"'
    )
    assert await member_ids(api, group["id"]) == []


async def test_patch_an_unsupported_path_is_400(api: httpx.AsyncClient) -> None:
    group = await create_group(api, "Analysts")

    response = await patch(api, group["id"], {"op": "replace", "path": "owner"})

    assert_error(
        response, 400, 'Bad Request: Operations.0.path: Unsupported path "owner"'
    )


async def test_patch_an_unknown_op_is_400(api: httpx.AsyncClient) -> None:
    group = await create_group(api, "Analysts")

    response = await patch(api, group["id"], {"op": "move", "path": "members"})

    assert response.status_code == 400
    assert response.json()["detail"].startswith("Bad Request: Operations.0.op:")


async def test_patch_renaming_to_a_taken_name_is_409(api: httpx.AsyncClient) -> None:
    await create_group(api, "Analysts")
    group = await create_group(api, "Readers")

    response = await patch(
        api, group["id"], {"op": "replace", "path": "displayName", "value": "analysts"}
    )

    assert_error(response, 409, "Group with name analysts already exists")


# -- DELETE ---------------------------------------------------------------------


async def test_delete_answers_204_and_the_group_is_gone(
    api: httpx.AsyncClient,
) -> None:
    group = await create_group(api, "Analysts")

    response = await api.delete(f"{GROUPS}/{group['id']}")

    assert response.status_code == 204
    assert (await api.get(f"{GROUPS}/{group['id']}")).status_code == 404


async def test_delete_of_an_unknown_group_is_404(api: httpx.AsyncClient) -> None:
    response = await api.delete(f"{GROUPS}/nosuchid")

    assert_error(response, 404, "Group not found")


async def test_a_deleted_user_leaves_their_groups(
    api: httpx.AsyncClient, ann: dict[str, Any], bob: dict[str, Any]
) -> None:
    group = await create_group(api, "Analysts", ann["id"], bob["id"])

    await api.delete(f"{USERS}/{ann['id']}")

    assert await member_ids(api, group["id"]) == [bob["id"]]


# -- who may ----------------------------------------------------------------------


async def test_a_personal_token_is_refused(
    api: httpx.AsyncClient, services: Services
) -> None:
    admin_id = (await api.get("/api/v1/whoami")).json()["user"]["id"]
    admin_pat = await pat_client(api, services, admin_id)

    response = await admin_pat.get(GROUPS)

    assert_error(response, 403, "Permission denied")


async def test_no_token_is_401(anon: httpx.AsyncClient) -> None:
    response = await anon.get(GROUPS)

    assert_error(response, 401, "Unauthorized: Missing or invalid API key")


# -- membership seen elsewhere -------------------------------------------------------


async def test_a_users_resource_lists_their_groups(
    api: httpx.AsyncClient, ann: dict[str, Any]
) -> None:
    group = await create_group(api, "Analysts", ann["id"])

    response = await api.get(f"{USERS}/{ann['id']}")

    assert response.json()["groups"] == [{"display": "Analysts", "value": group["id"]}]


async def test_the_user_list_shows_groups_too(
    api: httpx.AsyncClient, ann: dict[str, Any]
) -> None:
    group = await create_group(api, "Analysts", ann["id"])

    response = await api.get(USERS, params={"filter": 'userName eq "ann@example.com"'})

    assert response.json()["Resources"][0]["groups"] == [
        {"display": "Analysts", "value": group["id"]}
    ]


async def test_a_renamed_group_shows_its_new_name_in_users(
    api: httpx.AsyncClient, ann: dict[str, Any]
) -> None:
    group = await create_group(api, "Analysts", ann["id"])
    await patch(
        api, group["id"], {"op": "replace", "path": "displayName", "value": "Readers"}
    )

    response = await api.get(f"{USERS}/{ann['id']}")

    assert response.json()["groups"][0]["display"] == "Readers"


async def routed_by_groups(api: httpx.AsyncClient) -> tuple[str, str]:
    """A base routed on ``omni_user_groups``, whose environment claims the
    value "Analysts"; the base id and the environment connection id."""
    base = (await api.post("/api/v1/connections", json=connection_body("base"))).json()
    env = (await api.post("/api/v1/connections", json=connection_body("env"))).json()
    await api.patch(
        f"/api/v1/connections/{base['data']}",
        json={"userAttributeNameForConnectionEnvironments": "omni_user_groups"},
    )
    linked = await api.post(
        "/api/v1/connection-environments",
        json={
            "baseConnectionId": base["data"],
            "environmentConnectionIds": env["data"],
        },
    )
    link_id = linked.json()["data"][0]["id"]
    await api.put(
        f"/api/v1/connection-environments/{link_id}",
        json={"userAttributeValues": "Analysts"},
    )
    return base["data"], env["data"]


async def test_membership_is_the_omni_user_groups_value_routing_reads(
    api: httpx.AsyncClient, ann: dict[str, Any]
) -> None:
    base, env = await routed_by_groups(api)
    await create_group(api, "Analysts", ann["id"])

    response = await api.get(
        f"/api/v1/connections/{base}/route", params={"userId": ann["id"]}
    )

    assert (response.json()["connectionId"], response.json()["source"]) == (
        env,
        "user_attribute",
    )


async def test_leaving_the_group_routes_the_next_request_to_the_base(
    api: httpx.AsyncClient, ann: dict[str, Any]
) -> None:
    base, _ = await routed_by_groups(api)
    group = await create_group(api, "Analysts", ann["id"])
    await patch(api, group["id"], {"op": "remove", "path": "members"})

    response = await api.get(
        f"/api/v1/connections/{base}/route", params={"userId": ann["id"]}
    )

    assert response.json()["connectionId"] == base


@pytest.mark.anyio
async def test_non_ascii_names_are_found_and_unique_in_any_case(
    api: httpx.AsyncClient,
) -> None:
    created = await api.post("/api/scim/v2/Groups", json={"displayName": "Équipe"})

    found = await api.get(
        "/api/scim/v2/Groups", params={"filter": 'displayName eq "équipe"'}
    )
    duplicate = await api.post("/api/scim/v2/Groups", json={"displayName": "éQUIPE"})

    assert created.status_code == 201
    assert found.json()["totalResults"] == 1
    assert duplicate.status_code == 409
