"""Alembic migrations, run programmatically."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from pointsman.errors import ServiceUnavailable
from pointsman.store.db import Store

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(store: Store) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = store.engine
    return config


def upgrade(store: Store) -> None:
    command.upgrade(_config(store), "head")


def head_revision(store: Store) -> str | None:
    return ScriptDirectory.from_config(_config(store)).get_current_head()


def current_revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_current(store: Store) -> None:
    """Refuse to serve a store whose schema is not at the newest migration."""
    current, head = current_revision(store), head_revision(store)
    if current != head:
        raise ServiceUnavailable(
            f"The metadata store {store.describe()} is at migration {current}, "
            f"this server needs {head}: run 'pointsman init' first"
        )
