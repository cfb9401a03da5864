"""Loading the configuration snapshot from the store, and keeping it fresh."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from pointsman.routing.snapshot import (
    AttributeDefinition,
    BranchInfo,
    ConnectionInfo,
    EnvironmentLink,
    GroupInfo,
    Provision,
    SharedValues,
    Snapshot,
    TokenInfo,
    UserInfo,
    build_snapshot,
)
from pointsman.store import models
from pointsman.store.changes import ChangeFeed, feed_for
from pointsman.store.db import Store

log = logging.getLogger(__name__)


def load_snapshot(session: Session, version: int) -> Snapshot:
    connections = [
        ConnectionInfo(
            id=row.id,
            name=row.name,
            dialect=row.dialect,
            archived=row.deleted_at is not None,
            base_role=row.base_role,
            environment_attribute=row.environment_attribute,
            default_values=frozenset(row.default_values or ()),
            allow_branch_environments=row.allow_branch_environments,
            credentials_version=row.credentials_version,
        )
        for row in session.scalars(select(models.Connection))
    ]
    link_rows = session.scalars(
        select(models.ConnectionEnvironment).order_by(
            models.ConnectionEnvironment.created_at, models.ConnectionEnvironment.id
        )
    )
    links = [
        EnvironmentLink(
            id=row.id,
            base_connection_id=row.base_connection_id,
            environment_connection_id=row.environment_connection_id,
            values=tuple(row.values or ()),
            order=position,
        )
        for position, row in enumerate(link_rows)
    ]
    attribute_rows = list(session.scalars(select(models.UserAttribute)))
    attributes = [
        AttributeDefinition(
            id=row.id,
            name=row.name,
            type=row.type,
            multiple_values=row.multiple_values,
            default_value=tuple(row.default_value) if row.default_value else None,
        )
        for row in attribute_rows
    ]
    names = {row.id: row.name for row in attribute_rows}
    memberships = _memberships(session)
    return build_snapshot(
        version,
        connections,
        links,
        attributes,
        _users(session, names, memberships, _claimed(connections, links)),
        _tokens(session),
        groups=_groups(session, memberships),
        **_grants(session),
        **_provisions(session, names),
        switches=_switches(session, names),
        **_access(session),
        selections={
            (row.user_id, row.base_connection_id): row.connection_environment_id
            for row in session.scalars(select(models.EnvironmentSelection))
        },
        branches={
            row.id: BranchInfo(
                id=row.id,
                name=row.name,
                base_connection_id=row.base_connection_id,
                connection_environment_id=row.connection_environment_id,
            )
            for row in session.scalars(select(models.Branch))
        },
    )


def _memberships(session: Session) -> dict[str, list[str]]:
    """user id -> group ids."""
    groups: dict[str, list[str]] = {}
    for row in session.scalars(
        select(models.GroupMember).order_by(models.GroupMember.group_id)
    ):
        groups.setdefault(row.user_id, []).append(row.group_id)
    return groups


def _groups(
    session: Session, memberships: dict[str, list[str]]
) -> dict[str, GroupInfo]:
    members: dict[str, set[str]] = {}
    for user_id, group_ids in memberships.items():
        for group_id in group_ids:
            members.setdefault(group_id, set()).add(user_id)
    return {
        row.id: GroupInfo(row.id, row.display_name, frozenset(members.get(row.id, ())))
        for row in session.scalars(select(models.Group))
    }


def _grants(session: Session) -> dict[str, dict[tuple[str, str], str]]:
    users: dict[tuple[str, str], str] = {}
    groups: dict[tuple[str, str], str] = {}
    for row in session.scalars(select(models.RoleGrant)):
        if row.user_id is not None:
            users[(row.connection_id, row.user_id)] = row.role
        elif row.group_id is not None:
            groups[(row.connection_id, row.group_id)] = row.role
    return {"user_grants": users, "group_grants": groups}


def _provisions(
    session: Session, names: dict[str, str]
) -> dict[str, dict[tuple[str, str], Provision]]:
    users: dict[tuple[str, str], Provision] = {}
    groups: dict[tuple[str, str], Provision] = {}
    for row in session.scalars(select(models.SelectableValues)):
        name = names.get(row.attribute_id)
        if name is None:
            continue
        provision = Provision(frozenset(row.values or ()), row.allow_any_value)
        if row.user_id is not None:
            users[(name, row.user_id)] = provision
        elif row.group_id is not None:
            groups[(name, row.group_id)] = provision
    return {"user_provisions": users, "group_provisions": groups}


def _switches(
    session: Session, names: dict[str, str]
) -> dict[tuple[str, str], tuple[str, ...]]:
    return {
        (row.user_id, names[row.attribute_id]): tuple(row.values)
        for row in session.scalars(select(models.AttributeSelection))
        if row.attribute_id in names and row.values
    }


def _access(session: Session) -> dict[str, dict[str, frozenset[str]]]:
    users: dict[str, set[str]] = {}
    groups: dict[str, set[str]] = {}
    for row in session.scalars(select(models.EnvironmentAccess)):
        if row.user_id is not None:
            users.setdefault(row.connection_environment_id, set()).add(row.user_id)
        elif row.group_id is not None:
            groups.setdefault(row.connection_environment_id, set()).add(row.group_id)
    return {
        "access_users": {link: frozenset(ids) for link, ids in users.items()},
        "access_groups": {link: frozenset(ids) for link, ids in groups.items()},
    }


def _users(
    session: Session,
    attribute_names: dict[str, str],
    memberships: dict[str, list[str]],
    claimed: list[str],
) -> list[UserInfo]:
    values: dict[str, dict[str, tuple[str, ...]]] = {}
    for row in session.scalars(select(models.UserAttributeValue)):
        name = attribute_names.get(row.attribute_id)
        if name is not None and row.values:
            values.setdefault(row.user_id, {})[name] = tuple(row.values)
    shared = SharedValues(claimed)
    return [
        UserInfo(
            id=row.id,
            email=row.email,
            display_name=row.display_name,
            active=row.active,
            is_org_admin=row.is_org_admin,
            membership_id=row.membership_id,
            values=shared(values.get(row.id)),
            groups=tuple(memberships.get(row.id, ())),
        )
        for row in session.scalars(select(models.User))
    ]


def _claimed(
    connections: list[ConnectionInfo], links: list[EnvironmentLink]
) -> list[str]:
    """The values that route somewhere: claimed by an environment or a base's
    default."""
    values = [value for link in links for value in link.values]
    values += [value for info in connections for value in info.default_values]
    return values


def _tokens(session: Session) -> list[tuple[str, TokenInfo]]:
    return [
        (
            row.token_hash,
            TokenInfo(
                id=row.id,
                name=row.name,
                kind=row.kind,
                enabled=row.enabled,
                user_id=row.user_id,
            ),
        )
        for row in session.scalars(select(models.ApiToken))
    ]


class SnapshotCache:
    """Holds the snapshot of the newest configuration version this process
    has seen. A change made by any process is seen on the very next request:
    :meth:`peek` answers from memory only while the change feed says nothing
    can have moved; otherwise :meth:`current` reads the store's version."""

    # Even a silent feed is double-checked this often.
    RECHECK_SECONDS = 5.0

    def __init__(self, store: Store, feed: ChangeFeed | None = None):
        self._store = store
        self._feed = feed if feed is not None else feed_for(store)
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._signals = 0  # "maybe changed" signals seen
        self._settled = -1  # signals accounted for by the last version read
        self._checked_at = 0.0
        store.on_write(self.invalidate)

    def invalidate(self) -> None:
        """Something changed: the next request reads the store's version."""
        with self._lock:
            self._signals += 1

    def peek(self) -> Snapshot | None:
        """The snapshot, if nothing can have changed since it was checked;
        cheap enough for every request. None means: call :meth:`current`."""
        with self._lock:
            if self._feed.changed():
                self._signals += 1
            if time.monotonic() - self._checked_at > self.RECHECK_SECONDS:
                self._signals += 1
            if self._signals != self._settled:
                return None
            return self._snapshot

    def current(self) -> Snapshot:
        """The snapshot at the store's current version (reads the store)."""
        with self._reload_lock:
            with self._lock:
                signals = self._signals
            version = self._store.version()
            snapshot = self._snapshot
            if snapshot is None or snapshot.version != version:
                with self._store.read() as session:
                    snapshot = load_snapshot(session, self._store_version(session))
                log.debug(
                    "configuration snapshot reloaded at version %d", snapshot.version
                )
            with self._lock:
                self._snapshot = snapshot
                self._settled = signals
                self._checked_at = time.monotonic()
            return snapshot

    def close(self) -> None:
        self._feed.close()

    def _store_version(self, session: Session) -> int:
        value = session.scalar(
            select(models.ConfigState.version).where(models.ConfigState.id == 1)
        )
        return int(value or 0)
