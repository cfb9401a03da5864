"""The registry: one engine (one bounded pool) per resolved connection id."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import time
from dataclasses import dataclass
from typing import Any

from pointsman.engines import failures
from pointsman.engines.base import (
    DEFAULT_CONNECT_BACKOFF_SECONDS,
    MAX_CONNECT_BACKOFF_SECONDS,
    Engine,
    EngineRetired,
    settings_of,
)
from pointsman.engines.pool import ConnectionBudget
from pointsman.engines.spec import ConnectionSpec, QueryResult
from pointsman.engines.streams import RowStream
from pointsman.errors import EngineError, MissingDriverError

logger = logging.getLogger(__name__)

DEFAULT_MAX_OPEN_CONNECTIONS = 200
# How long close_all lets running queries finish before closing under them.
CLOSE_GRACE_SECONDS = 30.0
# A query whose pool is replaced while it waits moves to the new pool; a
# connection whose settings keep changing under it gives up after this many.
RETIRED_RETRIES = 3


@dataclass(frozen=True)
class _Driver:
    module: str
    engine: str
    extra: str
    imports: tuple[str, ...]


_DRIVERS = {
    "postgres": _Driver("postgres", "PostgresEngine", "postgres", ("psycopg",)),
    "redshift": _Driver("postgres", "PostgresEngine", "redshift", ("psycopg",)),
    "mysql": _Driver("mysql", "MySQLEngine", "mysql", ("aiomysql", "pymysql")),
    "mariadb": _Driver("mysql", "MySQLEngine", "mysql", ("aiomysql", "pymysql")),
    "sqlite": _Driver("embedded", "SQLiteEngine", "sqlite", ("sqlite3",)),
    "duckdb": _Driver("embedded", "DuckDBEngine", "duckdb", ("duckdb",)),
    # Optional extras: one generic engine over each dialect's SQLAlchemy driver.
    "snowflake": _Driver(
        "sqlalchemy_engine",
        "SQLAlchemyEngine",
        "snowflake",
        ("snowflake.sqlalchemy", "snowflake.connector"),
    ),
    "bigquery": _Driver(
        "sqlalchemy_engine",
        "SQLAlchemyEngine",
        "bigquery",
        ("sqlalchemy_bigquery", "google.cloud.bigquery"),
    ),
    "databricks": _Driver(
        "sqlalchemy_engine",
        "SQLAlchemyEngine",
        "databricks",
        ("databricks.sqlalchemy", "databricks.sql"),
    ),
    "clickhouse": _Driver(
        "sqlalchemy_engine", "SQLAlchemyEngine", "clickhouse", ("clickhouse_connect",)
    ),
    "mssql": _Driver("sqlalchemy_engine", "SQLAlchemyEngine", "mssql", ("pymssql",)),
    "trino": _Driver("sqlalchemy_engine", "SQLAlchemyEngine", "trino", ("trino",)),
    "athena": _Driver(
        "sqlalchemy_engine", "SQLAlchemyEngine", "athena", ("pyathena", "boto3")
    ),
}
_ALIASES = {"postgresql": "postgres", "sqlserver": "mssql"}

# TODO: these dialects are planned for a later issue; until their engines
# exist, a connection using one is refused with the extra it will need.
_LATER_DIALECTS = {
    "oracle": "oracle",
}


def _missing(dialect: str, extra: str) -> MissingDriverError:
    return MissingDriverError(
        f"Dialect {dialect} needs the optional extra: pip install 'pointsman[{extra}]'"
    )


def _installed(module: str) -> bool:
    """Whether a module can be imported, without importing it (only its
    parent packages, for a dotted name)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is missing
        return False


def engine_class(dialect: str) -> type[Engine]:
    """The engine class for a dialect, or :class:`MissingDriverError`."""
    key = _ALIASES.get(dialect.strip().lower(), dialect.strip().lower())
    driver = _DRIVERS.get(key)
    if driver is None:
        if key in _LATER_DIALECTS:
            raise _missing(dialect, _LATER_DIALECTS[key])
        raise MissingDriverError(f"Dialect {dialect} is not supported")
    if not all(_installed(name) for name in driver.imports):
        raise _missing(dialect, driver.extra)
    module = importlib.import_module(f"pointsman.engines.{driver.module}")
    engine: type[Engine] = getattr(module, driver.engine)
    return engine


class EngineRegistry:
    """Every open pool of this server process, keyed by resolved connection id.

    Pools open lazily on first use. A pool opened with other settings or an
    older ``credentials_version`` than the spec at hand is replaced: the new
    one serves at once while the old one drains (the queries it admitted
    finish on it) and closes in the background.

    All pools share one cap, ``max_open_connections`` (``None``: no cap).
    After a failed connect, a connection's requests fail fast for
    ``connect_backoff_seconds``, a window that doubles with each failed retry
    up to ``max_connect_backoff_seconds``.
    """

    def __init__(
        self,
        *,
        max_open_connections: int | None = DEFAULT_MAX_OPEN_CONNECTIONS,
        connect_backoff_seconds: float = DEFAULT_CONNECT_BACKOFF_SECONDS,
        max_connect_backoff_seconds: float = MAX_CONNECT_BACKOFF_SECONDS,
    ) -> None:
        self._engines: dict[str, Engine] = {}
        self._classes: dict[str, type[Engine]] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._budget = ConnectionBudget(max_open_connections)
        self._backoff = (connect_backoff_seconds, max_connect_backoff_seconds)

    async def run(
        self, spec: ConnectionSpec, sql: str, *, limit: int | None = None
    ) -> QueryResult:
        """Run ``sql`` on a pooled connection for ``spec``.

        Fetches at most ``limit`` rows (``truncated`` says if more existed).
        Raises QueryTimeoutError, QueryFailedError, DatabaseUnavailableError,
        QueryQueueFullError, ConnectionBusyError or MissingDriverError, all
        with client-safe messages.
        """
        for _ in range(RETIRED_RETRIES):
            try:
                return await self._engine_for(spec).run(sql, limit=limit)
            except EngineRetired:
                # Replaced while the query waited: the new settings serve it.
                continue
        raise failures.closed(spec)

    async def stream(
        self,
        spec: ConnectionSpec,
        sql: str,
        *,
        limit: int | None = None,
        threshold: int | None = None,
        arrow: bool = False,
    ) -> QueryResult | RowStream:
        """Like :meth:`run`, but a result of more than ``threshold`` rows is an
        open :class:`RowStream` (on drivers that can stream) that the caller
        reads and must close."""
        for _ in range(RETIRED_RETRIES):
            try:
                engine = self._engine_for(spec)
                return await engine.stream(
                    sql, limit=limit, threshold=threshold, arrow=arrow
                )
            except EngineRetired:
                continue
        raise failures.closed(spec)

    async def test(self, spec: ConnectionSpec) -> dict[str, Any]:
        """Connect afresh (not through the pool) and report the server version."""
        started = time.perf_counter()
        try:
            engine = self._class_for(spec.dialect)
            async with asyncio.timeout(spec.connect_timeout_seconds * 2):
                version = await engine.server_version(spec)
        except EngineError as exc:
            return _failed_test(started, exc.detail)
        except TimeoutError:
            reason = "no answer before the connect timeout"
            return _failed_test(started, failures.unavailable(spec, reason).detail)
        return {"ok": True, "latencyMs": _elapsed_ms(started), "serverVersion": version}

    async def close(self, connection_id: str) -> None:
        """Close the pool of one connection, if it has one.

        An idle pool closes before this returns. A busy one drains in the
        background: running and waiting queries finish on it, and the next
        query opens a fresh pool (with the connection's new settings).
        """
        engine = self._engines.pop(connection_id, None)
        if engine is None:
            return
        if engine.in_flight:
            self._retire(engine)
        else:
            await engine.aclose()

    async def close_all(self) -> None:
        """Close every pool; queries still running get ``CLOSE_GRACE_SECONDS``."""
        engines, self._engines = list(self._engines.values()), {}
        await asyncio.gather(
            *(engine.aclose(CLOSE_GRACE_SECONDS) for engine in engines)
        )
        while self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def close_idle(self, idle_seconds: float) -> list[str]:
        """Close the pools unused for ``idle_seconds``; return their ids.

        In the pools that stay, connections idle past their own limit close.
        """
        cutoff = time.monotonic() - idle_seconds
        stale = [
            cid
            for cid, engine in self._engines.items()
            if engine.last_used_at <= cutoff and not engine.in_flight
        ]
        for connection_id in stale:
            await self.close(connection_id)
        for engine in self._engines.values():
            engine.pool.close_expired()
        return stale

    def open_connection_ids(self) -> list[str]:
        """The connections that have a pool right now."""
        return list(self._engines)

    def pool_stats(self, connection_id: str) -> dict[str, Any] | None:
        engine = self._engines.get(connection_id)
        if engine is None:
            return None
        return {
            "dialect": engine.spec.dialect,
            "credentialsVersion": engine.spec.credentials_version,
            **engine.pool_stats(),
        }

    def connection_stats(self) -> dict[str, Any]:
        """Server-wide: open database connections against the cap, and pools."""
        return {
            **self._budget.stats(),
            "pools": len(self._engines),
            "poolsDraining": len(self._retiring),
        }

    def _engine_for(self, spec: ConnectionSpec) -> Engine:
        """The engine for ``spec``; synchronous, so two callers never race."""
        current = self._engines.get(spec.id)
        if current is not None and (
            current.spec is spec
            or current.settings == settings_of(spec)
            # A spec read before a credential change: the newer pool serves it.
            or current.spec.credentials_version > spec.credentials_version
        ):
            return current
        initial, maximum = self._backoff
        engine = self._class_for(spec.dialect)(
            spec,
            budget=self._budget,
            connect_backoff_seconds=initial,
            max_connect_backoff_seconds=maximum,
        )
        self._engines[spec.id] = engine
        if current is not None:
            logger.info("settings of %s changed: replacing its pool", spec)
            self._retire(current)
        return engine

    def _class_for(self, dialect: str) -> type[Engine]:
        engine = self._classes.get(dialect)
        if engine is None:
            engine = self._classes[dialect] = engine_class(dialect)
        return engine

    def _retire(self, engine: Engine) -> None:
        engine.retired = True
        task = asyncio.get_running_loop().create_task(engine.aclose())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


def _failed_test(started: float, error: str) -> dict[str, Any]:
    return {"ok": False, "latencyMs": _elapsed_ms(started), "error": error}
