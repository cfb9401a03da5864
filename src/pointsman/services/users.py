"""SCIM 2.0 users, and the user-attribute values they carry.

Choices where Omni is silent:
- The ``urn:omni:params:1.0:UserAttribute`` object of a resource holds the
  user's own values only (not attribute defaults); a multi-valued attribute
  shows an array, a single-valued one a string; Number values are strings in
  canonical form.
- PUT and the attribute object change only the keys given.
- PATCH ``add`` on a multi-valued attribute adds to its values, ``replace``
  sets them, ``remove`` unsets them (or, with a value, removes just those).
- ``active`` also accepts the strings ``"true"``/``"false"`` (some identity
  providers send them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pointsman.errors import Conflict, NotFound, ValidationFailed
from pointsman.services.attributes import (
    RESERVED_NAMES,
    coerce_values,
    definitions_by_name,
    shown_values,
)
from pointsman.services.paging import is_uuid
from pointsman.store import models
from pointsman.store.db import Store

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ATTRIBUTES = "urn:omni:params:1.0:UserAttribute"
OMNI_USER_SCHEMA = "urn:omni:params:scim:schemas:extension:user:2.0"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"

NOT_FOUND = "User not found"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
MAX_EMAIL_LENGTH = 320
MAX_NAME_LENGTH = 512
USER_NAME_FIXED = "Must equal the user's email, which cannot be changed"
FILTER = re.compile(
    r'\s*(username|emails|emails\.value)\s+(eq|co|sw)\s+"((?:[^"\\]|\\.)*)"\s*',
    re.IGNORECASE,
)
FILTER_RULE = 'Expected userName eq "<email>", userName co "<text>" or sw'
LARGEST_INDEX = 2**31 - 1
OPERATIONS = ("add", "replace", "remove")
# Core SCIM paths that identity providers send and pointsman does not store.
IGNORED_PATHS = ("externalid", "name", "emails", "title", "locale", "timezone")
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"

AttributeValues = Mapping[str, list[str]]
GroupRef = dict[str, str]  # {"display": <group name>, "value": <group id>}


@dataclass
class Draft:
    """A user being changed: the row, their own values by attribute name,
    the attribute definitions by name, and the groups they belong to."""

    user: models.User
    values: dict[str, list[str]]
    definitions: dict[str, models.UserAttribute]
    groups: list[GroupRef]


def user_resource(
    user: models.User,
    values: AttributeValues,
    definitions: Mapping[str, models.UserAttribute],
    groups: list[GroupRef] | None = None,
) -> dict[str, Any]:
    """The SCIM user resource (timestamps are datetimes: the edge writes
    them as ISO 8601)."""
    attributes = {
        name: shown_values(values[name], definitions[name].multiple_values)
        for name in sorted(values)
        if values[name] and name in definitions
    }
    return {
        "schemas": [USER_SCHEMA, ATTRIBUTES, OMNI_USER_SCHEMA],
        "id": user.id,
        "userName": user.email,
        "displayName": user.display_name,
        "active": user.active,
        "emails": [{"primary": True, "value": user.email}],
        "groups": groups or [],
        "meta": {
            "created": user.created_at,
            "lastModified": user.updated_at,
            "resourceType": "User",
        },
        ATTRIBUTES: attributes,
        # pointsman does not record logins.
        OMNI_USER_SCHEMA: {"lastLogin": None},
    }


# -- operations -----------------------------------------------------------------


def list_users(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """A SCIM ListResponse, in creation order."""
    start = paging_number(params.get("startIndex"), "startIndex", default=1, least=1)
    count = paging_number(params.get("count"), "count", default=100, least=0)
    condition = _filter(params.get("filter"))
    query = select(models.User)
    if condition is not None:
        query = query.where(condition)

    with store.read() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        rows = list(
            session.scalars(
                query.order_by(models.User.created_at, models.User.id)
                .offset(start - 1)
                .limit(count)
            )
        )
        definitions = definitions_by_name(session)
        ids = [row.id for row in rows]
        values = _values_of(session, ids, definitions)
        groups = _groups_of(session, ids)
        resources = [
            user_resource(row, values.get(row.id, {}), definitions, groups.get(row.id))
            for row in rows
        ]

    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": total or 0,
        "startIndex": start,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


def get_user(store: Store, user_id: str) -> dict[str, Any]:
    with store.read() as session:
        return _resource(_load(session, user_id))


def create_user(store: Store, body: Mapping[str, Any]) -> dict[str, Any]:
    email = _email(body.get("userName"))
    active = body.get("active")
    now = models.utcnow()
    user = models.User(
        email=email,
        email_key=email.lower(),
        display_name=_display_name(_given_name(body)),
        active=True if active is None else _active(active, "active"),
        created_at=now,
        updated_at=now,
    )

    with store.write() as session:
        if _find(session, email) is not None:
            raise Conflict(f"User with email {email} already exists")
        session.add(user)
        try:
            session.flush()
        except IntegrityError:
            raise Conflict(f"User with email {email} already exists") from None
        draft = Draft(user, {}, definitions_by_name(session), [])
        _apply_attributes(draft, body.get(ATTRIBUTES), "replace")
        _save(session, draft, touch=False)
        return _resource(draft)


def replace_user(store: Store, user_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """SCIM PUT: ``userName`` must be the user's email; only the fields given
    change."""
    with store.write() as session:
        draft = _load(session, user_id)
        _check_user_name(draft, body.get("userName"), "userName")
        if body.get("displayName") is not None:
            draft.user.display_name = _display_name(body["displayName"])
        if body.get("active") is not None:
            draft.user.active = _active(body["active"], "active")
        _apply_attributes(draft, body.get(ATTRIBUTES), "replace")
        _save(session, draft)
        return _resource(draft)


def patch_user(store: Store, user_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """SCIM PatchOp; all operations apply, or none."""
    operations = patch_operations(body)
    with store.write() as session:
        draft = _load(session, user_id)
        for index, operation in enumerate(operations):
            _apply_operation(draft, operation, f"Operations.{index}")
        _save(session, draft)
        return _resource(draft)


def delete_user(store: Store, user_id: str) -> None:
    """Delete the user; their values go with them, their tokens stay (without
    a user, so they no longer authenticate)."""
    with store.write() as session:
        session.delete(_get(session, user_id))


# -- loading and saving -----------------------------------------------------------


def _get(session: Session, user_id: str) -> models.User:
    user = session.get(models.User, user_id) if is_uuid(user_id) else None
    if user is None:
        raise NotFound(NOT_FOUND)
    return user


def _find(session: Session, email: str) -> models.User | None:
    return session.scalar(
        select(models.User).where(models.User.email_key == email.lower())
    )


def _values_of(
    session: Session,
    user_ids: Iterable[str],
    definitions: Mapping[str, models.UserAttribute],
) -> dict[str, dict[str, list[str]]]:
    """Own values of these users, by user id, then attribute name."""
    names = {row.id: name for name, row in definitions.items()}
    table = models.UserAttributeValue
    rows = session.execute(
        select(table.user_id, table.attribute_id, table.values).where(
            table.user_id.in_(list(user_ids))
        )
    )
    values: dict[str, dict[str, list[str]]] = {}
    for user_id, attribute_id, stored in rows:
        if attribute_id in names and stored:
            values.setdefault(user_id, {})[names[attribute_id]] = list(stored)
    return values


def _groups_of(session: Session, user_ids: Iterable[str]) -> dict[str, list[GroupRef]]:
    """The groups of these users, by user id, in group creation order."""
    rows = session.execute(
        select(models.GroupMember.user_id, models.Group.id, models.Group.display_name)
        .join(models.Group, models.Group.id == models.GroupMember.group_id)
        .where(models.GroupMember.user_id.in_(list(user_ids)))
        .order_by(models.Group.created_at, models.Group.id)
    )
    groups: dict[str, list[GroupRef]] = {}
    for user_id, group_id, name in rows:
        groups.setdefault(user_id, []).append({"display": name, "value": group_id})
    return groups


def _load(session: Session, user_id: str) -> Draft:
    user = _get(session, user_id)
    definitions = definitions_by_name(session)
    values = _values_of(session, [user.id], definitions).get(user.id, {})
    groups = _groups_of(session, [user.id]).get(user.id, [])
    return Draft(user, values, definitions, groups)


def _save(session: Session, draft: Draft, *, touch: bool = True) -> None:
    """Write the draft's values back whole, and mark the user modified."""
    table = models.UserAttributeValue
    session.execute(delete(table).where(table.user_id == draft.user.id))
    rows = [
        {
            "user_id": draft.user.id,
            "attribute_id": draft.definitions[name].id,
            "values": values,
        }
        for name, values in draft.values.items()
        if values
    ]
    if rows:
        session.execute(insert(table), rows)
    if touch:
        draft.user.updated_at = models.utcnow()
    session.flush()


def _resource(draft: Draft) -> dict[str, Any]:
    return user_resource(draft.user, draft.values, draft.definitions, draft.groups)


# -- fields ---------------------------------------------------------------------


def _email(raw: Any) -> str:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ValidationFailed("userName", "Required")
    if not isinstance(raw, str):
        raise ValidationFailed("userName", "Expected a string")
    email = raw.strip()
    if len(email) > MAX_EMAIL_LENGTH or not EMAIL.fullmatch(email):
        raise ValidationFailed("userName", "Invalid email")
    return email


def _given_name(body: Mapping[str, Any]) -> Any:
    """``displayName``, else SCIM's ``name`` (formatted, or given + family)."""
    if body.get("displayName") is not None:
        return body["displayName"]
    name = body.get("name")
    if not isinstance(name, dict):
        return None
    if isinstance(name.get("formatted"), str) and name["formatted"].strip():
        return name["formatted"]
    parts = [name.get("givenName"), name.get("familyName")]
    return " ".join(part for part in parts if isinstance(part, str)) or None


def _display_name(raw: Any) -> str:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ValidationFailed("displayName", "Required")
    if not isinstance(raw, str):
        raise ValidationFailed("displayName", "Expected a string")
    if len(raw.strip()) > MAX_NAME_LENGTH:
        raise ValidationFailed(
            "displayName", f"Must be at most {MAX_NAME_LENGTH} characters"
        )
    return raw.strip()


def _active(raw: Any, field: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise ValidationFailed(field, "Expected a boolean")


def _check_user_name(draft: Draft, raw: Any, field: str) -> None:
    if _email(raw).lower() != draft.user.email_key:
        raise ValidationFailed(field, USER_NAME_FIXED)


def paging_number(raw: str | None, field: str, *, default: int, least: int) -> int:
    """A SCIM paging number; values below the least allowed are raised to it,
    as RFC 7644 asks, and huge ones lowered to what a database can take."""
    if raw is None or not raw.strip():
        return default
    try:
        number = int(Decimal(raw.strip()))
    except (InvalidOperation, ValueError, OverflowError):
        raise ValidationFailed(field, "Expected a number") from None
    return min(max(number, least), LARGEST_INDEX)


def _filter(raw: str | None) -> ColumnElement[bool] | None:
    """``userName eq|co|sw "<text>"``: operator and attribute name in any case,
    the email compared case-insensitively."""
    if raw is None or not raw.strip():
        return None
    match = FILTER.fullmatch(raw)
    if match is None:
        raise ValidationFailed("filter", FILTER_RULE)
    text = re.sub(r"\\(.)", r"\1", match[3]).strip().lower()
    column = models.User.email_key
    operator = match[2].lower()
    if operator == "eq":
        return column == text
    if operator == "co":
        return column.contains(text, autoescape=True)
    return column.startswith(text, autoescape=True)


# -- attribute values -------------------------------------------------------------


def _definition(draft: Draft, name: str) -> models.UserAttribute:
    if name in RESERVED_NAMES:
        raise ValidationFailed(ATTRIBUTES, f'User attribute "{name}" is read-only')
    definition = draft.definitions.get(name)
    if definition is None:
        raise ValidationFailed(ATTRIBUTES, f'Unknown user attribute "{name}"')
    return definition


def _apply_value(draft: Draft, name: str, raw: Any, op: str) -> None:
    """Set (``replace``), extend (``add``) or shrink (``remove``) one
    attribute's values."""
    definition = _definition(draft, name)
    values = coerce_values(
        raw, definition.type, definition.multiple_values, f"{ATTRIBUTES}.{name}"
    )
    current = draft.values.get(name, [])
    if op == "remove":
        values = [value for value in current if value not in values] if values else []
    elif op == "add" and definition.multiple_values:
        values = list(dict.fromkeys([*current, *values]))
    draft.values[name] = values


def _apply_attributes(draft: Draft, raw: Any, op: str) -> None:
    """The ``urn:omni:params:1.0:UserAttribute`` object: only its keys change."""
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise ValidationFailed(ATTRIBUTES, "Expected an object")
    for name, value in raw.items():
        _apply_value(draft, str(name), value, op)


# -- PATCH ----------------------------------------------------------------------


def patch_operations(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``Operations`` of a SCIM PatchOp body: at least one, each an object."""
    operations = body.get("Operations", body.get("operations"))
    if operations is None:
        raise ValidationFailed("Operations", "Required")
    if not isinstance(operations, list) or not operations:
        raise ValidationFailed("Operations", "Expected at least one operation")
    for index, operation in enumerate(operations):
        if not isinstance(operation, dict):
            raise ValidationFailed(f"Operations.{index}", "Expected an object")
    return operations


def _apply_operation(draft: Draft, operation: dict[str, Any], field: str) -> None:
    op = operation.get("op")
    if not isinstance(op, str) or op.lower() not in OPERATIONS:
        raise ValidationFailed(
            f"{field}.op",
            "Invalid enum value. Expected 'add' | 'replace' | 'remove', "
            f"received '{op}'",
        )
    op = op.lower()
    path = operation.get("path")
    value = operation.get("value")

    if path is None or (isinstance(path, str) and not path.strip()):
        _apply_pathless(draft, op, value, field)
    elif not isinstance(path, str):
        raise ValidationFailed(f"{field}.path", "Expected a string")
    elif not _apply_path(draft, op, path.strip(), value, field):
        raise ValidationFailed(f"{field}.path", f'Unsupported path "{path}"')


def _apply_pathless(draft: Draft, op: str, value: Any, field: str) -> None:
    """``add``/``replace`` without a path: each key of the object is a path.
    Keys pointsman does not know are ignored, like unknown body keys."""
    if op == "remove":
        raise ValidationFailed(f"{field}.path", "Required for remove")
    if not isinstance(value, dict):
        raise ValidationFailed(f"{field}.value", "Expected an object")
    for key, item in value.items():
        _apply_path(draft, op, str(key), item, field)


def _apply_path(draft: Draft, op: str, path: str, value: Any, field: str) -> bool:
    """Apply one operation to ``path``; False when the path is unknown."""
    key = path.lower()
    prefix = ATTRIBUTES.lower()
    if key in ("active", "displayname", "username"):
        _apply_core(draft, op, key, value, field)
    elif key.startswith(prefix + ":"):
        _apply_value(draft, path[len(prefix) + 1 :], value, op)
    elif key == prefix:
        _apply_attribute_object(draft, op, value)
    elif key.split(".")[0].split("[")[0] in IGNORED_PATHS or key.startswith(ENTERPRISE):
        pass
    else:
        return False
    return True


def _apply_core(draft: Draft, op: str, key: str, value: Any, field: str) -> None:
    if op == "remove":
        raise ValidationFailed(f"{field}.path", f'"{key}" cannot be removed')
    if key == "active":
        draft.user.active = _active(value, f"{field}.value")
    elif key == "displayname":
        draft.user.display_name = _display_name(value)
    else:
        _check_user_name(draft, value, "userName")


def _apply_attribute_object(draft: Draft, op: str, value: Any) -> None:
    """The whole attribute object as a path: ``remove`` without a value
    unsets every attribute."""
    if op == "remove" and value is None:
        draft.values.clear()
    elif op == "remove":
        if not isinstance(value, dict):
            raise ValidationFailed(ATTRIBUTES, "Expected an object")
        for name in value:
            _apply_value(draft, str(name), None, "remove")
    else:
        _apply_attributes(draft, value, op)
