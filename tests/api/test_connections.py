"""Connections (spec §4): shapes and every documented error."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bodies import connection_body
from helpers import assert_error

pytestmark = pytest.mark.anyio


async def create(api: httpx.AsyncClient, **changes: Any) -> str:
    response = await api.post("/api/v1/connections", json=connection_body(**changes))
    assert response.status_code == 201, response.text
    return str(response.json()["data"])


async def test_create_answers_201_with_the_new_id(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/connections", json=connection_body())

    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True
    assert len(body["data"]) == 36


async def test_get_returns_the_connection_without_its_password(
    api: httpx.AsyncClient,
) -> None:
    connection_id = await create(api)

    response = await api.get(f"/api/v1/connections/{connection_id}")

    assert response.status_code == 200
    connection = response.json()["connection"]
    assert connection["id"] == connection_id
    assert connection["name"] == "Postgres (Development)"
    assert connection["dialect"] == "postgres"
    assert connection["port"] == 5432
    assert connection["queryTimeoutSeconds"] == 900
    assert connection["baseRole"] == "QUERIER"
    assert connection["deletedAt"] is None
    assert connection["createdAt"].endswith("Z")
    assert connection["userAttributeNameForConnectionEnvironments"] is None
    assert connection["userAttributeValuesForDefaultEnvironment"] is None
    assert "mypassword" not in response.text
    assert "passwordUnencrypted" not in connection


@pytest.mark.parametrize(
    "field",
    ["dialect", "name", "host", "port", "database", "username", "passwordUnencrypted"],
)
async def test_create_without_a_required_field_names_it(
    api: httpx.AsyncClient, field: str
) -> None:
    body = connection_body()
    del body[field]

    response = await api.post("/api/v1/connections", json=body)

    assert_error(response, 400, f"Bad Request: {field}: Required")


async def test_create_with_an_unknown_dialect_is_refused(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(
        "/api/v1/connections", json=connection_body(dialect="oracle9i")
    )

    assert_error(response, 400, "Invalid connection dialect")


async def test_create_with_invalid_json_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v1/connections",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )

    assert_error(response, 400, "Bad Request: Invalid JSON")


async def test_create_refuses_a_timeout_over_3600(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v1/connections", json=connection_body(queryTimeoutSeconds=3601)
    )

    assert_error(
        response, 400, "Bad Request: queryTimeoutSeconds: Must be between 1 and 3600"
    )


async def test_create_refuses_a_private_key_on_postgres(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v1/connections", json=connection_body(privateKey="-----BEGIN")
    )

    assert_error(
        response, 400, "Bad Request: privateKey: Not supported for dialect postgres"
    )


async def test_create_refuses_a_full_snowflake_domain(api: httpx.AsyncClient) -> None:
    body = {
        "dialect": "snowflake",
        "name": "Snow",
        "host": "abc123.snowflakecomputing.com",
        "warehouse": "WH",
        "username": "u",
        "passwordUnencrypted": "p",
    }

    response = await api.post("/api/v1/connections", json=body)

    assert_error(
        response,
        400,
        "Bad Request: host: Please only include your Snowflake account identifier",
    )


async def test_create_without_a_token_is_401(anon: httpx.AsyncClient) -> None:
    response = await anon.post("/api/v1/connections", json=connection_body())

    assert_error(response, 401, "Unauthorized: Missing or invalid API key")


async def test_create_by_a_member_is_403(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    _, member = make_member("member@example.com")

    response = await member.post("/api/v1/connections", json=connection_body())

    assert_error(response, 403, "Permission denied")


async def test_list_filters_by_name_case_insensitively(api: httpx.AsyncClient) -> None:
    await create(api, name="Postgres (Development)")
    await create(api, name="Postgres (Production)")

    response = await api.get("/api/v1/connections", params={"name": "PRODUCTION"})

    assert response.status_code == 200
    names = [item["name"] for item in response.json()["connections"]]
    assert names == ["Postgres (Production)"]


async def test_list_sorts_by_the_requested_field(api: httpx.AsyncClient) -> None:
    await create(api, name="b", database="zeta")
    await create(api, name="a", database="alpha")

    response = await api.get(
        "/api/v1/connections", params={"sortField": "name", "sortDirection": "desc"}
    )

    assert [item["name"] for item in response.json()["connections"]] == ["b", "a"]


async def test_list_filters_by_dialect_list(api: httpx.AsyncClient) -> None:
    await create(api, name="pg")
    await create(api, name="my", dialect="mysql", port=3306)

    response = await api.get("/api/v1/connections", params={"dialect": "mysql,mariadb"})

    assert [item["name"] for item in response.json()["connections"]] == ["my"]


async def test_list_refuses_an_unknown_parameter(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/connections", params={"colour": "red"})

    assert_error(
        response,
        400,
        "Bad Request: formErrors: Unrecognized key(s) in object: 'colour'",
    )


async def test_list_refuses_an_unknown_sort_field(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/connections", params={"sortField": "size"})

    assert_error(
        response,
        400,
        "Bad Request: sortField: Invalid enum value. Expected 'database' | "
        "'dialect' | 'name', received 'size'",
    )


async def test_list_refuses_an_unknown_dialect(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/connections", params={"dialect": "foo"})

    assert_error(response, 400, "Invalid dialect(s): foo")


async def test_member_lists_only_connections_they_may_view(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    await create(api, name="open")
    await create(api, name="closed", baseRole="NO_ACCESS")
    _, member = make_member("member@example.com")

    response = await member.get("/api/v1/connections")

    assert [item["name"] for item in response.json()["connections"]] == ["open"]


async def test_get_of_an_unknown_connection_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/connections/9b6c1f3e-0000-4000-8000-000000000000")

    assert_error(response, 404, "Connection not found")


async def test_get_needs_restricted_querier(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    connection_id = await create(api, baseRole="VIEWER")
    _, member = make_member("member@example.com")

    response = await member.get(f"/api/v1/connections/{connection_id}")

    assert_error(response, 403, "Permission denied")


async def test_patch_in_the_walkthrough_form_sets_the_attribute(
    api: httpx.AsyncClient,
) -> None:
    await api.post("/api/v1/user-attributes", json={"name": "environment"})
    connection_id = await create(api)

    response = await api.patch(
        f"/api/v1/connections/{connection_id}",
        json={
            "userAttributeNameForConnectionEnvironments": "environment",
            "userAttributeValuesForDefaultEnvironment": "dev, qa",
        },
    )

    assert response.json() == {
        "success": True,
        "message": "Updated environment user attribute settings.",
    }
    connection = (await api.get(f"/api/v1/connections/{connection_id}")).json()
    assert connection["connection"]["userAttributeNameForConnectionEnvironments"] == (
        "environment"
    )
    assert connection["connection"]["userAttributeValuesForDefaultEnvironment"] == [
        "dev",
        "qa",
    ]


async def test_patch_in_the_reference_form_sets_and_clears_the_attribute(
    api: httpx.AsyncClient,
) -> None:
    await api.post("/api/v1/user-attributes", json={"name": "environment"})
    connection_id = await create(api)
    path = f"/api/v1/connections/{connection_id}"

    set_response = await api.patch(
        path,
        json={
            "environmentUserAttribute": {
                "attributeName": "environment",
                "defaultValues": ["dev"],
            }
        },
    )
    cleared = await api.patch(path, json={"environmentUserAttribute": None})

    assert set_response.status_code == 200
    assert cleared.status_code == 200
    connection = (await api.get(path)).json()["connection"]
    assert connection["userAttributeNameForConnectionEnvironments"] is None
    assert connection["userAttributeValuesForDefaultEnvironment"] is None


async def test_patch_with_both_forms_disagreeing_is_400(api: httpx.AsyncClient) -> None:
    await api.post("/api/v1/user-attributes", json={"name": "environment"})
    await api.post("/api/v1/user-attributes", json={"name": "region"})
    connection_id = await create(api)

    response = await api.patch(
        f"/api/v1/connections/{connection_id}",
        json={
            "environmentUserAttribute": {
                "attributeName": "environment",
                "defaultValues": [],
            },
            "userAttributeNameForConnectionEnvironments": "region",
        },
    )

    assert_error(
        response,
        400,
        "Bad Request: environmentUserAttribute: conflicts with "
        "userAttributeNameForConnectionEnvironments",
    )


async def test_patch_with_an_unknown_attribute_is_400(api: httpx.AsyncClient) -> None:
    connection_id = await create(api)

    response = await api.patch(
        f"/api/v1/connections/{connection_id}",
        json={"userAttributeNameForConnectionEnvironments": "environment"},
    )

    assert_error(
        response,
        400,
        'Bad Request: attributeName: Unknown user attribute "environment"',
    )


@pytest.mark.parametrize("content", [b"", b"{}"])
async def test_patch_with_an_empty_body_is_400(
    api: httpx.AsyncClient, content: bytes
) -> None:
    connection_id = await create(api)

    response = await api.patch(
        f"/api/v1/connections/{connection_id}",
        content=content,
        headers={"Content-Type": "application/json"},
    )

    assert_error(response, 400, "Bad Request: Empty request body")


async def test_patch_of_base_role_answers_omnis_message(api: httpx.AsyncClient) -> None:
    connection_id = await create(api)

    response = await api.patch(
        f"/api/v1/connections/{connection_id}", json={"baseRole": "QUERY_TOPICS"}
    )

    assert response.json()["message"] == "Updated connection default role."
    connection = (await api.get(f"/api/v1/connections/{connection_id}")).json()
    assert connection["connection"]["baseRole"] == "RESTRICTED_QUERIER"


async def test_patch_with_an_invalid_role_is_400(api: httpx.AsyncClient) -> None:
    connection_id = await create(api)

    response = await api.patch(
        f"/api/v1/connections/{connection_id}", json={"baseRole": "OWNER"}
    )

    assert_error(response, 400, "Bad Request: baseRole: Invalid enum value")


async def test_patch_of_the_password_reports_new_credentials(
    api: httpx.AsyncClient,
) -> None:
    connection_id = await create(api)

    response = await api.patch(
        f"/api/v1/connections/{connection_id}",
        json={"passwordUnencrypted": "rotated-secret"},
    )

    assert response.json() == {
        "success": True,
        "message": "Updated connection credentials.",
    }
    assert (
        "rotated-secret"
        not in (await api.get(f"/api/v1/connections/{connection_id}")).text
    )


async def test_patch_of_an_unknown_connection_is_404(api: httpx.AsyncClient) -> None:
    response = await api.patch(
        "/api/v1/connections/9b6c1f3e-0000-4000-8000-000000000000",
        json={"baseRole": "VIEWER"},
    )

    assert_error(response, 404, "Connection not found")


async def test_patch_needs_connection_admin(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    connection_id = await create(api, baseRole="MODELER")
    _, member = make_member("member@example.com")

    response = await member.patch(
        f"/api/v1/connections/{connection_id}", json={"baseRole": "VIEWER"}
    )

    assert_error(response, 403, "Permission denied")


async def test_delete_archives_then_answers_410(api: httpx.AsyncClient) -> None:
    connection_id = await create(api)

    first = await api.delete(f"/api/v1/connections/{connection_id}")
    second = await api.delete(f"/api/v1/connections/{connection_id}")

    assert first.status_code == 200
    assert first.json()["success"] is True
    assert_error(second, 410, f"Connection {connection_id} is already deleted")


async def test_an_archived_connection_is_not_found_and_listed_only_on_request(
    api: httpx.AsyncClient,
) -> None:
    connection_id = await create(api)
    await api.delete(f"/api/v1/connections/{connection_id}")

    got = await api.get(f"/api/v1/connections/{connection_id}")
    listed = await api.get("/api/v1/connections")
    with_deleted = await api.get(
        "/api/v1/connections", params={"includeDeleted": "true"}
    )

    assert_error(got, 404, "Connection not found")
    assert listed.json()["connections"] == []
    [archived] = with_deleted.json()["connections"]
    assert archived["deletedAt"] is not None


async def test_delete_of_an_unknown_connection_is_404(api: httpx.AsyncClient) -> None:
    response = await api.delete(
        "/api/v1/connections/9b6c1f3e-0000-4000-8000-000000000000"
    )

    assert_error(response, 404, "Connection not found")


async def test_test_reports_an_unreachable_database(api: httpx.AsyncClient) -> None:
    connection_id = await create(api, host="127.0.0.1", port=1, connectTimeoutSeconds=2)

    response = await api.post(f"/api/v1/connections/{connection_id}/test")

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    assert "mypassword" not in response.text


async def test_an_unknown_route_answers_the_error_body(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/nothing-here")

    assert_error(response, 404, "Not found")


async def test_a_wrong_method_answers_the_error_body(api: httpx.AsyncClient) -> None:
    response = await api.put("/api/v1/connections")

    assert_error(response, 405, "Invalid method")


async def test_a_name_longer_than_512_characters_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/connections", json=connection_body("x" * 513))

    assert_error(response, 400, "Bad Request: name: Must be at most 512 characters")


async def test_a_nul_character_is_400_naming_the_field(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/connections", json=connection_body("a\x00b"))

    assert_error(response, 400, "Bad Request: name: NUL characters are not allowed")


async def test_a_body_over_the_size_limit_is_413(api: httpx.AsyncClient) -> None:
    body = connection_body(includeSchemas="x" * (11 * 1024 * 1024))

    response = await api.post("/api/v1/connections", json=body)

    assert response.status_code == 413
    assert response.json()["status"] == 413


async def test_an_unexpected_failure_is_a_plain_500(
    api: httpx.AsyncClient, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pointsman.services import connections

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom with secret mypassword inside")

    monkeypatch.setattr(connections, "list_connections", broken)

    response = await api.get("/api/v1/connections")

    assert_error(response, 500, "Internal server error")
