"""Credential rotation without downtime: the old pool drains, the new one
serves, and no query fails because of the change."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pymysql
import pytest

from pointsman.engines import ConnectionSpec, EngineRegistry

pytestmark = pytest.mark.anyio

USERS = 12
POOL = {"poolSize": 3}


@dataclass(frozen=True)
class Answer:
    version: int
    user: str


class Rotation:
    """Users who query with whatever spec is current when they start."""

    def __init__(self, registry: EngineRegistry, spec: ConnectionSpec, sql: str):
        self.registry = registry
        self.current = spec
        self.sql = sql
        self.answers: list[Answer] = []
        self.errors: list[Exception] = []

    async def run(
        self, seconds: float, rotate_after: float, rotate: Callable[[], Awaitable[None]]
    ) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        users = [asyncio.create_task(self._user(until)) for _ in range(USERS)]
        await asyncio.sleep(rotate_after)
        await rotate()
        await asyncio.gather(*users)

    async def _user(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            spec = self.current
            try:
                result = await self.registry.run(spec, self.sql)
            except Exception as exc:
                self.errors.append(exc)
                continue
            user = str(result.rows[0][0]).split("@")[0]
            self.answers.append(Answer(spec.credentials_version, user))


async def assert_old_pool_closed(
    registry: EngineRegistry, spec: ConnectionSpec
) -> None:
    """Once drained, the old pool is gone: only the new one holds connections."""
    for _ in range(50):
        if registry.connection_stats()["poolsDraining"] == 0:
            break
        await asyncio.sleep(0.1)
    stats = registry.pool_stats(spec.id)
    assert stats is not None and stats["credentialsVersion"] == 2
    assert registry.connection_stats()["openConnections"] == stats["size"]


def assert_served_by_each_in_turn(rotation: Rotation, old: str, new: str) -> None:
    assert rotation.errors == []
    by_version = {
        version: {a.user for a in rotation.answers if a.version == version}
        for version in (1, 2)
    }
    assert by_version == {1: {old}, 2: {new}}
    count = len(rotation.answers)
    print(f"rotation: {count} queries, none failed")


# -- PostgreSQL -----------------------------------------------------------------


@pytest.fixture
def postgres_roles(postgres_admin_params: Any) -> Iterator[list[str]]:
    """Two login roles; PostgreSQL trusts local logins here, so the rotation
    changes the role (a change of user is a credential change too)."""
    params = postgres_admin_params
    names = [f"pm_rot_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with psycopg.connect(
        host=params.host,
        port=params.port,
        user=params.user,
        password=params.password or None,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        for name in names:
            conn.execute(f"create role {name} login password 'first-{name}'")
        yield names
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where usename = any(%s)",
            (names,),
        )
        for name in names:
            conn.execute(f"drop role if exists {name}")


async def test_postgres_queries_across_a_credential_change_all_succeed(
    registry: EngineRegistry,
    postgres_spec: ConnectionSpec,
    postgres_roles: list[str],
) -> None:
    old_role, new_role = postgres_roles
    before = dataclasses.replace(
        postgres_spec,
        username=old_role,
        secrets={"password": f"first-{old_role}"},
        options=POOL,
    )
    after = dataclasses.replace(
        before,
        username=new_role,
        secrets={"password": f"first-{new_role}"},
        credentials_version=2,
    )
    rotation = Rotation(registry, before, "select current_user, pg_sleep(0.05)")

    async def rotate() -> None:
        rotation.current = after  # the registry sees the newer version

    await rotation.run(seconds=3.0, rotate_after=1.0, rotate=rotate)

    assert_served_by_each_in_turn(rotation, old_role, new_role)
    await assert_old_pool_closed(registry, postgres_spec)


# -- MariaDB --------------------------------------------------------------------


def _mysql_admin(params: Any, statement: str) -> None:
    conn = pymysql.connect(
        host=params.host,
        port=params.port,
        user=params.user,
        password=params.password,
        autocommit=True,
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
    finally:
        conn.close()


@pytest.fixture
def mysql_user(mysql_admin_params: Any, mysql_spec: ConnectionSpec) -> Iterator[str]:
    """A user of ``mysql_spec``'s database who logs in with ``first-<name>``."""
    name = f"pm_rot_{uuid.uuid4().hex[:8]}"
    _mysql_admin(
        mysql_admin_params, f"create user '{name}'@'%' identified by 'first-{name}'"
    )
    _mysql_admin(
        mysql_admin_params,
        f"grant all privileges on `{mysql_spec.database}`.* to '{name}'@'%'",
    )
    yield name
    _mysql_admin(mysql_admin_params, f"drop user if exists '{name}'@'%'")


async def test_mariadb_queries_across_a_password_change_all_succeed(
    registry: EngineRegistry,
    mysql_spec: ConnectionSpec,
    mysql_admin_params: Any,
    mysql_user: str,
) -> None:
    before = dataclasses.replace(
        mysql_spec,
        username=mysql_user,
        secrets={"password": f"first-{mysql_user}"},
        options=POOL,
    )
    after = dataclasses.replace(
        before, secrets={"password": f"second-{mysql_user}"}, credentials_version=2
    )
    rotation = Rotation(registry, before, "select current_user(), sleep(0.05)")

    async def rotate() -> None:
        # The DBA changes the password, then an admin PATCHes the connection,
        # whose handler closes the pool (as the HTTP layer does).
        _mysql_admin(
            mysql_admin_params,
            f"alter user '{mysql_user}'@'%' identified by 'second-{mysql_user}'",
        )
        rotation.current = after
        await registry.close(before.id)

    await rotation.run(seconds=3.0, rotate_after=1.0, rotate=rotate)

    assert_served_by_each_in_turn(rotation, mysql_user, mysql_user)
    await assert_old_pool_closed(registry, before)
    stale = await registry.test(before)
    assert stale["ok"] is False and stale["error"].endswith("authentication failed")
