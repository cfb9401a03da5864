"""A server that accepts the TCP connection and then never answers costs the
connect timeout and no more: the greeting and login are bounded too."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from pointsman.engines import ConnectionSpec, EngineRegistry
from pointsman.errors import DatabaseUnavailableError

pytestmark = pytest.mark.anyio

CONNECT_TIMEOUT_SECONDS = 1
# Well under the connect timeout plus the one-second grace the old deadline
# had (and libpq's own two-second minimum), with room for a loaded machine.
MAX_SECONDS = CONNECT_TIMEOUT_SECONDS + 0.8
FAKE_PASSWORD = "Pw-never-shown-0d41e7"


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A local port that accepts connections and never sends a byte."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    for writer in held:
        writer.transport.abort()
    await server.wait_closed()


def silent_spec(dialect: str, port: int) -> ConnectionSpec:
    return ConnectionSpec(
        id=f"conn-{uuid.uuid4().hex[:8]}",
        name="silent server",
        dialect=dialect,
        host="127.0.0.1",
        port=port,
        database="nowhere",
        username="someone",
        connect_timeout_seconds=CONNECT_TIMEOUT_SECONDS,
        query_timeout_seconds=30,
        secrets={"password": FAKE_PASSWORD},
    )


@pytest.mark.parametrize("dialect", ["mariadb", "mysql", "postgres"])
async def test_query_on_a_silent_server_fails_after_the_connect_timeout(
    registry: EngineRegistry, silent_port: int, dialect: str
) -> None:
    spec = silent_spec(dialect, silent_port)
    started = time.monotonic()

    with pytest.raises(DatabaseUnavailableError) as caught:
        await registry.run(spec, "select 1")

    elapsed = time.monotonic() - started
    assert CONNECT_TIMEOUT_SECONDS - 0.1 <= elapsed < MAX_SECONDS
    assert caught.value.status == 502
    assert caught.value.detail == (
        "Could not connect to connection 'silent server':"
        " no answer before the connect timeout"
    )
    stats = registry.pool_stats(spec.id)
    assert stats is not None and stats["connecting"] == 0 and stats["size"] == 0


@pytest.mark.parametrize("dialect", ["mariadb", "postgres"])
async def test_connection_test_on_a_silent_server_fails_after_the_connect_timeout(
    registry: EngineRegistry, silent_port: int, dialect: str
) -> None:
    spec = silent_spec(dialect, silent_port)
    started = time.monotonic()

    report = await registry.test(spec)

    assert time.monotonic() - started < MAX_SECONDS
    assert report["ok"] is False
    assert report["error"].endswith("no answer before the connect timeout")
    assert FAKE_PASSWORD not in repr(report)
