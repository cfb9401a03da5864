"""The one place that decides which connection serves a query.

Pure: it reads a :class:`Snapshot` and a request and returns a
:class:`Route`. No database, no HTTP, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pointsman.routing.snapshot import (
    ConnectionInfo,
    EnvironmentLink,
    Snapshot,
    UserInfo,
)

Source = Literal["branch", "user_selection", "user_attribute", "base", "direct"]


@dataclass(frozen=True, slots=True)
class Route:
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


def effective_values(
    snapshot: Snapshot, user: UserInfo, attribute: str
) -> tuple[str, ...]:
    """The user's own value(s), else the attribute's default, else none."""
    system = _system_value(user, attribute)
    if system is not None:
        return system
    own = user.values.get(attribute)
    if own:
        return own
    definition = snapshot.attributes.get(attribute)
    if definition is not None and definition.default_value:
        return definition.default_value
    return ()


def _system_value(user: UserInfo, attribute: str) -> tuple[str, ...] | None:
    match attribute:
        case "omni_user_id":
            return (user.id,)
        case "omni_user_email":
            return (user.email,)
        case "omni_user_name":
            return (user.display_name,)
        case "omni_is_org_admin":
            return ("true" if user.is_org_admin else "false",)
    return None


def resolve(snapshot: Snapshot, user: UserInfo, base: ConnectionInfo) -> Route:
    """Route ``user``'s query through ``base``: first source that applies."""
    return _by_attribute(snapshot, user, base)


def _base_route(base: ConnectionInfo, reason: str) -> Route:
    return Route(base.id, base.id, None, "base", reason)


def _by_attribute(snapshot: Snapshot, user: UserInfo, base: ConnectionInfo) -> Route:
    attribute = base.environment_attribute
    if not attribute:
        return _base_route(
            base, f"{base.name} routes on no user attribute, so the base serves"
        )
    values = effective_values(snapshot, user, attribute)
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
