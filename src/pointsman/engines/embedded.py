"""SQLite and DuckDB: database files opened in this process.

Their drivers block, so every call runs on a thread of the engine's own
executor (as many threads as the pool has connections, so that a slow file
cannot starve the event loop's default executor). Past the timeout the
waiting side calls ``interrupt()`` on the connection, which stops the
statement inside the driver; that connection is then closed, not reused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from abc import abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from pointsman.engines import failures
from pointsman.engines.base import Engine, infer_arrow_type, split_rows
from pointsman.engines.spec import Column, ConnectionSpec, QueryResult
from pointsman.errors import EngineError

try:
    import duckdb
except ImportError:  # the registry reports the missing extra
    duckdb = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

CLOSE_GRACE_SECONDS = 30.0
MEMORY = ":memory:"


class EmbeddedEngine(Engine):
    """A pool of blocking connections to one database file."""

    def __init__(self, spec: ConnectionSpec, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self._executor = ThreadPoolExecutor(
            max_workers=self.limits.max_size,
            thread_name_prefix=f"pointsman-{spec.dialect}",
        )

    # -- what each driver provides (all blocking, run on the executor) -------

    @abstractmethod
    def _open(self) -> Any:
        """Open one connection; raise :class:`EngineError` if impossible."""

    @abstractmethod
    def _close(self, conn: Any) -> None: ...

    @abstractmethod
    def _execute(self, conn: Any, sql: str, limit: int | None) -> QueryResult: ...

    @abstractmethod
    def _is_driver_error(self, exc: BaseException) -> bool: ...

    # -- the pool --------------------------------------------------------------

    async def _call(self, function: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    async def _open_connection(self) -> Any:
        return await self._call(self._open)

    async def _close_connection(self, conn: Any) -> None:
        await self._call(self._close, conn)

    # -- running ---------------------------------------------------------------

    async def _run_admitted(
        self, sql: str, limit: int | None, acquire_deadline: float
    ) -> QueryResult:
        conn = await self.acquire(acquire_deadline)
        return await self._run_on(conn, sql, limit, self.spec.query_timeout_seconds)

    async def _run_on(
        self, conn: Any, sql: str, limit: int | None, timeout: float
    ) -> QueryResult:
        """Run on ``conn`` and give it back, or retire it if interrupted."""
        self.counters["queries"] += 1
        work = asyncio.ensure_future(self._call(self._execute, conn, sql, limit))
        try:
            done, _ = await asyncio.wait({work}, timeout=max(timeout, 0.0))
        except asyncio.CancelledError:
            self._interrupt(conn, work)
            raise
        if not done:
            self._interrupt(conn, work)
            self.counters["queryTimeouts"] += 1
            logger.warning("interrupted a query past its timeout on %s", self.spec)
            raise failures.timed_out(self.spec)
        self.pool.release(conn)
        return self._result_of(work)

    def _result_of(self, work: asyncio.Future[QueryResult]) -> QueryResult:
        exc = work.exception()
        if exc is None:
            return work.result()
        if self._is_driver_error(exc):
            self.counters["queryFailures"] += 1
            raise failures.query_failed(self.spec, str(exc)) from exc
        raise exc

    def _interrupt(self, conn: Any, work: asyncio.Future[Any]) -> None:
        conn.interrupt()
        self.spawn(self._retire(conn, work))

    async def _retire(self, conn: Any, work: asyncio.Future[Any]) -> None:
        """Close an interrupted connection once its thread lets go of it."""
        done, _ = await asyncio.wait({work}, timeout=CLOSE_GRACE_SECONDS)
        if not done:
            logger.warning("a thread ignored interrupt() on %s", self.spec)
            self.pool.forget(conn)
            return
        if not work.cancelled():
            work.exception()
        self.pool.release(conn, reusable=False)

    # -- lifecycle ---------------------------------------------------------------

    async def _close_shared(self) -> None:
        await self._call(self._close_database)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _close_database(self) -> None:
        """Close what all connections share (nothing, unless overridden)."""


def _file_path(spec: ConnectionSpec) -> str:
    """The database file, which must exist: a typo must not create a new one."""
    path = spec.database or MEMORY
    if path != MEMORY and not os.path.exists(path):
        raise failures.unavailable(spec, "the database file does not exist")
    return path


# -- SQLite ---------------------------------------------------------------------


def _sqlite_connect(spec: ConnectionSpec) -> sqlite3.Connection:
    path = _file_path(spec)
    target = path if path == MEMORY else f"file:{quote(path)}?mode=rw"
    try:
        return sqlite3.connect(
            target,
            uri=path != MEMORY,
            timeout=spec.connect_timeout_seconds,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise failures.unavailable(spec, "the database file cannot be opened") from exc


class SQLiteEngine(EmbeddedEngine):
    """SQLite files through the standard library, in autocommit mode."""

    @classmethod
    async def server_version(cls, spec: ConnectionSpec) -> str:
        def probe() -> str:
            conn = _sqlite_connect(spec)
            try:
                return str(conn.execute("select sqlite_version()").fetchone()[0])
            finally:
                conn.close()

        return await asyncio.to_thread(probe)

    def _open(self) -> sqlite3.Connection:
        return _sqlite_connect(self.spec)

    def _close(self, conn: Any) -> None:
        conn.close()

    def _is_driver_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.Error)

    def _execute(self, conn: Any, sql: str, limit: int | None) -> QueryResult:
        cursor = conn.execute(sql)
        try:
            if cursor.description is None:
                return QueryResult(columns=[], rows=[])
            names = [d[0] for d in cursor.description]
            fetched = (
                cursor.fetchall() if limit is None else cursor.fetchmany(limit + 1)
            )
        finally:
            cursor.close()
        rows, truncated = split_rows(fetched, limit)
        columns = [
            Column(name, infer_arrow_type(row[i] for row in rows))
            for i, name in enumerate(names)
        ]
        return QueryResult(columns=columns, rows=rows, truncated=truncated)


# -- DuckDB ---------------------------------------------------------------------

_DUCKDB_ARROW = {
    "BOOLEAN": "bool",
    "TINYINT": "int8",
    "SMALLINT": "int16",
    "INTEGER": "int32",
    "BIGINT": "int64",
    "UTINYINT": "uint8",
    "USMALLINT": "uint16",
    "UINTEGER": "uint32",
    "UBIGINT": "uint64",
    "FLOAT": "float32",
    "DOUBLE": "float64",
    "VARCHAR": "string",
    "BLOB": "binary",
    "DATE": "date32",
    "TIME": "time64[us]",
    "TIMESTAMP": "timestamp[us]",
    "TIMESTAMP_S": "timestamp[us]",
    "TIMESTAMP_MS": "timestamp[us]",
    "TIMESTAMP WITH TIME ZONE": "timestamp[us, tz=UTC]",
    "INTERVAL": "duration[us]",
    '"NULL"': "null",
    "NULL": "null",
}
_MAX_DECIMAL128_PRECISION = 38


def duckdb_arrow_type(type_name: str) -> str:
    """The Arrow type name for a DuckDB type name (``string`` if unknown)."""
    if type_name.startswith("DECIMAL(") and type_name.endswith(")"):
        precision, _, scale = type_name[len("DECIMAL(") : -1].partition(",")
        if int(precision) <= _MAX_DECIMAL128_PRECISION:
            return f"decimal128({int(precision)},{int(scale or 0)})"
    return _DUCKDB_ARROW.get(type_name, "string")


def _duckdb_open_failed(spec: ConnectionSpec, exc: Exception) -> EngineError:
    if "lock" in str(exc).lower():
        reason = "the database file is locked by another process"
    else:
        reason = "the database file cannot be opened"
    return failures.unavailable(spec, reason)


class DuckDBEngine(EmbeddedEngine):
    """DuckDB files: one database instance, one cursor per pooled connection.

    DuckDB lets a single process open a file read-write; another process
    holding it shows up as :class:`DatabaseUnavailableError`.
    """

    def __init__(self, spec: ConnectionSpec, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self._database: Any = None
        self._database_lock = threading.Lock()

    @classmethod
    async def server_version(cls, spec: ConnectionSpec) -> str:
        def probe() -> str:
            try:
                conn = duckdb.connect(_file_path(spec), read_only=False)
            except duckdb.Error as exc:
                raise _duckdb_open_failed(spec, exc) from exc
            try:
                row = conn.execute("select version()").fetchone()
                return str(row[0]) if row else duckdb.__version__
            finally:
                conn.close()

        return await asyncio.to_thread(probe)

    def _open(self) -> Any:
        with self._database_lock:
            if self._database is None:
                try:
                    self._database = duckdb.connect(
                        _file_path(self.spec), read_only=False
                    )
                except duckdb.Error as exc:
                    raise _duckdb_open_failed(self.spec, exc) from exc
            return self._database.cursor()

    def _close(self, conn: Any) -> None:
        conn.close()

    def _close_database(self) -> None:
        with self._database_lock:
            if self._database is not None:
                self._database.close()
                self._database = None

    def _is_driver_error(self, exc: BaseException) -> bool:
        return isinstance(exc, duckdb.Error)

    def _execute(self, conn: Any, sql: str, limit: int | None) -> QueryResult:
        conn.execute(sql)
        if conn.description is None:
            return QueryResult(columns=[], rows=[])
        columns = [Column(d[0], duckdb_arrow_type(str(d[1]))) for d in conn.description]
        fetched = conn.fetchall() if limit is None else conn.fetchmany(limit + 1)
        rows, truncated = split_rows(fetched, limit)
        return QueryResult(columns=columns, rows=rows, truncated=truncated)
