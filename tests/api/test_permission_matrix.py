"""Who may call what: every endpoint × every kind of caller.

The expectations are the spec's "Who may do what" table (§3), written out
here by hand, independently of ``pointsman.policy``. Connection roles are
held on a base connection whose baseRole is NO_ACCESS, so the grant alone
decides; each role is given once directly and once through a group.

An allowed caller gets anything but 401/403 (bodies are valid, so nearly
always a 2xx; a 404 remains where nothing is there to find); a refused one
gets exactly the 403 body and changes nothing, and a caller without a valid
token exactly the 401 body.

Each allowed call runs on its own copy of one prepared SQLite store, so that
a DELETE in one case cannot change another; refused calls share one copy.
The policy decides on the in-memory snapshot, so the store's engine does not
matter here (the other API tests run on both engines).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import secret_watch
from cryptography.fernet import Fernet
from helpers import assert_error
from sqlalchemy import select
from starlette.routing import Route

from pointsman.api.app import all_routes, create_app
from pointsman.config import Settings
from pointsman.services import (
    connections,
    environments,
    groups,
    roles,
    switches,
    tokens,
)
from pointsman.services.attributes import create_attribute
from pointsman.services.container import Services
from pointsman.services.setup import ensure_admin, initialize
from pointsman.store import models
from pointsman.store.db import Store

pytestmark = pytest.mark.anyio

# -- the callers -----------------------------------------------------------------------

ORG_KEY = "org key"
ADMIN_PAT = "org admin PAT"
CONNECTION_ADMIN = "CONNECTION_ADMIN"
QUERIER = "QUERIER"
VIEWER = "VIEWER"
NO_ACCESS = "NO_ACCESS"
OTHER_PAT = "another user's PAT"
REVOKED = "revoked token"
DISABLED_KEY = "disabled org key"
NO_TOKEN = "no token"

ROLES_ON_BASE = (CONNECTION_ADMIN, QUERIER, VIEWER, NO_ACCESS)
NOT_SIGNED_IN = (REVOKED, DISABLED_KEY, NO_TOKEN)
BY_USER, BY_GROUP = "user grant", "group grant"

# -- who may: the spec's table, by hand ------------------------------------------------

EVERYONE = frozenset({ORG_KEY, ADMIN_PAT, *ROLES_ON_BASE, OTHER_PAT, *NOT_SIGNED_IN})
MEMBERS = frozenset({ORG_KEY, ADMIN_PAT, *ROLES_ON_BASE, OTHER_PAT})
ORG_ADMINS = frozenset({ORG_KEY, ADMIN_PAT})
ORG_KEY_ONLY = frozenset({ORG_KEY})
# No caller holds RESTRICTED_QUERIER, so these two name the same callers.
RESTRICTED_QUERIER_ON_BASE = ORG_ADMINS | {CONNECTION_ADMIN, QUERIER}
QUERIER_ON_BASE = ORG_ADMINS | {CONNECTION_ADMIN, QUERIER}
CONNECTION_ADMIN_ON_BASE = ORG_ADMINS | {CONNECTION_ADMIN}
# Roles are held on the base only: nobody else administers the environment.
CONNECTION_ADMIN_ON_ENVIRONMENT = ORG_ADMINS


@dataclass(frozen=True)
class Row:
    """One endpoint, one request that is valid for it, and who may send it.
    ``{name}`` in the url, body and params is a world id (see World.ids)."""

    method: str
    url: str
    allowed: frozenset[str]
    body: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)
    variant: str = ""

    @property
    def path(self) -> str:
        """The route: every route names its one path parameter ``id``."""
        return re.sub(r"\{[a-z_]+\}", "{id}", self.url)

    @property
    def label(self) -> str:
        suffix = f" ({self.variant})" if self.variant else ""
        return f"{self.method} {self.path}{suffix}"


def scim_rows(collection: str, one: str, bodies: dict[str, Any]) -> list[Row]:
    return [
        Row("GET", collection, ORG_KEY_ONLY),
        Row("POST", collection, ORG_KEY_ONLY, body=bodies["POST"]),
        Row("GET", one, ORG_KEY_ONLY),
        Row("PUT", one, ORG_KEY_ONLY, body=bodies["PUT"]),
        Row("PATCH", one, ORG_KEY_ONLY, body=bodies["PATCH"]),
        Row("DELETE", one, ORG_KEY_ONLY),
    ]


def patch_op(op: str, path: str, value: Any) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": op, "path": path, "value": value}],
    }


USER_BODIES = {
    "POST": {"userName": "new@example.com", "displayName": "New"},
    "PUT": {"userName": "owner@example.com", "displayName": "Owner"},
    "PATCH": patch_op("replace", "displayName", "Owner"),
}
GROUP_BODIES = {
    "POST": {"displayName": "New group"},
    "PUT": {"displayName": "Owners", "members": [{"value": "{owner}"}]},
    "PATCH": patch_op("add", "members", [{"value": "{owner}"}]),
}
GRANT = {"roleName": "VIEWER", "connectionId": "{base}"}
ON_BASE = {"connectionId": "{base}"}
PLANNED = {"query": {"connectionId": "{base}", "sql": "select 1"}, "planOnly": True}
PICK = "/api/v1/connections/{base}/environment-selection"
ACCESS = "/api/v1/connection-environments/{link}/access"
SELECTABLE = "/api/v1/user-attributes/{region}/selectable-values"
SWITCHES = "/api/v1/user-attribute-selections"

ROWS = [
    # health, metrics and description: no token needed
    Row("GET", "/healthz", EVERYONE),
    Row("GET", "/readyz", EVERYONE),
    Row("GET", "/api/openapi.json", EVERYONE),
    Row("GET", "/metrics", EVERYONE),
    # identity and keys
    Row("GET", "/api/v1/whoami", MEMBERS),
    Row("GET", "/api/v1/api-keys", ORG_ADMINS),
    Row(
        "POST",
        "/api/v1/api-keys",
        MEMBERS,
        body={"name": "laptop", "type": "personal"},
        variant="own PAT",
    ),
    Row(
        "POST",
        "/api/v1/api-keys",
        ORG_ADMINS,
        body={"name": "laptop", "type": "personal", "userId": "{owner}"},
        variant="a PAT for the owner",
    ),
    Row(
        "POST",
        "/api/v1/api-keys",
        ORG_ADMINS,
        body={"name": "ci", "type": "organization"},
        variant="organization key",
    ),
    Row("GET", "/api/v1/api-keys/{owner_pat}", ORG_ADMINS),
    Row("PUT", "/api/v1/api-keys/{spare_key}", ORG_ADMINS, body={"enabled": False}),
    Row("DELETE", "/api/v1/api-keys/{owner_pat}", ORG_ADMINS),
    # SCIM: the organization key only
    *scim_rows("/api/scim/v2/Users", "/api/scim/v2/Users/{owner}", USER_BODIES),
    *scim_rows("/api/scim/v2/users", "/api/scim/v2/users/{owner}", USER_BODIES),
    *scim_rows("/api/scim/v2/Groups", "/api/scim/v2/Groups/{team}", GROUP_BODIES),
    *scim_rows("/api/scim/v2/groups", "/api/scim/v2/groups/{team}", GROUP_BODIES),
    # attribute definitions and what users may switch them to
    Row("GET", "/api/v1/user-attributes", ORG_ADMINS),
    Row("POST", "/api/v1/user-attributes", ORG_ADMINS, body={"name": "department"}),
    Row(
        "PATCH", "/api/v1/user-attributes/{region}", ORG_ADMINS, body={"label": "Area"}
    ),
    Row("DELETE", "/api/v1/user-attributes/{region}", ORG_ADMINS),
    Row("GET", SELECTABLE, ORG_ADMINS, params={"user_id": "{owner}"}),
    Row(
        "PUT",
        SELECTABLE,
        ORG_ADMINS,
        body={"user_id": "{owner}", "values": ["west"], "allow_any_value": False},
    ),
    Row("GET", SWITCHES, MEMBERS),
    Row(
        "PUT", SWITCHES, MEMBERS, body={"userAttributeId": "{region}", "values": "west"}
    ),
    Row("DELETE", SWITCHES, MEMBERS, params={"userAttributeId": "{region}"}),
    # connection roles
    Row("GET", "/api/v1/users/{owner}/model-roles", ORG_ADMINS),
    Row("POST", "/api/v1/users/{owner}/model-roles", ORG_ADMINS, body=GRANT),
    Row("DELETE", "/api/v1/users/{owner}/model-roles", ORG_ADMINS, params=ON_BASE),
    Row("GET", "/api/v1/user-groups/{team}/model-roles", ORG_ADMINS),
    Row("POST", "/api/v1/user-groups/{team}/model-roles", ORG_ADMINS, body=GRANT),
    Row("DELETE", "/api/v1/user-groups/{team}/model-roles", ORG_ADMINS, params=ON_BASE),
    # connections
    Row(
        "POST",
        "/api/v1/connections",
        ORG_ADMINS,
        body={"dialect": "sqlite", "name": "new", "database": "{customer_db}"},
    ),
    Row("GET", "/api/v1/connections", MEMBERS),
    Row("GET", "/api/v1/connections/{base}", RESTRICTED_QUERIER_ON_BASE),
    Row(
        "PATCH",
        "/api/v1/connections/{base}",
        CONNECTION_ADMIN_ON_BASE,
        body={"name": "renamed"},
    ),
    Row("DELETE", "/api/v1/connections/{base}", CONNECTION_ADMIN_ON_BASE),
    Row("POST", "/api/v1/connections/{base}/test", CONNECTION_ADMIN_ON_BASE),
    Row("GET", "/api/v1/connections/{base}/pool", CONNECTION_ADMIN_ON_BASE),
    # connection environments
    Row(
        "POST",
        "/api/v1/connection-environments",
        CONNECTION_ADMIN_ON_BASE,
        body={"baseConnectionId": "{base}", "environmentConnectionIds": ["{spare}"]},
        variant="an environment everyone may view",
    ),
    Row(
        "POST",
        "/api/v1/connection-environments",
        # The connection admin of the base has NO_ACCESS on ``hidden``.
        ORG_ADMINS,
        body={"baseConnectionId": "{base}", "environmentConnectionIds": ["{hidden}"]},
        variant="an environment nobody may view",
    ),
    Row("GET", "/api/v1/connection-environments", MEMBERS),
    Row(
        "PUT",
        "/api/v1/connection-environments/{link}",
        CONNECTION_ADMIN_ON_BASE,
        body={"userAttributeValues": ["west"]},
    ),
    Row("DELETE", "/api/v1/connection-environments/{link}", CONNECTION_ADMIN_ON_BASE),
    Row("GET", ACCESS, ORG_ADMINS),
    Row("PUT", ACCESS, ORG_ADMINS, body={"userIds": ["{owner}"]}),
    Row("DELETE", ACCESS, ORG_ADMINS, body={"userIds": ["{owner}"]}),
    # where queries go
    Row("GET", "/api/v1/connections/{base}/route", QUERIER_ON_BASE, variant="own"),
    Row(
        "GET",
        "/api/v1/connections/{base}/route",
        ORG_ADMINS,
        params={"userId": "{owner}"},
        variant="the owner's",
    ),
    Row("GET", PICK, QUERIER_ON_BASE),
    Row("PUT", PICK, QUERIER_ON_BASE, body={"connectionEnvironmentId": None}),
    Row("DELETE", PICK, QUERIER_ON_BASE),
    Row(
        "POST",
        "/api/v1/branches",
        CONNECTION_ADMIN_ON_BASE,
        body={
            "name": "feature",
            "baseConnectionId": "{base}",
            "connectionEnvironmentId": "{link}",
        },
    ),
    Row("GET", "/api/v1/branches", MEMBERS),
    Row("DELETE", "/api/v1/branches/{branch}", CONNECTION_ADMIN_ON_BASE),
    # running SQL
    Row("POST", "/api/v1/query/run", QUERIER_ON_BASE, body=PLANNED, variant="base"),
    Row(
        "POST",
        "/api/v1/query/run",
        CONNECTION_ADMIN_ON_ENVIRONMENT,
        body={**PLANNED, "query": {"connectionId": "{env}", "sql": "select 1"}},
        variant="environment connection named directly",
    ),
    Row(
        "POST",
        "/api/v1/query/run",
        ORG_KEY_ONLY,
        body={**PLANNED, "userId": "{owner}"},
        variant="as another user",
    ),
    Row(
        "GET",
        "/api/v1/query/wait",
        MEMBERS,
        params={"job_ids": '["9b6c1f3e-0000-4000-8000-000000000000"]'},
    ),
    Row("GET", "/api/v1/query/log", MEMBERS),
    Row("GET", "/api/v1/audit", ORG_ADMINS),
]

# Each role on the base, held once directly and once through a group.
ACTORS = [
    (ORG_KEY, ""),
    (ADMIN_PAT, ""),
    *[(role, how) for role in ROLES_ON_BASE for how in (BY_USER, BY_GROUP)],
    (OTHER_PAT, ""),
    *[(actor, "") for actor in NOT_SIGNED_IN],
]


# -- the world every case starts from --------------------------------------------------


@dataclass(frozen=True)
class World:
    """A prepared store: where it is, its key, the callers' tokens and the ids
    requests name."""

    store_file: Path
    secret_key: str
    tokens: dict[str, str]
    ids: dict[str, str]

    def fill(self, value: Any) -> Any:
        """``value`` with every ``{name}`` in its strings replaced by an id."""
        if isinstance(value, str):
            return value.format_map(self.ids)
        if isinstance(value, dict):
            return {key: self.fill(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.fill(item) for item in value]
        return value


def _member(store: Store, email: str) -> str:
    with store.write() as session:
        user = models.User(email=email, email_key=email, display_name=email)
        session.add(user)
        session.flush()
        return user.id


def _pat(store: Store, user_id: str) -> dict[str, Any]:
    return tokens.create_token(store, name="pat", kind="personal", user_id=user_id)


def _sqlite(services: Services, name: str, database: Path, base_role: str) -> str:
    body = {
        "dialect": "sqlite",
        "name": name,
        "database": str(database),
        "baseRole": base_role,
    }
    return connections.create_connection(services.store, services.secrets, body)


def _callers(store: Store, base: str) -> dict[str, str]:
    """A PAT for each member caller; role holders get their role on ``base``."""
    found = {ADMIN_PAT: _pat(store, ensure_admin(store, "root@example.com"))["token"]}
    for role in ROLES_ON_BASE:
        direct = _member(store, f"{role.lower()}.user@example.com")
        roles.grant_to_user(store, direct, roles.Grant(role, base))
        found[f"{role} ({BY_USER})"] = _pat(store, direct)["token"]
        held = _member(store, f"{role.lower()}.group@example.com")
        group = groups.create_group(
            store, {"displayName": f"{role} holders", "members": [{"value": held}]}
        )
        roles.grant_to_group(store, group["id"], roles.Grant(role, base))
        found[f"{role} ({BY_GROUP})"] = _pat(store, held)["token"]
    found[OTHER_PAT] = _pat(store, _member(store, "other@example.com"))["token"]
    return found


def _revoked_and_disabled(store: Store, admin_id: str, base: str) -> dict[str, str]:
    """A connection admin's PAT that was revoked, and a disabled org key."""
    holder = _member(store, "revoked@example.com")
    roles.grant_to_user(store, holder, roles.Grant(CONNECTION_ADMIN, base))
    revoked = _pat(store, holder)
    tokens.delete_token(store, revoked["id"])
    disabled = tokens.create_token(
        store, name="old", kind="organization", user_id=admin_id
    )
    tokens.set_enabled(store, disabled["id"], False)
    return {REVOKED: revoked["token"], DISABLED_KEY: disabled["token"]}


def _branch(store: Store, base: str, link: str) -> str:
    with store.write() as session:
        branch = models.Branch(
            name="pinned", base_connection_id=base, connection_environment_id=link
        )
        session.add(branch)
        session.flush()
        return branch.id


def _switchable_attribute(store: Store) -> str:
    """``region``, which every user may switch to "west" (through a group)."""
    region = create_attribute(store, {"name": "region"})["id"]
    with store.read() as session:
        everyone = [
            {"value": user_id} for user_id in session.scalars(select(models.User.id))
        ]
    group = groups.create_group(store, {"displayName": "Everyone", "members": everyone})
    provision = {"group_id": group["id"], "values": ["west"], "allow_any_value": False}
    switches.set_provisioning(store, region, provision)
    return str(region)


def _targets(
    services: Services, directory: Path, admin_id: str, base: str
) -> dict[str, str]:
    """What the requests name: a user who owns things (and may query the
    base), their group, keys, an attribute, connections, a link, a branch."""
    store = services.store
    owner = _member(store, "owner@example.com")
    roles.grant_to_user(store, owner, roles.Grant(QUERIER, base))
    team = groups.create_group(
        store, {"displayName": "Owners", "members": [{"value": owner}]}
    )
    env = _sqlite(services, "env", directory / "customer.db", "QUERIER")
    link = environments.create_environments(store, base, [env])["data"][0]["id"]
    spare_key = tokens.create_token(
        store, name="spare", kind="organization", user_id=admin_id
    )
    return {
        "base": base,
        "owner": owner,
        "owner_pat": _pat(store, owner)["id"],
        "spare_key": spare_key["id"],
        "team": team["id"],
        "region": _switchable_attribute(store),
        "env": env,
        "spare": _sqlite(services, "spare", directory / "customer.db", "QUERIER"),
        "hidden": _sqlite(services, "hidden", directory / "customer.db", "NO_ACCESS"),
        "link": link,
        "branch": _branch(store, base, link),
        "customer_db": str(directory / "new.db"),
    }


def _settings(directory: Path, secret_key: str) -> Settings:
    return Settings(
        data_dir=directory,
        database_url=f"sqlite:///{directory / 'store.db'}",
        secret_keys=(secret_key,),
        rate_limit_per_minute=0,
    )


def _populate(
    services: Services, directory: Path
) -> tuple[dict[str, str], dict[str, str]]:
    """The callers' tokens and the ids requests name."""
    store = services.store
    org_key = initialize(store, "admin@example.com", "Admin")
    admin_id = ensure_admin(store, "admin@example.com")
    base = _sqlite(services, "base", directory / "customer.db", "NO_ACCESS")
    callers = {
        ORG_KEY: org_key,
        **_callers(store, base),
        **_revoked_and_disabled(store, admin_id, base),
    }
    return callers, _targets(services, directory, admin_id, base)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    directory = tmp_path_factory.mktemp("matrix")
    sqlite3.connect(directory / "customer.db").close()
    secret_key = Fernet.generate_key().decode()
    services = Services.open(_settings(directory, secret_key))
    try:
        callers, ids = _populate(services, directory)
    finally:
        services.close()
    return World(directory / "store.db", secret_key, callers, ids)


@dataclass(frozen=True)
class Server:
    services: Services
    transport: httpx.ASGITransport


@asynccontextmanager
async def serving(world: World, directory: Path) -> AsyncIterator[Server]:
    """A server on a copy of the world's store in ``directory``."""
    shutil.copyfile(world.store_file, directory / "store.db")
    services = Services.open(_settings(directory, world.secret_key))
    app = create_app(services)
    try:
        async with app.router.lifespan_context(app):
            yield Server(services, httpx.ASGITransport(app=app))
    finally:
        services.close()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module-wide, so that one server can serve every refused call."""
    return "asyncio"


@pytest.fixture(scope="module")
async def shared(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """One server for the calls that must be refused: they change nothing."""
    async with serving(world, tmp_path_factory.mktemp("shared")) as server:
        yield server


@pytest.fixture
async def fresh(world: World, tmp_path: Path) -> AsyncIterator[Server]:
    """A server of its own, for a call that is let through and may change things."""
    async with serving(world, tmp_path) as server:
        yield server


async def send(server: Server, world: World, actor: str, how: str, case: Row) -> Any:
    token = world.tokens.get(f"{actor} ({how})" if how else actor)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(
        transport=server.transport,
        base_url="http://pointsman.test",
        headers=headers,
        event_hooks=secret_watch.HOOKS,
    ) as client:
        return await client.request(
            case.method,
            world.fill(case.url),
            json=world.fill(case.body) if case.body is not None else None,
            params=world.fill(case.params),
        )


# -- the matrix ------------------------------------------------------------------------


ALLOWED = "allowed"
REFUSALS = {
    401: "Unauthorized: Missing or invalid API key",
    403: "Permission denied",
}


def expected(case: Row, actor: str) -> str | int:
    if actor in case.allowed:
        return ALLOWED
    return 401 if actor in NOT_SIGNED_IN else 403


def cases(*, allowed: bool) -> list[Any]:
    """(row, caller, how the role is held, expected status) for every pair
    the table allows, or for every pair it refuses."""
    return [
        pytest.param(
            case,
            actor,
            how,
            status,
            id=f"{case.label} | {actor}{' by ' + how if how else ''} -> {status}",
        )
        for case in ROWS
        for actor, how in ACTORS
        if ((status := expected(case, actor)) == ALLOWED) is allowed
    ]


@pytest.mark.parametrize(("case", "actor", "how", "status"), cases(allowed=True))
async def test_an_allowed_caller_is_let_through(
    fresh: Server, world: World, case: Row, actor: str, how: str, status: str
) -> None:
    response = await send(fresh, world, actor, how, case)

    assert response.status_code not in REFUSALS, response.text


@pytest.mark.parametrize(("case", "actor", "how", "status"), cases(allowed=False))
async def test_a_refused_caller_is_refused_and_changes_nothing(
    shared: Server, world: World, case: Row, actor: str, how: str, status: int
) -> None:
    version = shared.services.store.version()

    response = await send(shared, world, actor, how, case)

    assert_error(response, status, REFUSALS[status])
    assert shared.services.store.version() == version


def _served() -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in all_routes()
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }


def test_every_endpoint_has_a_row() -> None:
    covered = {(case.method, case.path) for case in ROWS}

    missing = _served() - covered

    assert not missing, f"endpoints without a permission row: {sorted(missing)}"


def test_every_row_names_an_endpoint() -> None:
    covered = {(case.method, case.path) for case in ROWS}

    unknown = covered - _served()

    assert not unknown, f"rows for endpoints the server lacks: {sorted(unknown)}"
