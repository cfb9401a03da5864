"""Building a generated world for real, through the public HTTP API, on
connections to databases that each hold one marker row naming themselves.

Stored states that the API refuses to create directly are reached the way a
real organization reaches them: a pick made while access was granted, then
withdrawn; a switch made while provisioned through a group the user then
leaves; several switched values on an attribute made single-valued later;
picks and branches whose link is deleted or whose environment connection is
archived afterwards (archiving removes the links, spec §4).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson
import psycopg
from routing_worlds import Access, Base, Branch, Group, Link, User, World

from pointsman.services.container import Services
from pointsman.services.setup import ensure_admin
from pointsman.services.tokens import create_token

SQL = "select name from marker"
USER_ATTRIBUTES = "urn:omni:params:1.0:UserAttribute"
SWITCHERS = "switchers"  # the group that lets users switch before they leave it


# -- databases with a marker row --------------------------------------------------


class Databases(Protocol):
    def connection(self, name: str) -> tuple[dict[str, Any], str]:
        """A create-connection body for a new database, and its marker."""
        ...


@dataclass
class SqliteDatabases:
    directory: Path

    def connection(self, name: str) -> tuple[dict[str, Any], str]:
        path = self.directory / f"{name}.sqlite"
        with sqlite3.connect(path) as db:
            db.execute("create table marker (name text)")
            db.execute("insert into marker values (?)", (path.name,))
        return {"dialect": "sqlite", "name": name, "database": str(path)}, path.name


@dataclass
class PostgresDatabases:
    params: Any  # the root conftest's ServerParams
    make_database: Callable[[], str]

    def connection(self, name: str) -> tuple[dict[str, Any], str]:
        database = self.make_database()
        with psycopg.connect(
            host=self.params.host,
            port=self.params.port,
            user=self.params.user,
            password=self.params.password or None,
            dbname=database,
            autocommit=True,
        ) as db:
            db.execute("create table marker (name text)")
            db.execute("insert into marker values (%s)", (database,))
        body = {
            "dialect": "postgres",
            "name": name,
            "host": self.params.host,
            "port": self.params.port,
            "database": database,
            "username": self.params.user,
            "passwordUnencrypted": self.params.password or "unused-by-trust-auth",
        }
        return body, database


# -- the built world -----------------------------------------------------------------


@dataclass
class Built:
    """The server's ids for the world's, and the marker each connection reads."""

    ids: dict[str, str] = field(default_factory=dict)
    markers: dict[str, str] = field(default_factory=dict)  # server connection id
    attribute_ids: dict[str, str] = field(default_factory=dict)  # by name
    created: list[str] = field(default_factory=list)  # world link ids, in order
    spelled: bool = False  # values sent in another spelling of the same value

    def __getitem__(self, world_id: str) -> str:
        return self.ids[world_id]

    def spell(self, values: Iterable[str], kind: str | None) -> list[str]:
        """The values as sent: as they are, or spelled another way that the
        server must read as the same value (spec §3: values are trimmed,
        numbers compare by canonical form)."""
        if not self.spelled:
            return list(values)
        if kind != "Number":
            return [f" {value} " for value in values]
        forms = ("{}.0", "0{}", " {}.00 ")
        return [forms[int(value) % 3].format(value) for value in values]


async def build(
    api: httpx.AsyncClient,
    services: Services,
    world: World,
    databases: Databases,
    *,
    one_link_per_request: bool = False,
    spelled: bool = False,
) -> Built:
    """Build the world: every step through the HTTP API (org key, or the
    user's own token for their switches and picks), removals last."""
    built = Built(spelled=spelled)
    await _attributes(api, world, built)
    await _connections(api, world, databases, built)
    await _links(api, world, built, one_link_per_request)
    await _bases(api, world, built)
    await _users_and_groups(api, services, world, built)
    await _provisions(api, world, built)
    await _switches(api, services, world, built)
    await _picks(api, services, world, built)
    await _access(api, world, built)
    await _branches(api, world, built)
    await _removals(api, world, built)
    return built


async def succeeded(response: Awaitable[httpx.Response]) -> dict[str, Any]:
    """The JSON body of a request that must succeed."""
    result = await response
    assert result.status_code in (200, 201, 204), (
        f"{result.request.method} {result.request.url}: {result.text}"
    )
    return dict(result.json()) if result.content else {}


def _needs_several_switched(world: World, name: str) -> bool:
    """A single-valued attribute with a switch of several values: created
    multi-valued, switched, then made single-valued."""
    return any(
        attribute == name and len(values) > 1
        for (_, attribute), values in world.switches.items()
    )


async def _attributes(api: httpx.AsyncClient, world: World, built: Built) -> None:
    for attribute in world.attributes:
        multiple = attribute.multiple or _needs_several_switched(world, attribute.name)
        default: Any = built.spell(attribute.default, attribute.type)
        if not multiple:
            default = default[0] if default else None
        record = await succeeded(
            api.post(
                "/api/v1/user-attributes",
                json={
                    "name": attribute.name,
                    "type": attribute.type,
                    "multiple_values": multiple,
                    "default_value": default,
                },
            )
        )
        built.attribute_ids[attribute.name] = record["id"]


async def _connections(
    api: httpx.AsyncClient, world: World, databases: Databases, built: Built
) -> None:
    """The bases, the environments, and one connection for each deleted link."""
    keys = [base.id for base in world.bases] + list(world.environments)
    keys += [
        _connection_of(gone) for base in world.bases for gone in _gone(world, base)
    ]
    for key in keys:
        body, marker = databases.connection(key.replace(":", "-"))
        created = await succeeded(api.post("/api/v1/connections", json=body))
        built.ids[key] = created["data"]
        built.markers[created["data"]] = marker


def _gone(world: World, base: Base) -> tuple[str, ...]:
    return world.deleted_links_of(base.id)


def _connection_of(deleted_link: str) -> str:
    return f"{deleted_link}:connection"


async def _links(
    api: httpx.AsyncClient, world: World, built: Built, one_per_request: bool
) -> None:
    """In creation order (ties on the smaller id); then, for every deleted
    link a pick or branch names, a link to a connection of its own."""
    for base in world.bases:
        in_order = sorted(world.links_of(base.id), key=_creation)
        batches: list[list[str]] = (
            [[link.id] for link in in_order]
            if one_per_request
            else [[link.id for link in in_order]]
        )
        batches.append(list(_gone(world, base)))
        for batch in filter(None, batches):
            environments = [_environment_of(world, key) for key in batch]
            created = await succeeded(
                api.post(
                    "/api/v1/connection-environments",
                    json={
                        "baseConnectionId": built[base.id],
                        "environmentConnectionIds": [built[e] for e in environments],
                    },
                )
            )
            for key, item in zip(batch, created["data"], strict=True):
                built.ids[key] = item["id"]
                built.created.append(key)


def _creation(link: Link) -> tuple[int, str]:
    return link.created, link.id


def _environment_of(world: World, link_id: str) -> str:
    link = world.link(link_id)
    return link.environment if link is not None else _connection_of(link_id)


async def _bases(api: httpx.AsyncClient, world: World, built: Built) -> None:
    """The attribute and defaults first, so that values are normalised by
    the attribute's type; then the environments' values."""
    for base in world.bases:
        body: dict[str, Any] = {}
        if base.attribute is not None:
            body["environmentUserAttribute"] = {
                "attributeName": base.attribute,
                "defaultValues": built.spell(base.defaults, _kind(world, base)),
            }
        if base.allow_branches:
            body["allowBranchConnectionEnvironments"] = True
        if body:
            await succeeded(
                api.patch(f"/api/v1/connections/{built[base.id]}", json=body)
            )
    for link in world.links:
        if link.values:
            values = built.spell(link.values, _kind(world, world.base(link.base)))
            await succeeded(
                api.put(
                    f"/api/v1/connection-environments/{built[link.id]}",
                    json={"userAttributeValues": values},
                )
            )


def _kind(world: World, base: Base) -> str | None:
    """The type of the attribute the base routes on."""
    return world.attribute(base.attribute).type if base.attribute else None


async def _users_and_groups(
    api: httpx.AsyncClient, services: Services, world: World, built: Built
) -> None:
    for user in world.users:
        email = f"{user.id}@example.com"
        values: dict[str, Any] = {}
        for name, own in user.values.items():
            attribute = world.attribute(name)
            spelled = built.spell(own, attribute.type)
            values[name] = spelled if attribute.multiple else spelled[0]
        body = {"userName": email, "displayName": user.id, USER_ATTRIBUTES: values}
        created = await succeeded(api.post("/api/scim/v2/Users", json=body))
        built.ids[user.id] = created["id"]
        if user.admin:
            # No HTTP route makes an org admin: `pointsman init` does it so.
            ensure_admin(services.store, email)
    for group in world.groups:
        built.ids[group.id] = await _group(api, group.name, group.members, built)


async def _group(
    api: httpx.AsyncClient, name: str, members: Iterable[str], built: Built
) -> str:
    body = {
        "displayName": name,
        "members": [{"value": built[member]} for member in sorted(members)],
    }
    created = await succeeded(api.post("/api/scim/v2/Groups", json=body))
    return str(created["id"])


async def _provision(
    api: httpx.AsyncClient,
    attribute_id: str,
    grantee: dict[str, str],
    values: list[str],
    any_value: bool,
) -> None:
    await succeeded(
        api.put(
            f"/api/v1/user-attributes/{attribute_id}/selectable-values",
            json={**grantee, "values": values, "allow_any_value": any_value},
        )
    )


async def _provisions(api: httpx.AsyncClient, world: World, built: Built) -> None:
    for key in ("user_id", "group_id"):
        provisions = (
            world.user_provisions if key == "user_id" else world.group_provisions
        )
        for (attribute, grantee), each in provisions.items():
            attribute_id = built.attribute_ids[attribute]
            grant = {key: built[grantee]}
            values = built.spell(sorted(each.values), world.attribute(attribute).type)
            await _provision(api, attribute_id, grant, values, each.any_value)


def _as_user(
    api: httpx.AsyncClient, services: Services, user_id: str
) -> httpx.AsyncClient:
    token = create_token(
        services.store, name=f"pat {user_id}", kind="personal", user_id=user_id
    )["token"]
    return httpx.AsyncClient(
        transport=api._transport,
        base_url=str(api.base_url),
        headers={"Authorization": f"Bearer {token}"},
    )


async def _switches(
    api: httpx.AsyncClient, services: Services, world: World, built: Built
) -> None:
    """Every switch is made while its user may switch to anything, through a
    group they leave afterwards: from then on, only the world's own
    provisioning decides whether the switch holds."""
    if not world.switches:
        return
    switching = {user for user, _ in world.switches}
    group = await _group(api, SWITCHERS, switching, built)
    for attribute in {attribute for _, attribute in world.switches}:
        await _provision(
            api, built.attribute_ids[attribute], {"group_id": group}, [], True
        )
    for (user, attribute), values in world.switches.items():
        async with _as_user(api, services, built[user]) as client:
            body = {
                "userAttributeId": built.attribute_ids[attribute],
                "values": built.spell(values, world.attribute(attribute).type),
            }
            await succeeded(client.put("/api/v1/user-attribute-selections", json=body))
    empty = {"displayName": SWITCHERS, "members": []}
    await succeeded(api.put(f"/api/scim/v2/Groups/{group}", json=empty))
    for each in world.attributes:
        if not each.multiple and _needs_several_switched(world, each.name):
            await succeeded(
                api.patch(
                    f"/api/v1/user-attributes/{built.attribute_ids[each.name]}",
                    json={"multiple_values": False},
                )
            )


def _access_path(built: Built, link: str) -> str:
    return f"/api/v1/connection-environments/{built[link]}/access"


async def _picks(
    api: httpx.AsyncClient, services: Services, world: World, built: Built
) -> None:
    """Each pick is made with access granted to the user for the moment
    (org admins need none)."""
    for (user, base), link in world.selections.items():
        lent = None if link is None or world.user(user).admin else link
        granted = {"userIds": [built[user]]}
        if lent is not None:
            await succeeded(api.put(_access_path(built, lent), json=granted))
        async with _as_user(api, services, built[user]) as client:
            body = {"connectionEnvironmentId": built[link] if link else None}
            path = f"/api/v1/connections/{built[base]}/environment-selection"
            await succeeded(client.put(path, json=body))
        if lent is not None:
            withdrawn = api.request("DELETE", _access_path(built, lent), json=granted)
            await succeeded(withdrawn)


async def _access(api: httpx.AsyncClient, world: World, built: Built) -> None:
    for link, grant in world.access.items():
        body = {
            "userIds": [built[user] for user in sorted(grant.users)],
            "groupIds": [built[group] for group in sorted(grant.groups)],
        }
        await succeeded(api.put(_access_path(built, link), json=body))


async def _branches(api: httpx.AsyncClient, world: World, built: Built) -> None:
    for branch in world.branches:
        body = {
            "name": branch.name,
            "baseConnectionId": built[branch.base],
            "connectionEnvironmentId": built[branch.link],
        }
        created = await succeeded(api.post("/api/v1/branches", json=body))
        built.ids[branch.id] = created["id"]


async def _removals(api: httpx.AsyncClient, world: World, built: Built) -> None:
    """Deleted links go one of two ways (deleting the link, archiving its
    connection); archived environment connections take their links along."""
    gone = [link for base in world.bases for link in _gone(world, base)]
    for number, link in enumerate(gone):
        if number % 2 == 0:
            path = f"/api/v1/connection-environments/{built[link]}"
        else:
            path = f"/api/v1/connections/{built[_connection_of(link)]}"
        await succeeded(api.delete(path))
    for environment in sorted(world.archived):
        await succeeded(api.delete(f"/api/v1/connections/{built[environment]}"))


# -- the world as the server now holds it ---------------------------------------------


def as_built(world: World, built: Built) -> World:
    """The world in the server's ids, as it stands after the build: links in
    their creation order, the links of archived connections gone."""
    ids = built.ids

    def link_of(old: Link) -> Link:
        return Link(
            ids[old.id],
            ids[old.base],
            ids[old.environment],
            old.values,
            built.created.index(old.id),
        )

    def keyed(pairs: dict[tuple[str, str], Any], first: bool) -> dict[Any, Any]:
        return {
            ((ids[a], b) if first else (a, ids[b])): value
            for (a, b), value in pairs.items()
        }

    return replace(
        world,
        bases=tuple(replace(base, id=ids[base.id]) for base in world.bases),
        environments=tuple(ids[env] for env in world.environments),
        archived=frozenset(ids[env] for env in world.archived),
        links=tuple(
            link_of(link)
            for link in world.links
            if link.environment not in world.archived
        ),
        groups=tuple(
            Group(ids[g.id], g.name, frozenset(ids[m] for m in g.members))
            for g in world.groups
        ),
        users=tuple(User(ids[u.id], u.admin, u.values) for u in world.users),
        user_provisions=keyed(dict(world.user_provisions), first=False),
        group_provisions=keyed(dict(world.group_provisions), first=False),
        switches=keyed(dict(world.switches), first=True),
        access={
            ids[link]: Access(
                frozenset(ids[u] for u in grant.users),
                frozenset(ids[g] for g in grant.groups),
            )
            for link, grant in world.access.items()
        },
        selections={
            (ids[user], ids[base]): ids[link] if link else None
            for (user, base), link in world.selections.items()
        },
        branches=tuple(
            Branch(ids[b.id], b.name, ids[b.base], ids[b.link]) for b in world.branches
        ),
    )


# -- running the marker query ----------------------------------------------------------


@dataclass(frozen=True)
class Served:
    marker: str  # what the query read
    route: dict[str, Any]  # the job's route
    header: str  # the X-Pointsman-Connection-Id response header


async def run_marker_query(
    api: httpx.AsyncClient, user: str, base: str, branch: str | None
) -> Served:
    body: dict[str, Any] = {
        "query": {"connectionId": base, "sql": SQL},
        "userId": user,
        "resultType": "json",
    }
    if branch is not None:
        body["branchId"] = branch
    response = await api.post("/api/v1/query/run", json=body)
    assert response.status_code == 200, response.text
    lines = [orjson.loads(line) for line in response.text.splitlines() if line]
    job = lines[1]
    assert job["status"] == "COMPLETE", job
    header = response.headers.get("X-Pointsman-Connection-Id", "")
    return Served(str(job["result"][0]["name"]), dict(job["route"]), header)
