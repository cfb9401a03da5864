"""Running SQL on behalf of a user: who, where, and the record of it."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from pointsman import policy
from pointsman.errors import NotFound, PermissionDenied, ValidationFailed
from pointsman.policy import Action
from pointsman.routing.resolver import Route, resolve
from pointsman.routing.snapshot import ConnectionInfo, Snapshot, TokenInfo, UserInfo
from pointsman.services.actors import Actor
from pointsman.services.paging import is_uuid

RESULT_TYPES = ("json", "csv")


@dataclass(frozen=True, slots=True)
class RunRequest:
    connection_id: str
    sql: str
    limit: int | None
    user_id: str | None
    branch_id: str | None
    result_type: str | None
    plan_only: bool
    wait_seconds: float | None


def _optional_uuid(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None or value == "":
        return None
    if not is_uuid(value):
        raise ValidationFailed(field, "Invalid uuid")
    return str(value).lower()


def parse_run(body: dict[str, Any]) -> RunRequest:
    query = body.get("query")
    if not isinstance(query, dict):
        raise ValidationFailed("query", "Required")
    connection_id = query.get("connectionId")
    if not connection_id:
        raise ValidationFailed("query.connectionId", "Required")
    if not is_uuid(connection_id):
        raise ValidationFailed("query.connectionId", "Invalid uuid")
    sql = query.get("sql")
    if sql is not None and not isinstance(sql, str):
        raise ValidationFailed("query.sql", "Expected string")
    if not sql or not sql.strip():
        raise ValidationFailed("query.sql", "Required")
    limit = query.get("limit")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
    ):
        raise ValidationFailed("query.limit", "Expected a positive whole number")
    result_type = body.get("resultType")
    if result_type is not None and result_type not in RESULT_TYPES:
        raise ValidationFailed(
            "resultType",
            f"Invalid enum value. Expected 'json' | 'csv', received '{result_type}'",
        )
    plan_only = body.get("planOnly", False)
    if not isinstance(plan_only, bool):
        raise ValidationFailed("planOnly", "Expected boolean")
    if plan_only and result_type is not None:
        raise ValidationFailed("resultType", "Cannot be combined with planOnly")
    wait = body.get("waitSeconds")
    if wait is not None and (
        isinstance(wait, bool)
        or not isinstance(wait, (int, float))
        or not 0 <= wait <= 300
    ):
        raise ValidationFailed("waitSeconds", "Must be between 0 and 300")
    return RunRequest(
        connection_id=str(connection_id).lower(),
        sql=sql,
        limit=limit,
        user_id=_optional_uuid(body, "userId"),
        branch_id=_optional_uuid(body, "branchId"),
        result_type=result_type,
        plan_only=plan_only,
        wait_seconds=float(wait) if wait is not None else None,
    )


def impersonate(actor: Actor, user: UserInfo) -> Actor:
    """The actor a query runs as when an organization key names ``userId``:
    that user's own permissions, not the key's."""
    token = TokenInfo(
        id=actor.token.id,
        name=actor.token.name,
        kind="personal",
        enabled=True,
        user_id=user.id,
    )
    return Actor(user=user, token=token)


def effective_actor(snapshot: Snapshot, actor: Actor, user_id: str | None) -> Actor:
    """The caller, or the user an organization key runs the query as."""
    if user_id is None or user_id == actor.user.id:
        return actor
    policy.require(snapshot, actor, Action.QUERY_AS_USER)
    user = snapshot.users.get(user_id)
    if user is None or not user.active:
        raise NotFound("User not found")
    return impersonate(actor, user)


def route_for(
    snapshot: Snapshot,
    runner: Actor,
    connection: ConnectionInfo,
    branch_id: str | None,
    *,
    check: bool = True,
) -> Route:
    """Where ``runner``'s query naming ``connection`` goes, permission checked
    unless ``check`` is off (an admin asking where someone would go)."""
    branch = None
    if branch_id is not None:
        branch = snapshot.branches.get(branch_id)
        if branch is None:
            raise NotFound(f"Branch {branch_id} not found")
        if branch.base_connection_id != connection.id:
            raise ValidationFailed(
                "branchId",
                f"Branch {branch_id} belongs to another base connection",
            )
    if connection.id in snapshot.links_by_environment:
        if check and not policy.allows(
            snapshot, runner, Action.QUERY_DIRECT, connection
        ):
            raise PermissionDenied()
        return Route(
            connection.id,
            connection.id,
            None,
            "direct",
            f"{connection.name} is an environment connection named directly, "
            "for maintenance by a connection admin",
        )
    if check:
        policy.require(snapshot, runner, Action.QUERY_BASE, connection)
    return resolve(snapshot, runner.user, connection, branch)


def new_job_id() -> str:
    """A time-ordered random UUID (version 7, RFC 9562): 48 bits of Unix
    milliseconds, then 74 random bits. Job ids key the query log, and keys
    that arrive in order are appended to its indexes instead of scattered
    over them, which halves the cost of writing an entry."""
    milliseconds = time.time_ns() // 1_000_000 % (1 << 48)
    raw = bytearray(milliseconds.to_bytes(6, "big") + _random_bytes(10))
    raw[6] = raw[6] & 0x0F | 0x70  # version 7
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 9562 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class _RandomBytes:
    """The operating system's random bytes, fetched a few kilobytes at a
    time: one system call per several hundred ids instead of one each."""

    CHUNK = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0

    def __call__(self, count: int) -> bytes:
        with self._lock:
            if self._at + count > len(self._buffer):
                self._buffer, self._at = os.urandom(self.CHUNK), 0
            taken = self._buffer[self._at : self._at + count]
            self._at += count
            return taken


_random_bytes = _RandomBytes()
