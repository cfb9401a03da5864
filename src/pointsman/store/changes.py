"""Cheap signals that the configuration may have changed.

Checking the configuration version on every request would cost a round trip
to the store; these feeds answer "maybe changed?" without one, so the
version is read only when it can have moved.

- SQLite: ``PRAGMA data_version`` on a connection of our own moves whenever
  any other connection (of this or another process) commits.
- PostgreSQL: ``LISTEN`` on the channel every configuration write notifies
  at commit; pending notifications are drained without blocking.

A feed that breaks says "changed" until it works again, so a failure costs
speed, never freshness.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Protocol

import psycopg
from sqlalchemy.engine import make_url

from pointsman.store.db import CHANGE_CHANNEL, Store

log = logging.getLogger(__name__)


class ChangeFeed(Protocol):
    def changed(self) -> bool:
        """True if the configuration may have changed since the last call."""
        ...

    def close(self) -> None: ...


class AlwaysChanged:
    """No cheap signal: every call says "maybe"."""

    def changed(self) -> bool:
        return True

    def close(self) -> None:
        return None


class SqliteFeed:
    """``data_version`` moves on any commit (the query log's too); only then
    is the configuration version read, on this feed's own connection."""

    def __init__(self, path: str):
        self._path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._seen: int | None = None
        self._config_version: int | None = None

    def changed(self) -> bool:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = sqlite3.connect(self._path, check_same_thread=False)
                (value,) = self._conn.execute("pragma data_version").fetchone()
                if value == self._seen:
                    return False
                self._seen = value
                row = self._conn.execute(
                    "select version from config_state where id = 1"
                ).fetchone()
            except sqlite3.Error:
                log.warning("cannot read the store's data version; checking every time")
                self._conn = None
                return True
            version = row[0] if row else None
            moved: bool = version is None or version != self._config_version
            self._config_version = version
            return moved

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class PostgresFeed:
    def __init__(self, url: str):
        parsed = make_url(url)
        self._params = {
            "host": parsed.host or "localhost",
            "port": parsed.port or 5432,
            "dbname": parsed.database,
            "user": parsed.username,
            "password": parsed.password,
            "connect_timeout": 5,
            **dict(parsed.query),
        }
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _listen(self) -> psycopg.Connection[tuple[object, ...]]:
        params = {k: v for k, v in self._params.items() if v is not None}
        conn = psycopg.connect(autocommit=True, **params)  # type: ignore[arg-type]
        conn.execute(f"listen {CHANGE_CHANNEL}")
        return conn

    def changed(self) -> bool:
        with self._lock:
            if self._conn is None or self._conn.closed:
                try:
                    self._conn = self._listen()
                except psycopg.Error:
                    log.warning(
                        "cannot listen for configuration changes; checking every time"
                    )
                    self._conn = None
                # Anything may have happened while nobody was listening.
                return True
            try:
                return bool(list(self._conn.notifies(timeout=0)))
            except psycopg.Error:
                log.warning("lost the configuration-change listener; reconnecting")
                self._conn.close()
                self._conn = None
                return True

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def feed_for(store: Store) -> ChangeFeed:
    parsed = make_url(store.url)
    if store.is_sqlite:
        if parsed.database and parsed.database != ":memory:":
            return SqliteFeed(parsed.database)
        return AlwaysChanged()
    if parsed.get_backend_name() == "postgresql":
        return PostgresFeed(store.url)
    return AlwaysChanged()
