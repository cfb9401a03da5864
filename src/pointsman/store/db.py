"""Opening the metadata store, transactions, and the configuration version."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from pointsman.store import audit
from pointsman.store.models import ConfigState

log = logging.getLogger(__name__)

CHANGE_CHANNEL = "pointsman_config"


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Store:
    """The metadata database: a SQLAlchemy engine and its sessions."""

    def __init__(self, url: str):
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"pool_pre_ping": not self.is_sqlite}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        audit.install(self._sessions)
        self._write_listeners: list[Callable[[], None]] = []

    def on_write(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every committed configuration write."""
        self._write_listeners.append(listener)

    def describe(self) -> str:
        """The URL without its password, for messages and logs."""
        return make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that moves the configuration version on commit, so
        every server process reloads its snapshot on its next request.

        The version row is updated first: its lock (PostgreSQL) or the write
        lock it takes (SQLite) makes configuration writes one at a time, so
        every check a write makes (no chains, values free) reads the state no
        other writer can change before it commits."""
        with self._sessions() as session, session.begin():
            session.execute(
                update(ConfigState)
                .where(ConfigState.id == 1)
                .values(version=ConfigState.version + 1)
            )
            yield session
            if not self.is_sqlite:
                # Delivered at commit to every process listening (see changes.py).
                session.execute(text(f"select pg_notify('{CHANGE_CHANNEL}', '')"))
        # This process's own requests must not wait for the notification.
        for listener in self._write_listeners:
            listener()

    def version(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(ConfigState.version).where(ConfigState.id == 1)
            ).scalar_one_or_none()
        return int(value or 0)

    def dispose(self) -> None:
        self.engine.dispose()
