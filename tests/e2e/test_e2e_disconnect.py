"""A client that disconnects while its query runs cancels the statement on
the database server."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import orjson
import pytest
from e2e_support import (
    ServerProcess,
    connection_body,
    create_connection,
    unique,
)

pytestmark = pytest.mark.postgres


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def send_and_hang_up(server: ServerProcess, body: dict[str, object]) -> socket.socket:
    """POST query/run on a raw socket and keep it open (caller closes it)."""
    payload = orjson.dumps(body)
    host, port = httpx.URL(server.url).host, httpx.URL(server.url).port
    sock = socket.create_connection((host, port))
    head = (
        f"POST /api/v1/query/run HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {server.token}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)
    return sock


def test_a_disconnect_cancels_the_statement_on_the_server(
    pointsman_server: ServerProcess, api: httpx.Client, postgres_databases: object
) -> None:
    target = postgres_databases.create()  # type: ignore[attr-defined]
    connection_id = create_connection(
        api, connection_body("postgres", f"disconnect {unique('c')}", target)
    )
    marker = unique("e2e_disconnect")
    body = {
        "query": {
            "connectionId": connection_id,
            "sql": f"select pg_sleep(30) as {marker}",
        }
    }
    running = postgres_databases.running_statements  # type: ignore[attr-defined]
    sock = send_and_hang_up(pointsman_server, body)
    assert wait_until(lambda: running(target.database, marker) > 0, 5)

    sock.close()

    assert wait_until(lambda: running(target.database, marker) == 0, 5)
