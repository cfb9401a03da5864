"""The routing rules of spec §6, written out from the spec over the test's own
model of a configuration (a world), independently of the resolver.

First source that applies wins: the request's branch, the user's pick, the
user attribute, the base. An environment whose connection is archived, or
whose link is gone, never serves: its source is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from routing_worlds import Link, World


@dataclass(frozen=True)
class Decision:
    """Where a query goes, and which higher sources were passed over."""

    connection_id: str
    link_id: str | None
    source: str  # "branch" | "user_selection" | "user_attribute" | "base"
    branch_ignored: bool = False
    selection_ignored: bool = False


def decide(world: World, user_id: str, base_id: str, branch_id: str | None) -> Decision:
    base = world.base(base_id)
    branch_ignored = selection_ignored = False

    if branch_id is not None:
        branch = next(each for each in world.branches if each.id == branch_id)
        pinned = _serving_link(world, base_id, branch.link)
        if base.allow_branches and pinned is not None:
            return Decision(pinned.environment, pinned.id, "branch")
        branch_ignored = True

    if (user_id, base_id) in world.selections:
        picked = world.selections[(user_id, base_id)]
        if picked is None:
            return Decision(base_id, None, "user_selection", branch_ignored)
        link = _serving_link(world, base_id, picked)
        if link is not None and may_pick(world, user_id, link.id):
            return Decision(link.environment, link.id, "user_selection", branch_ignored)
        selection_ignored = True

    link = _link_for_attribute(world, user_id, base_id)
    if link is not None:
        return Decision(
            link.environment,
            link.id,
            "user_attribute",
            branch_ignored,
            selection_ignored,
        )
    return Decision(base_id, None, "base", branch_ignored, selection_ignored)


def _serving_link(world: World, base_id: str, link_id: str) -> Link | None:
    """The link, if it still exists for this base and its connection is live."""
    link = world.link(link_id)
    if link is None or link.base != base_id or link.environment in world.archived:
        return None
    return link


def may_pick(world: World, user_id: str, link_id: str) -> bool:
    """Org admins may pick any environment; others need a grant to
    themselves or to one of their groups."""
    if world.user(user_id).admin:
        return True
    access = world.access.get(link_id)
    if access is None:
        return False
    return user_id in access.users or bool(
        set(world.groups_of(user_id)) & access.groups
    )


def _link_for_attribute(world: World, user_id: str, base_id: str) -> Link | None:
    """The environment the user's attribute values send them to; None for
    the base (no attribute, no value, a default value, or no live match)."""
    base = world.base(base_id)
    if base.attribute is None:
        return None
    values = set(effective_values(world, user_id, base.attribute))
    if not values or values & set(base.defaults):
        return None
    candidates = [
        link
        for link in world.links_of(base_id)
        if values & set(link.values) and link.environment not in world.archived
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda link: (link.created, link.id))


def effective_values(world: World, user_id: str, attribute: str) -> tuple[str, ...]:
    """A switched value while it holds, else the user's own, else the
    attribute's default, else nothing."""
    definition = world.attribute(attribute)
    switched = world.switches.get((user_id, attribute), ())
    fits = definition.multiple or len(switched) == 1
    if switched and fits and switch_holds(world, user_id, attribute, switched):
        return switched
    own = world.user(user_id).values.get(attribute, ())
    if own:
        return own
    return definition.default


def switch_holds(
    world: World, user_id: str, attribute: str, values: tuple[str, ...]
) -> bool:
    """Every value is provisioned for the user or one of their groups, or one
    of those provisionings allows any value."""
    reaching = [world.user_provisions.get((attribute, user_id))]
    reaching += [
        world.group_provisions.get((attribute, group))
        for group in world.groups_of(user_id)
    ]
    provisioned = [each for each in reaching if each is not None]
    if any(each.any_value for each in provisioned):
        return True
    allowed = set().union(*(each.values for each in provisioned))
    return bool(values) and set(values) <= allowed
