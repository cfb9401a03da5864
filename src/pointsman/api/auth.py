"""Turning a request into an authenticated, rate-limited caller."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from pointsman.api.http import call
from pointsman.errors import TooManyRequests
from pointsman.routing.snapshot import Snapshot
from pointsman.services.actors import Actor, authenticate
from pointsman.services.container import Services
from pointsman.store import audit


@dataclass(frozen=True, slots=True)
class Caller:
    services: Services
    snapshot: Snapshot
    actor: Actor


class RateLimiter:
    """Fixed one-minute windows per token (0 disables)."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._windows: dict[str, tuple[int, int]] = {}

    def check(self, token_id: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        window = int(now // 60)
        start, count = self._windows.get(token_id, (window, 0))
        if start != window:
            start, count = window, 0
        if count >= self.per_minute:
            raise TooManyRequests(max(1, math.ceil((window + 1) * 60 - now)))
        self._windows[token_id] = (start, count + 1)


def retire_stale_pools(app: Any, services: Services, snapshot: Snapshot) -> None:
    """On a new configuration version, close this process's pools of
    connections that were archived or re-credentialed (by any process);
    running queries finish on them."""
    if getattr(app.state, "pools_checked_at", None) == snapshot.version:
        return
    app.state.pools_checked_at = snapshot.version
    for connection_id in services.engines.open_connection_ids():
        info = snapshot.live_connection(connection_id)
        stats = services.engines.pool_stats(connection_id) or {}
        if info is None or stats.get("credentialsVersion") != info.credentials_version:
            task = asyncio.get_running_loop().create_task(
                services.engines.close(connection_id)
            )
            _closing.add(task)
            task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[None]] = set()


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


async def caller(request: Request) -> Caller:
    services: Services = request.app.state.services
    snapshot = services.snapshots.peek()
    if snapshot is None:
        snapshot = await call(services.snapshots.current)
        retire_stale_pools(request.app, services, snapshot)
    actor = authenticate(snapshot, bearer_token(request))
    request.app.state.rate_limiter.check(actor.token.id)
    audit.set_actor(actor.user.id, actor.token.id)
    return Caller(services, snapshot, actor)
