"""Small steps that many API tests share: users, attributes, other callers."""

from __future__ import annotations

from typing import Any

import httpx
import secret_watch

from pointsman.services.container import Services
from pointsman.services.tokens import create_token

USERS = "/api/scim/v2/Users"
ATTRIBUTES = "/api/v1/user-attributes"
USER_ATTRIBUTES = "urn:omni:params:1.0:UserAttribute"


def assert_error(response: httpx.Response, status: int, detail: str) -> None:
    """The response is the standard error body with this status and detail."""
    assert response.status_code == status, response.text
    assert response.json() == {"detail": detail, "status": status}


async def create_user(
    api: httpx.AsyncClient,
    email: str,
    attributes: dict[str, Any] | None = None,
    *,
    display_name: str | None = None,
) -> dict[str, Any]:
    """A SCIM user (the resource), with user-attribute values if given."""
    body: dict[str, Any] = {
        "userName": email,
        "displayName": display_name or email.split("@")[0],
    }
    if attributes is not None:
        body[USER_ATTRIBUTES] = attributes
    response = await api.post(USERS, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def create_attribute(
    api: httpx.AsyncClient, name: str, **fields: Any
) -> dict[str, Any]:
    """A user-attribute definition (the record); ``fields`` use the record's
    keys, e.g. ``type="Number", multiple_values=True``."""
    response = await api.post(ATTRIBUTES, json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def set_attributes(
    api: httpx.AsyncClient, user_id: str, attributes: dict[str, Any]
) -> dict[str, Any]:
    """Give a user attribute values (``None`` unsets); the user resource."""
    operations = [
        {"op": "replace", "path": f"{USER_ATTRIBUTES}:{name}", "value": value}
        for name, value in attributes.items()
    ]
    response = await api.patch(
        f"{USERS}/{user_id}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": operations,
        },
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def pat_client(
    api: httpx.AsyncClient, services: Services, user_id: str
) -> httpx.AsyncClient:
    """A client on the same server acting with a new PAT of this user."""
    created = create_token(
        services.store, name="test token", kind="personal", user_id=user_id
    )
    return httpx.AsyncClient(
        transport=api._transport,
        base_url=str(api.base_url),
        headers={"Authorization": f"Bearer {created['token']}"},
        event_hooks=secret_watch.HOOKS,
    )


async def current_user_id(client: httpx.AsyncClient) -> str:
    """The id of the user a client acts as."""
    response = await client.get("/api/v1/whoami")
    assert response.status_code == 200, response.text
    return str(response.json()["user"]["id"])
