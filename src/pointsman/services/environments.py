"""Connection environments: the links from a base to its environment
connections, and the attribute values that route users along them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pointsman.errors import BadRequest, NotFound, ValidationFailed
from pointsman.services.connections import claim_values, raced_claim
from pointsman.services.dialects import family
from pointsman.services.paging import is_uuid
from pointsman.services.values import normalise, split_list
from pointsman.store import models
from pointsman.store.db import Store
from pointsman.store.models import utcnow

Link = models.ConnectionEnvironment


def environment_record(row: Link) -> dict[str, Any]:
    return {
        "id": row.id,
        "baseConnectionId": row.base_connection_id,
        "connectionId": row.environment_connection_id,
        "environmentConnectionId": row.environment_connection_id,
        "userAttributeValues": list(row.values or ()),
        "createdAt": row.created_at,
    }


# -- create -------------------------------------------------------------------


def parse_create(body: dict[str, Any]) -> tuple[str, list[str]]:
    """The base id and environment ids of a create request, validated."""
    base_id = body.get("baseConnectionId")
    if base_id is None or base_id == "":
        raise ValidationFailed("baseConnectionId", "Required")
    if not is_uuid(base_id):
        raise ValidationFailed(
            "baseConnectionId", "Base connection ID must be a valid UUID"
        )
    ids = split_list(body.get("environmentConnectionIds"), "environmentConnectionIds")
    if not ids:
        raise ValidationFailed("environmentConnectionIds", "Required")
    if not all(is_uuid(value) for value in ids):
        raise ValidationFailed(
            "environmentConnectionIds",
            "All environment connection IDs must be valid UUIDs",
        )
    # Compare ids in canonical form so that case variants collapse too.
    canonical = list(dict.fromkeys(str(value).lower() for value in ids))
    return str(base_id).lower(), canonical


def check_base(session: Session, base_id: str) -> models.Connection:
    base = session.get(models.Connection, base_id)
    if base is None or base.deleted_at is not None:
        raise NotFound(f"Connection with id {base_id} does not exist")
    if session.scalar(
        select(exists().where(Link.environment_connection_id == base_id))
    ):
        raise ValidationFailed(
            "baseConnectionId",
            f"Connection {base_id} is an environment of another base connection",
        )
    return base


def invalid_environment_ids(
    session: Session, base: models.Connection, ids: list[str]
) -> list[str]:
    """The ids that cannot become environments of ``base``, in request order."""
    rows = {
        row.id: row
        for row in session.scalars(
            select(models.Connection).where(models.Connection.id.in_(ids))
        )
    }
    linked = set(
        session.scalars(
            select(Link.environment_connection_id).where(
                Link.base_connection_id == base.id
            )
        )
    )
    bases = set(
        session.scalars(
            select(Link.base_connection_id).where(Link.base_connection_id.in_(ids))
        )
    )
    offenders = []
    for connection_id in ids:
        row = rows.get(connection_id)
        if (
            row is None
            or row.deleted_at is not None
            or family(row.dialect) != family(base.dialect)
            or row.id == base.id
            or row.id in linked
            or row.id in bases
        ):
            offenders.append(connection_id)
    return offenders


def not_valid(ids: list[str]) -> BadRequest:
    return BadRequest(
        "The following environment connection IDs are not valid for this "
        f"connection: {', '.join(ids)}"
    )


def create_environments(store: Store, base_id: str, ids: list[str]) -> dict[str, Any]:
    """Link every id to the base, all or nothing."""
    try:
        with store.write() as session:
            base = check_base(session, base_id)
            offenders = invalid_environment_ids(session, base, ids)
            if offenders:
                raise not_valid(offenders)
            start = utcnow()
            rows = [
                Link(
                    base_connection_id=base.id,
                    environment_connection_id=connection_id,
                    values=[],
                    # Request order is creation order, which routing ties on.
                    created_at=start + timedelta(microseconds=position),
                )
                for position, connection_id in enumerate(ids)
            ]
            session.add_all(rows)
            session.flush()
    except IntegrityError:
        # A concurrent request linked one of them first.
        raise not_valid(ids) from None
    return {
        "success": True,
        "data": [
            {"id": row.id, "environmentConnectionId": row.environment_connection_id}
            for row in rows
        ],
        "connectionEnvironments": [environment_record(row) for row in rows],
    }


# -- read ---------------------------------------------------------------------


def list_environments(
    store: Store, base_id: str | None, visible_bases: set[str] | None
) -> dict[str, Any]:
    with store.read() as session:
        query = select(Link).order_by(Link.created_at, Link.id)
        if base_id:
            query = query.where(Link.base_connection_id == base_id)
        rows = [
            row
            for row in session.scalars(query)
            if visible_bases is None or row.base_connection_id in visible_bases
        ]
    return {"connectionEnvironments": [environment_record(row) for row in rows]}


def find_link(session: Session, link_or_connection_id: str) -> Link:
    """A link by its own id, else by its environment connection's id."""
    not_found = NotFound(
        f"Connection environment with id {link_or_connection_id} does not exist"
    )
    if not is_uuid(link_or_connection_id):
        raise not_found
    key = link_or_connection_id.lower()
    link = session.get(Link, key)
    if link is not None:
        return link
    matches = list(
        session.scalars(select(Link).where(Link.environment_connection_id == key))
    )
    if not matches:
        raise not_found
    if len(matches) > 1:
        raise BadRequest(
            f"Connection {link_or_connection_id} is an environment of several base "
            "connections; use the connection environment id"
        )
    return matches[0]


def link_ends(store: Store, link_or_connection_id: str) -> tuple[str, str]:
    """The base and environment connection ids of a link."""
    with store.read() as session:
        link = find_link(session, link_or_connection_id)
        return link.base_connection_id, link.environment_connection_id


# -- update / delete ----------------------------------------------------------


def set_values(store: Store, link_or_connection_id: str, body: dict[str, Any]) -> None:
    if "userAttributeValues" not in body:
        raise ValidationFailed("userAttributeValues", "Required")
    raw = split_list(body["userAttributeValues"], "userAttributeValues")
    base_id = link_id = ""
    values: list[str] = []
    try:
        with store.write() as session:
            link = find_link(session, link_or_connection_id)
            base_id, link_id = link.base_connection_id, link.id
            values = normalise(
                raw, _attribute_type(session, base_id), "userAttributeValues"
            )
            session.execute(
                delete(models.AttributeValueClaim).where(
                    models.AttributeValueClaim.connection_environment_id == link.id
                )
            )
            claim_values(session, base_id, link.id, values)
            link.values = values
    except IntegrityError:
        raise raced_claim(store, base_id, link_id, values) from None


def _attribute_type(session: Session, base_id: str) -> str:
    base = session.get(models.Connection, base_id)
    name = base.environment_attribute if base is not None else None
    if not name:
        return "String"
    kind = session.scalar(
        select(models.UserAttribute.type).where(models.UserAttribute.name == name)
    )
    return kind or "String"


def delete_environment(store: Store, link_or_connection_id: str) -> None:
    with store.write() as session:
        link = find_link(session, link_or_connection_id)
        session.execute(
            delete(models.AttributeValueClaim).where(
                models.AttributeValueClaim.connection_environment_id == link.id
            )
        )
        session.delete(link)
