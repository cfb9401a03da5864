"""The SQLite change feed: a commit by anyone is seen on the very next check."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pointsman.store.changes import SqliteFeed


def make_store(path: Path, journal_mode: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"pragma journal_mode={journal_mode}")
        conn.execute("create table config_state (id integer primary key, version int)")
        conn.execute("insert into config_state values (1, 1)")
        conn.execute("create table other (x int)")
    conn.close()


def commit(path: Path, sql: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql)
    conn.close()


@pytest.fixture(params=["wal", "delete"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    make_store(path, request.param)
    return path


@pytest.fixture
def feed(store: Path) -> Iterator[SqliteFeed]:
    feed = SqliteFeed(str(store))
    assert feed.changed()  # the first check finds a version
    yield feed
    feed.close()


def test_a_configuration_commit_is_seen_on_the_next_check(
    store: Path, feed: SqliteFeed
) -> None:
    assert not feed.changed()
    assert not feed.changed()
    commit(store, "update config_state set version = 2")
    assert feed.changed()
    assert not feed.changed()


def test_another_commit_is_not_a_configuration_change(
    store: Path, feed: SqliteFeed
) -> None:
    assert not feed.changed()
    commit(store, "insert into other values (1)")
    assert not feed.changed()
    commit(store, "update config_state set version = 2")
    assert feed.changed()


def test_a_commit_by_another_process_is_seen(store: Path, feed: SqliteFeed) -> None:
    assert not feed.changed()
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('update config_state set version = version + 1'); c.commit()"
    )
    subprocess.run([sys.executable, "-c", script, str(store)], check=True)
    assert feed.changed()
    assert not feed.changed()


def test_a_commit_after_a_checkpoint_is_seen(store: Path, feed: SqliteFeed) -> None:
    conn = sqlite3.connect(store)
    conn.execute("insert into other values (1)")
    conn.commit()
    assert not feed.changed()
    conn.execute("pragma wal_checkpoint(truncate)")
    assert not feed.changed()
    conn.execute("update config_state set version = 5")
    conn.commit()
    conn.close()
    assert feed.changed()


def test_a_feed_that_cannot_read_says_changed(tmp_path: Path) -> None:
    feed = SqliteFeed(str(tmp_path / "missing" / "store.db"))
    try:
        assert feed.changed()
        assert feed.changed()
    finally:
        feed.close()
