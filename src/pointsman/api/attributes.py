"""User-attribute definitions (org admin)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pointsman import policy
from pointsman.api.auth import Caller, caller
from pointsman.api.http import call, read_json, respond
from pointsman.policy import Action
from pointsman.services import attributes


async def admin_caller(request: Request) -> Caller:
    who = await caller(request)
    policy.require(who.snapshot, who.actor, Action.ORG_ADMIN)
    return who


async def list_attributes(request: Request) -> Response:
    """
    summary: List user-attribute definitions, system ones included
    """
    who = await admin_caller(request)
    return respond(await call(attributes.list_attributes, who.services.store))


async def create_attribute(request: Request) -> Response:
    """
    summary: Create a user attribute
    description: Extension. Omni has no endpoint that creates definitions.
    x-pointsman-extension: true
    """
    who = await admin_caller(request)
    body = await read_json(request)
    created = await call(attributes.create_attribute, who.services.store, body)
    return respond(created, status=201)


async def update_attribute(request: Request) -> Response:
    """
    summary: Change a user attribute's label, description, default, multiplicity
    description: Extension. The name and the type cannot change.
    x-pointsman-extension: true
    """
    who = await admin_caller(request)
    body = await read_json(request)
    attribute_id = request.path_params["id"]
    updated = await call(
        attributes.update_attribute, who.services.store, attribute_id, body
    )
    return respond(updated)


async def delete_attribute(request: Request) -> Response:
    """
    summary: Delete a user attribute and every user's values of it
    description: Extension. A 409 names the connection that routes on it.
    x-pointsman-extension: true
    """
    who = await admin_caller(request)
    attribute_id = request.path_params["id"]
    return respond(
        await call(attributes.delete_attribute, who.services.store, attribute_id)
    )


routes = [
    Route("/api/v1/user-attributes", list_attributes, methods=["GET"]),
    Route("/api/v1/user-attributes", create_attribute, methods=["POST"]),
    Route("/api/v1/user-attributes/{id}", update_attribute, methods=["PATCH"]),
    Route("/api/v1/user-attributes/{id}", delete_attribute, methods=["DELETE"]),
]
