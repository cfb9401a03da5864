"""SQLite and DuckDB: database files opened in this process.

Their drivers block, so every call runs on a thread of the engine's own
executor (as many threads as the pool has connections, so that a slow file
cannot starve the event loop's default executor). Past the timeout the
waiting side calls ``interrupt()`` on the connection, which stops the
statement inside the driver; that connection is then closed, not reused.

The database file is the only thing a query may reach: SQLite refuses
ATTACH of a file, DETACH, temporary objects and PRAGMA assignments through an
authorizer; DuckDB runs with external access disabled and its configuration
locked, so it reads and writes no other file, installs and loads no
extension, and SQL cannot turn either back on. A query runs one statement,
and whatever it leaves on its connection (a transaction, session settings)
is wiped before the next query gets the connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from abc import abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pointsman.engines import failures
from pointsman.engines.base import Engine, infer_arrow_type, split_rows
from pointsman.engines.spec import Column, ConnectionSpec, QueryResult
from pointsman.errors import EngineError, QueryFailedError

try:
    import duckdb
except ImportError:  # the registry reports the missing extra
    duckdb = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

CLOSE_GRACE_SECONDS = 30.0
MEMORY = ":memory:"


@dataclass
class _Outcome:
    """What a query left: its result or its error, and whether the
    connection was wiped clean for the next query."""

    result: QueryResult | None
    error: Exception | None
    reusable: bool


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

    @abstractmethod
    def _reset(self, conn: Any) -> bool:
        """Wipe what the last query left on ``conn``; False to close it."""

    # -- the pool --------------------------------------------------------------

    async def _call(self, function: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    async def _open_connection(self) -> Any:
        return await self._call(self._open)

    async def _close_connection(self, conn: Any) -> None:
        await self._call(self._close, conn)

    # -- running ---------------------------------------------------------------

    # TODO: implement _open_batches (fetchmany in the worker) so that large
    # results stream here too; until then they are built in memory.
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
        work = asyncio.ensure_future(self._call(self._run_and_reset, conn, sql, limit))
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
        try:
            outcome: _Outcome = work.result()
        except BaseException:
            self.pool.release(conn, reusable=False)
            raise
        self.pool.release(conn, reusable=outcome.reusable)
        return self._result_of(outcome)

    def _run_and_reset(self, conn: Any, sql: str, limit: int | None) -> _Outcome:
        """Run, then reset the connection, on the same worker thread."""
        try:
            result = self._execute(conn, sql, limit)
        except Exception as exc:
            return _Outcome(None, exc, self._reset_quietly(conn))
        return _Outcome(result, None, self._reset_quietly(conn))

    def _reset_quietly(self, conn: Any) -> bool:
        try:
            return self._reset(conn)
        except Exception:
            logger.debug("resetting a connection failed", exc_info=True)
            return False

    def _result_of(self, outcome: _Outcome) -> QueryResult:
        exc = outcome.error
        if exc is None:
            assert outcome.result is not None
            return outcome.result
        if isinstance(exc, QueryFailedError):
            self.counters["queryFailures"] += 1
            raise exc
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

# PRAGMAs that take a table or index name (or a count) and only report.
_REPORTING_PRAGMAS = frozenset(
    {
        "foreign_key_check",
        "foreign_key_list",
        "index_info",
        "index_list",
        "index_xinfo",
        "integrity_check",
        "quick_check",
        "table_info",
        "table_list",
        "table_xinfo",
    }
)
_CREATE_TEMP = frozenset(
    {
        sqlite3.SQLITE_CREATE_TEMP_INDEX,
        sqlite3.SQLITE_CREATE_TEMP_TABLE,
        sqlite3.SQLITE_CREATE_TEMP_TRIGGER,
        sqlite3.SQLITE_CREATE_TEMP_VIEW,
    }
)
# ... which ``create table temp.t`` reports as a plain create in "temp".
_CREATE = frozenset(
    {
        sqlite3.SQLITE_CREATE_INDEX,
        sqlite3.SQLITE_CREATE_TABLE,
        sqlite3.SQLITE_CREATE_TRIGGER,
        sqlite3.SQLITE_CREATE_VIEW,
        sqlite3.SQLITE_CREATE_VTABLE,
    }
)
_ONE_STATEMENT_AT_A_TIME = "one statement at a time"


class _GuardedSQLite(sqlite3.Connection):
    """A SQLite connection that reaches no file but its own.

    Its authorizer refuses ATTACH of a file (``attach``, ``vacuum into``),
    DETACH, temporary tables, views and triggers (they would shadow the
    file's tables for the next user of the pooled connection) and PRAGMA
    assignments (session settings, or ``temp_store_directory``). PRAGMAs
    that only report stay allowed, and so does VACUUM (it attaches a
    nameless temporary database of its own). Extension loading stays off.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused: str | None = None
        self.attached = False
        self.set_authorizer(self._authorize)

    def _authorize(
        self,
        action: int,
        arg1: str | None,
        arg2: str | None,
        database: str | None,
        trigger: str | None,
    ) -> int:
        refused = _refused_by_sqlite(action, arg1, arg2, database)
        if refused is not None:
            self.refused = refused
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_ATTACH:
            self.attached = True
        return sqlite3.SQLITE_OK


def _refused_by_sqlite(
    action: int, arg1: str | None, arg2: str | None, database: str | None
) -> str | None:
    """What the action would do that pointsman refuses, or None."""
    # The file name comes as NULL when it is an expression, not a literal:
    # only VACUUM's nameless temporary database ('') may be attached.
    if action == sqlite3.SQLITE_ATTACH and arg1 != "":
        return "ATTACH of a database file"
    if action == sqlite3.SQLITE_DETACH:
        return "DETACH"
    if action in _CREATE_TEMP or (action in _CREATE and database == "temp"):
        return "Creating temporary tables, views or triggers"
    if (
        action == sqlite3.SQLITE_PRAGMA
        and arg2 is not None
        and (arg1 or "").lower() not in _REPORTING_PRAGMAS
    ):
        return "Changing a PRAGMA setting"
    return None


def _sqlite_connect(spec: ConnectionSpec) -> _GuardedSQLite:
    path = _file_path(spec)
    target = path if path == MEMORY else f"file:{quote(path)}?mode=rw"
    try:
        return sqlite3.connect(
            target,
            uri=path != MEMORY,
            timeout=spec.connect_timeout_seconds,
            isolation_level=None,
            check_same_thread=False,
            factory=_GuardedSQLite,
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

    def _reset(self, conn: _GuardedSQLite) -> bool:
        """Roll back what the query left open; a database attached (and not
        detached) by the statement means a connection to close."""
        conn.refused = None
        if conn.in_transaction:
            conn.rollback()
        if conn.attached:
            conn.attached = False
            names = {str(row[1]) for row in conn.execute("pragma database_list")}
            if not names <= {"main", "temp"}:
                return False
        return not conn.in_transaction

    def _execute(
        self, conn: _GuardedSQLite, sql: str, limit: int | None
    ) -> QueryResult:
        conn.refused = None
        try:
            return self._fetch(conn, sql, limit)
        except sqlite3.Error as exc:
            if conn.refused is not None:
                raise failures.not_allowed(self.spec, conn.refused) from exc
            if isinstance(exc, sqlite3.ProgrammingError) and (
                _ONE_STATEMENT_AT_A_TIME in str(exc)
            ):
                raise failures.one_statement_only(self.spec) from exc
            raise

    def _fetch(self, conn: _GuardedSQLite, sql: str, limit: int | None) -> QueryResult:
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


# No file but the database's own, no extension installed or loaded, and SQL
# cannot change any of it (nor any other global setting).
_DUCKDB_SANDBOX = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
}


def _duckdb_connect(path: str) -> Any:
    """Open the file sandboxed (DuckDB shares one instance per file in a
    process, and refuses a second open with another configuration)."""
    return duckdb.connect(path, read_only=False, config=dict(_DUCKDB_SANDBOX))


class _DuckDBSession:
    """A pooled DuckDB connection: a cursor of the shared database, replaced
    by a fresh one after every query, so that what a query set on it (USE,
    SET, variables, temporary tables, prepared statements, a transaction)
    never reaches the next query."""

    def __init__(self, database: Any) -> None:
        self._database = database
        self.cursor = database.cursor()

    def renew(self) -> None:
        old, self.cursor = self.cursor, self._database.cursor()
        old.close()

    def interrupt(self) -> None:
        self.cursor.interrupt()

    def close(self) -> None:
        self.cursor.close()


def _statement_type(statement: Any) -> Any:
    try:
        return statement.type
    except ValueError:  # a type newer than the StatementType enum
        return None


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
                conn = _duckdb_connect(_file_path(spec))
            except duckdb.Error as exc:
                raise _duckdb_open_failed(spec, exc) from exc
            try:
                row = conn.execute("select version()").fetchone()
                return str(row[0]) if row else duckdb.__version__
            finally:
                conn.close()

        return await asyncio.to_thread(probe)

    def _open(self) -> _DuckDBSession:
        with self._database_lock:
            if self._database is None:
                try:
                    self._database = _duckdb_connect(_file_path(self.spec))
                except duckdb.Error as exc:
                    raise _duckdb_open_failed(self.spec, exc) from exc
            return _DuckDBSession(self._database)

    def _close(self, conn: _DuckDBSession) -> None:
        conn.close()

    def _reset(self, conn: _DuckDBSession) -> bool:
        conn.renew()
        return True

    def _close_database(self) -> None:
        with self._database_lock:
            if self._database is not None:
                self._database.close()
                self._database = None

    def _is_driver_error(self, exc: BaseException) -> bool:
        return isinstance(exc, duckdb.Error)

    def _execute(
        self, session: _DuckDBSession, sql: str, limit: int | None
    ) -> QueryResult:
        conn = session.cursor
        # DuckDB would run every statement of the string and return the last.
        statements = conn.extract_statements(sql)
        if len(statements) > 1:
            raise failures.one_statement_only(self.spec)
        if statements:
            kind = _statement_type(statements[0])
            if kind == duckdb.StatementType.ATTACH:
                raise failures.not_allowed(self.spec, "ATTACH")
            if kind == duckdb.StatementType.DETACH:
                raise failures.not_allowed(self.spec, "DETACH")
        conn.execute(sql)
        if conn.description is None:
            return QueryResult(columns=[], rows=[])
        columns = [Column(d[0], duckdb_arrow_type(str(d[1]))) for d in conn.description]
        fetched = conn.fetchall() if limit is None else conn.fetchmany(limit + 1)
        rows, truncated = split_rows(fetched, limit)
        return QueryResult(columns=columns, rows=rows, truncated=truncated)
