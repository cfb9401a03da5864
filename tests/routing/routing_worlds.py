"""Random but consistent routing configurations ("worlds") for the routing tests.

A world is decoded from a fixed number of bytes: hypothesis draws one value
per world (cheap enough for ten thousand worlds a run) and shrinks it towards
the simplest world, since a 0 byte is always the empty or smallest choice.
The end-to-end tests decode seeded random bytes with the same decoder.

What the store guarantees holds in every world: within a base, the base's
default values and its environments' values never repeat; an environment
connection is linked at most once per base and is never a base itself.
What it cannot prevent is generated on purpose: archived environment
connections, picks and branches naming deleted links, switches that are no
longer provisioned, and several switched values on a single-valued attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TypeVar

from hypothesis import strategies as st

from pointsman.routing.snapshot import (
    AttributeDefinition,
    BranchInfo,
    ConnectionInfo,
    EnvironmentLink,
    GroupInfo,
    Provision,
    SharedValues,
    Snapshot,
    UserInfo,
    build_snapshot,
)

T = TypeVar("T")

STRING_VALUES = ("red", "green", "blue", "gold", "teal", "pink")
NUMBER_VALUES = ("1", "2", "3", "5", "8", "13")
ENVIRONMENT_POOL = 6  # environment connections env0..env5, shared by the bases
MAX_ATTRIBUTES = 3
MAX_BASES = 3
MAX_LINKS_PER_BASE = 5
MAX_USERS = 4
MAX_GROUPS = 4
WORLD_BYTES = 256  # worlds read up to about 250; past the end choices are 0


# -- the model ------------------------------------------------------------------


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str  # "String" | "Number"
    multiple: bool
    default: tuple[str, ...]

    @property
    def pool(self) -> tuple[str, ...]:
        return NUMBER_VALUES if self.type == "Number" else STRING_VALUES


@dataclass(frozen=True)
class Base:
    id: str
    name: str
    attribute: str | None
    defaults: tuple[str, ...]
    allow_branches: bool


@dataclass(frozen=True)
class Link:
    id: str
    base: str
    environment: str  # the environment connection's id
    values: tuple[str, ...]
    created: int  # creation time; equal times tie on the smaller id


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    members: frozenset[str]


@dataclass(frozen=True)
class User:
    id: str
    admin: bool
    values: Mapping[str, tuple[str, ...]]  # attribute name -> own values


@dataclass(frozen=True)
class Provisioning:
    """What a user or a group may switch an attribute to."""

    values: frozenset[str]
    any_value: bool


@dataclass(frozen=True)
class Access:
    """Who may pick an environment link."""

    users: frozenset[str]
    groups: frozenset[str]


@dataclass(frozen=True)
class Branch:
    id: str
    name: str
    base: str
    link: str  # a link id, possibly of a deleted link


@dataclass(frozen=True)
class World:
    attributes: tuple[Attribute, ...]
    bases: tuple[Base, ...]
    environments: tuple[str, ...]  # linked environment connection ids
    archived: frozenset[str]  # archived environment connection ids
    links: tuple[Link, ...]
    groups: tuple[Group, ...]
    users: tuple[User, ...]
    user_provisions: Mapping[tuple[str, str], Provisioning]  # (attribute, user)
    group_provisions: Mapping[tuple[str, str], Provisioning]  # (attribute, group)
    switches: Mapping[tuple[str, str], tuple[str, ...]]  # (user, attribute)
    access: Mapping[str, Access]  # link id -> grants
    selections: Mapping[tuple[str, str], str | None]  # (user, base) -> link | None
    branches: tuple[Branch, ...]

    def attribute(self, name: str) -> Attribute:
        return next(each for each in self.attributes if each.name == name)

    def base(self, base_id: str) -> Base:
        return next(each for each in self.bases if each.id == base_id)

    def user(self, user_id: str) -> User:
        return self._users_by_id[user_id]

    def link(self, link_id: str | None) -> Link | None:
        return self._links_by_id.get(link_id) if link_id is not None else None

    def links_of(self, base_id: str) -> tuple[Link, ...]:
        return tuple(link for link in self.links if link.base == base_id)

    def branches_of(self, base_id: str) -> tuple[Branch, ...]:
        return tuple(branch for branch in self.branches if branch.base == base_id)

    def groups_of(self, user_id: str) -> tuple[str, ...]:
        return self._groups_by_user.get(user_id, ())

    def requests(self) -> Iterator[tuple[str, str, str | None]]:
        """Every (user, base, branch or None) a query can name; a branch only
        with its own base, as the query layer refuses another base's."""
        for user in self.users:
            for base in self.bases:
                yield user.id, base.id, None
                for branch in self.branches_of(base.id):
                    yield user.id, base.id, branch.id

    # Look-ups, computed once per world (not fields: not compared or shown).
    @cached_property
    def _users_by_id(self) -> dict[str, User]:
        return {user.id: user for user in self.users}

    @cached_property
    def _links_by_id(self) -> dict[str, Link]:
        return {link.id: link for link in self.links}

    @cached_property
    def _groups_by_user(self) -> dict[str, tuple[str, ...]]:
        groups: dict[str, tuple[str, ...]] = {}
        for group in self.groups:
            for member in group.members:
                groups[member] = (*groups.get(member, ()), group.id)
        return groups

    def deleted_links_of(self, base_id: str) -> tuple[str, ...]:
        """Link ids of this base that picks or branches name but that are gone."""
        named = [link for (_, base), link in self.selections.items() if base == base_id]
        named += [branch.link for branch in self.branches_of(base_id)]
        known = {link.id for link in self.links}
        return tuple(sorted({link for link in named if link and link not in known}))


def describe(world: World) -> str:
    """The world in a few lines, leaving out what is empty (for reports)."""
    lines = [
        f"attribute {a.name}: {a.type}, {'multi' if a.multiple else 'single'}"
        + (f", default {_listed(a.default)}" if a.default else "")
        for a in world.attributes
    ]
    for base in world.bases:
        routing = f"routes on {base.attribute}" if base.attribute else "no attribute"
        lines.append(
            f"{base.id}: {routing}"
            + (f", defaults {_listed(base.defaults)}" if base.defaults else "")
            + (", branches allowed" if base.allow_branches else "")
        )
        for link in world.links_of(base.id):
            archived = " (archived)" if link.environment in world.archived else ""
            grant = world.access.get(link.id)
            lines.append(
                f"  {link.id} -> {link.environment}{archived}: values "
                f"{_listed(link.values)}, created {link.created}"
                + (
                    f", pickable by {_listed(grant.users | grant.groups)}"
                    if grant
                    else ""
                )
            )
        for branch in world.branches_of(base.id):
            lines.append(f"  branch {branch.id} ({branch.name}) pins {branch.link}")
    for user in world.users:
        lines.append(
            f"{user.id}{' (org admin)' if user.admin else ''}: "
            f"values {dict(user.values)}, groups {_listed(world.groups_of(user.id))}"
        )
    for (attribute, grantee), each in {
        **world.user_provisions,
        **world.group_provisions,
    }.items():
        anything = ", any value" if each.any_value else ""
        lines.append(
            f"{grantee} may switch {attribute} to {_listed(each.values)}{anything}"
        )
    for (user_id, attribute), values in world.switches.items():
        lines.append(f"{user_id} switched {attribute} to {_listed(values)}")
    for (user_id, base_id), link_id in world.selections.items():
        lines.append(f"{user_id} picked {link_id or 'the base'} on {base_id}")
    return "\n".join(lines)


def _listed(values: Iterable[str]) -> str:
    return "[" + ", ".join(sorted(values)) + "]"


# -- decoding bytes into a world ------------------------------------------------


class Choices:
    """Choices read from bytes; once the bytes run out every choice is 0."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def below(self, n: int) -> int:
        """A number in ``range(n)``."""
        if n <= 1 or self._at >= len(self._data):
            return 0
        byte = self._data[self._at]
        self._at += 1
        return byte % n

    def flag(self, one_in: int = 2) -> bool:
        """True with probability ``1 / one_in``."""
        return self.below(one_in) == 1

    def subset(self, items: Sequence[T], at_most: int) -> tuple[T, ...]:
        """Some of ``items``, in their order, at most ``at_most`` of them."""
        mask = self.below(2 ** len(items))
        chosen = [item for i, item in enumerate(items) if mask >> i & 1]
        return tuple(chosen[:at_most])


def decode_world(data: bytes) -> World:
    choices = Choices(data)
    count = 1 + choices.below(MAX_ATTRIBUTES)
    attributes = tuple(_attribute(choices, i) for i in range(count))
    user_ids = tuple(f"user{i}" for i in range(1 + choices.below(MAX_USERS)))
    bases: list[Base] = []
    links: list[Link] = []
    for number in range(1 + choices.below(MAX_BASES)):
        base, own_links = _base(choices, number, attributes)
        bases.append(base)
        links.extend(own_links)
    linked = sorted({link.environment for link in links})
    archived = frozenset(env for env in linked if choices.flag(4))
    count = choices.below(MAX_GROUPS + 1)
    groups = tuple(_group(choices, i, user_ids) for i in range(count))
    users = tuple(_user(choices, user_id, attributes) for user_id in user_ids)
    world = World(
        attributes=attributes,
        bases=tuple(bases),
        environments=tuple(linked),
        archived=archived,
        links=tuple(links),
        groups=groups,
        users=users,
        user_provisions=_provisions(choices, attributes, user_ids),
        group_provisions=_provisions(
            choices, attributes, tuple(group.id for group in groups)
        ),
        switches=_switches(choices, attributes, user_ids),
        access=_access(choices, links, user_ids, groups),
        selections={},
        branches=(),
    )
    return _with_picks_and_branches(choices, world)


def _attribute(choices: Choices, number: int) -> Attribute:
    kind = ("String", "Number")[choices.below(2)]
    multiple = choices.flag()
    pool = NUMBER_VALUES if kind == "Number" else STRING_VALUES
    default = choices.subset(pool, 2 if multiple else 1) if choices.flag() else ()
    return Attribute(f"attr{number}", kind, multiple, default)


def _base(
    choices: Choices, number: int, attributes: tuple[Attribute, ...]
) -> tuple[Base, list[Link]]:
    pick = choices.below(4)  # no attribute (1 in 4), else one of them
    attribute = attributes[(pick - 1) % len(attributes)] if pick else None
    allow_branches = choices.flag()
    base_id = f"base{number}"

    environments: list[str] = []
    for _ in range(choices.below(MAX_LINKS_PER_BASE + 1)):
        slot = choices.below(ENVIRONMENT_POOL)
        while f"env{slot}" in environments:
            slot = (slot + 1) % ENVIRONMENT_POOL
        environments.append(f"env{slot}")

    # Each value of the pool is unclaimed, a default of the base, or claimed
    # by one environment (its index): never two of them.
    pool = attribute.pool if attribute is not None else STRING_VALUES
    owners = [_owner(choices, len(environments)) for _ in pool]
    defaults = tuple(
        v for v, owner in zip(pool, owners, strict=True) if owner == DEFAULT
    )
    links = [
        Link(
            id=f"link{choices.below(10)}-b{number}e{index}",
            base=base_id,
            environment=environment,
            values=tuple(
                v for v, owner in zip(pool, owners, strict=True) if owner == index
            ),
            created=choices.below(3),
        )
        for index, environment in enumerate(environments)
    ]
    base = Base(
        id=base_id,
        name=f"Base {number}",
        attribute=attribute.name if attribute is not None else None,
        defaults=defaults if attribute is not None else (),
        allow_branches=allow_branches,
    )
    return base, links


UNCLAIMED, DEFAULT = -2, -1


def _owner(choices: Choices, environments: int) -> int:
    kind = choices.below(6)  # unclaimed, a default, an environment (4 in 6)
    if kind == 1:
        return DEFAULT
    if kind == 0 or not environments:
        return UNCLAIMED
    return choices.below(environments)


def _group(choices: Choices, number: int, user_ids: tuple[str, ...]) -> Group:
    members = frozenset(choices.subset(user_ids, MAX_USERS))
    return Group(f"group{number}", f"Group {number}", members)


def _user(choices: Choices, user_id: str, attributes: tuple[Attribute, ...]) -> User:
    admin = choices.flag(5)
    values: dict[str, tuple[str, ...]] = {}
    for attribute in attributes:
        if attribute.multiple:
            own = choices.subset(attribute.pool, 3)
        else:
            index = choices.below(len(attribute.pool) + 1)
            own = (attribute.pool[index - 1],) if index else ()
        if own:
            values[attribute.name] = own
    return User(user_id, admin, values)


def _provisions(
    choices: Choices, attributes: tuple[Attribute, ...], grantees: tuple[str, ...]
) -> dict[tuple[str, str], Provisioning]:
    provisions = {}
    for attribute in attributes:
        for grantee in grantees:
            kind = choices.below(4)  # none, none, some values, any value
            if kind >= 2:
                values = frozenset(choices.subset(attribute.pool, 3))
                provisions[(attribute.name, grantee)] = Provisioning(values, kind == 3)
    return provisions


def _switches(
    choices: Choices, attributes: tuple[Attribute, ...], user_ids: tuple[str, ...]
) -> dict[tuple[str, str], tuple[str, ...]]:
    switches = {}
    for user_id in user_ids:
        for attribute in attributes:
            count = choices.below(4) - 1  # none, none, one value, two values
            if count > 0:
                values = choices.subset(attribute.pool, count)
                if values:
                    switches[(user_id, attribute.name)] = values
    return switches


def _access(
    choices: Choices,
    links: list[Link],
    user_ids: tuple[str, ...],
    groups: tuple[Group, ...],
) -> dict[str, Access]:
    group_ids = tuple(group.id for group in groups)
    access = {}
    for link in links:
        users = choices.subset(user_ids, MAX_USERS) if choices.flag() else ()
        granted = choices.subset(group_ids, MAX_GROUPS) if choices.flag() else ()
        if users or granted:
            access[link.id] = Access(frozenset(users), frozenset(granted))
    return access


def _with_picks_and_branches(choices: Choices, world: World) -> World:
    """Picks and branches, which name the links of the world or deleted ones."""
    selections: dict[tuple[str, str], str | None] = {}
    for user in world.users:
        for base in world.bases:
            # none (3 in 6), the base, a link, a deleted link
            kind = choices.below(6) - 2
            if kind == 1:
                selections[(user.id, base.id)] = None
            elif kind >= 2:
                selections[(user.id, base.id)] = _some_link(choices, world, base, kind)
    branches = []
    for base in world.bases:
        for number in range(choices.below(3)):
            branches.append(
                Branch(
                    id=f"branch-{base.id}-{number}",
                    name=f"feature-{base.id[-1]}{number}",
                    base=base.id,
                    link=_some_link(choices, world, base, 2),
                )
            )
    return replace(world, selections=selections, branches=tuple(branches))


def _some_link(choices: Choices, world: World, base: Base, kind: int) -> str:
    """One of the base's links (kind 2), else one of two deleted link ids."""
    links = world.links_of(base.id)
    if kind == 2 and links:
        index = choices.below(len(links) + 1)
        if index < len(links):
            return links[index].id
    return f"gone{choices.below(2)}-{base.id}"


def worlds() -> st.SearchStrategy[World]:
    """Random consistent worlds; they shrink towards fewer, emptier ones."""
    return st.binary(min_size=WORLD_BYTES, max_size=WORLD_BYTES).map(decode_world)


# -- the snapshot the resolver reads ----------------------------------------------


def snapshot_of(world: World) -> Snapshot:
    """The world as the store would load it: links in creation order (ties on
    the smaller id), only non-empty values, groups known from both sides."""
    in_order = sorted(world.links, key=lambda link: (link.created, link.id))
    # Half the worlds hold their users' values as the store's loader does
    # (shared, with the routes they lead to filled in), half as plain dicts:
    # the resolver must decide alike either way.
    values: Callable[[Mapping[str, tuple[str, ...]]], Mapping[str, tuple[str, ...]]]
    values = SharedValues() if len(world.users) % 2 else dict
    return build_snapshot(
        1,
        [_base_info(base) for base in world.bases]
        + [_environment_info(world, env) for env in world.environments],
        [
            EnvironmentLink(
                link.id, link.base, link.environment, link.values, order=position
            )
            for position, link in enumerate(in_order)
        ],
        [
            AttributeDefinition(
                f"id-{each.name}",
                each.name,
                each.type,
                each.multiple,
                each.default or None,
            )
            for each in world.attributes
        ],
        [_user_info(world, user.id, values) for user in world.users],
        [],
        groups={
            group.id: GroupInfo(group.id, group.name, group.members)
            for group in world.groups
        },
        user_provisions=_provision_infos(world.user_provisions),
        group_provisions=_provision_infos(world.group_provisions),
        switches=dict(world.switches),
        access_users={link: grant.users for link, grant in world.access.items()},
        access_groups={link: grant.groups for link, grant in world.access.items()},
        selections=dict(world.selections),
        branches={branch.id: _branch_info(branch) for branch in world.branches},
    )


def _base_info(base: Base) -> ConnectionInfo:
    return ConnectionInfo(
        id=base.id,
        name=base.name,
        dialect="sqlite",
        archived=False,
        base_role="QUERIER",
        environment_attribute=base.attribute,
        default_values=frozenset(base.defaults),
        allow_branch_environments=base.allow_branches,
    )


def _environment_info(world: World, environment: str) -> ConnectionInfo:
    return ConnectionInfo(
        id=environment,
        name=f"Environment {environment[3:]}",
        dialect="sqlite",
        archived=environment in world.archived,
        base_role="QUERIER",
    )


def _user_info(
    world: World,
    user_id: str,
    values: Callable[[Mapping[str, tuple[str, ...]]], Mapping[str, tuple[str, ...]]],
) -> UserInfo:
    user = world.user(user_id)
    return UserInfo(
        id=user.id,
        email=f"{user.id}@example.com",
        display_name=user.id,
        active=True,
        is_org_admin=user.admin,
        membership_id=f"membership-{user.id}",
        values=values(user.values),
        groups=world.groups_of(user.id),
    )


def _branch_info(branch: Branch) -> BranchInfo:
    return BranchInfo(branch.id, branch.name, branch.base, branch.link)


def _provision_infos(
    provisions: Mapping[tuple[str, str], Provisioning],
) -> dict[tuple[str, str], Provision]:
    return {
        key: Provision(each.values, each.any_value) for key, each in provisions.items()
    }
