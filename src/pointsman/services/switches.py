"""What a user may switch for themself: attribute values (spec §3,
"Switchable values") and the environment of a base (spec §6, user-selected
environments).

Org admins write the provisioning and the environment grants; users write
their own switches and picks. Every write goes through ``store.write()``, so
the resolver sees it on the very next request. The resolver alone decides
whether a stored switch or pick is honoured; this module refuses to store
one that would not be, and keeps the stored rows tidy.

Two choices where the spec is silent:

- Withdrawing or narrowing a provisioning here deletes the switches it no
  longer covers, in the same transaction. A user whose switch was voided
  expects to be back on their assigned value for good; re-provisioning later
  must not silently send them to a database they chose months ago. (Switches
  voided some other way, e.g. by leaving a group, are ignored by the resolver
  and stay stored until the user switches or clears.)
- A pick of an environment is kept when it becomes invalid (gaps D26): the
  resolver falls back past it, and it is honoured again if access returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pointsman.errors import Conflict, NotFound, ValidationFailed
from pointsman.routing.resolver import effective_values, may_switch_to
from pointsman.routing.snapshot import (
    SYSTEM_ATTRIBUTES,
    AttributeDefinition,
    Snapshot,
    UserInfo,
)
from pointsman.services.environments import find_link
from pointsman.services.paging import is_uuid
from pointsman.services.values import normalise, split_list
from pointsman.store import models
from pointsman.store.db import Store
from pointsman.store.models import utcnow

MAX_SELECTABLE_VALUES = 300
ATTRIBUTE_NOT_FOUND = "User attribute not found"
CONCURRENT = "changed concurrently; try again"

Provisioned = models.SelectableValues
Switch = models.AttributeSelection
Access = models.EnvironmentAccess
Pick = models.EnvironmentSelection


def _field(body: dict[str, Any], key: str, alias: str) -> Any:
    """A body field in the spec's spelling, or its camelCase alias."""
    return body[key] if key in body else body.get(alias)


def switchable_attribute(session: Session, attribute_id: Any) -> models.UserAttribute:
    if isinstance(attribute_id, str) and attribute_id in SYSTEM_ATTRIBUTES:
        raise ValidationFailed(
            "userAttributeId", f"{attribute_id} is a system attribute"
        )
    row = (
        session.get(models.UserAttribute, str(attribute_id).lower())
        if is_uuid(attribute_id)
        else None
    )
    if row is None:
        raise NotFound(ATTRIBUTE_NOT_FOUND)
    return row


# -- provisioning: what a user or a group may switch to -----------------------


@dataclass(frozen=True, slots=True)
class Provisioning:
    user_id: str | None
    group_id: str | None
    values: list[str]
    allow_any_value: bool

    @property
    def withdraws(self) -> bool:
        return not self.values and not self.allow_any_value


def _grantee(body: dict[str, Any]) -> tuple[str | None, str | None]:
    user_id = _field(body, "user_id", "userId")
    group_id = _field(body, "group_id", "groupId")
    if (user_id in (None, "")) == (group_id in (None, "")):
        raise ValidationFailed(
            "user_id", "Exactly one of user_id and group_id is required"
        )
    if user_id not in (None, ""):
        if not is_uuid(user_id):
            raise ValidationFailed("user_id", "Invalid uuid")
        return str(user_id).lower(), None
    if not isinstance(group_id, str):
        raise ValidationFailed("group_id", "Expected a string")
    return None, group_id


def parse_provisioning(body: dict[str, Any], attribute_type: str) -> Provisioning:
    user_id, group_id = _grantee(body)
    raw = body.get("values")
    values = normalise(split_list(raw, "values"), attribute_type, "values")
    if len(values) > MAX_SELECTABLE_VALUES:
        raise ValidationFailed(
            "values", f"At most {MAX_SELECTABLE_VALUES} values are allowed"
        )
    allow_any = _field(body, "allow_any_value", "allowAnyValue")
    if allow_any is None:
        allow_any = False
    if not isinstance(allow_any, bool):
        raise ValidationFailed("allow_any_value", "Expected a boolean")
    return Provisioning(user_id, group_id, values, allow_any)


def provisioning_record(row: Provisioned) -> dict[str, Any]:
    grantee = (
        {"user_id": row.user_id}
        if row.user_id is not None
        else {"group_id": row.group_id}
    )
    return {
        **grantee,
        "values": list(row.values or ()),
        "allow_any_value": row.allow_any_value,
    }


def list_provisioning(
    store: Store, attribute_id: str, user_id: str | None, group_id: str | None
) -> dict[str, Any]:
    with store.read() as session:
        attribute = switchable_attribute(session, attribute_id)
        query = (
            select(Provisioned)
            .where(Provisioned.attribute_id == attribute.id)
            .order_by(Provisioned.id)
        )
        if user_id:
            query = query.where(Provisioned.user_id == user_id.lower())
        if group_id:
            query = query.where(Provisioned.group_id == group_id)
        return {"records": [provisioning_record(row) for row in session.scalars(query)]}


def set_provisioning(store: Store, attribute_id: str, body: dict[str, Any]) -> None:
    """Replace what one user or group may switch to; nothing withdraws it."""
    try:
        with store.write() as session:
            attribute = switchable_attribute(session, attribute_id)
            wanted = parse_provisioning(body, attribute.type)
            _ensure_grantee(session, wanted.user_id, wanted.group_id)
            _store_provisioning(session, attribute.id, wanted)
            session.flush()
            _void_uncovered_switches(session, attribute.id, _affected(session, wanted))
    except IntegrityError:
        raise Conflict(f"Selectable values {CONCURRENT}") from None


def _ensure_grantee(
    session: Session, user_id: str | None, group_id: str | None
) -> None:
    if user_id is not None and session.get(models.User, user_id) is None:
        raise NotFound("User not found")
    if group_id is not None and session.get(models.Group, group_id) is None:
        raise NotFound("Group not found")


def _store_provisioning(
    session: Session, attribute_id: str, wanted: Provisioning
) -> None:
    grantee = (
        Provisioned.user_id == wanted.user_id
        if wanted.user_id is not None
        else Provisioned.group_id == wanted.group_id
    )
    row = session.scalars(
        select(Provisioned).where(Provisioned.attribute_id == attribute_id, grantee)
    ).first()
    if wanted.withdraws:
        if row is not None:
            session.delete(row)
        return
    if row is None:
        row = Provisioned(
            attribute_id=attribute_id, user_id=wanted.user_id, group_id=wanted.group_id
        )
        session.add(row)
    row.values = wanted.values
    row.allow_any_value = wanted.allow_any_value


def _affected(session: Session, wanted: Provisioning) -> list[str]:
    if wanted.user_id is not None:
        return [wanted.user_id]
    return list(
        session.scalars(
            select(models.GroupMember.user_id).where(
                models.GroupMember.group_id == wanted.group_id
            )
        )
    )


@dataclass(frozen=True, slots=True)
class Allowance:
    """Everything one user may switch an attribute to, from every provisioning
    that reaches them (their own and their groups')."""

    any_value: bool
    values: frozenset[str]

    def covers(self, values: Iterable[str]) -> bool:
        wanted = list(values)
        if self.any_value:
            return True
        return bool(wanted) and all(value in self.values for value in wanted)


def allowance(session: Session, attribute_id: str, user_id: str) -> Allowance:
    groups = select(models.GroupMember.group_id).where(
        models.GroupMember.user_id == user_id
    )
    rows = session.scalars(
        select(Provisioned).where(
            Provisioned.attribute_id == attribute_id,
            (Provisioned.user_id == user_id) | Provisioned.group_id.in_(groups),
        )
    )
    any_value, values = False, set[str]()
    for row in rows:
        any_value = any_value or row.allow_any_value
        values.update(row.values or ())
    return Allowance(any_value, frozenset(values))


def _void_uncovered_switches(
    session: Session, attribute_id: str, user_ids: list[str]
) -> None:
    if not user_ids:
        return
    switches = session.scalars(
        select(Switch).where(
            Switch.attribute_id == attribute_id, Switch.user_id.in_(user_ids)
        )
    )
    for switch in list(switches):
        if not allowance(session, attribute_id, switch.user_id).covers(switch.values):
            session.delete(switch)


def void_switches_no_longer_covered(session: Session, user_ids: Iterable[str]) -> None:
    """After users lose a provisioning (left a group, the group went), their
    switches it no longer covers are void for good, as if it were withdrawn:
    rejoining later does not bring an old choice back."""
    ids = list(user_ids)
    if not ids:
        return
    session.flush()
    for switch in list(session.scalars(select(Switch).where(Switch.user_id.in_(ids)))):
        allowed = allowance(session, switch.attribute_id, switch.user_id)
        if not allowed.covers(switch.values):
            session.delete(switch)


# -- the caller's own switches ------------------------------------------------


def _attribute_id(body: dict[str, Any], query: dict[str, str]) -> str:
    raw = query.get("userAttributeId") or body.get("userAttributeId")
    if raw is None or raw == "":
        raise ValidationFailed("userAttributeId", "Required")
    if not isinstance(raw, str):
        raise ValidationFailed("userAttributeId", "Expected a string")
    return raw


def _switch_values(raw: Any, attribute: models.UserAttribute) -> list[str]:
    """The values of a switch: a string is one value, never split on commas."""
    items = [raw] if isinstance(raw, (str, int, float)) else raw
    values = normalise(split_list(items, "values"), attribute.type, "values")
    if not values:
        raise ValidationFailed("values", "Required")
    if len(values) > 1 and not attribute.multiple_values:
        raise ValidationFailed("values", f"{attribute.name} takes a single value")
    return values


def save_switch(store: Store, user_id: str, body: dict[str, Any]) -> None:
    """Switch the user's value(s) of an attribute, if every value is theirs
    to switch to."""
    attribute_id = _attribute_id(body, {})
    try:
        with store.write() as session:
            attribute = switchable_attribute(session, attribute_id)
            values = _switch_values(body.get("values"), attribute)
            _ensure_selectable(session, attribute, user_id, values)
            _store_switch(session, user_id, attribute.id, values)
    except IntegrityError:
        raise Conflict(f"The switch {CONCURRENT}") from None


def _ensure_selectable(
    session: Session, attribute: models.UserAttribute, user_id: str, values: list[str]
) -> None:
    allowed = allowance(session, attribute.id, user_id)
    for value in values:
        if not allowed.covers([value]):
            raise ValidationFailed(
                "values", f'"{value}" is not a selectable value of {attribute.name}'
            )


def _store_switch(
    session: Session, user_id: str, attribute_id: str, values: list[str]
) -> None:
    switch = session.get(Switch, (user_id, attribute_id))
    if switch is None:
        switch = Switch(user_id=user_id, attribute_id=attribute_id)
        session.add(switch)
    switch.values = values
    switch.created_at = utcnow()


def clear_switch(
    store: Store, user_id: str, body: dict[str, Any], query: dict[str, str]
) -> None:
    """Back to the assigned value; clearing nothing succeeds."""
    attribute_id = _attribute_id(body, query)
    with store.write() as session:
        attribute = switchable_attribute(session, attribute_id)
        session.execute(
            delete(Switch).where(
                Switch.user_id == user_id, Switch.attribute_id == attribute.id
            )
        )


def list_switches(snapshot: Snapshot, user: UserInfo) -> dict[str, Any]:
    """Every attribute the user may switch, what they may switch it to, and
    what routing reads for them now."""
    definitions = sorted(snapshot.attributes.values(), key=lambda d: d.name)
    records = [_switch_record(snapshot, user, each) for each in definitions]
    return {"records": [record for record in records if record is not None]}


def _switch_record(
    snapshot: Snapshot, user: UserInfo, definition: AttributeDefinition
) -> dict[str, Any] | None:
    name = definition.name
    provisions = [snapshot.user_provisions.get((name, user.id))] + [
        snapshot.group_provisions.get((name, group)) for group in user.groups
    ]
    found = [provision for provision in provisions if provision is not None]
    if not found:
        return None

    switched = snapshot.switches.get((user.id, name), ())
    active = bool(switched) and may_switch_to(snapshot, user, name, switched)
    assigned = user.values.get(name) or definition.default_value or ()
    return {
        "userAttributeId": definition.id,
        "name": name,
        "multipleValues": definition.multiple_values,
        "selectableValues": sorted(set[str]().union(*(p.values for p in found))),
        "allowAnyValue": any(p.allow_any_value for p in found),
        "assignedValues": list(assigned),
        "selectedValues": list(switched) if active else None,
        "effectiveValues": list(effective_values(snapshot, user, name)),
    }


# -- environment access: who may pick an environment --------------------------


def parse_access(body: dict[str, Any]) -> tuple[list[str], list[str]]:
    user_ids = split_list(body.get("userIds"), "userIds")
    group_ids = split_list(body.get("groupIds"), "groupIds")
    if not user_ids and not group_ids:
        raise ValidationFailed("userIds", "Give at least one of userIds and groupIds")
    bad = [value for value in user_ids if not is_uuid(value)]
    if bad:
        raise ValidationFailed("userIds", f"Invalid uuid: {', '.join(bad)}")
    return [value.lower() for value in user_ids], group_ids


def list_access(store: Store, link_or_connection_id: str) -> dict[str, Any]:
    with store.read() as session:
        link = find_link(session, link_or_connection_id)
        rows = list(
            session.scalars(
                select(Access)
                .where(Access.connection_environment_id == link.id)
                .order_by(Access.id)
            )
        )
    return {
        "userIds": [row.user_id for row in rows if row.user_id is not None],
        "groupIds": [row.group_id for row in rows if row.group_id is not None],
    }


def grant_access(
    store: Store, link_or_connection_id: str, body: dict[str, Any]
) -> None:
    """Add grants, all or nothing; a grant that exists already is kept."""
    user_ids, group_ids = parse_access(body)
    try:
        with store.write() as session:
            link = find_link(session, link_or_connection_id)
            _ensure_all_exist(session, models.User, user_ids, "userIds", "user")
            _ensure_all_exist(session, models.Group, group_ids, "groupIds", "group")
            wanted = [(uid, None) for uid in user_ids] + [(None, g) for g in group_ids]
            _add_grants(session, link.id, wanted)
    except IntegrityError:
        raise Conflict(f"Environment access {CONCURRENT}") from None


def _add_grants(
    session: Session, link_id: str, wanted: Sequence[tuple[str | None, str | None]]
) -> None:
    granted = session.scalars(
        select(Access).where(Access.connection_environment_id == link_id)
    )
    held = {(row.user_id, row.group_id) for row in granted}
    session.add_all(
        Access(connection_environment_id=link_id, user_id=user_id, group_id=group_id)
        for user_id, group_id in wanted
        if (user_id, group_id) not in held
    )


def _ensure_all_exist(
    session: Session,
    model: type[models.User] | type[models.Group],
    ids: list[str],
    field: str,
    noun: str,
) -> None:
    if not ids:
        return
    known = set(session.scalars(select(model.id).where(model.id.in_(ids))))
    unknown = [value for value in ids if value not in known]
    if unknown:
        raise ValidationFailed(field, f"Unknown {noun} id(s): {', '.join(unknown)}")


def withdraw_access(
    store: Store, link_or_connection_id: str, body: dict[str, Any]
) -> None:
    """Remove grants; withdrawing one that was never given succeeds."""
    user_ids, group_ids = parse_access(body)
    with store.write() as session:
        link = find_link(session, link_or_connection_id)
        session.execute(
            delete(Access).where(
                Access.connection_environment_id == link.id,
                Access.user_id.in_(user_ids) | Access.group_id.in_(group_ids),
            )
        )


# -- the caller's pick of an environment --------------------------------------


def link_of_base(session: Session, base_id: str, key: Any, field: str) -> str:
    """The id of the link of ``base_id`` named by its own id or by its
    environment connection's id; 404 if no link has that id, 400 if it is
    another base's."""
    if not isinstance(key, str) or not is_uuid(key):
        raise ValidationFailed(field, "Invalid uuid")
    key = key.lower()
    Link = models.ConnectionEnvironment
    own = session.scalars(
        select(Link.id).where(
            Link.base_connection_id == base_id,
            (Link.id == key) | (Link.environment_connection_id == key),
        )
    ).first()
    if own is not None:
        return own
    find_link(session, key)
    raise ValidationFailed(
        field, f"Connection environment {key} is not an environment of {base_id}"
    )


def find_base_link(store: Store, base_id: str, key: Any, field: str) -> str:
    with store.read() as session:
        return link_of_base(session, base_id, key, field)


def save_pick(store: Store, user_id: str, base_id: str, link_id: str | None) -> None:
    """Store the user's pick for a base; ``None`` picks the base itself."""
    try:
        with store.write() as session:
            pick = session.get(Pick, (user_id, base_id))
            if pick is None:
                pick = Pick(user_id=user_id, base_connection_id=base_id)
                session.add(pick)
            pick.connection_environment_id = link_id
            pick.created_at = utcnow()
    except IntegrityError:
        raise Conflict(f"The environment selection {CONCURRENT}") from None


def clear_pick(store: Store, user_id: str, base_id: str) -> None:
    """Forget the user's pick; clearing nothing succeeds."""
    with store.write() as session:
        session.execute(
            delete(Pick).where(
                Pick.user_id == user_id, Pick.base_connection_id == base_id
            )
        )
