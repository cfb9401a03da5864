"""User-attribute definitions: the built-in system ones and the organization's.

A definition's ``default_value`` and every user's own values are stored as a
list of normalised strings (see :mod:`pointsman.services.values`); the record
shows a multi-valued attribute's values as an array and a single-valued one's
as a plain string. Number values are shown as strings in canonical form, as
Omni documents ("numbers are stored as strings").
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pointsman.errors import Conflict, NotFound, ValidationFailed
from pointsman.routing.snapshot import SYSTEM_ATTRIBUTES
from pointsman.services.paging import is_uuid
from pointsman.services.values import normalise, split_list
from pointsman.store import models
from pointsman.store.db import Store

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
NAME_RULE = (
    "Must start with a lowercase letter and contain only lowercase letters, "
    "digits and underscores"
)
MAX_NAME_LENGTH = 128
MAX_LABEL_LENGTH = 256
TYPES = ("String", "Number")
NOT_FOUND = "User attribute not found"

# Omni's other system attributes (time zone, embed entity) are not listed,
# since pointsman has no use for them, but their names stay reserved.
RESERVED_NAMES = frozenset(SYSTEM_ATTRIBUTES) | {
    "omni_user_timezone",
    "omni_user_embed_entity",
}
SYSTEM_LABELS = {
    "omni_user_id": "User ID",
    "omni_user_email": "User email",
    "omni_user_name": "User name",
    "omni_user_groups": "User groups",
    "omni_is_org_admin": "Org admin",
}
MULTI_VALUED_SYSTEM = frozenset({"omni_user_groups"})

# Request keys: the record's own, and the camelCase spellings accepted too.
KEYS = ("name", "label", "description", "type", "multiple_values", "default_value")
ALIASES = {"multiple_values": "multipleValues", "default_value": "defaultValue"}


# -- values, shared with the users service ------------------------------------


def coerce_values(
    raw: Any, attribute_type: str, multiple: bool, field: str
) -> list[str]:
    """A value as a client sends it, normalised for storage; ``[]`` unsets.

    A single-valued attribute takes a scalar, whose commas are part of it; a
    multi-valued one an array, or a string of comma-separated values as
    Omni's guides assign them (``"prod,dev"``: a value holding a comma is
    sent in an array)."""
    if isinstance(raw, list):
        if raw and not multiple:
            raise ValidationFailed(field, "Expected a single value, not an array")
        items: list[Any] = raw
    elif multiple and isinstance(raw, str):
        items = raw.split(",")
    else:
        items = [] if raw is None else [raw]
    return normalise(split_list(items, field), attribute_type, field)


def shown_values(values: list[str] | None, multiple: bool) -> list[str] | str | None:
    """Stored values as a response shows them."""
    if not values:
        return None
    return list(values) if multiple else values[0]


def definitions_by_name(session: Session) -> dict[str, models.UserAttribute]:
    rows = session.scalars(select(models.UserAttribute))
    return {row.name: row for row in rows}


# -- records --------------------------------------------------------------------


def attribute_record(row: models.UserAttribute) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "label": row.label,
        "description": row.description,
        "type": row.type,
        "multiple_values": row.multiple_values,
        "default_value": shown_values(row.default_value, row.multiple_values),
        "system": False,
    }


def system_records() -> list[dict[str, Any]]:
    return [
        {
            "id": "",
            "name": name,
            "label": SYSTEM_LABELS[name],
            "description": None,
            "type": "String",
            "multiple_values": name in MULTI_VALUED_SYSTEM,
            "default_value": None,
            "system": True,
        }
        for name in SYSTEM_ATTRIBUTES
    ]


# -- request fields -------------------------------------------------------------


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    fields = {key: body[key] for key in KEYS if key in body}
    for key, alias in ALIASES.items():
        if key not in fields and alias in body:
            fields[key] = body[alias]
    return fields


def _name(raw: Any) -> str:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ValidationFailed("name", "Required")
    if not isinstance(raw, str):
        raise ValidationFailed("name", "Expected a string")
    name = raw.strip()
    if len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.fullmatch(name):
        raise ValidationFailed("name", NAME_RULE)
    return name


def _label(raw: Any, name: str) -> str:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return name
    if not isinstance(raw, str):
        raise ValidationFailed("label", "Expected a string")
    if len(raw.strip()) > MAX_LABEL_LENGTH:
        raise ValidationFailed(
            "label", f"Must be at most {MAX_LABEL_LENGTH} characters"
        )
    return raw.strip()


def _description(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ValidationFailed("description", "Expected a string")
    return raw.strip() or None


def _type(raw: Any) -> str:
    if raw is None:
        return "String"
    if raw not in TYPES:
        raise ValidationFailed(
            "type",
            f"Invalid enum value. Expected 'String' | 'Number', received '{raw}'",
        )
    return str(raw)


def _flag(raw: Any) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise ValidationFailed("multiple_values", "Expected a boolean")
    return raw


def _default(raw: Any, attribute_type: str, multiple: bool) -> list[str] | None:
    return coerce_values(raw, attribute_type, multiple, "default_value") or None


# -- operations -----------------------------------------------------------------


def list_attributes(store: Store) -> dict[str, Any]:
    """System attributes first, then the organization's in creation order."""
    with store.read() as session:
        rows = session.scalars(
            select(models.UserAttribute).order_by(
                models.UserAttribute.created_at, models.UserAttribute.name
            )
        )
        return {"records": [*system_records(), *map(attribute_record, rows)]}


def create_attribute(store: Store, body: dict[str, Any]) -> dict[str, Any]:
    fields = _fields(body)
    name = _name(fields.get("name"))
    attribute_type = _type(fields.get("type"))
    multiple = _flag(fields.get("multiple_values"))
    row = models.UserAttribute(
        name=name,
        label=_label(fields.get("label"), name),
        description=_description(fields.get("description")),
        type=attribute_type,
        multiple_values=multiple,
        default_value=_default(fields.get("default_value"), attribute_type, multiple),
    )

    with store.write() as session:
        _ensure_name_free(session, name)
        session.add(row)
        try:
            session.flush()
        except IntegrityError:
            raise Conflict(f"User attribute {name} already exists") from None
        return attribute_record(row)


def update_attribute(
    store: Store, attribute_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Change label, description, default value and multiple_values; the
    name and the type are fixed once created."""
    fields = _fields(body)
    with store.write() as session:
        row = _get(session, attribute_id)
        _ensure_unchanged(row, fields)
        if "label" in fields:
            row.label = _label(fields["label"], row.name)
        if "description" in fields:
            row.description = _description(fields["description"])
        _update_values(session, row, fields)
        row.updated_at = models.utcnow()
        session.flush()
        return attribute_record(row)


def delete_attribute(store: Store, attribute_id: str) -> dict[str, Any]:
    """Delete a definition and every user's values of it, unless a live
    connection routes on it."""
    with store.write() as session:
        row = _get(session, attribute_id)
        connection = session.scalars(
            select(models.Connection.name)
            .where(models.Connection.environment_attribute == row.name)
            .where(models.Connection.deleted_at.is_(None))
            .order_by(models.Connection.created_at)
        ).first()
        if connection is not None:
            raise Conflict(
                f"User attribute {row.name} is used by connection {connection}"
            )
        session.delete(row)
    return {"success": True}


# -- helpers --------------------------------------------------------------------


def _get(session: Session, attribute_id: str) -> models.UserAttribute:
    row = (
        session.get(models.UserAttribute, attribute_id)
        if is_uuid(attribute_id)
        else None
    )
    if row is None:
        raise NotFound(NOT_FOUND)
    return row


def _ensure_name_free(session: Session, name: str) -> None:
    if name in RESERVED_NAMES:
        raise Conflict(f"User attribute {name} is a system attribute")
    taken = session.scalar(
        select(models.UserAttribute.id).where(models.UserAttribute.name == name)
    )
    if taken is not None:
        raise Conflict(f"User attribute {name} already exists")


def _ensure_unchanged(row: models.UserAttribute, fields: dict[str, Any]) -> None:
    if "name" in fields and fields["name"] != row.name:
        raise ValidationFailed("name", "Cannot be changed")
    if "type" in fields and fields["type"] != row.type:
        raise ValidationFailed("type", "Cannot be changed")


def _update_values(
    session: Session, row: models.UserAttribute, fields: dict[str, Any]
) -> None:
    """Apply multiple_values and default_value together: a new default is
    checked against the new multiple_values, and going single-valued never
    drops a value silently."""
    multiple = row.multiple_values
    if "multiple_values" in fields:
        multiple = _flag(fields["multiple_values"])
    if "default_value" in fields:
        row.default_value = _default(fields["default_value"], row.type, multiple)
    if row.multiple_values and not multiple:
        _ensure_single_valued(session, row)
    row.multiple_values = multiple


def _ensure_single_valued(session: Session, row: models.UserAttribute) -> None:
    prefix = f"User attribute {row.name} cannot become single-valued"
    if len(row.default_value or ()) > 1:
        raise Conflict(f"{prefix}: its default value has several values")
    stored = session.scalars(
        select(models.UserAttributeValue.values).where(
            models.UserAttributeValue.attribute_id == row.id
        )
    )
    several = sum(1 for values in stored if len(values) > 1)
    if several:
        raise Conflict(f"{prefix}: {several} user(s) have several values")
