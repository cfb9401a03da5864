"""Connection roles granted to users and groups, and the candidates that
decide each user's role (the policy ranks them; this module shows them).

Choices where Omni is silent:
- pointsman has no models: ``connectionId`` is required, ``modelId`` is
  accepted and ignored, and answers carry ``modelId: null``.
- pointsman has no custom roles, so a result's ``baseRole`` (the base role a
  role extends) is always its ``roleName``.
- A user is named by their user id or their membership id.
- Granting again replaces the grant; revoking a grant that does not exist
  succeeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pointsman import policy
from pointsman.errors import Conflict, NotFound, ValidationFailed
from pointsman.policy import RoleCandidate
from pointsman.routing.snapshot import ConnectionInfo, GroupInfo, Snapshot, UserInfo
from pointsman.services.paging import is_uuid, parse_uuid
from pointsman.store import models
from pointsman.store.db import Store

USER_NOT_FOUND = "User not found"
GROUP_NOT_FOUND = "User group not found"
CONNECTION_NOT_FOUND = "Connection not found"


@dataclass(frozen=True, slots=True)
class Grant:
    role: str
    connection_id: str


@dataclass(frozen=True, slots=True)
class Holder:
    """Who a grant is given to: exactly one of a user and a group."""

    user_id: str | None = None
    group_id: str | None = None


def parse_grant(body: Mapping[str, Any]) -> Grant:
    """``{roleName, connectionId, modelId?}``; ``QUERY_TOPICS`` is read as
    ``RESTRICTED_QUERIER``."""
    raw_role = body.get("roleName")
    if raw_role is None or raw_role == "":
        raise ValidationFailed("roleName", "Required")
    role = policy.canonical_role(raw_role) if isinstance(raw_role, str) else None
    if role is None:
        raise ValidationFailed("roleName", "Invalid enum value")
    return Grant(role, required_connection_id(body.get("connectionId")))


def required_connection_id(raw: Any) -> str:
    if raw is None or raw == "":
        raise ValidationFailed("connectionId", "Required")
    return parse_uuid(raw, "connectionId")


def optional_connection_id(raw: str | None) -> str | None:
    return None if not raw else required_connection_id(raw)


# -- grants -----------------------------------------------------------------------


def grant_to_user(store: Store, user_ref: str, grant: Grant) -> dict[str, Any]:
    with store.write() as session:
        user = _user(session, user_ref)
        _live_connection(session, grant.connection_id)
        _upsert(session, Holder(user_id=user.id), grant)
    return {
        "membershipId": user.membership_id,
        "connectionId": grant.connection_id,
        "modelId": None,
        "roleName": grant.role,
    }


def grant_to_group(store: Store, group_id: str, grant: Grant) -> dict[str, Any]:
    with store.write() as session:
        group = _group(session, group_id)
        _live_connection(session, grant.connection_id)
        _upsert(session, Holder(group_id=group.id), grant)
    return {
        "userGroupId": group.id,
        "connectionId": grant.connection_id,
        "modelId": None,
        "roleName": grant.role,
    }


def revoke_from_user(store: Store, user_ref: str, connection: str) -> dict[str, Any]:
    with store.write() as session:
        user = _user(session, user_ref)
        _live_connection(session, connection)
        _delete(session, Holder(user_id=user.id), connection)
    return {"success": True}


def revoke_from_group(store: Store, group_id: str, connection: str) -> dict[str, Any]:
    with store.write() as session:
        group = _group(session, group_id)
        _live_connection(session, connection)
        _delete(session, Holder(group_id=group.id), connection)
    return {"success": True}


def _user(session: Session, user_ref: str) -> models.User:
    key = user_ref.lower()
    user = (
        session.scalar(
            select(models.User).where(
                or_(models.User.id == key, models.User.membership_id == key)
            )
        )
        if is_uuid(key)
        else None
    )
    if user is None:
        raise NotFound(USER_NOT_FOUND)
    return user


def _group(session: Session, group_id: str) -> models.Group:
    group = session.get(models.Group, group_id)
    if group is None:
        raise NotFound(GROUP_NOT_FOUND)
    return group


def _live_connection(session: Session, connection: str) -> None:
    row = session.get(models.Connection, connection)
    if row is None or row.deleted_at is not None:
        raise NotFound(CONNECTION_NOT_FOUND)


def _holder_is(holder: Holder) -> ColumnElement[bool]:
    table = models.RoleGrant
    if holder.user_id is not None:
        return table.user_id == holder.user_id
    return table.group_id == holder.group_id


def _upsert(session: Session, holder: Holder, grant: Grant) -> None:
    table = models.RoleGrant
    row = session.scalar(
        select(table).where(
            table.connection_id == grant.connection_id, _holder_is(holder)
        )
    )
    if row is None:
        row = models.RoleGrant(
            connection_id=grant.connection_id,
            user_id=holder.user_id,
            group_id=holder.group_id,
        )
        session.add(row)
    row.role = grant.role
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("A role was granted here at the same time; try again") from None


def _delete(session: Session, holder: Holder, connection: str) -> None:
    table = models.RoleGrant
    session.execute(
        delete(table).where(table.connection_id == connection, _holder_is(holder))
    )


# -- candidates --------------------------------------------------------------------


def user_roles(
    snapshot: Snapshot, user_ref: str, connection: str | None
) -> dict[str, Any]:
    """Every candidate role of a user on each live connection (or the one
    asked for); the first of each connection is the one that holds."""
    user = _known_user(snapshot, user_ref)
    results = [
        _result(info, candidate, index == 0)
        for info in _connections(snapshot, connection)
        for index, candidate in enumerate(
            policy.role_candidates(snapshot, user, info, org_admin=user.is_org_admin)
        )
    ]
    return {"membershipId": user.membership_id, "results": results}


def group_roles(
    snapshot: Snapshot, group_id: str, connection: str | None
) -> dict[str, Any]:
    """What the group's grants and the base roles give its members."""
    group = _known_group(snapshot, group_id)
    results = [
        _result(info, candidate, index == 0)
        for info in _connections(snapshot, connection)
        for index, candidate in enumerate(
            policy.group_role_candidates(snapshot, group, info)
        )
    ]
    return {"userGroupId": group.id, "results": results}


def _known_user(snapshot: Snapshot, user_ref: str) -> UserInfo:
    key = user_ref.lower()
    user = snapshot.users.get(key)
    if user is None:
        user = next(
            (info for info in snapshot.users.values() if info.membership_id == key),
            None,
        )
    if user is None:
        raise NotFound(USER_NOT_FOUND)
    return user


def _known_group(snapshot: Snapshot, group_id: str) -> GroupInfo:
    group = snapshot.groups.get(group_id)
    if group is None:
        raise NotFound(GROUP_NOT_FOUND)
    return group


def _connections(snapshot: Snapshot, connection: str | None) -> list[ConnectionInfo]:
    """The live connection asked for, else every live one by name."""
    if connection is not None:
        info = snapshot.live_connection(connection)
        if info is None:
            raise NotFound(CONNECTION_NOT_FOUND)
        return [info]
    live = [info for info in snapshot.connections.values() if not info.archived]
    return sorted(live, key=lambda info: (info.name, info.id))


def _result(
    connection: ConnectionInfo, candidate: RoleCandidate, resolved: bool
) -> dict[str, Any]:
    return {
        "baseRole": candidate.role,
        "roleName": candidate.role,
        "connectionId": connection.id,
        "modelId": None,
        "priority": candidate.priority,
        "resolved": resolved,
        "from": _origin(candidate),
    }


def _origin(candidate: RoleCandidate) -> dict[str, Any]:
    group = candidate.group
    if group is None:
        return {"type": candidate.origin}
    return {"type": "GROUP", "depth": 0, "miniUuid": group.id, "name": group.name}
