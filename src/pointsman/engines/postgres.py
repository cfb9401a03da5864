"""PostgreSQL and Redshift through psycopg 3, on pointsman's bounded pool.

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
from psycopg.pq import TransactionStatus
from psycopg.sql import SQL, Identifier, Literal
from psycopg.types.string import TextLoader

from pointsman.engines import failures
from pointsman.engines.base import Engine, split_rows
from pointsman.engines.spec import Column, ConnectionSpec, QueryResult

logger = logging.getLogger(__name__)

# The client deadline trails the server's statement_timeout by this much, so
# that the server normally cancels first and the client is only a backstop.
CLIENT_GRACE_SECONDS = 0.5
CONNECT_GRACE_SECONDS = 1.0
STREAM_CHUNK_ROWS = 1000
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


class PostgresEngine(Engine):
    """PostgreSQL (and Redshift, which speaks its protocol)."""

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

    # -- connections -------------------------------------------------------------

    async def _open_connection(self) -> AsyncConnection[Any]:
        spec = self.spec
        kwargs = connect_kwargs(spec)
        if spec.dialect == "redshift":
            kwargs["prepare_threshold"] = None
        try:
            # libpq's connect_timeout covers the connect; this is a backstop.
            async with asyncio.timeout(
                spec.connect_timeout_seconds + CONNECT_GRACE_SECONDS
            ):
                conn = await AsyncConnection.connect(
                    autocommit=True, context=_ADAPTERS, **kwargs
                )
                try:
                    await self._configure(conn)
                except BaseException:
                    await conn.close()
                    raise
        except TimeoutError as exc:
            reason = "no answer before the connect timeout"
            raise failures.unavailable(spec, reason) from exc
        except psycopg.Error as exc:
            raise failures.connect_failed(spec, exc) from exc
        return conn

    async def _configure(self, conn: AsyncConnection[Any]) -> None:
        timeout_ms = Literal(self.spec.query_timeout_seconds * 1000)
        await conn.execute(SQL("set statement_timeout = {}").format(timeout_ms))
        if self.spec.default_schema:
            schema = Identifier(self.spec.default_schema)
            await conn.execute(SQL("set search_path to {}").format(schema))

    async def _close_connection(self, conn: AsyncConnection[Any]) -> None:
        await conn.close()

    def _alive(self, conn: AsyncConnection[Any]) -> bool:
        return not conn.closed and not conn.broken

    async def _give_back(self, conn: AsyncConnection[Any]) -> None:
        reusable = False
        try:
            reusable = await _reset(conn)
        finally:
            self.pool.release(conn, reusable=reusable)

    # -- running -------------------------------------------------------------------

    async def _run_admitted(
        self, sql: str, limit: int | None, acquire_deadline: float
    ) -> QueryResult:
        conn = await self.acquire(acquire_deadline)
        try:
            return await self._run_within_timeout(conn, sql, limit)
        finally:
            await self._give_back(conn)

    async def _run_within_timeout(
        self, conn: AsyncConnection[Any], sql: str, limit: int | None
    ) -> QueryResult:
        deadline = asyncio.timeout(
            self.spec.query_timeout_seconds + CLIENT_GRACE_SECONDS
        )
        try:
            async with deadline:
                return await self._run_on(conn, sql, limit)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            self.counters["queryTimeouts"] += 1
            logger.warning("cancelled a query past its timeout on %s", self.spec)
            raise failures.timed_out(self.spec) from exc

    async def _run_on(
        self, conn: AsyncConnection[Any], sql: str, limit: int | None
    ) -> QueryResult:
        try:
            return await self._fetch(conn, sql, limit)
        except psycopg.errors.QueryCanceled as exc:
            if "statement timeout" not in str(exc):
                raise _query_error(self.spec, exc) from exc
            self.counters["queryTimeouts"] += 1
            logger.warning("statement_timeout cancelled a query on %s", self.spec)
            raise failures.timed_out(self.spec) from exc
        except psycopg.Error as exc:
            if _connection_lost(exc):
                self.connection_lost()
            else:
                self.counters["queryFailures"] += 1
            raise _query_error(self.spec, exc) from exc

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


async def _reset(conn: AsyncConnection[Any]) -> bool:
    """Bring a returned connection back to idle; False if it cannot be reused."""
    status = conn.pgconn.transaction_status
    if status == TransactionStatus.IDLE:
        return not conn.closed
    if status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        try:
            await conn.rollback()
        except psycopg.Error:
            return False
        return True
    return False


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


def _connection_lost(exc: psycopg.Error) -> bool:
    state = exc.sqlstate or ""
    if state.startswith(_CONNECTION_LOST_STATES):
        return True
    return not state and isinstance(
        exc, psycopg.OperationalError | psycopg.InterfaceError
    )


def _query_error(spec: ConnectionSpec, exc: psycopg.Error) -> Exception:
    if _connection_lost(exc):
        return failures.connect_failed(spec, exc)
    return failures.query_failed(spec, str(exc))
