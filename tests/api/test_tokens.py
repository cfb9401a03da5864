"""API keys, whoami and authentication (spec §2)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from helpers import assert_error, create_user

from pointsman.services.container import Services
from pointsman.services.tokens import create_token

pytestmark = pytest.mark.anyio

UNKNOWN = "9b6c1f3e-0000-4000-8000-000000000000"


async def test_whoami_of_the_org_key(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/whoami")

    body = response.json()
    assert body["keyScope"] == "organization"
    assert body["orgRole"] == "ORG_ADMIN"
    assert set(body["user"]) == {"id", "membershipId"}
    assert body["user"]["id"] != body["user"]["membershipId"]


async def test_whoami_of_a_pat_lists_roles_by_connection(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    created = await api.post(
        "/api/v1/connections",
        json={
            "dialect": "sqlite",
            "name": "s",
            "database": "/tmp/x.db",
            "baseRole": "VIEWER",
        },
    )
    user_id, member = make_member("member@example.com")

    body = (await member.get("/api/v1/whoami")).json()

    assert body["keyScope"] == "user"
    assert body["orgRole"] == "MEMBER"
    assert body["user"]["id"] == user_id
    assert body["rolesByConnection"] == {created.json()["data"]: "VIEWER"}


async def test_created_token_is_shown_once_and_prefixed(api: httpx.AsyncClient) -> None:
    user = await create_user(api, "u@example.com")

    response = await api.post(
        "/api/v1/api-keys",
        json={"name": "laptop", "type": "personal", "userId": user["id"]},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["token"].startswith("psm_pat_")
    listed = await api.get("/api/v1/api-keys")
    assert body["token"] not in listed.text


async def test_list_pages_with_a_cursor(
    api: httpx.AsyncClient, services: Services
) -> None:
    admin = (await api.get("/api/v1/whoami")).json()["user"]["id"]
    for index in range(4):
        create_token(
            services.store, name=f"k{index}", kind="organization", user_id=admin
        )

    first = (await api.get("/api/v1/api-keys", params={"pageSize": 2})).json()
    cursor = first["pageInfo"]["nextCursor"]
    second = (
        await api.get("/api/v1/api-keys", params={"pageSize": 2, "cursor": cursor})
    ).json()
    third = (
        await api.get(
            "/api/v1/api-keys",
            params={"pageSize": 2, "cursor": second["pageInfo"]["nextCursor"]},
        )
    ).json()

    assert first["pageInfo"]["totalRecords"] == 5
    ids = [r["id"] for page in (first, second, third) for r in page["records"]]
    assert len(set(ids)) == 5
    assert third["pageInfo"] == {
        "hasNextPage": False,
        "nextCursor": None,
        "pageSize": 2,
        "totalRecords": 5,
    }


async def test_list_filters_by_type(api: httpx.AsyncClient, make_member: Any) -> None:
    make_member("member@example.com")

    response = await api.get("/api/v1/api-keys", params={"type": "personal"})

    [record] = response.json()["records"]
    assert record["type"] == "personal"
    assert record["membershipId"] is not None


async def test_list_refuses_a_page_size_over_100(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/api-keys", params={"pageSize": 101})

    assert_error(
        response, 400, "Bad Request: pageSize: Must be a whole number from 1 to 100"
    )


async def test_get_of_an_unknown_key_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get(f"/api/v1/api-keys/{UNKNOWN}")

    assert_error(response, 404, "API key not found")


async def test_get_with_a_malformed_id_is_400(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/api-keys/abc")

    assert_error(response, 400, "Bad Request: id: Invalid uuid")


async def test_a_disabled_org_key_answers_401_until_enabled(
    api: httpx.AsyncClient, services: Services, anon: httpx.AsyncClient
) -> None:
    admin = (await api.get("/api/v1/whoami")).json()["user"]["id"]
    second = create_token(
        services.store, name="second", kind="organization", user_id=admin
    )
    headers = {"Authorization": f"Bearer {second['token']}"}

    disabled = await api.put(
        f"/api/v1/api-keys/{second['id']}", json={"enabled": False}
    )
    refused = await anon.get("/api/v1/whoami", headers=headers)
    await api.put(f"/api/v1/api-keys/{second['id']}", json={"enabled": True})
    accepted = await anon.get("/api/v1/whoami", headers=headers)

    assert disabled.json()["enabled"] is False
    assert_error(refused, 401, "Unauthorized: Missing or invalid API key")
    assert accepted.status_code == 200


async def test_a_pat_cannot_be_disabled(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    make_member("member@example.com")
    [pat] = (await api.get("/api/v1/api-keys", params={"type": "personal"})).json()[
        "records"
    ]

    response = await api.put(f"/api/v1/api-keys/{pat['id']}", json={"enabled": False})

    assert_error(response, 400, "Only organization API keys can be disabled")


async def test_a_revoked_token_answers_401(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    _, member = make_member("member@example.com")
    [pat] = (await api.get("/api/v1/api-keys", params={"type": "personal"})).json()[
        "records"
    ]

    deleted = await api.delete(f"/api/v1/api-keys/{pat['id']}")
    response = await member.get("/api/v1/whoami")

    assert deleted.json()["success"] is True
    assert_error(response, 401, "Unauthorized: Missing or invalid API key")


async def test_the_org_key_dies_with_its_creator(
    api: httpx.AsyncClient, services: Services, anon: httpx.AsyncClient
) -> None:
    creator = await create_user(api, "second.admin@example.com")
    from pointsman.services.setup import ensure_admin

    ensure_admin(services.store, "second.admin@example.com")
    key = create_token(
        services.store, name="k", kind="organization", user_id=creator["id"]
    )
    headers = {"Authorization": f"Bearer {key['token']}"}
    before = await anon.get("/api/v1/whoami", headers=headers)

    await api.delete(f"/api/scim/v2/Users/{creator['id']}")
    after = await anon.get("/api/v1/whoami", headers=headers)

    assert before.status_code == 200
    assert_error(after, 401, "Unauthorized: Missing or invalid API key")


async def test_a_member_may_create_only_their_own_pat(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    user_id, member = make_member("member@example.com")
    other = await create_user(api, "other@example.com")

    own = await member.post(
        "/api/v1/api-keys", json={"name": "mine", "type": "personal"}
    )
    foreign = await member.post(
        "/api/v1/api-keys",
        json={"name": "x", "type": "personal", "userId": other["id"]},
    )
    org = await member.post(
        "/api/v1/api-keys", json={"name": "x", "type": "organization"}
    )

    assert own.status_code == 201
    assert_error(foreign, 403, "Permission denied")
    assert_error(org, 403, "Permission denied")


async def test_listing_keys_needs_org_admin(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    _, member = make_member("member@example.com")

    response = await member.get("/api/v1/api-keys")

    assert_error(response, 403, "Permission denied")


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer psm_org_not-a-real-token", "Basic abc", "Bearer garbage"],
)
async def test_a_bad_authorization_header_is_401(
    anon: httpx.AsyncClient, header: str
) -> None:
    response = await anon.get("/api/v1/whoami", headers={"Authorization": header})

    assert_error(response, 401, "Unauthorized: Missing or invalid API key")
