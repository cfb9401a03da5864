"""SCIM 2.0 users at /api/scim/v2/Users (organization key only)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from helpers import (
    USER_ATTRIBUTES,
    USERS,
    assert_error,
    create_attribute,
    create_user,
    pat_client,
    set_attributes,
)
from sqlalchemy import select

from pointsman.services.container import Services
from pointsman.store import models

pytestmark = pytest.mark.anyio

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


@pytest.fixture
async def attributes(api: httpx.AsyncClient) -> None:
    """``region`` (String), ``regions`` (multi-valued), ``level`` (Number)."""
    await create_attribute(api, "region")
    await create_attribute(api, "regions", multiple_values=True)
    await create_attribute(api, "level", type="Number")


async def listed(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await api.get(USERS, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def emails(listing: dict[str, Any]) -> list[str]:
    return [resource["userName"] for resource in listing["Resources"]]


# -- GET list --------------------------------------------------------------------


async def test_list_is_a_scim_list_response(api: httpx.AsyncClient) -> None:
    response = await api.get(USERS)

    assert response.status_code == 200
    assert response.json() == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 1,
        "startIndex": 1,
        "itemsPerPage": 1,
        "Resources": [response.json()["Resources"][0]],
    }
    assert response.json()["Resources"][0]["userName"] == "admin@example.com"


async def test_list_is_in_creation_order(api: httpx.AsyncClient) -> None:
    await create_user(api, "zed@example.com")
    await create_user(api, "amy@example.com")

    listing = await listed(api)

    assert emails(listing) == [
        "admin@example.com",
        "zed@example.com",
        "amy@example.com",
    ]


async def test_filter_user_name_eq_ignores_case(api: httpx.AsyncClient) -> None:
    await create_user(api, "Ann.Lee@Example.com")

    listing = await listed(api, filter='userName eq "ann.lee@example.COM"')

    assert emails(listing) == ["Ann.Lee@Example.com"]
    assert listing["totalResults"] == 1


async def test_filter_user_name_co_matches_part_of_the_email(
    api: httpx.AsyncClient,
) -> None:
    await create_user(api, "ann@corp.example")
    await create_user(api, "bob@corp.example")

    listing = await listed(api, filter='userName co "CORP"')

    assert emails(listing) == ["ann@corp.example", "bob@corp.example"]


async def test_filter_attribute_and_operator_are_case_insensitive(
    api: httpx.AsyncClient,
) -> None:
    await create_user(api, "ann@example.com")

    listing = await listed(api, filter='USERNAME EQ "ann@example.com"')

    assert emails(listing) == ["ann@example.com"]


async def test_filter_matching_nobody_lists_nothing(api: httpx.AsyncClient) -> None:
    listing = await listed(api, filter='userName eq "nobody@example.com"')

    assert (listing["totalResults"], listing["Resources"]) == (0, [])


async def test_start_index_and_count_select_a_page(api: httpx.AsyncClient) -> None:
    for name in ("b", "c", "d"):
        await create_user(api, f"{name}@example.com")

    listing = await listed(api, startIndex=2, count=2)

    assert emails(listing) == ["b@example.com", "c@example.com"]
    assert (listing["startIndex"], listing["itemsPerPage"]) == (2, 2)
    assert listing["totalResults"] == 4


async def test_count_zero_gives_only_the_total(api: httpx.AsyncClient) -> None:
    listing = await listed(api, count=0)

    assert (listing["totalResults"], listing["Resources"]) == (1, [])


async def test_an_unsupported_filter_is_400(api: httpx.AsyncClient) -> None:
    response = await api.get(USERS, params={"filter": 'displayName eq "Ann"'})

    assert_error(
        response,
        400,
        'Bad Request: filter: Expected userName eq "<email>", '
        'userName co "<text>" or sw',
    )


async def test_a_non_numeric_start_index_is_400(api: httpx.AsyncClient) -> None:
    response = await api.get(USERS, params={"startIndex": "first"})

    assert_error(response, 400, "Bad Request: startIndex: Expected a number")


async def test_the_lower_case_path_is_served(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/scim/v2/users")

    assert response.status_code == 200
    assert response.json()["totalResults"] == 1


# -- POST ------------------------------------------------------------------------


async def test_create_answers_201_with_the_user_resource(
    api: httpx.AsyncClient,
) -> None:
    body = {"userName": "ann@example.com", "displayName": "Ann Lee"}

    response = await api.post(USERS, json=body)

    assert response.status_code == 201
    user = response.json()
    assert user == {
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:omni:params:1.0:UserAttribute",
            "urn:omni:params:scim:schemas:extension:user:2.0",
        ],
        "id": user["id"],
        "userName": "ann@example.com",
        "displayName": "Ann Lee",
        "active": True,
        "emails": [{"primary": True, "value": "ann@example.com"}],
        "groups": [],
        "meta": {
            "created": user["meta"]["created"],
            "lastModified": user["meta"]["created"],
            "resourceType": "User",
        },
        "urn:omni:params:1.0:UserAttribute": {},
        "urn:omni:params:scim:schemas:extension:user:2.0": {"lastLogin": None},
    }
    assert ISO.fullmatch(user["meta"]["created"])


async def test_create_stores_attribute_values(
    api: httpx.AsyncClient, attributes: None
) -> None:
    values = {"region": " west ", "regions": ["us", "eu", "us"], "level": 2.0}

    user = await create_user(api, "ann@example.com", values)

    assert user[USER_ATTRIBUTES] == {
        "level": "2",
        "region": "west",
        "regions": ["us", "eu"],
    }


async def test_null_empty_string_and_empty_array_store_nothing(
    api: httpx.AsyncClient, attributes: None
) -> None:
    values: dict[str, Any] = {"region": "", "regions": [], "level": None}

    user = await create_user(api, "ann@example.com", values)

    assert user[USER_ATTRIBUTES] == {}


async def test_create_takes_the_display_name_from_scim_name(
    api: httpx.AsyncClient,
) -> None:
    body = {
        "userName": "ann@example.com",
        "name": {"givenName": "Ann", "familyName": "Lee"},
    }

    response = await api.post(USERS, json=body)

    assert response.json()["displayName"] == "Ann Lee"


async def test_create_with_a_known_email_in_other_case_is_409(
    api: httpx.AsyncClient,
) -> None:
    await create_user(api, "ann@example.com")

    response = await api.post(
        USERS, json={"userName": "ANN@example.com", "displayName": "Ann"}
    )

    assert_error(response, 409, "User with email ANN@example.com already exists")


async def test_create_without_user_name_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post(USERS, json={"displayName": "Ann"})

    assert_error(response, 400, "Bad Request: userName: Required")


async def test_create_without_display_name_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post(USERS, json={"userName": "ann@example.com"})

    assert_error(response, 400, "Bad Request: displayName: Required")


async def test_create_with_a_malformed_email_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post(USERS, json={"userName": "ann", "displayName": "Ann"})

    assert_error(response, 400, "Bad Request: userName: Invalid email")


async def test_create_with_an_empty_body_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post(USERS, content=b"")

    assert_error(response, 400, "Bad Request: Empty request body")


async def test_an_unknown_attribute_is_400(api: httpx.AsyncClient) -> None:
    body = {
        "userName": "ann@example.com",
        "displayName": "Ann",
        USER_ATTRIBUTES: {"planet": "mars"},
    }

    response = await api.post(USERS, json=body)

    assert_error(
        response,
        400,
        "Bad Request: urn:omni:params:1.0:UserAttribute: "
        'Unknown user attribute "planet"',
    )


async def test_a_system_attribute_is_read_only(api: httpx.AsyncClient) -> None:
    body = {
        "userName": "ann@example.com",
        "displayName": "Ann",
        USER_ATTRIBUTES: {"omni_user_email": "x@example.com"},
    }

    response = await api.post(USERS, json=body)

    assert_error(
        response,
        400,
        "Bad Request: urn:omni:params:1.0:UserAttribute: "
        'User attribute "omni_user_email" is read-only',
    )


async def test_an_array_for_a_single_valued_attribute_is_400(
    api: httpx.AsyncClient, attributes: None
) -> None:
    body = {
        "userName": "ann@example.com",
        "displayName": "Ann",
        USER_ATTRIBUTES: {"region": ["west", "east"]},
    }

    response = await api.post(USERS, json=body)

    assert_error(
        response,
        400,
        "Bad Request: urn:omni:params:1.0:UserAttribute.region: "
        "Expected a single value, not an array",
    )


async def test_a_number_attribute_rejects_a_non_number(
    api: httpx.AsyncClient, attributes: None
) -> None:
    body = {
        "userName": "ann@example.com",
        "displayName": "Ann",
        USER_ATTRIBUTES: {"level": "high"},
    }

    response = await api.post(USERS, json=body)

    assert_error(
        response,
        400,
        'Bad Request: urn:omni:params:1.0:UserAttribute.level: "high" is not a number',
    )


async def test_a_refused_create_creates_nobody(
    api: httpx.AsyncClient, attributes: None
) -> None:
    body = {
        "userName": "ann@example.com",
        "displayName": "Ann",
        USER_ATTRIBUTES: {"level": "high"},
    }

    await api.post(USERS, json=body)

    assert (await listed(api))["totalResults"] == 1


async def test_values_reach_the_routing_snapshot(
    api: httpx.AsyncClient, services: Services, attributes: None
) -> None:
    user = await create_user(api, "ann@example.com", {"regions": ["us", "eu"]})

    snapshot = services.snapshot()

    assert snapshot.users[user["id"]].values == {"regions": ("us", "eu")}


# -- GET one ---------------------------------------------------------------------


async def test_get_returns_the_resource(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")

    response = await api.get(f"{USERS}/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created


async def test_get_of_an_unknown_user_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{USERS}/{UNKNOWN_ID}")

    assert_error(response, 404, "User not found")


async def test_get_with_a_malformed_id_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{USERS}/ann")

    assert_error(response, 404, "User not found")


# -- PUT -------------------------------------------------------------------------


async def test_put_changes_only_the_fields_given(
    api: httpx.AsyncClient, attributes: None
) -> None:
    created = await create_user(api, "ann@example.com", {"region": "west"})
    body = {"userName": "ann@example.com", "displayName": "Ann Lee"}

    response = await api.put(f"{USERS}/{created['id']}", json=body)

    assert response.status_code == 200
    user = response.json()
    assert (user["displayName"], user["active"]) == ("Ann Lee", True)
    assert user[USER_ATTRIBUTES] == {"region": "west"}


async def test_put_deactivates(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")
    body = {"userName": "ann@example.com", "active": False}

    response = await api.put(f"{USERS}/{created['id']}", json=body)

    assert response.json()["active"] is False


async def test_put_sets_and_unsets_attribute_values(
    api: httpx.AsyncClient, attributes: None
) -> None:
    created = await create_user(api, "ann@example.com", {"region": "west"})
    body = {
        "userName": "ann@example.com",
        USER_ATTRIBUTES: {"region": None, "level": 3},
    }

    response = await api.put(f"{USERS}/{created['id']}", json=body)

    assert response.json()[USER_ATTRIBUTES] == {"level": "3"}


async def test_put_accepts_the_email_in_another_case(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")

    response = await api.put(
        f"{USERS}/{created['id']}", json={"userName": "Ann@Example.com"}
    )

    assert response.status_code == 200
    assert response.json()["userName"] == "ann@example.com"


async def test_put_with_another_email_is_400(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")

    response = await api.put(
        f"{USERS}/{created['id']}", json={"userName": "bob@example.com"}
    )

    assert_error(
        response,
        400,
        "Bad Request: userName: Must equal the user's email, which cannot be changed",
    )


async def test_put_without_user_name_is_400(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")

    response = await api.put(f"{USERS}/{created['id']}", json={"displayName": "A"})

    assert_error(response, 400, "Bad Request: userName: Required")


async def test_put_with_a_non_boolean_active_is_400(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")
    body = {"userName": "ann@example.com", "active": 0}

    response = await api.put(f"{USERS}/{created['id']}", json=body)

    assert_error(response, 400, "Bad Request: active: Expected a boolean")


async def test_put_of_an_unknown_user_is_404(api: httpx.AsyncClient) -> None:
    response = await api.put(
        f"{USERS}/{UNKNOWN_ID}", json={"userName": "ann@example.com"}
    )

    assert_error(response, 404, "User not found")


# -- PATCH -----------------------------------------------------------------------


async def test_patch_replace_active_deactivates(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")
    body = patch_body({"op": "replace", "path": "active", "value": False})

    response = await api.patch(f"{USERS}/{created['id']}", json=body)

    assert response.status_code == 200
    assert response.json()["active"] is False


async def test_patch_ops_and_paths_are_case_insensitive(
    api: httpx.AsyncClient,
) -> None:
    created = await create_user(api, "ann@example.com")
    body = patch_body({"op": "Replace", "path": "DisplayName", "value": "Ann Lee"})

    response = await api.patch(f"{USERS}/{created['id']}", json=body)

    assert response.json()["displayName"] == "Ann Lee"


async def test_patch_active_accepts_a_boolean_string(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")
    body = patch_body({"op": "Replace", "path": "active", "value": "False"})

    response = await api.patch(f"{USERS}/{created['id']}", json=body)

    assert response.json()["active"] is False


async def test_patch_sets_an_attribute_by_path(
    api: httpx.AsyncClient, attributes: None
) -> None:
    created = await create_user(api, "ann@example.com")
    path = "urn:omni:params:1.0:UserAttribute:region"
    body = patch_body({"op": "replace", "path": path, "value": "West Coast"})

    response = await api.patch(f"{USERS}/{created['id']}", json=body)

    assert response.json()[USER_ATTRIBUTES] == {"region": "West Coast"}


async def test_patch_remove_unsets_an_attribute(
    api: httpx.AsyncClient, attributes: None
) -> None:
    created = await create_user(api, "ann@example.com", {"region": "west"})
    path = "urn:omni:params:1.0:UserAttribute:region"

    response = await api.patch(
        f"{USERS}/{created['id']}", json=patch_body({"op": "remove", "path": path})
    )

    assert response.json()[USER_ATTRIBUTES] == {}


async def test_patch_add_extends_a_multi_valued_attribute(
    api: httpx.AsyncClient, attributes: None
) -> None:
    created = await create_user(api, "ann@example.com", {"regions": ["us"]})
    path = "urn:omni:params:1.0:UserAttribute:regions"
    body = patch_body({"op": "add", "path": path, "value": ["eu", "us"]})

    response = await api.patch(f"{USERS}/{created['id']}", json=body)

    assert response.json()[USER_ATTRIBUTES] == {"regions": ["us", "eu"]}


async def test_patch_replace_sets_a_multi_valued_attribute(
    api: httpx.AsyncClient, attributes: None
) -> None:
    created = await create_user(api, "ann@example.com", {"regions": ["us"]})
    path = "urn:omni:params:1.0:UserAttribute:regions"
    body = patch_body({"op": "replace", "path": path, "value": ["eu"]})

    response = await api.patch(f"{USERS}/{created['id']}", json=body)

    assert response.json()[USER_ATTRIBUTES] == {"regions": ["eu"]}


@pytest.mark.parametrize(
    ("raw", "stored"),
    [(b"1.50", "1.50"), (b"0.000001", "0.000001"), (b"1e2", "1e2"), (b"7", "7")],
)
async def test_a_json_number_for_a_string_attribute_is_kept_as_written(
    api: httpx.AsyncClient, attributes: None, raw: bytes, stored: str
) -> None:
    body = (
        b'{"userName": "ann@example.com", "displayName": "Ann", '
        b'"urn:omni:params:1.0:UserAttribute": {"region": ' + raw + b"}}"
    )

    response = await api.post(
        USERS, content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 201, response.text
    assert response.json()[USER_ATTRIBUTES] == {"region": stored}


async def test_a_multi_valued_attribute_takes_a_comma_separated_string(
    api: httpx.AsyncClient, attributes: None
) -> None:
    created = await create_user(
        api, "ann@example.com", {"regions": "us, eu,,us", "region": "us,eu"}
    )

    # The single-valued attribute keeps its comma: it is part of the value.
    assert created[USER_ATTRIBUTES] == {"regions": ["us", "eu"], "region": "us,eu"}


async def test_patch_remove_with_a_value_removes_only_that_value(
    api: httpx.AsyncClient, attributes: None
) -> None:
    created = await create_user(api, "ann@example.com", {"regions": ["us", "eu"]})
    path = "urn:omni:params:1.0:UserAttribute:regions"
    body = patch_body({"op": "remove", "path": path, "value": ["us"]})

    response = await api.patch(f"{USERS}/{created['id']}", json=body)

    assert response.json()[USER_ATTRIBUTES] == {"regions": ["eu"]}


async def test_patch_without_path_replaces_the_fields_of_the_object(
    api: httpx.AsyncClient, attributes: None
) -> None:
    created = await create_user(api, "ann@example.com")
    value = {
        "active": False,
        "displayName": "Ann Lee",
        USER_ATTRIBUTES: {"region": "west", "level": "07"},
    }

    response = await api.patch(
        f"{USERS}/{created['id']}", json=patch_body({"op": "replace", "value": value})
    )

    user = response.json()
    assert (user["active"], user["displayName"]) == (False, "Ann Lee")
    assert user[USER_ATTRIBUTES] == {"level": "7", "region": "west"}


async def test_patch_ignores_core_fields_pointsman_does_not_keep(
    api: httpx.AsyncClient,
) -> None:
    created = await create_user(api, "ann@example.com")
    body = patch_body({"op": "replace", "path": "name.givenName", "value": "Ann"})

    response = await api.patch(f"{USERS}/{created['id']}", json=body)

    assert response.status_code == 200


async def test_patch_helper_sets_values(
    api: httpx.AsyncClient, attributes: None
) -> None:
    created = await create_user(api, "ann@example.com")

    user = await set_attributes(api, created["id"], {"region": "west", "level": 1})

    assert user[USER_ATTRIBUTES] == {"level": "1", "region": "west"}


async def test_patch_with_an_unknown_op_is_400(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")
    body = patch_body({"op": "move", "path": "active", "value": False})

    response = await api.patch(f"{USERS}/{created['id']}", json=body)

    assert_error(
        response,
        400,
        "Bad Request: Operations.0.op: Invalid enum value. "
        "Expected 'add' | 'replace' | 'remove', received 'move'",
    )


async def test_patch_without_operations_is_400(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")

    response = await api.patch(
        f"{USERS}/{created['id']}", json={"schemas": [PATCH_SCHEMA]}
    )

    assert_error(response, 400, "Bad Request: Operations: Required")


async def test_patch_with_no_operation_is_400(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")

    response = await api.patch(f"{USERS}/{created['id']}", json=patch_body())

    assert_error(
        response, 400, "Bad Request: Operations: Expected at least one operation"
    )


async def test_patch_of_an_unsupported_path_is_400(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")
    body = patch_body({"op": "replace", "path": "nickName", "value": "A"})

    response = await api.patch(f"{USERS}/{created['id']}", json=body)

    assert_error(
        response, 400, 'Bad Request: Operations.0.path: Unsupported path "nickName"'
    )


async def test_patch_remove_without_a_path_is_400(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")
    body = patch_body({"op": "remove", "value": {"active": True}})

    response = await api.patch(f"{USERS}/{created['id']}", json=body)

    assert_error(response, 400, "Bad Request: Operations.0.path: Required for remove")


async def test_patch_removing_a_core_field_is_400(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")
    body = patch_body({"op": "remove", "path": "displayName"})

    response = await api.patch(f"{USERS}/{created['id']}", json=body)

    assert_error(
        response, 400, 'Bad Request: Operations.0.path: "displayname" cannot be removed'
    )


async def test_patch_changing_the_email_is_400(api: httpx.AsyncClient) -> None:
    created = await create_user(api, "ann@example.com")
    body = patch_body({"op": "replace", "path": "userName", "value": "b@example.com"})

    response = await api.patch(f"{USERS}/{created['id']}", json=body)

    assert_error(
        response,
        400,
        "Bad Request: userName: Must equal the user's email, which cannot be changed",
    )


async def test_patch_with_an_unknown_attribute_is_400(
    api: httpx.AsyncClient,
) -> None:
    created = await create_user(api, "ann@example.com")
    path = "urn:omni:params:1.0:UserAttribute:planet"
    body = patch_body({"op": "replace", "path": path, "value": "mars"})

    response = await api.patch(f"{USERS}/{created['id']}", json=body)

    assert_error(
        response,
        400,
        "Bad Request: urn:omni:params:1.0:UserAttribute: "
        'Unknown user attribute "planet"',
    )


async def test_a_refused_patch_changes_nothing(
    api: httpx.AsyncClient, attributes: None
) -> None:
    created = await create_user(api, "ann@example.com", {"region": "west"})
    body = patch_body(
        {"op": "replace", "path": "active", "value": False},
        {"op": "replace", "path": "urn:omni:params:1.0:UserAttribute:region"},
        {
            "op": "replace",
            "path": "urn:omni:params:1.0:UserAttribute:level",
            "value": "x",
        },
    )

    await api.patch(f"{USERS}/{created['id']}", json=body)

    assert (await api.get(f"{USERS}/{created['id']}")).json() == created


async def test_patch_of_an_unknown_user_is_404(api: httpx.AsyncClient) -> None:
    body = patch_body({"op": "replace", "path": "active", "value": False})

    response = await api.patch(f"{USERS}/{UNKNOWN_ID}", json=body)

    assert_error(response, 404, "User not found")


# -- DELETE ----------------------------------------------------------------------


async def test_delete_answers_204_and_the_user_is_gone(
    api: httpx.AsyncClient,
) -> None:
    created = await create_user(api, "ann@example.com")

    response = await api.delete(f"{USERS}/{created['id']}")

    assert (response.status_code, response.content) == (204, b"")
    assert_error(await api.get(f"{USERS}/{created['id']}"), 404, "User not found")


async def test_delete_removes_the_users_values(
    api: httpx.AsyncClient, services: Services, attributes: None
) -> None:
    created = await create_user(api, "ann@example.com", {"region": "west"})

    await api.delete(f"{USERS}/{created['id']}")

    with services.store.read() as session:
        left = session.scalars(select(models.UserAttributeValue)).all()
    assert left == []


async def test_a_deleted_users_token_answers_401(
    api: httpx.AsyncClient, services: Services
) -> None:
    created = await create_user(api, "ann@example.com")
    client = await pat_client(api, services, created["id"])

    await api.delete(f"{USERS}/{created['id']}")

    assert_error(
        await client.get("/api/v1/whoami"),
        401,
        "Unauthorized: Missing or invalid API key",
    )


async def test_a_deactivated_users_token_answers_401(
    api: httpx.AsyncClient, services: Services
) -> None:
    created = await create_user(api, "ann@example.com")
    client = await pat_client(api, services, created["id"])
    body = patch_body({"op": "replace", "path": "active", "value": False})

    await api.patch(f"{USERS}/{created['id']}", json=body)

    assert_error(
        await client.get("/api/v1/whoami"),
        401,
        "Unauthorized: Missing or invalid API key",
    )


async def test_delete_of_an_unknown_user_is_404(api: httpx.AsyncClient) -> None:
    response = await api.delete(f"{USERS}/{UNKNOWN_ID}")

    assert_error(response, 404, "User not found")


# -- who may -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "", None),
        ("POST", "", {"userName": "x@example.com", "displayName": "X"}),
        ("GET", "/{id}", None),
        ("PUT", "/{id}", {"userName": "admin@example.com"}),
        ("PATCH", "/{id}", patch_body({"op": "replace", "path": "active", "value": 1})),
        ("DELETE", "/{id}", None),
    ],
)
async def test_a_personal_token_is_refused_with_403(
    api: httpx.AsyncClient,
    services: Services,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    admin = (await listed(api))["Resources"][0]
    client = await pat_client(api, services, admin["id"])

    url = USERS + path.format(id=admin["id"])
    response = await client.request(method, url, json=body)

    assert_error(response, 403, "Permission denied")


async def test_a_caller_without_a_token_is_401(anon: httpx.AsyncClient) -> None:
    response = await anon.get(USERS)

    assert_error(response, 401, "Unauthorized: Missing or invalid API key")
