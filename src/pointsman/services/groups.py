"""SCIM 2.0 groups and their members.

Choices where Omni is silent:
- Group names are unique regardless of case, and ``displayName eq`` compares
  without case, as SCIM's Group schema says (``caseExact: false``).
- A member ``value`` may be a user id or a membership id; resources always
  show user ids, members ordered by email.
- PUT needs ``members`` (``[]`` empties the group), since it replaces them.
- PATCH ``remove`` on ``members`` with a list removes those members, without
  a value it removes every member; removing a non-member or adding a member
  twice is no error. Operations apply all together, or none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pointsman.errors import Conflict, NotFound, ValidationFailed
from pointsman.services.paging import is_uuid
from pointsman.services.switches import void_switches_no_longer_covered
from pointsman.services.users import LIST_SCHEMA, paging_number, patch_operations
from pointsman.store import models
from pointsman.store.db import Store

GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
NOT_FOUND = "Group not found"
MAX_NAME_LENGTH = 512
FILTER = re.compile(r'\s*displayName\s+eq\s+"((?:[^"\\]|\\.)*)"\s*', re.IGNORECASE)
FILTER_RULE = 'Expected displayName eq "<name>"'
MEMBER_FILTER = re.compile(
    r'\s*members\s*\[\s*value\s+eq\s+"([^"]*)"\s*\]\s*', re.IGNORECASE
)
OPERATIONS = ("add", "replace", "remove")


@dataclass
class Draft:
    """A group being changed: the row, its new name and its members by user
    id. The row itself changes only when the draft is saved."""

    group: models.Group
    name: str
    members: dict[str, models.User]


def group_resource(
    group: models.Group, members: Iterable[models.User] | None
) -> dict[str, Any]:
    """The SCIM group resource; ``members`` None leaves them out
    (``excludedAttributes=members``)."""
    resource: dict[str, Any] = {
        "schemas": [GROUP_SCHEMA],
        "id": group.id,
        "displayName": group.display_name,
    }
    if members is not None:
        ordered = sorted(members, key=lambda user: (user.email_key, user.id))
        resource["members"] = [
            {"display": user.email, "value": user.id} for user in ordered
        ]
    resource["meta"] = {
        "created": group.created_at,
        "lastModified": group.updated_at,
        "resourceType": "Group",
    }
    return resource


def excludes_members(params: Mapping[str, str]) -> bool:
    excluded = params.get("excludedAttributes", "")
    return "members" in {part.strip().lower() for part in excluded.split(",")}


# -- operations -----------------------------------------------------------------


def list_groups(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """A SCIM ListResponse, in creation order."""
    start = paging_number(params.get("startIndex"), "startIndex", default=1, least=1)
    count = paging_number(params.get("count"), "count", default=100, least=0)
    query = select(models.Group)
    name = _filter(params.get("filter"))
    with_members = not excludes_members(params)

    with store.read() as session:
        if name is not None:
            query = query.where(models.Group.id.in_(_named(session, name)))
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        rows = list(
            session.scalars(
                query.order_by(models.Group.created_at, models.Group.id)
                .offset(start - 1)
                .limit(count)
            )
        )
        members = _members_of(session, [row.id for row in rows]) if with_members else {}
        resources = [
            group_resource(row, members.get(row.id, []) if with_members else None)
            for row in rows
        ]

    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": total or 0,
        "startIndex": start,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


def get_group(store: Store, group_id: str, *, with_members: bool) -> dict[str, Any]:
    with store.read() as session:
        draft = _load(session, group_id)
        return group_resource(draft.group, _members_shown(draft, with_members))


def create_group(store: Store, body: Mapping[str, Any]) -> dict[str, Any]:
    name = _display_name(body.get("displayName"))
    values = _member_values(body.get("members"), "members", required=False)
    now = models.utcnow()

    with store.write() as session:
        _check_name_free(session, name, None)
        group = models.Group(display_name=name, created_at=now, updated_at=now)
        session.add(group)
        _flush_named(session, name)
        draft = Draft(group, name, _users(session, values, "members"))
        _save_members(session, draft)
        return _resource(draft)


def replace_group(
    store: Store, group_id: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    """SCIM PUT: the name and the whole member list are replaced."""
    name = _display_name(body.get("displayName"))
    values = _member_values(body.get("members"), "members", required=True)

    with store.write() as session:
        draft = _load(session, group_id)
        draft.name = name
        draft.members = _users(session, values, "members")
        _save(session, draft)
        return _resource(draft)


def patch_group(store: Store, group_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """SCIM PatchOp; all operations apply, or none."""
    operations = patch_operations(body)
    with store.write() as session:
        draft = _load(session, group_id)
        for index, operation in enumerate(operations):
            _apply_operation(session, draft, operation, f"Operations.{index}")
        _save(session, draft)
        return _resource(draft)


def delete_group(store: Store, group_id: str) -> None:
    """Delete the group; its memberships and role grants go with it."""
    with store.write() as session:
        members = list(_members_of(session, [group_id]).get(group_id, []))
        session.delete(_get(session, group_id))
        void_switches_no_longer_covered(session, [user.id for user in members])


# -- loading and saving -----------------------------------------------------------


def _get(session: Session, group_id: str) -> models.Group:
    group = session.get(models.Group, group_id)
    if group is None:
        raise NotFound(NOT_FOUND)
    return group


def _load(session: Session, group_id: str) -> Draft:
    group = _get(session, group_id)
    members = _members_of(session, [group.id]).get(group.id, [])
    return Draft(group, group.display_name, {user.id: user for user in members})


def _members_shown(draft: Draft, with_members: bool) -> Iterable[models.User] | None:
    return draft.members.values() if with_members else None


def _resource(draft: Draft) -> dict[str, Any]:
    return group_resource(draft.group, draft.members.values())


def _members_of(session: Session, group_ids: list[str]) -> dict[str, list[models.User]]:
    """The members of these groups, by group id."""
    rows = session.execute(
        select(models.GroupMember.group_id, models.User)
        .join(models.User, models.User.id == models.GroupMember.user_id)
        .where(models.GroupMember.group_id.in_(group_ids))
    )
    members: dict[str, list[models.User]] = {}
    for group_id, user in rows:
        members.setdefault(group_id, []).append(user)
    return members


def _save(session: Session, draft: Draft) -> None:
    _check_name_free(session, draft.name, draft.group.id)
    draft.group.display_name = draft.name
    draft.group.updated_at = models.utcnow()
    _flush_named(session, draft.name)
    _save_members(session, draft)


def _save_members(session: Session, draft: Draft) -> None:
    """Write the member list back whole."""
    table = models.GroupMember
    before = set(
        session.scalars(select(table.user_id).where(table.group_id == draft.group.id))
    )
    session.execute(delete(table).where(table.group_id == draft.group.id))
    rows = [{"group_id": draft.group.id, "user_id": key} for key in draft.members]
    if rows:
        session.execute(insert(table), rows)
    void_switches_no_longer_covered(session, before - set(draft.members))


def _flush_named(session: Session, name: str) -> None:
    """Flush, turning a name taken by a concurrent writer into the 409."""
    try:
        session.flush()
    except IntegrityError:
        raise _name_taken(name) from None


def _name_taken(name: str) -> Conflict:
    return Conflict(f"Group with name {name} already exists")


def _named(session: Session, name: str) -> list[str]:
    """Ids of the groups called ``name`` in any case. Compared in Python:
    SQLite's lower() folds only ASCII letters."""
    wanted = name.casefold()
    rows = session.execute(select(models.Group.id, models.Group.display_name))
    return [group_id for group_id, shown in rows if shown.casefold() == wanted]


def _check_name_free(session: Session, name: str, group_id: str | None) -> None:
    if any(found != group_id for found in _named(session, name)):
        raise _name_taken(name)


# -- fields ---------------------------------------------------------------------


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


def _filter(raw: str | None) -> str | None:
    """The name of ``displayName eq "<name>"``."""
    if raw is None or not raw.strip():
        return None
    match = FILTER.fullmatch(raw)
    if match is None:
        raise ValidationFailed("filter", FILTER_RULE)
    return re.sub(r"\\(.)", r"\1", match[1])


def _member_values(raw: Any, field: str, *, required: bool) -> list[str]:
    """The ``value`` of each ``{value, display?}`` item, in order."""
    if raw is None:
        if required:
            raise ValidationFailed(field, "Required")
        return []
    if not isinstance(raw, list):
        raise ValidationFailed(field, "Expected an array")
    values = []
    for index, item in enumerate(raw):
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise ValidationFailed(f"{field}.{index}.value", "Required")
        values.append(value.strip())
    return values


def _users(session: Session, values: list[str], field: str) -> dict[str, models.User]:
    """The users named by these values (user or membership ids), in order;
    a value that names nobody is a 400."""
    found = _find_users(session, values)
    unknown = [value for value in values if value.lower() not in found]
    if unknown:
        raise ValidationFailed(field, f'Unknown user "{unknown[0]}"')
    return {found[value.lower()].id: found[value.lower()] for value in values}


def _find_users(session: Session, values: list[str]) -> dict[str, models.User]:
    """Users by each of their ids (user id and membership id) among ``values``."""
    keys = list({value.lower() for value in values if is_uuid(value)})
    if not keys:
        return {}
    users = session.scalars(
        select(models.User).where(
            or_(models.User.id.in_(keys), models.User.membership_id.in_(keys))
        )
    )
    found: dict[str, models.User] = {}
    for user in users:
        found[user.id] = user
        found[user.membership_id] = user
    return found


# -- PATCH ----------------------------------------------------------------------


def _apply_operation(
    session: Session, draft: Draft, operation: dict[str, Any], field: str
) -> None:
    op = operation.get("op")
    if not isinstance(op, str) or op.lower() not in OPERATIONS:
        raise ValidationFailed(
            f"{field}.op",
            "Invalid enum value. Expected 'add' | 'replace' | 'remove', "
            f"received '{op}'",
        )
    path = operation.get("path")
    value = operation.get("value")

    if path is None or (isinstance(path, str) and not path.strip()):
        _apply_pathless(session, draft, op.lower(), value, field)
    elif not isinstance(path, str):
        raise ValidationFailed(f"{field}.path", "Expected a string")
    else:
        _apply_path(session, draft, op.lower(), path.strip(), value, field)


def _apply_pathless(
    session: Session, draft: Draft, op: str, value: Any, field: str
) -> None:
    """``add``/``replace`` without a path: each key of the object is a path;
    keys pointsman does not keep (``id``, ``externalId``...) are ignored."""
    if op == "remove":
        raise ValidationFailed(f"{field}.path", "Required for remove")
    if not isinstance(value, dict):
        raise ValidationFailed(f"{field}.value", "Expected an object")
    for key, item in value.items():
        if str(key).lower() in ("displayname", "members"):
            _apply_path(session, draft, op, str(key), item, field)


def _apply_path(
    session: Session, draft: Draft, op: str, path: str, value: Any, field: str
) -> None:
    key = path.lower()
    member = MEMBER_FILTER.fullmatch(path)
    if key == "displayname" and op != "remove":
        draft.name = _display_name(value)
    elif key == "members":
        _apply_members(session, draft, op, value, f"{field}.value")
    elif member is not None and op == "remove":
        _remove_members(session, draft, [member[1]])
    else:
        raise ValidationFailed(f"{field}.path", f'Unsupported path "{path}"')


def _apply_members(
    session: Session, draft: Draft, op: str, value: Any, field: str
) -> None:
    if op == "remove" and value is None:
        draft.members.clear()
        return
    values = _member_values(value, field, required=True)
    if op == "remove":
        _remove_members(session, draft, values)
    elif op == "add":
        draft.members.update(_users(session, values, field))
    else:
        draft.members = _users(session, values, field)


def _remove_members(session: Session, draft: Draft, values: list[str]) -> None:
    for user in _find_users(session, values).values():
        draft.members.pop(user.id, None)
