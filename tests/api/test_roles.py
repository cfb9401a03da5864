"""Connection roles: grants to users and groups, the base-role floor, org
admins, and the candidate list of /model-roles (spec §3)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bodies import connection_body
from helpers import assert_error, create_user

from pointsman.services.container import Services

pytestmark = pytest.mark.anyio

GROUPS = "/api/scim/v2/Groups"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
BASE = {"type": "BASE"}


def user_roles(user_id: str) -> str:
    return f"/api/v1/users/{user_id}/model-roles"


def group_roles(group_id: str) -> str:
    return f"/api/v1/user-groups/{group_id}/model-roles"


async def create_connection(
    api: httpx.AsyncClient, name: str = "base", base_role: str = "VIEWER"
) -> str:
    response = await api.post(
        "/api/v1/connections", json=connection_body(name, baseRole=base_role)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["data"])


async def grant(
    api: httpx.AsyncClient, path: str, connection: str, role: str
) -> dict[str, Any]:
    response = await api.post(path, json={"roleName": role, "connectionId": connection})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def create_group(api: httpx.AsyncClient, name: str, *user_ids: str) -> str:
    members = [{"value": user_id} for user_id in user_ids]
    response = await api.post(GROUPS, json={"displayName": name, "members": members})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def candidates(
    api: httpx.AsyncClient, path: str, connection: str
) -> list[tuple[str, str, bool]]:
    """(origin type, role, resolved) of each candidate on one connection."""
    response = await api.get(path, params={"connectionId": connection})
    assert response.status_code == 200, response.text
    return [
        (item["from"]["type"], item["roleName"], item["resolved"])
        for item in response.json()["results"]
    ]


async def role_seen_by(member: httpx.AsyncClient, connection: str) -> str:
    """The member's resolved role, as whoami reports it."""
    response = await member.get("/api/v1/whoami")
    return str(response.json()["rolesByConnection"][connection])


@pytest.fixture
async def connection(api: httpx.AsyncClient) -> str:
    """A connection whose baseRole is VIEWER."""
    return await create_connection(api)


@pytest.fixture
async def ann(api: httpx.AsyncClient) -> dict[str, Any]:
    return await create_user(api, "ann@example.com")


# -- POST to a user -----------------------------------------------------------------


async def test_granting_a_user_answers_the_grant(
    api: httpx.AsyncClient, services: Services, connection: str, ann: dict[str, Any]
) -> None:
    membership_id = services.snapshot().users[ann["id"]].membership_id

    response = await api.post(
        user_roles(ann["id"]), json={"roleName": "QUERIER", "connectionId": connection}
    )

    assert response.status_code == 200
    assert response.json() == {
        "membershipId": membership_id,
        "connectionId": connection,
        "modelId": None,
        "roleName": "QUERIER",
    }


async def test_a_user_may_be_named_by_membership_id(
    api: httpx.AsyncClient, services: Services, connection: str, ann: dict[str, Any]
) -> None:
    membership_id = services.snapshot().users[ann["id"]].membership_id

    await grant(api, user_roles(membership_id), connection, "QUERIER")

    assert ("USER", "QUERIER", True) in await candidates(
        api, user_roles(ann["id"]), connection
    )


async def test_query_topics_is_granted_as_restricted_querier(
    api: httpx.AsyncClient, connection: str, ann: dict[str, Any]
) -> None:
    granted = await grant(api, user_roles(ann["id"]), connection, "QUERY_TOPICS")

    assert granted["roleName"] == "RESTRICTED_QUERIER"


async def test_model_id_is_accepted_and_ignored(
    api: httpx.AsyncClient, connection: str, ann: dict[str, Any]
) -> None:
    response = await api.post(
        user_roles(ann["id"]),
        json={"roleName": "QUERIER", "connectionId": connection, "modelId": UNKNOWN},
    )

    assert response.status_code == 200
    assert response.json()["modelId"] is None


async def test_an_unknown_role_is_400(
    api: httpx.AsyncClient, connection: str, ann: dict[str, Any]
) -> None:
    response = await api.post(
        user_roles(ann["id"]), json={"roleName": "OWNER", "connectionId": connection}
    )

    assert_error(response, 400, "Bad Request: roleName: Invalid enum value")


async def test_a_missing_role_is_400(
    api: httpx.AsyncClient, connection: str, ann: dict[str, Any]
) -> None:
    response = await api.post(user_roles(ann["id"]), json={"connectionId": connection})

    assert_error(response, 400, "Bad Request: roleName: Required")


async def test_a_missing_connection_id_is_400(
    api: httpx.AsyncClient, ann: dict[str, Any]
) -> None:
    response = await api.post(user_roles(ann["id"]), json={"roleName": "QUERIER"})

    assert_error(response, 400, "Bad Request: connectionId: Required")


async def test_granting_an_unknown_user_is_404(
    api: httpx.AsyncClient, connection: str
) -> None:
    response = await api.post(
        user_roles(UNKNOWN), json={"roleName": "QUERIER", "connectionId": connection}
    )

    assert_error(response, 404, "User not found")


async def test_granting_on_an_unknown_connection_is_404(
    api: httpx.AsyncClient, ann: dict[str, Any]
) -> None:
    response = await api.post(
        user_roles(ann["id"]), json={"roleName": "QUERIER", "connectionId": UNKNOWN}
    )

    assert_error(response, 404, "Connection not found")


async def test_granting_on_an_archived_connection_is_404(
    api: httpx.AsyncClient, connection: str, ann: dict[str, Any]
) -> None:
    await api.delete(f"/api/v1/connections/{connection}")

    response = await api.post(
        user_roles(ann["id"]), json={"roleName": "QUERIER", "connectionId": connection}
    )

    assert_error(response, 404, "Connection not found")


async def test_granting_again_replaces_the_grant(
    api: httpx.AsyncClient, connection: str, ann: dict[str, Any]
) -> None:
    await grant(api, user_roles(ann["id"]), connection, "CONNECTION_ADMIN")

    await grant(api, user_roles(ann["id"]), connection, "QUERIER")

    assert await candidates(api, user_roles(ann["id"]), connection) == [
        ("USER", "QUERIER", True),
        ("BASE", "VIEWER", False),
    ]


async def test_a_grant_holds_from_the_next_request(
    api: httpx.AsyncClient, make_member: Any, connection: str
) -> None:
    user_id, member = make_member("ann@example.com")

    await grant(api, user_roles(user_id), connection, "QUERIER")

    assert await role_seen_by(member, connection) == "QUERIER"


# -- GET of a user -------------------------------------------------------------------


async def test_without_grants_the_base_role_is_the_only_candidate(
    api: httpx.AsyncClient, services: Services, connection: str, ann: dict[str, Any]
) -> None:
    membership_id = services.snapshot().users[ann["id"]].membership_id

    response = await api.get(user_roles(ann["id"]))

    assert response.json() == {
        "membershipId": membership_id,
        "results": [
            {
                "baseRole": "VIEWER",
                "roleName": "VIEWER",
                "connectionId": connection,
                "modelId": None,
                "priority": 50,
                "resolved": True,
                "from": BASE,
            }
        ],
    }


async def test_a_more_permissive_user_grant_wins_over_the_base(
    api: httpx.AsyncClient, connection: str, ann: dict[str, Any]
) -> None:
    await grant(api, user_roles(ann["id"]), connection, "QUERIER")

    response = await api.get(user_roles(ann["id"]), params={"connectionId": connection})

    assert [
        (r["from"], r["priority"], r["resolved"]) for r in response.json()["results"]
    ] == [
        ({"type": "USER"}, 250, True),
        (BASE, 50, False),
    ]


async def test_the_base_role_is_a_floor_under_a_lesser_grant(
    api: httpx.AsyncClient, connection: str, ann: dict[str, Any]
) -> None:
    await grant(api, user_roles(ann["id"]), connection, "NO_ACCESS")

    assert await candidates(api, user_roles(ann["id"]), connection) == [
        ("BASE", "VIEWER", True),
        ("USER", "NO_ACCESS", False),
    ]


async def test_a_group_grant_names_its_group(
    api: httpx.AsyncClient, connection: str, ann: dict[str, Any]
) -> None:
    group_id = await create_group(api, "Analysts", ann["id"])
    await grant(api, group_roles(group_id), connection, "QUERIER")

    response = await api.get(user_roles(ann["id"]), params={"connectionId": connection})

    assert response.json()["results"][0]["from"] == {
        "type": "GROUP",
        "depth": 0,
        "miniUuid": group_id,
        "name": "Analysts",
    }


async def test_the_most_permissive_of_user_and_group_grants_wins(
    api: httpx.AsyncClient, connection: str, ann: dict[str, Any]
) -> None:
    group_id = await create_group(api, "Admins", ann["id"])
    await grant(api, group_roles(group_id), connection, "CONNECTION_ADMIN")
    await grant(api, user_roles(ann["id"]), connection, "QUERIER")

    assert await candidates(api, user_roles(ann["id"]), connection) == [
        ("GROUP", "CONNECTION_ADMIN", True),
        ("USER", "QUERIER", False),
        ("BASE", "VIEWER", False),
    ]


async def test_an_org_admin_has_an_org_candidate_of_connection_admin(
    api: httpx.AsyncClient, connection: str
) -> None:
    admin_id = (await api.get("/api/v1/whoami")).json()["user"]["id"]

    assert await candidates(api, user_roles(admin_id), connection) == [
        ("ORG", "CONNECTION_ADMIN", True),
        ("BASE", "VIEWER", False),
    ]


async def test_get_lists_every_live_connection(
    api: httpx.AsyncClient, connection: str, ann: dict[str, Any]
) -> None:
    other = await create_connection(api, "other", base_role="QUERIER")
    archived = await create_connection(api, "archived")
    await api.delete(f"/api/v1/connections/{archived}")

    response = await api.get(user_roles(ann["id"]))

    assert {item["connectionId"] for item in response.json()["results"]} == {
        connection,
        other,
    }


async def test_get_of_an_unknown_user_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get(user_roles(UNKNOWN))

    assert_error(response, 404, "User not found")


async def test_get_narrowed_to_an_unknown_connection_is_404(
    api: httpx.AsyncClient, ann: dict[str, Any]
) -> None:
    response = await api.get(user_roles(ann["id"]), params={"connectionId": UNKNOWN})

    assert_error(response, 404, "Connection not found")


# -- DELETE of a user's grant (extension) ---------------------------------------------


async def test_revoking_a_grant_leaves_the_base_role(
    api: httpx.AsyncClient, connection: str, ann: dict[str, Any]
) -> None:
    await grant(api, user_roles(ann["id"]), connection, "QUERIER")

    response = await api.delete(
        user_roles(ann["id"]), params={"connectionId": connection}
    )

    assert response.json() == {"success": True}
    assert await candidates(api, user_roles(ann["id"]), connection) == [
        ("BASE", "VIEWER", True)
    ]


async def test_revoking_without_a_connection_id_is_400(
    api: httpx.AsyncClient, ann: dict[str, Any]
) -> None:
    response = await api.delete(user_roles(ann["id"]))

    assert_error(response, 400, "Bad Request: connectionId: Required")


async def test_revoking_a_grant_that_does_not_exist_succeeds(
    api: httpx.AsyncClient, connection: str, ann: dict[str, Any]
) -> None:
    response = await api.delete(
        user_roles(ann["id"]), params={"connectionId": connection}
    )

    assert response.json() == {"success": True}


# -- groups ---------------------------------------------------------------------------


async def test_granting_a_group_answers_the_grant(
    api: httpx.AsyncClient, connection: str
) -> None:
    group_id = await create_group(api, "Analysts")

    response = await api.post(
        group_roles(group_id), json={"roleName": "QUERIER", "connectionId": connection}
    )

    assert response.json() == {
        "userGroupId": group_id,
        "connectionId": connection,
        "modelId": None,
        "roleName": "QUERIER",
    }


async def test_granting_an_unknown_group_is_404(
    api: httpx.AsyncClient, connection: str
) -> None:
    response = await api.post(
        group_roles("nosuchid"),
        json={"roleName": "QUERIER", "connectionId": connection},
    )

    assert_error(response, 404, "User group not found")


async def test_a_groups_get_lists_its_grant_and_the_base(
    api: httpx.AsyncClient, connection: str
) -> None:
    group_id = await create_group(api, "Analysts")
    await grant(api, group_roles(group_id), connection, "MODELER")

    response = await api.get(group_roles(group_id))

    assert response.json() == {
        "userGroupId": group_id,
        "results": [
            {
                "baseRole": "MODELER",
                "roleName": "MODELER",
                "connectionId": connection,
                "modelId": None,
                "priority": 350,
                "resolved": True,
                "from": {
                    "type": "GROUP",
                    "depth": 0,
                    "miniUuid": group_id,
                    "name": "Analysts",
                },
            },
            {
                "baseRole": "VIEWER",
                "roleName": "VIEWER",
                "connectionId": connection,
                "modelId": None,
                "priority": 50,
                "resolved": False,
                "from": BASE,
            },
        ],
    }


async def test_a_group_grant_gives_its_members_the_role(
    api: httpx.AsyncClient, make_member: Any, connection: str
) -> None:
    user_id, member = make_member("ann@example.com")
    group_id = await create_group(api, "Analysts", user_id)

    await grant(api, group_roles(group_id), connection, "CONNECTION_ADMIN")

    assert await role_seen_by(member, connection) == "CONNECTION_ADMIN"


async def test_leaving_the_group_takes_its_role_away(
    api: httpx.AsyncClient, make_member: Any, connection: str
) -> None:
    user_id, member = make_member("ann@example.com")
    group_id = await create_group(api, "Analysts", user_id)
    await grant(api, group_roles(group_id), connection, "QUERIER")

    await api.patch(
        f"{GROUPS}/{group_id}",
        json={"Operations": [{"op": "remove", "path": "members"}]},
    )

    assert await role_seen_by(member, connection) == "VIEWER"


async def test_deleting_the_group_takes_its_role_away(
    api: httpx.AsyncClient, make_member: Any, connection: str
) -> None:
    user_id, member = make_member("ann@example.com")
    group_id = await create_group(api, "Analysts", user_id)
    await grant(api, group_roles(group_id), connection, "QUERIER")

    await api.delete(f"{GROUPS}/{group_id}")

    assert await role_seen_by(member, connection) == "VIEWER"


async def test_revoking_a_group_grant_takes_its_role_away(
    api: httpx.AsyncClient, make_member: Any, connection: str
) -> None:
    user_id, member = make_member("ann@example.com")
    group_id = await create_group(api, "Analysts", user_id)
    await grant(api, group_roles(group_id), connection, "QUERIER")

    await api.delete(group_roles(group_id), params={"connectionId": connection})

    assert await role_seen_by(member, connection) == "VIEWER"


async def test_a_group_viewer_grant_lists_a_no_access_connection(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    hidden = await create_connection(api, "hidden", base_role="NO_ACCESS")
    user_id, member = make_member("ann@example.com")
    group_id = await create_group(api, "Analysts", user_id)
    await grant(api, group_roles(group_id), hidden, "VIEWER")

    response = await member.get("/api/v1/connections")

    assert [item["id"] for item in response.json()["connections"]] == [hidden]


async def test_a_group_querier_grant_lets_its_members_query(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    base = await create_connection(api, "base", base_role="NO_ACCESS")
    user_id, member = make_member("ann@example.com")
    group_id = await create_group(api, "Analysts", user_id)
    await grant(api, group_roles(group_id), base, "QUERIER")

    response = await member.post(
        "/api/v1/query/run",
        json={"query": {"connectionId": base, "sql": "select 1"}, "planOnly": True},
    )

    assert response.status_code == 200, response.text


# -- who may, and how it is described -------------------------------------------------


async def test_a_member_may_not_read_roles(
    make_member: Any, ann: dict[str, Any]
) -> None:
    _, member = make_member("bob@example.com")

    response = await member.get(user_roles(ann["id"]))

    assert_error(response, 403, "Permission denied")


async def test_an_org_admins_personal_token_may_grant(
    api: httpx.AsyncClient, make_member: Any, connection: str, ann: dict[str, Any]
) -> None:
    _, admin = make_member("root@example.com", admin=True)

    response = await admin.post(
        user_roles(ann["id"]), json={"roleName": "VIEWER", "connectionId": connection}
    )

    assert response.status_code == 200


async def test_openapi_marks_only_the_revocations_as_extensions(
    anon: httpx.AsyncClient,
) -> None:
    paths = (await anon.get("/api/openapi.json")).json()["paths"]

    operations = paths["/api/v1/users/{id}/model-roles"]
    assert operations["delete"]["x-pointsman-extension"] is True
    assert "x-pointsman-extension" not in operations["post"]
    group_operations = paths["/api/v1/user-groups/{id}/model-roles"]
    assert group_operations["delete"]["x-pointsman-extension"] is True


async def test_a_member_reads_their_own_roles_but_not_anothers(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    user_id, member = make_member("member@example.com")
    other_id, _ = make_member("other@example.com")

    own = await member.get(f"/api/v1/users/{user_id}/model-roles")
    foreign = await member.get(f"/api/v1/users/{other_id}/model-roles")

    assert own.status_code == 200
    assert_error(foreign, 403, "Permission denied")
