"""A connection of the test's own to a spec's PostgreSQL database, not
pooled: for looking at what pointsman's sessions do from the server's side."""

from __future__ import annotations

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
