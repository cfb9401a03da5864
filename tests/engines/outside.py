"""A connection of the test's own to a spec's PostgreSQL database, not
pooled: for looking at what pointsman's sessions do from the server's side."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg

from pointsman.engines import ConnectionSpec


async def outside(spec: ConnectionSpec) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(
        host=spec.host,
        port=spec.port,
        user=spec.username,
        dbname=spec.database,
        password=spec.password,
        autocommit=True,
    )


async def active_statements(spec: ConnectionSpec, marker: str) -> int:
    """How many statements containing ``marker`` run on the server now."""
    async with await outside(spec) as conn:
        cursor = await conn.execute(
            "select count(*) from pg_stat_activity where state = 'active'"
            " and pid <> pg_backend_pid() and query like %s",
            (f"%{marker}%",),
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def wait_until_gone(spec: ConnectionSpec, marker: str) -> int:
    """How many such statements still run after up to two seconds."""
    deadline = time.monotonic() + 2.0
    while (
        count := await active_statements(spec, marker)
    ) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return count
