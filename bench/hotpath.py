"""CPU per request of pointsman's ``query/run`` and of the bare endpoint, in
one process each, called as ASGI apps (no HTTP server, no sockets), so that
the difference between the two is the cost of pointsman's own path.

    .venv/bin/python bench/hotpath.py [--requests N] [--scenario NAME]
        [--profile FILE] [--only pointsman|bare] [--repeat R]

Sets up like ``run.py`` (its PostgreSQL databases, a configured pointsman
store), then for each system runs N requests from 32 concurrent tasks and
prints the process CPU time per request (the best of R repeats: on a shared
machine the least disturbed one). ``--profile FILE`` writes cProfile stats
of pointsman's last repeat.

``--keep DIR`` sets up in DIR and leaves it (``--drop DIR`` removes its
databases); ``--reuse DIR`` runs on it again. That is the way to run under
``valgrind --tool=callgrind`` (with ``--slow-clock 50``), whose instruction
counts other load on the machine does not move: two runs with different
``--requests`` give the instructions per request from their difference.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from common import SCENARIOS

CONCURRENCY = 32

App = Callable[
    [dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


async def call_app(app: App, path: str, body: bytes, headers: list[Any]) -> int:
    """One request as uvicorn hands it over; the client stays connected
    until the response is complete."""
    done = asyncio.get_running_loop().create_future()
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        last = message["type"] == "http.response.body" and not message.get(
            "more_body", False
        )
        if last and not done.done():
            done.set_result(None)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    if not done.done():
        done.set_result(None)
    return status


async def drive(
    app: App, path: str, requests: list[tuple[bytes, list[Any]]], count: int
) -> None:
    left = count

    async def worker(offset: int) -> None:
        nonlocal left
        index = offset
        while left > 0:
            left -= 1
            body, headers = requests[index % len(requests)]
            index += 1
            status = await call_app(app, path, body, headers)
            if status != 200:
                raise RuntimeError(f"{path}: status {status}")

    await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))


async def lifespan(app: App) -> tuple[asyncio.Task[None], asyncio.Queue[Any]]:
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.get_running_loop().create_task(
        app({"type": "lifespan", "state": {}}, inbox.get, outbox.put)  # type: ignore[arg-type]
    )
    message = await outbox.get()
    assert message["type"] == "lifespan.startup.complete", message
    return task, inbox


async def measure(
    app: App,
    path: str,
    requests: list[tuple[bytes, list[Any]]],
    count: int,
    repeat: int,
    profile: str | None,
) -> list[float]:
    task, inbox = await lifespan(app)
    await drive(app, path, requests, min(count, 500))  # warm: pools, caches
    per_request = []
    for attempt in range(repeat):
        profiler = cProfile.Profile() if profile and attempt == repeat - 1 else None
        if profiler:
            profiler.enable()
        started = time.process_time()
        await drive(app, path, requests, count)
        per_request.append((time.process_time() - started) / count * 1e6)
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
    await inbox.put({"type": "lifespan.shutdown"})
    await task
    return per_request


def bare(names: list[str], sql: str) -> tuple[App, list[tuple[bytes, list[Any]]]]:
    from bare_server import create_app

    headers = [(b"content-type", b"application/json")]
    requests = [(orjson.dumps({"db": name, "sql": sql}), headers) for name in names]
    return create_app(names), requests  # type: ignore[return-value]


def pointsman(
    setup: dict[str, Any], sql: str
) -> tuple[App, list[tuple[bytes, list[Any]]]]:
    os.environ.update(setup["env"])
    from pointsman.api.app import create_app
    from pointsman.cli import open_checked_store
    from pointsman.config import Settings
    from pointsman.crypto import SecretBox, load_keys
    from pointsman.services.container import Services

    settings = Settings.from_env()
    store = open_checked_store(settings)
    box = SecretBox(load_keys(settings.secret_keys, settings.data_dir))
    services = Services(settings=settings, store=store, secrets=box)
    headers = [
        (b"authorization", f"Bearer {setup['token']}".encode()),
        (b"content-type", b"application/json"),
        (b"accept", b"*/*"),
    ]
    requests = [
        (
            orjson.dumps(
                {
                    "query": {"connectionId": setup["base"], "sql": sql},
                    "userId": user,
                    "resultType": "json",
                }
            ),
            headers,
        )
        for user in setup["users"]
    ]
    return create_app(services), requests  # type: ignore[return-value]


def prepare(directory: Path) -> dict[str, Any]:
    """Databases and a configured store, kept until ``--drop``."""
    from run import Bench

    bench = Bench(quick=True)
    bench.tmp = directory
    bench.create_databases()
    try:
        process, _port, token, base, users = bench.start_pointsman()
        bench.stop(process)
    except BaseException:
        bench.drop_databases()
        raise
    setup = {
        "env": {
            key: value
            for key, value in bench.pointsman_env(directory / "pointsman").items()
            if key.startswith("POINTSMAN_")
        },
        "token": token,
        "base": base,
        "users": users,
        "databases": bench.created,
        "names": list(bench.names.values()),
    }
    (directory / "setup.json").write_text(json.dumps(setup))
    return setup


def drop(setup: dict[str, Any]) -> None:
    from run import Bench

    bench = Bench(quick=True)
    bench.created = list(setup["databases"])
    bench.drop_databases()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenario", default="select 1", choices=list(SCENARIOS))
    parser.add_argument("--only", choices=("pointsman", "bare"))
    parser.add_argument("--profile", help="cProfile stats of pointsman to this file")
    parser.add_argument("--reuse", type=Path, help="a directory --keep left")
    parser.add_argument("--keep", type=Path, help="set up here and keep it")
    parser.add_argument("--drop", type=Path, help="drop what --keep set up")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument(
        "--slow-clock",
        type=float,
        default=1.0,
        help="stretch pointsman's timers (query-log flush, snapshot recheck) "
        "by this factor, so that a run slowed down as much (valgrind: ~50) "
        "does the same timed work per request",
    )
    args = parser.parse_args()

    if args.drop:
        drop(json.loads((args.drop / "setup.json").read_text()))
        return 0
    if args.reuse:
        setup = json.loads((args.reuse / "setup.json").read_text())
    else:
        directory = args.keep or Path(
            __import__("tempfile").mkdtemp(prefix="pointsman-hotpath-")
        )
        directory.mkdir(parents=True, exist_ok=True)
        setup = prepare(directory)
    sql = SCENARIOS[args.scenario]
    if args.slow_clock != 1.0:
        from pointsman.services import query_log, snapshots

        query_log.FLUSH_INTERVAL_SECONDS *= args.slow_clock
        snapshots.SnapshotCache.RECHECK_SECONDS *= args.slow_clock
    if not args.no_uvloop:
        import uvloop

        uvloop.install()
    try:
        results = {}
        systems = [args.only] if args.only else ["bare", "pointsman"]
        for system in systems:
            if system == "bare":
                app, requests = bare(setup["names"], sql)
                path, profile = "/run", None
            else:
                app, requests = pointsman(setup, sql)
                path, profile = "/api/v1/query/run", args.profile
            runs = asyncio.run(
                measure(app, path, requests, args.requests, args.repeat, profile)
            )
            results[system] = runs
            print(
                f"{args.scenario:10} {system:10} CPU us/request: "
                + " ".join(f"{value:7.1f}" for value in runs)
                + f"   best {min(runs):7.1f}",
                flush=True,
            )
        if len(results) == 2:
            ratio = min(results["pointsman"]) / min(results["bare"])
            print(f"pointsman / bare CPU: {ratio:.2f}")
    finally:
        if not args.reuse and not args.keep:
            drop(setup)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
