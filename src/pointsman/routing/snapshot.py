"""The immutable configuration snapshot that the resolver reads.

A snapshot is built from the store in one read and replaced whole when the
configuration version moves; nothing in it is ever mutated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pointsman.routing.resolver import BaseRoutes, Route

SYSTEM_ATTRIBUTES = (
    "omni_user_id",
    "omni_user_email",
    "omni_user_name",
    "omni_user_groups",
    "omni_is_org_admin",
)


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    id: str
    name: str
    dialect: str
    archived: bool
    base_role: str
    environment_attribute: str | None = None
    default_values: frozenset[str] = frozenset()
    allow_branch_environments: bool = False
    credentials_version: int = 1


@dataclass(frozen=True, slots=True)
class EnvironmentLink:
    id: str
    base_connection_id: str
    environment_connection_id: str
    values: tuple[str, ...]
    order: int  # position by creation time, then link id


@dataclass(frozen=True, slots=True)
class AttributeDefinition:
    id: str
    name: str
    type: str
    multiple_values: bool
    default_value: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: str
    email: str
    display_name: str
    active: bool
    is_org_admin: bool
    membership_id: str
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    groups: tuple[str, ...] = ()  # group ids


class UserValues(dict[str, tuple[str, ...]]):
    """A user's attribute values as :class:`SharedValues` hands them out: one
    object for every user holding the same values, never changed.

    ``routes`` is filled when a snapshot is built (by the resolver's
    ``work_out_routes``): a base's worked-out routes -> the route that these
    values alone lead to through it, for each base routing on an attribute
    of which they hold a single value that leads somewhere. A decision for
    any of these users then reads this and nothing more of theirs. Keyed by
    the routes object itself, an entry cannot answer for another snapshot.
    """

    __slots__ = ("routes",)

    def __init__(self, items: Iterable[tuple[str, tuple[str, ...]]]) -> None:
        super().__init__(items)
        self.routes: dict[BaseRoutes, Route] = {}


class SharedValues:
    """Hands users with equal attribute values one shared
    :class:`UserValues`, each value one string object, for
    :attr:`UserInfo.values`.

    A routing decision reads the user's values: shared, a snapshot of many
    users holds as many mappings as there are distinct sets of values (often
    a few per environment), which stay in the CPU's caches, instead of one
    cold copy per user; and the snapshot is smaller.
    """

    def __init__(self, known: Iterable[str] = ()) -> None:
        # ``known``: strings to hand out as they are (the values environments
        # claim), so that looking a user's value up among the claims finds the
        # very same object and compares no characters.
        self._strings: dict[str, str] = {value: value for value in known}
        self._mappings: dict[tuple[tuple[str, tuple[str, ...]], ...], UserValues] = {}

    def __call__(
        self, values: Mapping[str, tuple[str, ...]] | None
    ) -> Mapping[str, tuple[str, ...]]:
        if not values:
            return _NO_VALUES
        key = tuple(sorted(values.items()))
        mapping = self._mappings.get(key)
        if mapping is None:
            strings = self._strings
            mapping = UserValues(
                (
                    strings.setdefault(name, name),
                    tuple(strings.setdefault(value, value) for value in own),
                )
                for name, own in key
            )
            self._mappings[key] = mapping
        return mapping


_NO_VALUES: Mapping[str, tuple[str, ...]] = {}


@dataclass(frozen=True, slots=True)
class GroupInfo:
    id: str
    name: str
    member_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class Provision:
    """Values of one attribute that a user (or a group's members) may switch to."""

    values: frozenset[str]
    allow_any_value: bool


@dataclass(frozen=True, slots=True)
class BranchInfo:
    id: str
    name: str
    base_connection_id: str
    connection_environment_id: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    name: str
    kind: str  # "organization" | "personal"
    enabled: bool
    user_id: str | None


@dataclass(frozen=True)
class Snapshot:
    version: int
    connections: Mapping[str, ConnectionInfo] = field(default_factory=dict)
    links: Mapping[str, EnvironmentLink] = field(default_factory=dict)
    links_by_base: Mapping[str, tuple[EnvironmentLink, ...]] = field(
        default_factory=dict
    )
    claims: Mapping[tuple[str, str], EnvironmentLink] = field(default_factory=dict)
    links_by_environment: Mapping[str, tuple[EnvironmentLink, ...]] = field(
        default_factory=dict
    )
    attributes: Mapping[str, AttributeDefinition] = field(default_factory=dict)
    users: Mapping[str, UserInfo] = field(default_factory=dict)
    tokens_by_hash: Mapping[str, TokenInfo] = field(default_factory=dict)
    groups: Mapping[str, GroupInfo] = field(default_factory=dict)
    # (connection id, user id or group id) -> role
    user_grants: Mapping[tuple[str, str], str] = field(default_factory=dict)
    group_grants: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # (attribute name, user id or group id) -> what they may switch to
    user_provisions: Mapping[tuple[str, str], Provision] = field(default_factory=dict)
    group_provisions: Mapping[tuple[str, str], Provision] = field(default_factory=dict)
    # (user id, attribute name) -> switched values
    switches: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    # link id -> who may pick it
    access_users: Mapping[str, frozenset[str]] = field(default_factory=dict)
    access_groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # (user id, base id) -> picked link id, or None for the base itself
    selections: Mapping[tuple[str, str], str | None] = field(default_factory=dict)
    branches: Mapping[str, BranchInfo] = field(default_factory=dict)
    # base id -> its routes worked out ahead by the resolver (by build_snapshot,
    # from the fields above); a base without them is decided by the rules
    base_routes: Mapping[str, BaseRoutes] = field(
        default_factory=dict, compare=False, repr=False
    )

    def live_connection(self, connection_id: str) -> ConnectionInfo | None:
        info = self.connections.get(connection_id)
        return info if info is not None and not info.archived else None


def build_snapshot(
    version: int,
    connections: list[ConnectionInfo],
    links: list[EnvironmentLink],
    attributes: list[AttributeDefinition],
    users: list[UserInfo],
    tokens: list[tuple[str, TokenInfo]],
    **access: Any,
) -> Snapshot:
    """Index the rows for O(1) look-ups and work out the routes that need no
    more than a user's own values. ``links`` must be in creation order."""
    by_base: dict[str, list[EnvironmentLink]] = {}
    by_environment: dict[str, list[EnvironmentLink]] = {}
    claims: dict[tuple[str, str], EnvironmentLink] = {}
    for link in links:
        by_base.setdefault(link.base_connection_id, []).append(link)
        by_environment.setdefault(link.environment_connection_id, []).append(link)
        for value in link.values:
            claims[(link.base_connection_id, value)] = link
    snapshot = Snapshot(
        version=version,
        connections={info.id: info for info in connections},
        links={link.id: link for link in links},
        links_by_base={base: tuple(items) for base, items in by_base.items()},
        claims=claims,
        links_by_environment={
            target: tuple(items) for target, items in by_environment.items()
        },
        attributes={definition.name: definition for definition in attributes},
        users={user.id: user for user in users},
        tokens_by_hash=dict(tokens),
        **access,
    )
    # Imported here, not at the top: the resolver imports this module.
    from pointsman.routing.resolver import work_out_routes

    return replace(snapshot, base_routes=work_out_routes(snapshot))
