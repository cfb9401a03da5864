"""The audit log (extension): who changed what, when, before and after."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bodies import connection_body
from helpers import (
    USERS,
    assert_error,
    create_attribute,
    create_user,
    current_user_id,
    set_attributes,
)
from sqlalchemy import select, update

from pointsman.services.actors import hash_token
from pointsman.services.container import Services
from pointsman.store import audit, models

pytestmark = pytest.mark.anyio

AUDIT = "/api/v1/audit"
NEW_PASSWORD = "s3cond-Pa55word"


async def events(api: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    """The audit records matching the filters, newest first."""
    response = await api.get(AUDIT, params={"pageSize": "100", **params})
    assert response.status_code == 200, response.text
    return list(response.json()["records"])


def summary(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(action, resourceType) of each record, oldest first."""
    return [(record["action"], record["resourceType"]) for record in reversed(records)]


async def create_connection(api: httpx.AsyncClient, name: str = "dev") -> str:
    response = await api.post("/api/v1/connections", json=connection_body(name))
    assert response.status_code == 201, response.text
    return str(response.json()["data"])


def stored_secrets(services: Services, connection_id: str) -> str:
    with services.store.read() as session:
        row = session.get(models.Connection, connection_id)
        assert row is not None and row.secrets is not None
        return row.secrets


async def link(api: httpx.AsyncClient, base: str, environment: str) -> str:
    response = await api.post(
        "/api/v1/connection-environments",
        json={"baseConnectionId": base, "environmentConnectionIds": [environment]},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["data"][0]["id"])


async def token_id_named(api: httpx.AsyncClient, name: str) -> str:
    keys = (await api.get("/api/v1/api-keys", params={"pageSize": "100"})).json()
    [key] = [key for key in keys["records"] if key["name"] == name]
    return str(key["id"])


# -- connections --------------------------------------------------------------


async def test_creating_a_connection_records_it_with_its_secrets_only_as_set(
    api: httpx.AsyncClient,
) -> None:
    connection_id = await create_connection(api)

    [record] = await events(api, resourceType="connections")

    assert record["action"] == "create"
    assert record["resourceId"] == connection_id
    assert record["before"] is None
    assert record["after"]["name"] == "dev"
    assert record["after"]["host"] == "postgres-dev.my-org.com"
    assert record["after"]["secrets"] == "set"
    assert record["at"].endswith("Z")


async def test_a_password_change_shows_changed_never_the_password_or_ciphertext(
    api: httpx.AsyncClient, services: Services
) -> None:
    connection_id = await create_connection(api)
    old_ciphertext = stored_secrets(services, connection_id)

    response = await api.patch(
        f"/api/v1/connections/{connection_id}",
        json={"passwordUnencrypted": NEW_PASSWORD},
    )
    audit = await api.get(AUDIT, params={"pageSize": "100"})

    assert response.status_code == 200, response.text
    update = audit.json()["records"][0]
    assert update["resourceId"] == connection_id
    assert update["action"] == "update"
    assert update["before"]["secrets"] == "changed"
    assert update["after"]["secrets"] == "changed"
    assert update["after"]["credentials_version"] == 2
    for secret in (
        "mypassword",
        NEW_PASSWORD,
        old_ciphertext,
        stored_secrets(services, connection_id),
    ):
        assert secret not in audit.text


async def test_deleting_a_connection_records_the_archive_and_its_dropped_links(
    api: httpx.AsyncClient,
) -> None:
    base, environment = await create_connection(api), await create_connection(api)
    link_id = await link(api, base, environment)

    response = await api.delete(f"/api/v1/connections/{base}")
    archive = (await events(api, resourceType="connections", resourceId=base))[0]
    [dropped] = await events(
        api, resourceType="connection_environments", action="delete"
    )

    assert response.status_code == 200, response.text
    assert archive["action"] == "update"
    assert archive["before"]["deleted_at"] is None
    assert archive["after"]["deleted_at"].endswith("Z")
    assert archive["before"]["secrets"] == "changed"
    assert archive["after"]["secrets"] is None
    assert dropped["action"] == "delete"
    assert dropped["resourceId"] == link_id
    assert dropped["before"]["base_connection_id"] == base


# -- environments -------------------------------------------------------------


async def test_an_environment_link_and_its_values_are_recorded(
    api: httpx.AsyncClient,
) -> None:
    base, environment = await create_connection(api), await create_connection(api)
    link_id = await link(api, base, environment)
    path = f"/api/v1/connection-environments/{link_id}"

    await api.put(path, json={"userAttributeValues": "prod, live"})
    await api.delete(path)
    records = await events(api, resourceType="connection_environments")

    assert summary(records) == [
        ("create", "connection_environments"),
        ("update", "connection_environments"),
        ("delete", "connection_environments"),
    ]
    created, changed, deleted = reversed(records)
    assert created["after"]["environment_connection_id"] == environment
    assert changed["before"] == {"values": []}
    assert changed["after"] == {"values": ["prod", "live"]}
    assert deleted["before"]["values"] == ["prod", "live"]
    assert {record["resourceId"] for record in records} == {link_id}


# -- users and attributes -----------------------------------------------------


async def test_scim_user_changes_are_recorded_with_their_attribute_values(
    api: httpx.AsyncClient,
) -> None:
    await create_attribute(api, "region")
    user = await create_user(api, "ann@example.com", {"region": "eu"})

    await set_attributes(api, user["id"], {"region": "us"})
    await api.delete(f"{USERS}/{user['id']}")
    records = await events(api, resourceId=user["id"])
    values = await events(api, resourceType="user_attribute_values")

    assert [record["action"] for record in reversed(records)] == [
        "create",
        "update",
        "delete",
    ]
    assert records[-1]["after"]["email"] == "ann@example.com"
    assert "updated_at" in records[1]["after"]
    assert summary(values) == [
        ("create", "user_attribute_values"),
        ("update", "user_attribute_values"),
        ("delete", "user_attribute_values"),
    ]
    assert values[-1]["after"]["values"] == ["eu"]
    assert values[1]["before"] == {"values": ["eu"]}
    assert values[1]["after"] == {"values": ["us"]}
    assert values[0]["before"]["values"] == ["us"]


async def test_a_user_patch_that_changes_no_value_records_no_value_event(
    api: httpx.AsyncClient,
) -> None:
    await create_attribute(api, "region")
    user = await create_user(api, "ann@example.com", {"region": "eu"})

    await set_attributes(api, user["id"], {"region": "eu"})

    values = await events(api, resourceType="user_attribute_values")
    assert summary(values) == [("create", "user_attribute_values")]


async def test_attribute_definition_changes_are_recorded(
    api: httpx.AsyncClient,
) -> None:
    created = await create_attribute(api, "region", label="Region")

    await api.patch(f"/api/v1/user-attributes/{created['id']}", json={"label": "Area"})
    await api.delete(f"/api/v1/user-attributes/{created['id']}")
    records = await events(api, resourceType="user_attributes")

    assert summary(records) == [
        ("create", "user_attributes"),
        ("update", "user_attributes"),
        ("delete", "user_attributes"),
    ]
    assert records[1]["before"]["label"] == "Region"
    assert records[1]["after"]["label"] == "Area"
    assert records[0]["before"]["name"] == "region"


async def test_a_group_and_its_members_are_recorded(api: httpx.AsyncClient) -> None:
    user = await create_user(api, "ann@example.com")

    response = await api.post(
        "/api/scim/v2/Groups",
        json={"displayName": "Analysts", "members": [{"value": user["id"]}]},
    )
    groups = await events(api, resourceType="groups")
    members = await events(api, resourceType="group_members")

    assert response.status_code == 201, response.text
    assert groups[0]["after"]["display_name"] == "Analysts"
    assert members[0]["action"] == "create"
    assert members[0]["resourceId"] == f"{response.json()['id']}:{user['id']}"


# -- tokens and actors ------------------------------------------------------------


async def test_a_new_token_is_recorded_without_its_hash(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(
        "/api/v1/api-keys", json={"name": "ci", "type": "organization"}
    )
    created = response.json()

    audit = await api.get(AUDIT, params={"resourceType": "api_tokens"})

    record = audit.json()["records"][0]
    assert record["resourceId"] == created["id"]
    assert record["after"]["name"] == "ci"
    assert "token_hash" not in record["after"]
    assert created["token"] not in audit.text
    assert hash_token(created["token"]) not in audit.text


async def test_each_record_names_the_acting_user_and_token(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    admin_id, admin = make_member("boss@example.com", admin=True)
    token_id = await token_id_named(api, "pat boss@example.com")
    org_user = await current_user_id(api)
    org_keys = await api.get("/api/v1/api-keys", params={"type": "organization"})
    [org_key] = org_keys.json()["records"]

    await create_attribute(admin, "region")
    await create_attribute(api, "team")
    team, region = await events(api, resourceType="user_attributes")

    assert (region["actorUserId"], region["tokenId"]) == (admin_id, token_id)
    assert region["after"]["name"] == "region"
    assert (team["actorUserId"], team["tokenId"]) == (org_user, org_key["id"])


async def test_members_may_not_read_the_audit_log(make_member: Any) -> None:
    _, member = make_member("ann@example.com")

    response = await member.get(AUDIT)

    assert_error(response, 403, "Permission denied")


# -- filters and paging ---------------------------------------------------------


async def test_filters_narrow_the_records(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    admin_id, admin = make_member("boss@example.com", admin=True)
    await create_attribute(admin, "region")
    await create_attribute(api, "team")
    later = (await events(api, resourceType="user_attributes"))[0]["at"]

    by_actor = await events(api, actorUserId=admin_id)
    deletes = await events(api, action="delete")
    since = await events(api, since=later)
    future = await events(api, since="2999-01-01T00:00:00Z")

    assert [record["after"]["name"] for record in by_actor] == ["region"]
    assert deletes == []
    assert since[0]["after"]["name"] == "team"
    assert all(record["at"] >= later for record in since)
    assert len(since) < len(await events(api))
    assert future == []


async def test_a_bad_since_is_a_400(api: httpx.AsyncClient) -> None:
    response = await api.get(AUDIT, params={"since": "yesterday"})

    assert_error(response, 400, "Bad Request: since: Expected an ISO 8601 timestamp")


async def test_pages_follow_the_cursor_newest_first(api: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c"):
        await create_attribute(api, name)
    query = {"resourceType": "user_attributes", "pageSize": "2"}

    first = (await api.get(AUDIT, params=query)).json()
    cursor = first["pageInfo"]["nextCursor"]
    second = (await api.get(AUDIT, params={**query, "cursor": cursor})).json()

    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["totalRecords"] == 3
    assert second["pageInfo"]["hasNextPage"] is False
    names = [record["after"]["name"] for record in first["records"] + second["records"]]
    assert names == ["c", "b", "a"]


# -- writes that bypass the ORM's unit of work ----------------------------------


def test_a_bulk_update_is_recorded_per_row(services: Services, org_token: str) -> None:
    with services.store.write() as session:
        row = models.Group(display_name="Analysts")
        session.add(row)
        session.flush()
        group_id = row.id

    with audit.acting_as("someone", "a-token"), services.store.write() as session:
        session.execute(
            update(models.Group)
            .where(models.Group.id == group_id)
            .values(display_name="Readers")
        )

    record = newest(services)
    assert (record.action, record.resource_type) == ("update", "groups")
    assert record.resource_id == group_id
    assert (record.before, record.after) == (
        {"display_name": "Analysts"},
        {"display_name": "Readers"},
    )
    assert (record.actor_user_id, record.token_id) == ("someone", "a-token")


def test_a_rolled_back_write_leaves_no_record(
    services: Services, org_token: str
) -> None:
    with pytest.raises(RuntimeError), services.store.write() as session:
        session.add(models.Group(display_name="Analysts"))
        session.flush()
        raise RuntimeError

    assert newest(services).resource_type != "groups"


def newest(services: Services) -> models.AuditEvent:
    with services.store.read() as session:
        query = select(models.AuditEvent).order_by(models.AuditEvent.at.desc())
        return session.scalars(query.limit(1)).one()
