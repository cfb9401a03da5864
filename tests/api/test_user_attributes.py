"""User-attribute definitions: GET (Omni's) and POST/PATCH/DELETE (extension)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from helpers import (
    ATTRIBUTES,
    assert_error,
    create_attribute,
    create_user,
    pat_client,
)
from sqlalchemy import select

from pointsman.services.container import Services
from pointsman.store import models

pytestmark = pytest.mark.anyio

RECORD_KEYS = {
    "id",
    "name",
    "label",
    "description",
    "type",
    "multiple_values",
    "default_value",
    "system",
}
SYSTEM = [
    "omni_user_id",
    "omni_user_email",
    "omni_user_name",
    "omni_user_groups",
    "omni_is_org_admin",
]
VALUES = "urn:omni:params:1.0:UserAttribute"


def add_connection(services: Services, attribute: str, *, archived: bool) -> None:
    """A base connection that routes on ``attribute``, written to the store
    directly so these tests do not depend on the connections API."""
    with services.store.write() as session:
        session.add(
            models.Connection(
                name="Postgres (Development)",
                dialect="postgres",
                environment_attribute=attribute,
                deleted_at=models.utcnow() if archived else None,
            )
        )


async def records(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await api.get(ATTRIBUTES)
    assert response.status_code == 200, response.text
    return list(response.json()["records"])


# -- GET -------------------------------------------------------------------------


async def test_list_shows_the_system_attributes_first(api: httpx.AsyncClient) -> None:
    response = await api.get(ATTRIBUTES)

    assert response.status_code == 200
    listed = response.json()["records"]
    assert [record["name"] for record in listed] == SYSTEM
    assert all(record["system"] and record["id"] == "" for record in listed)


async def test_every_record_has_exactly_the_documented_keys(
    api: httpx.AsyncClient,
) -> None:
    await create_attribute(api, "region")

    listed = await records(api)

    assert all(set(record) == RECORD_KEYS for record in listed)


async def test_custom_attributes_follow_in_creation_order(
    api: httpx.AsyncClient,
) -> None:
    await create_attribute(api, "zone")
    await create_attribute(api, "environment")

    listed = await records(api)

    assert [record["name"] for record in listed[len(SYSTEM) :]] == [
        "zone",
        "environment",
    ]


# -- POST ------------------------------------------------------------------------


async def test_create_answers_201_with_the_record(api: httpx.AsyncClient) -> None:
    response = await api.post(ATTRIBUTES, json={"name": "environment"})

    assert response.status_code == 201
    record = response.json()
    assert record == {
        "id": record["id"],
        "name": "environment",
        "label": "environment",
        "description": None,
        "type": "String",
        "multiple_values": False,
        "default_value": None,
        "system": False,
    }


async def test_create_keeps_label_description_and_a_trimmed_default(
    api: httpx.AsyncClient,
) -> None:
    body = {
        "name": "region",
        "label": "Region",
        "description": "Where the user works",
        "default_value": "  west ",
    }

    response = await api.post(ATTRIBUTES, json=body)

    record = response.json()
    assert (record["label"], record["description"]) == (
        "Region",
        "Where the user works",
    )
    assert record["default_value"] == "west"


async def test_a_number_default_is_stored_in_canonical_form(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(
        ATTRIBUTES, json={"name": "level", "type": "Number", "default_value": "01.50"}
    )

    assert response.json()["default_value"] == "1.5"


async def test_a_multi_valued_default_is_an_array(api: httpx.AsyncClient) -> None:
    body = {"name": "regions", "multiple_values": True, "default_value": ["us", "eu"]}

    response = await api.post(ATTRIBUTES, json=body)

    assert response.json()["default_value"] == ["us", "eu"]


async def test_create_accepts_camel_case_keys(api: httpx.AsyncClient) -> None:
    body = {"name": "regions", "multipleValues": True, "defaultValue": ["us"]}

    response = await api.post(ATTRIBUTES, json=body)

    record = response.json()
    assert (record["multiple_values"], record["default_value"]) == (True, ["us"])


async def test_create_without_a_name_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post(ATTRIBUTES, json={"label": "Region"})

    assert_error(response, 400, "Bad Request: name: Required")


@pytest.mark.parametrize("name", ["Region", "1region", "re-gion", "région", "_x"])
async def test_create_with_a_malformed_name_is_400(
    api: httpx.AsyncClient, name: str
) -> None:
    response = await api.post(ATTRIBUTES, json={"name": name})

    assert_error(
        response,
        400,
        "Bad Request: name: Must start with a lowercase letter and contain only "
        "lowercase letters, digits and underscores",
    )


async def test_create_with_a_taken_name_is_409(api: httpx.AsyncClient) -> None:
    await create_attribute(api, "region")

    response = await api.post(ATTRIBUTES, json={"name": "region"})

    assert_error(response, 409, "User attribute region already exists")


async def test_create_with_a_system_name_is_409(api: httpx.AsyncClient) -> None:
    response = await api.post(ATTRIBUTES, json={"name": "omni_user_email"})

    assert_error(response, 409, "User attribute omni_user_email is a system attribute")


async def test_create_with_an_unknown_type_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post(ATTRIBUTES, json={"name": "region", "type": "Boolean"})

    assert_error(
        response,
        400,
        "Bad Request: type: Invalid enum value. Expected 'String' | 'Number', "
        "received 'Boolean'",
    )


async def test_an_array_default_on_a_single_valued_attribute_is_400(
    api: httpx.AsyncClient,
) -> None:
    body = {"name": "region", "default_value": ["us", "eu"]}

    response = await api.post(ATTRIBUTES, json=body)

    assert_error(
        response,
        400,
        "Bad Request: default_value: Expected a single value, not an array",
    )


async def test_a_non_number_default_on_a_number_attribute_is_400(
    api: httpx.AsyncClient,
) -> None:
    body = {"name": "level", "type": "Number", "default_value": "high"}

    response = await api.post(ATTRIBUTES, json=body)

    assert_error(response, 400, 'Bad Request: default_value: "high" is not a number')


async def test_a_non_boolean_multiple_values_is_400(api: httpx.AsyncClient) -> None:
    body = {"name": "region", "multiple_values": "yes"}

    response = await api.post(ATTRIBUTES, json=body)

    assert_error(response, 400, "Bad Request: multiple_values: Expected a boolean")


async def test_create_with_an_empty_body_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post(ATTRIBUTES, content=b"")

    assert_error(response, 400, "Bad Request: Empty request body")


# -- PATCH -----------------------------------------------------------------------


async def test_patch_changes_label_description_and_default(
    api: httpx.AsyncClient,
) -> None:
    created = await create_attribute(api, "region")
    changes = {"label": "Region", "description": "Sales region", "defaultValue": "eu"}

    response = await api.patch(f"{ATTRIBUTES}/{created['id']}", json=changes)

    assert response.status_code == 200
    assert response.json() == {
        **created,
        "label": "Region",
        "description": "Sales region",
        "default_value": "eu",
    }


async def test_patch_with_a_null_default_clears_it(api: httpx.AsyncClient) -> None:
    created = await create_attribute(api, "region", default_value="eu")

    response = await api.patch(
        f"{ATTRIBUTES}/{created['id']}", json={"default_value": None}
    )

    assert response.json()["default_value"] is None


async def test_patch_makes_an_attribute_multi_valued(api: httpx.AsyncClient) -> None:
    created = await create_attribute(api, "region", default_value="eu")

    response = await api.patch(
        f"{ATTRIBUTES}/{created['id']}", json={"multiple_values": True}
    )

    record = response.json()
    assert (record["multiple_values"], record["default_value"]) == (True, ["eu"])


async def test_going_single_valued_keeps_users_with_one_value(
    api: httpx.AsyncClient,
) -> None:
    created = await create_attribute(api, "region", multiple_values=True)
    user = await create_user(api, "ann@example.com", {"region": ["eu"]})

    response = await api.patch(
        f"{ATTRIBUTES}/{created['id']}", json={"multiple_values": False}
    )

    assert response.json()["multiple_values"] is False
    fetched = (await api.get(f"/api/scim/v2/Users/{user['id']}")).json()
    assert fetched[VALUES] == {"region": "eu"}


async def test_going_single_valued_while_a_user_has_several_values_is_409(
    api: httpx.AsyncClient,
) -> None:
    created = await create_attribute(api, "region", multiple_values=True)
    await create_user(api, "ann@example.com", {"region": ["eu", "us"]})

    response = await api.patch(
        f"{ATTRIBUTES}/{created['id']}", json={"multiple_values": False}
    )

    assert_error(
        response,
        409,
        "User attribute region cannot become single-valued: "
        "1 user(s) have several values",
    )


async def test_a_refused_change_to_single_valued_loses_no_value(
    api: httpx.AsyncClient,
) -> None:
    created = await create_attribute(api, "region", multiple_values=True)
    user = await create_user(api, "ann@example.com", {"region": ["eu", "us"]})

    await api.patch(f"{ATTRIBUTES}/{created['id']}", json={"multiple_values": False})

    fetched = (await api.get(f"/api/scim/v2/Users/{user['id']}")).json()
    assert fetched[VALUES] == {"region": ["eu", "us"]}
    assert (await records(api))[-1]["multiple_values"] is True


async def test_going_single_valued_with_several_default_values_is_409(
    api: httpx.AsyncClient,
) -> None:
    created = await create_attribute(
        api, "region", multiple_values=True, default_value=["eu", "us"]
    )

    response = await api.patch(
        f"{ATTRIBUTES}/{created['id']}", json={"multiple_values": False}
    )

    assert_error(
        response,
        409,
        "User attribute region cannot become single-valued: "
        "its default value has several values",
    )


async def test_patch_checks_a_new_default_against_the_new_multiplicity(
    api: httpx.AsyncClient,
) -> None:
    created = await create_attribute(
        api, "region", multiple_values=True, default_value=["eu", "us"]
    )
    changes = {"multiple_values": False, "default_value": "eu"}

    response = await api.patch(f"{ATTRIBUTES}/{created['id']}", json=changes)

    assert response.json()["default_value"] == "eu"


async def test_patch_cannot_rename(api: httpx.AsyncClient) -> None:
    created = await create_attribute(api, "region")

    response = await api.patch(f"{ATTRIBUTES}/{created['id']}", json={"name": "zone"})

    assert_error(response, 400, "Bad Request: name: Cannot be changed")


async def test_patch_cannot_change_the_type(api: httpx.AsyncClient) -> None:
    created = await create_attribute(api, "region")

    response = await api.patch(f"{ATTRIBUTES}/{created['id']}", json={"type": "Number"})

    assert_error(response, 400, "Bad Request: type: Cannot be changed")


async def test_patch_of_an_unknown_attribute_is_404(api: httpx.AsyncClient) -> None:
    response = await api.patch(
        f"{ATTRIBUTES}/00000000-0000-0000-0000-000000000000", json={"label": "x"}
    )

    assert_error(response, 404, "User attribute not found")


async def test_patch_with_an_empty_body_is_400(api: httpx.AsyncClient) -> None:
    created = await create_attribute(api, "region")

    response = await api.patch(f"{ATTRIBUTES}/{created['id']}", content=b"")

    assert_error(response, 400, "Bad Request: Empty request body")


# -- DELETE ----------------------------------------------------------------------


async def test_delete_answers_success_and_unlists(api: httpx.AsyncClient) -> None:
    created = await create_attribute(api, "region")

    response = await api.delete(f"{ATTRIBUTES}/{created['id']}")

    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert [record["name"] for record in await records(api)] == SYSTEM


async def test_delete_removes_every_users_values(
    api: httpx.AsyncClient, services: Services
) -> None:
    created = await create_attribute(api, "region")
    await create_user(api, "ann@example.com", {"region": "eu"})

    await api.delete(f"{ATTRIBUTES}/{created['id']}")

    with services.store.read() as session:
        left = session.scalars(select(models.UserAttributeValue)).all()
    assert left == []


async def test_delete_of_an_attribute_a_connection_routes_on_is_409(
    api: httpx.AsyncClient, services: Services
) -> None:
    created = await create_attribute(api, "environment")
    add_connection(services, "environment", archived=False)

    response = await api.delete(f"{ATTRIBUTES}/{created['id']}")

    assert_error(
        response,
        409,
        "User attribute environment is used by connection Postgres (Development)",
    )


async def test_an_archived_connection_does_not_block_delete(
    api: httpx.AsyncClient, services: Services
) -> None:
    created = await create_attribute(api, "environment")
    add_connection(services, "environment", archived=True)

    response = await api.delete(f"{ATTRIBUTES}/{created['id']}")

    assert response.status_code == 200


async def test_delete_of_an_unknown_attribute_is_404(api: httpx.AsyncClient) -> None:
    response = await api.delete(f"{ATTRIBUTES}/not-a-uuid")

    assert_error(response, 404, "User attribute not found")


# -- who may -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "", None),
        ("POST", "", {"name": "region"}),
        ("PATCH", "/{id}", {"label": "Region"}),
        ("DELETE", "/{id}", None),
    ],
)
async def test_a_member_is_refused_with_403(
    api: httpx.AsyncClient,
    services: Services,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    created = await create_attribute(api, "zone")
    member = await create_user(api, "member@example.com")
    client = await pat_client(api, services, member["id"])

    url = ATTRIBUTES + path.format(id=created["id"])
    response = await client.request(method, url, json=body)

    assert_error(response, 403, "Permission denied")


async def test_an_org_admin_pat_may_list(
    api: httpx.AsyncClient, services: Services
) -> None:
    admin_id = (await api.get("/api/v1/whoami")).json()["user"]["id"]
    client = await pat_client(api, services, admin_id)

    response = await client.get(ATTRIBUTES)

    assert response.status_code == 200


async def test_a_caller_without_a_token_is_401(anon: httpx.AsyncClient) -> None:
    response = await anon.get(ATTRIBUTES)

    assert_error(response, 401, "Unauthorized: Missing or invalid API key")
