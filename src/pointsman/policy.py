"""Who may do what: the one module that decides every permission check.

Actions are named; handlers and services ask :func:`require` and never
decide on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pointsman.errors import PermissionDenied
from pointsman.routing.resolver import may_pick
from pointsman.routing.snapshot import (
    ConnectionInfo,
    EnvironmentLink,
    GroupInfo,
    Snapshot,
    UserInfo,
)
from pointsman.services.actors import Actor

ROLES = (
    "NO_ACCESS",
    "VIEWER",
    "RESTRICTED_QUERIER",
    "QUERIER",
    "MODELER",
    "CONNECTION_ADMIN",
)
ROLE_RANK = {name: rank for rank, name in enumerate(ROLES)}
ROLE_ALIASES = {"QUERY_TOPICS": "RESTRICTED_QUERIER"}


def canonical_role(name: str) -> str | None:
    name = ROLE_ALIASES.get(name, name)
    return name if name in ROLE_RANK else None


class Action(StrEnum):
    CREATE_CONNECTION = "create a connection"
    LIST_CONNECTIONS = "list connections"
    VIEW_CONNECTION = "view a connection"
    ADMINISTER_CONNECTION = "administer a connection"
    LINK_ENVIRONMENT = "link a connection as an environment"
    LIST_ENVIRONMENTS = "list connection environments"
    QUERY_BASE = "query through a base connection"
    QUERY_DIRECT = "query an environment connection directly"
    QUERY_AS_USER = "run a query as another user"
    ORG_ADMIN = "administer the organization"
    SCIM = "use SCIM"


# The least role on the connection each connection-scoped action needs.
NEEDED_ROLE = {
    Action.LIST_CONNECTIONS: "VIEWER",
    Action.VIEW_CONNECTION: "RESTRICTED_QUERIER",
    Action.ADMINISTER_CONNECTION: "CONNECTION_ADMIN",
    Action.LINK_ENVIRONMENT: "RESTRICTED_QUERIER",
    Action.LIST_ENVIRONMENTS: "VIEWER",
    Action.QUERY_BASE: "QUERIER",
    Action.QUERY_DIRECT: "CONNECTION_ADMIN",
}


# Numeric priorities as Omni reports them (higher is more permissive).
PRIORITY = {
    "NO_ACCESS": 0,
    "VIEWER": 50,
    "RESTRICTED_QUERIER": 150,
    "QUERIER": 250,
    "MODELER": 350,
    "CONNECTION_ADMIN": 450,
}


@dataclass(frozen=True, slots=True)
class RoleCandidate:
    """One way a user holds a role on a connection."""

    role: str
    origin: str  # "USER" | "GROUP" | "BASE" | "ORG"
    group: GroupInfo | None = None

    @property
    def priority(self) -> int:
        return PRIORITY[self.role]


def role_candidates(
    snapshot: Snapshot, user: UserInfo, connection: ConnectionInfo, *, org_admin: bool
) -> list[RoleCandidate]:
    """Every candidate role, most permissive first (the first one wins)."""
    candidates = [
        RoleCandidate(canonical_role(connection.base_role) or "NO_ACCESS", "BASE")
    ]
    if org_admin:
        candidates.append(RoleCandidate("CONNECTION_ADMIN", "ORG"))
    direct = snapshot.user_grants.get((connection.id, user.id))
    if direct is not None:
        candidates.append(RoleCandidate(direct, "USER"))
    for group_id in user.groups:
        granted = snapshot.group_grants.get((connection.id, group_id))
        if granted is not None:
            group = snapshot.groups.get(group_id)
            candidates.append(RoleCandidate(granted, "GROUP", group))
    return _ranked(candidates)


def group_role_candidates(
    snapshot: Snapshot, group: GroupInfo, connection: ConnectionInfo
) -> list[RoleCandidate]:
    """What a group's grant and the base role would give its members on a
    connection, most permissive first."""
    candidates = [
        RoleCandidate(canonical_role(connection.base_role) or "NO_ACCESS", "BASE")
    ]
    granted = snapshot.group_grants.get((connection.id, group.id))
    if granted is not None:
        candidates.append(RoleCandidate(granted, "GROUP", group))
    return _ranked(candidates)


# Between candidates of equal priority, the more specific origin is named.
ORIGIN_ORDER = {"ORG": 0, "USER": 1, "GROUP": 2, "BASE": 3}


def _ranked(candidates: list[RoleCandidate]) -> list[RoleCandidate]:
    return sorted(candidates, key=lambda c: (-c.priority, ORIGIN_ORDER[c.origin]))


def role_on(snapshot: Snapshot, actor: Actor, connection: ConnectionInfo) -> str:
    """The actor's resolved role on a connection: the most permissive of the
    base role, their own grant, their groups' grants; admins administer all."""
    if actor.is_org_admin:
        return "CONNECTION_ADMIN"
    best = ROLE_RANK.get(canonical_role(connection.base_role) or "NO_ACCESS", 0)
    user = actor.user
    direct = snapshot.user_grants.get((connection.id, user.id))
    if direct is not None:
        best = max(best, ROLE_RANK[direct])
    for group_id in user.groups:
        granted = snapshot.group_grants.get((connection.id, group_id))
        if granted is not None:
            best = max(best, ROLE_RANK[granted])
    return ROLES[best]


def allows(
    snapshot: Snapshot,
    actor: Actor,
    action: Action,
    connection: ConnectionInfo | None = None,
) -> bool:
    if action is Action.SCIM or action is Action.QUERY_AS_USER:
        return actor.is_org_key
    if action is Action.ORG_ADMIN or action is Action.CREATE_CONNECTION:
        return actor.is_org_admin
    if connection is None:
        return actor.is_org_admin
    role = role_on(snapshot, actor, connection)
    return ROLE_RANK[role] >= ROLE_RANK[NEEDED_ROLE[action]]


def require(
    snapshot: Snapshot,
    actor: Actor,
    action: Action,
    connection: ConnectionInfo | None = None,
) -> None:
    if not allows(snapshot, actor, action, connection):
        raise PermissionDenied()


def visible_connections(
    snapshot: Snapshot, actor: Actor, action: Action
) -> set[str] | None:
    """The connections on which the actor may do ``action`` (None: all of
    them, for org admins), to filter a listing by."""
    if actor.is_org_admin:
        return None
    return {
        info.id
        for info in snapshot.connections.values()
        if not info.archived and allows(snapshot, actor, action, info)
    }


def may_create_token(actor: Actor, kind: str, user_id: str) -> bool:
    """Org admins may create any token; members only a PAT of their own."""
    if actor.is_org_admin:
        return True
    return kind == "personal" and user_id == actor.user.id


def may_see_job(actor: Actor, owner_id: str) -> bool:
    """A query job is its runner's (and any org admin's) to collect."""
    return actor.is_org_admin or owner_id == actor.user.id


def query_log_scope(actor: Actor) -> str | None:
    """Whose query-log entries the actor may read: one user's, or (None)
    everyone's for org admins."""
    return None if actor.is_org_admin else actor.user.id


def may_pick_environment(
    snapshot: Snapshot, user: UserInfo, link: EnvironmentLink
) -> bool:
    """Whether the user may pick an environment as their own; the resolver
    applies the same rule when it honours a stored pick."""
    return may_pick(snapshot, user, link)


def may_read_roles_of(actor: Actor, user_or_membership_id: str) -> bool:
    """Org admins read anyone's connection roles; a member reads their own."""
    if actor.is_org_admin:
        return True
    return user_or_membership_id in (actor.user.id, actor.user.membership_id)
