"""The record of where each query went and why.

Entries are queued in memory and written in batches off the request path;
:meth:`QueryLog.flush` writes whatever is pending (before a read, at shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from pointsman.errors import ValidationFailed
from pointsman.services.paging import Page, parse_uuid
from pointsman.store import models
from pointsman.store.db import Store

log = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 0.25
LOG_PARAMS = ("userId", "connectionId", "since")


class QueryLog:
    def __init__(self, store: Store):
        self._store = store
        self._pending: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def record(self, entry: dict[str, Any]) -> None:
        self._pending.append(entry)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            if batch:
                try:
                    await asyncio.to_thread(self._write, batch)
                except Exception:
                    log.exception("could not write %d query-log entries", len(batch))

    def _write(self, batch: list[dict[str, Any]]) -> None:
        # Straight to the driver: its executemany binds every row in C (and
        # sqlite3 lets go of the GIL while SQLite works), where SQLAlchemy's
        # would process each value in Python while requests wait for the GIL.
        engine = self._store.engine
        on_sqlite = engine.dialect.name == "sqlite"
        rows = [_row(entry, on_sqlite) for entry in batch]
        conn = engine.raw_connection()
        try:
            cursor = conn.cursor()
            cursor.executemany(_insert_sql(engine.dialect.paramstyle), rows)
            cursor.close()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()


COLUMNS = tuple(column.name for column in models.QueryLogEntry.__table__.columns)
# How SQLAlchemy keeps a UTC timestamp in SQLite: text that sorts as time.
SQLITE_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"


def _row(entry: dict[str, Any], on_sqlite: bool) -> tuple[Any, ...]:
    started: datetime = entry["started_at"].astimezone(UTC)
    values = {**entry, "started_at": started}
    if on_sqlite:
        values["started_at"] = started.strftime(SQLITE_TIMESTAMP)
    return tuple(values.get(column) for column in COLUMNS)


def _insert_sql(paramstyle: str) -> str:
    marker = "?" if paramstyle == "qmark" else "%s"
    columns = ", ".join(COLUMNS)
    markers = ", ".join([marker] * len(COLUMNS))
    table = models.QueryLogEntry.__tablename__
    return f"insert into {table} ({columns}) values ({markers})"


def log_record(row: models.QueryLogEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "startedAt": row.started_at,
        "durationMs": row.duration_ms,
        "userId": row.user_id,
        "tokenId": row.token_id,
        "baseConnectionId": row.base_connection_id,
        "connectionId": row.connection_id,
        "connectionEnvironmentId": row.connection_environment_id,
        "source": row.source,
        "reason": row.reason,
        "rowCount": row.row_count,
        "status": row.status,
        "error": row.error,
    }


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed("since", "Expected an ISO 8601 timestamp") from None


def list_entries(
    store: Store, params: dict[str, str], only_user: str | None
) -> dict[str, Any]:
    page = Page.from_params(
        params, sort_fields=("startedAt",), default_sort="startedAt"
    )
    Entry = models.QueryLogEntry
    query = select(Entry)
    user_id = params.get("userId")
    if user_id:
        query = query.where(Entry.user_id == parse_uuid(user_id, "userId"))
    if only_user is not None:
        query = query.where(Entry.user_id == only_user)
    connection_id = params.get("connectionId")
    if connection_id:
        query = query.where(
            Entry.connection_id == parse_uuid(connection_id, "connectionId")
        )
    since = _since(params.get("since"))
    if since is not None:
        query = query.where(Entry.started_at >= since)
    with store.read() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = page.apply(session, query, Entry.started_at, Entry.id)
        return page.result([log_record(row) for row in rows], total)
