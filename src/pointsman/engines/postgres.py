"""PostgreSQL and Redshift through psycopg 3's own async pool.

Timeouts are enforced twice: the server's ``statement_timeout`` (set on every
pooled session) cancels the statement where it runs, and a client-side
deadline a little later cancels the awaiting task, which makes psycopg send a
cancel request to the server before the connection goes back to the pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, cast

import psycopg
from psycopg import AsyncConnection
from psycopg.adapt import AdaptersMap
from psycopg.sql import SQL, Identifier, Literal
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pointsman.engines import failures
from pointsman.engines.base import Engine, pool_size, split_rows
from pointsman.engines.spec import Column, ConnectionSpec, QueryResult

logger = logging.getLogger(__name__)

# The client deadline trails the server's statement_timeout by this much, so
# that the server normally cancels first and the client is only a backstop.
CLIENT_GRACE_SECONDS = 0.5
STREAM_CHUNK_ROWS = 1000
MAX_IDLE_SECONDS = 300.0
MAX_LIFETIME_SECONDS = 3600.0
DEFAULT_PORTS = {"postgres": 5432, "redshift": 5439}

_CONNECTION_LOST_STATES = ("08", "57P01", "57P02", "57P03")

# JSON stays text: a result column is declared "string", not a Python dict.
_ADAPTERS = AdaptersMap(psycopg.adapters)
_ADAPTERS.register_loader("json", TextLoader)
_ADAPTERS.register_loader("jsonb", TextLoader)

_ARROW_BY_OID = {
    16: "bool",
    17: "binary",
    20: "int64",
    21: "int16",
    23: "int32",
    26: "int64",
    700: "float32",
    701: "float64",
    1082: "date32",
    1083: "time64[us]",
    1114: "timestamp[us]",
    1184: "timestamp[us, tz=UTC]",
    1186: "duration[us]",
}
_NUMERIC_OID = 1700
_MAX_DECIMAL128_PRECISION = 38


def arrow_type(oid: int, precision: int | None, scale: int | None) -> str:
    """The Arrow type name for a PostgreSQL type OID (``string`` if unknown)."""
    if oid == _NUMERIC_OID:
        if precision and precision <= _MAX_DECIMAL128_PRECISION:
            return f"decimal128({precision},{scale or 0})"
        return "string"
    return _ARROW_BY_OID.get(oid, "string")


def connect_kwargs(spec: ConnectionSpec) -> dict[str, Any]:
    """libpq parameters as keywords: never a DSN string that could leak."""
    kwargs: dict[str, Any] = {
        "host": spec.host or "127.0.0.1",
        "port": spec.port or DEFAULT_PORTS.get(spec.dialect, 5432),
        "dbname": spec.database or "postgres",
        "user": spec.username,
        "password": spec.password,
        "connect_timeout": spec.connect_timeout_seconds,
        "application_name": "pointsman",
        "sslmode": spec.options.get("sslmode"),
    }
    return {key: value for key, value in kwargs.items() if value is not None}


class _FailFastPool(AsyncConnectionPool[AsyncConnection[Any]]):
    """A pool that tells its waiting clients at once when connecting fails.

    psycopg_pool connects in a background worker and, on failure, keeps
    retrying while clients wait out their whole timeout. Here a failed
    attempt fails the clients waiting at that moment with the real error.
    """

    last_connect_error: Exception | None = None

    async def _connect(self, timeout: float | None = None) -> AsyncConnection[Any]:
        try:
            conn = await super()._connect(timeout)
        except Exception as exc:
            self.last_connect_error = exc
            await self._fail_waiting(exc)
            raise
        self.last_connect_error = None
        return conn

    async def _fail_waiting(self, exc: Exception) -> None:
        async with self._lock:
            waiting = list(self._waiting)
            self._waiting.clear()
        for client in waiting:
            await client.fail(exc)


class PostgresEngine(Engine):
    """PostgreSQL (and Redshift, which speaks its protocol)."""

    def __init__(self, spec: ConnectionSpec) -> None:
        super().__init__(spec)
        self._pool = self._make_pool()
        self._opened = False
        self._open_lock = asyncio.Lock()

    @classmethod
    async def server_version(cls, spec: ConnectionSpec) -> str:
        try:
            conn = await AsyncConnection.connect(
                autocommit=True, **connect_kwargs(spec)
            )
        except psycopg.Error as exc:
            raise failures.connect_failed(spec, exc) from exc
        async with conn:
            try:
                cursor = await conn.execute("select version()")
                row = await cursor.fetchone()
            except psycopg.Error as exc:
                raise _query_error(spec, exc) from exc
        return str(row[0]) if row else ""

    def _make_pool(self) -> _FailFastPool:
        spec = self.spec
        kwargs = connect_kwargs(spec) | {"autocommit": True, "context": _ADAPTERS}
        if spec.dialect == "redshift":
            kwargs["prepare_threshold"] = None
        return _FailFastPool(
            min_size=0,
            max_size=pool_size(spec),
            kwargs=kwargs,
            configure=self._configure,
            name=f"pointsman:{spec.id}",
            open=False,
            timeout=float(spec.query_timeout_seconds),
            max_idle=MAX_IDLE_SECONDS,
            max_lifetime=MAX_LIFETIME_SECONDS,
            # Give up on a failed connect at once: the next request retries.
            reconnect_timeout=0.0,
        )

    async def _configure(self, conn: AsyncConnection[Any]) -> None:
        timeout_ms = Literal(self.spec.query_timeout_seconds * 1000)
        await conn.execute(SQL("set statement_timeout = {}").format(timeout_ms))
        if self.spec.default_schema:
            schema = Identifier(self.spec.default_schema)
            await conn.execute(SQL("set search_path to {}").format(schema))

    async def _ensure_open(self) -> None:
        if self._opened:
            return
        async with self._open_lock:
            if not self._opened:
                await self._pool.open()
                self._opened = True
                logger.info("opened pool for %s", self.spec)

    async def run(self, sql: str, *, limit: int | None = None) -> QueryResult:
        self.touch()
        await self._ensure_open()
        deadline = asyncio.timeout(
            self.spec.query_timeout_seconds + CLIENT_GRACE_SECONDS
        )
        try:
            async with deadline:
                return await self._run_pooled(sql, limit)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            self.counters["queryTimeouts"] += 1
            logger.warning("cancelled a query past its timeout on %s", self.spec)
            raise failures.timed_out(self.spec) from exc

    async def _run_pooled(self, sql: str, limit: int | None) -> QueryResult:
        conn = await self._getconn()
        try:
            return await self._fetch(conn, sql, limit)
        except psycopg.errors.QueryCanceled as exc:
            if "statement timeout" not in str(exc):
                raise _query_error(self.spec, exc) from exc
            self.counters["queryTimeouts"] += 1
            logger.warning("statement_timeout cancelled a query on %s", self.spec)
            raise failures.timed_out(self.spec) from exc
        except psycopg.Error as exc:
            self.counters["queryFailures"] += 1
            raise _query_error(self.spec, exc) from exc
        finally:
            await self._pool.putconn(conn)

    async def _getconn(self) -> AsyncConnection[Any]:
        try:
            return await self._pool.getconn()
        except PoolTimeout as exc:
            if self._pool.last_connect_error is not None:
                cause = self._pool.last_connect_error
                raise failures.connect_failed(self.spec, cause) from exc
            self.counters["queryTimeouts"] += 1
            raise failures.timed_out(self.spec) from exc
        except psycopg.Error as exc:
            raise failures.connect_failed(self.spec, exc) from exc

    async def _fetch(
        self, conn: AsyncConnection[Any], query: str, limit: int | None
    ) -> QueryResult:
        self.counters["queries"] += 1
        async with conn.cursor() as cursor:
            if limit is None:
                await cursor.execute(query)
                description = cursor.description
                rows = await cursor.fetchall() if description else []
                return _result(description, rows, truncated=False)
            return await _stream(cursor, query, limit)

    async def aclose(self) -> None:
        if self._opened:
            await self._pool.close()
            logger.info("closed pool for %s", self.spec)
        await self.wait_background()

    def pool_stats(self) -> dict[str, int]:
        stats = self._pool.get_stats()
        size = stats.get("pool_size", 0)
        idle = stats.get("pool_available", 0)
        return {
            "maxSize": stats.get("pool_max", 0),
            "size": size,
            "inUse": max(size - idle, 0),
            "idle": idle,
            "waiting": stats.get("requests_waiting", 0),
            "connectionsOpened": stats.get("connections_num", 0),
            "connectionErrors": stats.get("connections_errors", 0),
            "connectionsLost": stats.get("connections_lost", 0),
        }


async def _stream(
    cursor: psycopg.AsyncCursor[Any], query: str, limit: int
) -> QueryResult:
    """Fetch ``limit + 1`` rows; leaving the stream early cancels the rest."""
    size = min(limit + 1, STREAM_CHUNK_ROWS)
    if not psycopg.capabilities.has_stream_chunked():
        size = 1
    rows: list[tuple[Any, ...]] = []
    description = None
    stream = cast(AsyncGenerator[Any, None], cursor.stream(query, size=size))
    async with aclosing(stream):
        async for row in stream:
            description = description or cursor.description
            rows.append(row)
            if len(rows) > limit:
                break
    kept, truncated = split_rows(rows, limit)
    return _result(description or cursor.description, kept, truncated=truncated)


def _result(
    description: list[psycopg.Column] | None,
    rows: list[tuple[Any, ...]],
    *,
    truncated: bool,
) -> QueryResult:
    columns = [
        Column(d.name, arrow_type(d.type_code, d.precision, d.scale))
        for d in description or []
    ]
    return QueryResult(columns=columns, rows=rows, truncated=truncated)


def _query_error(spec: ConnectionSpec, exc: psycopg.Error) -> Exception:
    state = exc.sqlstate or ""
    lost = not state and isinstance(
        exc, psycopg.OperationalError | psycopg.InterfaceError
    )
    if lost or state.startswith(_CONNECTION_LOST_STATES):
        return failures.connect_failed(spec, exc)
    return failures.query_failed(spec, str(exc))
