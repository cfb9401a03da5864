"""The load generator: its own process, N concurrent clients, fixed duration.

    python bench/loadgen.py SPEC.json     # prints one JSON object

Two modes:

- ``http``: N keep-alive HTTP/1.1 connections, each with one request in
  flight, cycling through prebuilt raw requests (one per user). A minimal
  asyncio protocol on uvloop, so that the client costs far less CPU than the
  server under test.
- ``direct``: the floor. N tasks on psycopg ``AsyncConnectionPool`` s (one
  per database, the same size as pointsman's), no HTTP at all.

Requests that finish inside the measured window (after the warmup) count,
with their whole latency; those still in flight at its end are dropped.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import psycopg
import uvloop
from common import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    busy_cores_since,
    cpu_seconds,
    machine_ticks,
    make_pool,
    summarise,
)


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; responses must carry Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.expected = -1
        self.status = 0
        self.waiter: asyncio.Future[tuple[int, int, bytes]] | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if self.expected < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            self.status = int(head[9:12])
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                assert self.waiter is not None
                self.waiter.set_exception(RuntimeError("no Content-Length"))
                return
            stop = head.find(b"\r\n", at + 2)
            self.expected = int(head[at + 17 : stop if stop >= 0 else None])
            del buffer[: end + 4]
        if len(buffer) >= self.expected:
            length = self.expected
            sample = bytes(buffer[:300]) if self.status != 200 else b""
            del buffer[:length]
            self.expected = -1
            assert self.waiter is not None
            self.waiter.set_result((self.status, length, sample))

    async def request(self, raw: bytes) -> tuple[int, int, bytes]:
        assert self.transport is not None
        self.waiter = self.loop.create_future()
        self.transport.write(raw)
        return await self.waiter


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.bytes = 0
        self.errors = 0
        self.first_error: str | None = None

    def error(self, message: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = message


async def http_client(
    index: int,
    spec: dict[str, Any],
    requests: list[bytes],
    window: tuple[float, float],
    stats: Stats,
) -> None:
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(
        HttpConnection, spec["host"], spec["port"]
    )
    start, end = window
    step, count = spec["concurrency"], len(requests)
    position = index
    clock = time.perf_counter
    try:
        while True:
            began = clock()
            if began >= end:
                return
            status, length, sample = await connection.request(
                requests[position % count]
            )
            position += step
            finished = clock()
            if status != 200:
                stats.error(f"HTTP {status}: {sample[:300]!r}")
            elif start <= finished <= end:
                stats.latencies.append(finished - began)
                stats.bytes += length
    finally:
        if connection.transport is not None:
            connection.transport.close()


async def direct_client(
    index: int,
    spec: dict[str, Any],
    pools: list[Any],
    window: tuple[float, float],
    stats: Stats,
) -> None:
    start, end = window
    step, count, sql = spec["concurrency"], len(pools), spec["sql"]
    position = index
    clock = time.perf_counter
    while True:
        began = clock()
        if began >= end:
            return
        pool = pools[position % count]
        position += step
        try:
            async with pool.connection() as conn:
                cursor = await conn.execute(sql)
                rows = await cursor.fetchall()
        except Exception as exc:  # noqa: BLE001 - counted and reported
            stats.error(f"{type(exc).__name__}: {exc}")
            continue
        finished = clock()
        if rows and start <= finished <= end:
            stats.latencies.append(finished - began)


async def backend_pids(databases: list[str]) -> list[int]:
    """The PostgreSQL backends serving the benchmark's databases."""
    conn = await psycopg.AsyncConnection.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True
    )
    async with conn:
        cursor = await conn.execute(
            "select pid from pg_stat_activity where datname = any(%s)", [databases]
        )
        return [row[0] for row in await cursor.fetchall()]


def cpu_or_none(pid: int) -> float | None:
    try:
        return cpu_seconds(pid)
    except OSError:  # the process ended
        return None


async def cpu_probe(
    pids: dict[str, int], databases: list[str], window: tuple[float, float]
) -> dict[str, float]:
    """CPU used over the measured window, in cores: by each process, by the
    PostgreSQL backends of the benchmark's databases, by the whole machine,
    and by everything else on it ("other": noise from outside the run)."""
    start, end = window
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    backends = await backend_pids(databases) if databases else []
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    before_pg = {pid: cpu_or_none(pid) for pid in backends}
    machine = machine_ticks()
    began = time.perf_counter()
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    elapsed = time.perf_counter() - began
    busy = busy_cores_since(machine, elapsed)
    used = {
        name: (cpu_seconds(pid) - before[name]) / elapsed for name, pid in pids.items()
    }
    postgres = 0.0
    for pid, first in before_pg.items():
        last = cpu_or_none(pid)
        if first is not None and last is not None:
            postgres += last - first
    used["postgres"] = postgres / elapsed
    used["other"] = max(0.0, busy - sum(used.values()))
    used["machine"] = busy
    return {name: round(value, 3) for name, value in used.items()}


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    stats = Stats()
    concurrency = spec["concurrency"]
    pools: list[Any] = []
    if spec["mode"] == "direct":
        by_name = {name: make_pool(name, spec["pool_size"]) for name in spec["pools"]}
        for pool in by_name.values():
            await pool.open()
        pools = list(by_name.values())
        sequence = [by_name[name] for name in spec["sequence"]]
    else:
        raws = [raw.encode("latin-1") for raw in spec["requests"]]
    now = time.perf_counter()
    window = (now + spec["warmup"], now + spec["warmup"] + spec["duration"])
    pids = {"loadgen": os.getpid()}
    if spec.get("server_pid"):
        pids["server"] = spec["server_pid"]
    databases = spec.get("databases", [])
    probe = asyncio.create_task(cpu_probe(pids, databases, window))
    if spec["mode"] == "direct":
        clients = [
            direct_client(i, spec, sequence, window, stats) for i in range(concurrency)
        ]
    else:
        clients = [
            http_client(i, spec, raws, window, stats) for i in range(concurrency)
        ]
    await asyncio.gather(*clients)
    cpu = await probe
    for pool in pools:
        await pool.close()
    result = summarise(stats.latencies, spec["duration"])
    result.update(
        errors=stats.errors,
        first_error=stats.first_error,
        mb_per_s=round(stats.bytes / spec["duration"] / 1e6, 2),
        cpu_cores=cpu,
    )
    return result


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        loaded = json.load(handle)
    print(json.dumps(uvloop.run(main(loaded))))
