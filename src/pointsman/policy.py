"""Who may do what: the one module that decides every permission check.

Actions are named; handlers and services ask :func:`require` and never
decide on their own.
"""

from __future__ import annotations

from enum import StrEnum

from pointsman.errors import PermissionDenied
from pointsman.routing.snapshot import ConnectionInfo, Snapshot
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


def role_on(snapshot: Snapshot, actor: Actor, connection: ConnectionInfo) -> str:
    """The actor's resolved role on a connection."""
    if actor.is_org_admin:
        return "CONNECTION_ADMIN"
    return canonical_role(connection.base_role) or "NO_ACCESS"


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
