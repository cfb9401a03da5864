"""The one place that decides which connection serves a query.

Pure: it reads a :class:`Snapshot` and a request and returns a
:class:`Route`. No database, no HTTP, no clock. First source that applies:
branch, the user's own pick, the user attribute, the base.

Most decisions are worked out ahead: when a snapshot is built,
:func:`work_out_routes` applies these rules to every single value of each
base's attribute (and to no value at all) and keeps the routes, reasons
included, in :class:`BaseRoutes`. A decision with no branch, no pick and no
switch is then a few dictionary look-ups and returns a shared route; any other
decision goes through the rules below, which give the same answer either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pointsman.routing.snapshot import (
    SYSTEM_ATTRIBUTES,
    BranchInfo,
    ConnectionInfo,
    EnvironmentLink,
    Snapshot,
    UserInfo,
    UserValues,
)

Source = Literal["branch", "user_selection", "user_attribute", "base", "direct"]


class Route(NamedTuple):
    """Where a query goes and why. A named tuple rather than a dataclass:
    immutable (routes worked out ahead are shared by every decision that ends
    on them) and several times cheaper to build than a frozen dataclass."""

    base_connection_id: str
    connection_id: str
    connection_environment_id: str | None
    source: Source
    reason: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "baseConnectionId": self.base_connection_id,
            "connectionId": self.connection_id,
            "connectionEnvironmentId": self.connection_environment_id,
            "source": self.source,
            "reason": self.reason,
        }


# -- values -------------------------------------------------------------------


def effective_values(
    snapshot: Snapshot, user: UserInfo, attribute: str
) -> tuple[str, ...]:
    """The user's switched value(s) while still provisioned, else their own
    value(s), else the attribute's default, else none."""
    system = _system_value(snapshot, user, attribute)
    if system is not None:
        return system
    definition = snapshot.attributes.get(attribute)
    switched = snapshot.switches.get((user.id, attribute))
    if (
        switched
        and (len(switched) == 1 or definition is None or definition.multiple_values)
        and may_switch_to(snapshot, user, attribute, switched)
    ):
        return switched
    own = user.values.get(attribute)
    if own:
        return own
    if definition is not None and definition.default_value:
        return definition.default_value
    return ()


def may_switch_to(
    snapshot: Snapshot, user: UserInfo, attribute: str, values: tuple[str, ...]
) -> bool:
    """Whether the user (directly or through a group) is provisioned with
    every one of ``values`` for ``attribute``."""
    provisions = [snapshot.user_provisions.get((attribute, user.id))]
    provisions += [
        snapshot.group_provisions.get((attribute, group)) for group in user.groups
    ]
    allowed: set[str] = set()
    for provision in provisions:
        if provision is None:
            continue
        if provision.allow_any_value:
            return True
        allowed |= provision.values
    return bool(values) and all(value in allowed for value in values)


def _system_value(
    snapshot: Snapshot, user: UserInfo, attribute: str
) -> tuple[str, ...] | None:
    match attribute:
        case "omni_user_id":
            return (user.id,)
        case "omni_user_email":
            return (user.email,)
        case "omni_user_name":
            return (user.display_name,)
        case "omni_is_org_admin":
            return ("true" if user.is_org_admin else "false",)
        case "omni_user_groups":
            return tuple(
                snapshot.groups[group].name
                for group in user.groups
                if group in snapshot.groups
            )
    return None


# -- the four sources ---------------------------------------------------------


def resolve(
    snapshot: Snapshot,
    user: UserInfo,
    base: ConnectionInfo,
    branch: BranchInfo | None = None,
) -> Route:
    """Route ``user``'s query through ``base``: first source that applies.
    Each higher source that did not apply leaves a note in the reason."""
    if branch is None:
        routes = snapshot.base_routes.get(base.id)
        # Worked out for the snapshot's own ``base``; a caller holding another
        # ConnectionInfo (say, from an older snapshot) gets the rules instead.
        if routes is not None and routes.base is base:
            route = _worked_out(snapshot, routes, user)
            if route is not None:
                return route
    return by_rules(snapshot, user, base, branch)


def by_rules(
    snapshot: Snapshot,
    user: UserInfo,
    base: ConnectionInfo,
    branch: BranchInfo | None = None,
) -> Route:
    """:func:`resolve` without the routes worked out ahead: the rules alone."""
    notes: list[str] = []
    for source in (_by_branch, _by_selection):
        route, note = source(snapshot, user, base, branch)
        if route is not None:
            return _with_notes(route, notes)
        if note:
            notes.append(note)
    return _with_notes(_by_attribute(snapshot, user, base), notes)


def _with_notes(route: Route, notes: list[str]) -> Route:
    if not notes:
        return route
    return route._replace(reason="; ".join([*notes, route.reason]))


# -- routes worked out ahead ----------------------------------------------------


# Compared and hashed as the object itself: a routes table is known by
# identity (a key of :attr:`UserValues.routes`).
@dataclass(frozen=True, slots=True, eq=False)
class BaseRoutes:
    """One base's routes, worked out by the rules when the snapshot is built.

    They answer every decision through the base with no branch, in which the
    user has no pick for the base and no switch of its attribute: then only
    the user's own value(s) of the attribute matter.
    """

    base: ConnectionInfo
    attribute: str | None  # None: the base routes on no attribute
    by_value: Mapping[str, Route]  # value -> the route when it is the only value
    without_value: Route  # the route when the user has no value of their own
    picks: Mapping[str, str | None]  # user id -> their pick for this base
    switches: Mapping[str, tuple[str, ...]]  # user id -> switched values


def work_out_routes(snapshot: Snapshot) -> dict[str, BaseRoutes]:
    """:class:`BaseRoutes` for every connection that may serve as a base.

    Skipped, so that the rules decide through them: environment connections
    (named directly, they never reach the resolver) and bases routing on a
    system attribute (whose values are the user's own fields, not a value
    that could be looked up here).
    """
    picks: dict[str, dict[str, str | None]] = {}
    for (user_id, base_id), link_id in snapshot.selections.items():
        picks.setdefault(base_id, {})[user_id] = link_id
    switches: dict[str, dict[str, tuple[str, ...]]] = {}
    for (user_id, name), switched in snapshot.switches.items():
        switches.setdefault(name, {})[user_id] = switched

    tables: dict[str, BaseRoutes] = {}
    for base in snapshot.connections.values():
        attribute = base.environment_attribute or None
        if base.id in snapshot.links_by_environment or attribute in SYSTEM_ATTRIBUTES:
            continue
        # The values that lead somewhere: a default of the base or a value
        # claimed by one of its environments. Any other single value gets
        # "no environment claims ...", built when it is met.
        values: set[str] = set()
        default: tuple[str, ...] = ()
        if attribute is not None:
            values.update(base.default_values)
            for link in snapshot.links_by_base.get(base.id, ()):
                values.update(link.values)
            definition = snapshot.attributes.get(attribute)
            if definition is not None and definition.default_value:
                default = definition.default_value
        tables[base.id] = BaseRoutes(
            base=base,
            attribute=attribute,
            by_value={
                value: _route_for_values(snapshot, base, (value,)) for value in values
            },
            without_value=_route_for_values(snapshot, base, default),
            picks=picks.get(base.id, {}),
            switches=switches.get(attribute, {}) if attribute is not None else {},
        )
    _remember_routes(snapshot, tables)
    return tables


def _remember_routes(snapshot: Snapshot, tables: Mapping[str, BaseRoutes]) -> None:
    """Fill :attr:`UserValues.routes` of the snapshot's users: for each base
    routing on an attribute of which the values hold exactly one value, and
    a value its table knows, the route of that value."""
    tables_by_value: dict[tuple[str, str], list[BaseRoutes]] = {}
    for table in tables.values():
        if table.attribute is not None:
            for value in table.by_value:
                tables_by_value.setdefault((table.attribute, value), []).append(table)
    if not tables_by_value:
        return
    done: set[int] = set()
    for user in snapshot.users.values():
        values = user.values
        if type(values) is not UserValues or id(values) in done:
            continue
        done.add(id(values))
        for name, own in values.items():
            if len(own) == 1:
                for table in tables_by_value.get((name, own[0]), ()):
                    values.routes[table] = table.by_value[own[0]]


def _worked_out(snapshot: Snapshot, routes: BaseRoutes, user: UserInfo) -> Route | None:
    """The route of a decision (with no branch) that needs only ``user``'s
    own values, or None if their pick or switch calls for the rules."""
    # Each emptiness test spares reading the user's id, a cache miss when
    # the snapshot holds many users.
    if routes.picks and user.id in routes.picks:
        return None
    attribute = routes.attribute
    if attribute is None:
        return routes.without_value
    if routes.switches and user.id in routes.switches:
        return None
    values = user.values
    if type(values) is UserValues:
        known = values.routes.get(routes)
        if known is not None:
            return known
    own = values.get(attribute)
    if not own:
        return routes.without_value
    if len(own) == 1:
        route = routes.by_value.get(own[0])
        if route is not None:
            return route
    # Several values, or one that is neither claimed nor a default.
    return _route_for_values(snapshot, routes.base, own)


def _live_link(
    snapshot: Snapshot, base: ConnectionInfo, link_id: str | None
) -> tuple[EnvironmentLink | None, ConnectionInfo | None, str]:
    """The link, its live environment connection, or why it cannot serve."""
    link = snapshot.links.get(link_id) if link_id else None
    if link is None or link.base_connection_id != base.id:
        return None, None, "its environment link was deleted"
    target = snapshot.live_connection(link.environment_connection_id)
    if target is None:
        name = _connection_name(snapshot, link.environment_connection_id)
        return link, None, f"{name} is archived"
    return link, target, ""


def _by_branch(
    snapshot: Snapshot, user: UserInfo, base: ConnectionInfo, branch: BranchInfo | None
) -> tuple[Route | None, str]:
    if branch is None:
        return None, ""
    if not base.allow_branch_environments:
        return None, (
            f"branch {branch.name} ignored: {base.name} does not allow branch "
            "environments"
        )
    link, target, problem = _live_link(snapshot, base, branch.connection_environment_id)
    if link is None or target is None:
        return None, f"branch {branch.name} ignored: {problem}"
    reason = f"branch {branch.name} pins environment {target.name}"
    return Route(base.id, target.id, link.id, "branch", reason), ""


def _by_selection(
    snapshot: Snapshot, user: UserInfo, base: ConnectionInfo, _: BranchInfo | None
) -> tuple[Route | None, str]:
    key = (user.id, base.id)
    if key not in snapshot.selections:
        return None, ""
    link_id = snapshot.selections[key]
    if link_id is None:
        reason = f"the user picked the base {base.name}"
        return Route(base.id, base.id, None, "user_selection", reason), ""
    link, target, problem = _live_link(snapshot, base, link_id)
    if link is None or target is None:
        return None, f"selection ignored: {problem}"
    if not may_pick(snapshot, user, link):
        return None, f"selection ignored: access to {target.name} was withdrawn"
    reason = f"the user picked environment {target.name}"
    return Route(base.id, target.id, link.id, "user_selection", reason), ""


def may_pick(snapshot: Snapshot, user: UserInfo, link: EnvironmentLink) -> bool:
    """Org admins may pick any environment; others need a grant, to them or
    to one of their groups."""
    if user.is_org_admin:
        return True
    if user.id in snapshot.access_users.get(link.id, frozenset()):
        return True
    granted = snapshot.access_groups.get(link.id, frozenset())
    return any(group in granted for group in user.groups)


def _base_route(base: ConnectionInfo, reason: str) -> Route:
    return Route(base.id, base.id, None, "base", reason)


def _by_attribute(snapshot: Snapshot, user: UserInfo, base: ConnectionInfo) -> Route:
    attribute = base.environment_attribute
    values = effective_values(snapshot, user, attribute) if attribute else ()
    return _route_for_values(snapshot, base, values)


def _route_for_values(
    snapshot: Snapshot, base: ConnectionInfo, values: tuple[str, ...]
) -> Route:
    """The attribute's route once the user's effective ``values`` are known."""
    attribute = base.environment_attribute
    if not attribute:
        return _base_route(
            base, f"{base.name} routes on no user attribute, so the base serves"
        )
    if not values:
        return _base_route(
            base, f"{attribute} is not set for this user, so the base serves"
        )
    for value in values:
        if value in base.default_values:
            return _base_route(
                base,
                f'{attribute} = "{value}" is a default value of the base {base.name}',
            )
    return _first_live_match(snapshot, base, attribute, values)


def _first_live_match(
    snapshot: Snapshot, base: ConnectionInfo, attribute: str, values: tuple[str, ...]
) -> Route:
    matches: list[tuple[EnvironmentLink, str]] = []
    for value in values:
        link = snapshot.claims.get((base.id, value))
        if link is not None:
            matches.append((link, value))
    if not matches:
        shown = ", ".join(f'"{value}"' for value in values)
        return _base_route(base, f"no environment claims {attribute} = {shown}")

    matches.sort(key=lambda pair: pair[0].order)
    skipped: list[str] = []
    for link, value in matches:
        target = snapshot.live_connection(link.environment_connection_id)
        if target is None:
            name = _connection_name(snapshot, link.environment_connection_id)
            skipped.append(f"{name} is archived")
            continue
        return Route(
            base.id,
            target.id,
            link.id,
            "user_attribute",
            f'{attribute} = "{value}" matched environment {target.name}',
        )
    return _base_route(
        base, f"{attribute} matched only archived environments ({'; '.join(skipped)})"
    )


def _connection_name(snapshot: Snapshot, connection_id: str) -> str:
    info = snapshot.connections.get(connection_id)
    return info.name if info is not None else connection_id
