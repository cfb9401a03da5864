"""MySQL and MariaDB through aiomysql, on pointsman's bounded pool.

The MySQL protocol has no out-of-band cancel: past the timeout, a second
connection sends ``KILL QUERY <thread id>``. The statement then ends on the
server, and the pooled connection, having read the statement's end, is
clean again; if it does not come back within a grace period it is closed.

A pooled session serves many users, so nothing one of them sets may reach the
next: every connection is reset when it comes back (``COM_RESET_CONNECTION``,
then the configured database is selected again, see :func:`_reset`). And a
query runs one statement only: pointsman connects without
``CLIENT_MULTI_STATEMENTS``, so the server refuses ``select 1; select 2``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Iterable
from contextlib import suppress
from typing import Any, TypeVar

import aiomysql
import pymysql
from pymysql.constants import CLIENT

from pointsman.engines import failures
from pointsman.engines.base import Engine
from pointsman.engines.spec import Column, ConnectionSpec
from pointsman.engines.streams import Batches
from pointsman.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

KILL_GRACE_SECONDS = 5.0
# A reset that takes longer than this means a sick link: it is closed instead.
MAX_RESET_SECONDS = 5.0
# COM_RESET_CONNECTION (MySQL 5.7.3, MariaDB 10.2.4): PyMySQL has no constant.
COM_RESET_CONNECTION = 0x1F

# pymysql.constants.FIELD_TYPE codes. Integers widen one step where the
# column's flags cannot be read to say whether it is UNSIGNED.
_ARROW_BY_FIELD_TYPE = {
    1: "int16",  # TINY
    2: "int32",  # SHORT
    3: "int64",  # LONG
    4: "float32",  # FLOAT
    5: "float64",  # DOUBLE
    6: "null",  # NULL
    7: "timestamp[us]",  # TIMESTAMP
    8: "int64",  # LONGLONG
    9: "int32",  # INT24
    10: "date32",  # DATE
    11: "duration[us]",  # TIME (a signed duration up to 838 hours)
    12: "timestamp[us]",  # DATETIME
    13: "int16",  # YEAR
    14: "date32",  # NEWDATE
    16: "binary",  # BIT
}
# An UNSIGNED column of these codes, as its flags tell.
_UNSIGNED_BY_FIELD_TYPE = {
    1: "uint8",
    2: "uint16",
    3: "uint32",
    8: "uint64",
    9: "uint32",
}
_UNSIGNED_FLAG = 32  # pymysql.constants.FLAG.UNSIGNED
_DECIMAL_TYPES = {0, 246}
_MAX_DECIMAL128_PRECISION = 38

# Client-side error codes (CR_*) and server codes meaning the link is gone.
_CONNECTION_LOST_CODES = {1053, 1927, 2006, 2013, 2055}
_FIRST_CLIENT_ERROR_CODE = 2000
_UNKNOWN_THREAD = 1094
_SYNTAX_ERROR = 1064
# "... near '<the rest of the statement>' at line 1"
_SYNTAX_ERROR_AT = re.compile(r"near '(.+)' at line \d+$", re.DOTALL)

STREAM_BATCH_ROWS = 1000
_T = TypeVar("_T")


def arrow_type(
    description: tuple[Any, ...], values: Iterable[Any], unsigned: bool = False
) -> str:
    """The Arrow type name for a column from its description and values.

    TEXT and BLOB share type codes, so string-like columns are told apart by
    their values (bytes means binary).
    """
    type_code, length, scale = description[1], description[4], description[5]
    if unsigned and type_code in _UNSIGNED_BY_FIELD_TYPE:
        return _UNSIGNED_BY_FIELD_TYPE[type_code]
    if type_code in _DECIMAL_TYPES:
        precision = (length or 0) - (1 if scale else 0)
        if 0 < precision <= _MAX_DECIMAL128_PRECISION:
            return f"decimal128({precision},{scale or 0})"
        return "string"
    if type_code in _ARROW_BY_FIELD_TYPE:
        return _ARROW_BY_FIELD_TYPE[type_code]
    first = next((value for value in values if value is not None), None)
    return "binary" if isinstance(first, bytes) else "string"


def connect_kwargs(spec: ConnectionSpec) -> dict[str, Any]:
    return {
        "host": spec.host or "127.0.0.1",
        "port": spec.port or 3306,
        "user": spec.username or "root",
        "password": spec.password or "",
        "db": _database_of(spec),
        "connect_timeout": spec.connect_timeout_seconds,
        "autocommit": True,
        "charset": "utf8mb4",
    }


def _error_code(exc: pymysql.err.Error) -> int:
    code = exc.args[0] if exc.args else 0
    return code if isinstance(code, int) else 0


def _error_message(exc: pymysql.err.Error) -> str:
    return str(exc.args[1]) if len(exc.args) > 1 else str(exc)


def _fails_after_a_semicolon(sql: str, exc: pymysql.err.Error) -> bool:
    """Whether a syntax error is the server refusing a second statement.

    Without ``CLIENT_MULTI_STATEMENTS`` the parser stops at the first token
    after the semicolon that ends the first statement.
    """
    match = _SYNTAX_ERROR_AT.search(_error_message(exc))
    if match is None:
        return False
    at = sql.find(match[1])
    return at > 0 and sql[:at].rstrip().endswith(";")


class MySQLEngine(Engine):
    """MySQL and MariaDB."""

    @classmethod
    async def server_version(cls, spec: ConnectionSpec) -> str:
        conn = await _connect(spec)
        try:
            async with conn.cursor() as cursor:
                await cursor.execute("select version()")
                row = await cursor.fetchone()
        except pymysql.err.Error as exc:
            raise failures.query_failed(spec, _error_message(exc)) from exc
        finally:
            await _close_quietly(conn)
        return str(row[0]) if row else ""

    # -- connections -------------------------------------------------------------

    async def _open_connection(self) -> aiomysql.Connection:
        return await _connect(self.spec)

    async def _close_connection(self, conn: aiomysql.Connection) -> None:
        await _close_quietly(conn)

    def _alive(self, conn: aiomysql.Connection) -> bool:
        """Closed, or the server hung up while the connection was idle."""
        reader = getattr(conn, "_reader", None)
        if conn.closed or reader is None:
            return False
        return not (reader.at_eof() or reader.exception() is not None)

    async def _give_back(self, conn: aiomysql.Connection) -> None:
        """Reset the session for the next user, or close it if that fails."""
        reusable = False
        try:
            reusable = await _reset(conn, _database_of(self.spec))
        finally:
            if not reusable:
                conn.close()
            self.pool.release(conn, reusable=reusable)

    # -- running -------------------------------------------------------------------

    def _open_batches(self, sql: str, acquire_deadline: float) -> Batches:
        return self._batches(sql, acquire_deadline)

    async def _batches(self, sql: str, acquire_deadline: float) -> Batches:
        """Rows in batches of ``STREAM_BATCH_ROWS`` off an unbuffered cursor.

        Read to its end, the session is reset and pooled again. Closed early
        (a limit reached, the client gone), the rest of the statement is
        killed on the server and its end read off the wire in the background
        before the session is pooled again.
        """
        conn = await self.acquire(acquire_deadline)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.query_timeout_seconds
        self.counters["queries"] += 1
        cursor: aiomysql.SSCursor | None = None
        try:
            cursor = await conn.cursor(aiomysql.SSCursor)
            await self._guarded(conn, cursor.execute(sql), deadline, sql)
            if cursor.description is None:
                yield [], []
                return
            columns: list[Column] | None = None
            while True:
                fetch = cursor.fetchmany(STREAM_BATCH_ROWS)
                rows = list(await self._guarded(conn, fetch, deadline, sql))
                if columns is None:
                    columns = _columns(cursor, rows)
                elif not rows:
                    return
                yield columns, rows
                if not rows:
                    return
        except GeneratorExit:
            # Closed early: the statement may still be sending rows.
            if cursor is not None and not conn.closed:
                self.spawn(self._stop_and_release(conn, cursor))
                cursor = None
                conn = None
            raise
        finally:
            # Read to its end, failed (the error ended it), or abandoned
            # (closed): _give_back resets the session or drops it.
            if conn is not None:
                if cursor is not None:
                    await _close_cursor_quietly(conn, cursor)
                await self._give_back(conn)

    async def _guarded(
        self,
        conn: aiomysql.Connection,
        step: Awaitable[_T],
        deadline: float,
        sql: str,
    ) -> _T:
        """One step of a statement as a task: past the deadline the statement
        is killed on the server; a caller that goes away abandons it."""
        task = asyncio.ensure_future(step)
        timeout = deadline - asyncio.get_running_loop().time()
        try:
            done, _ = await asyncio.wait({task}, timeout=max(timeout, 0.0))
        except asyncio.CancelledError:
            self._abandon(conn, task)
            raise
        if not done:
            await self._cancel_on_server(conn, task)
            self.counters["queryTimeouts"] += 1
            raise failures.timed_out(self.spec)
        try:
            return task.result()
        except pymysql.err.Error as exc:
            raise self._query_error(conn, sql, exc) from exc
        except Exception:
            conn.close()
            raise

    async def _stop_and_release(
        self, conn: aiomysql.Connection, cursor: aiomysql.SSCursor
    ) -> None:
        """Kill what is left of a statement read only in part, read its end
        off the wire, and pool the session again (or close it)."""
        try:
            if not await kill_query(self.spec, conn.thread_id()):
                raise TimeoutError  # the server is out of reach: drop the link
            async with asyncio.timeout(KILL_GRACE_SECONDS):
                with suppress(pymysql.err.Error):
                    await cursor.close()
        except (TimeoutError, OSError, RuntimeError):
            conn.close()
        finally:
            await self._give_back(conn)

    async def _cancel_on_server(
        self, conn: aiomysql.Connection, task: asyncio.Future[Any]
    ) -> None:
        logger.warning("killing a query past its timeout on %s", self.spec)
        done: set[asyncio.Future[Any]] = set()
        # A server that could not be reached to kill the statement will not
        # end it either: then the link is dropped at once.
        if await kill_query(self.spec, conn.thread_id()):
            done, _ = await asyncio.wait({task}, timeout=KILL_GRACE_SECONDS)
        if done:
            # The statement's end (a row or "interrupted") was read: reusable.
            with suppress(Exception):
                task.result()
            return
        task.cancel()
        conn.close()
        logger.warning("discarded a connection that did not stop on %s", self.spec)

    def _abandon(self, conn: aiomysql.Connection, task: asyncio.Future[Any]) -> None:
        """The caller went away mid-statement: drop the link, kill the statement."""
        thread_id = conn.thread_id()
        task.cancel()
        conn.close()
        self.spawn(kill_query(self.spec, thread_id))

    def _query_error(
        self, conn: aiomysql.Connection, sql: str, exc: pymysql.err.Error
    ) -> Exception:
        code = _error_code(exc)
        lost = code in _CONNECTION_LOST_CODES or code >= _FIRST_CLIENT_ERROR_CODE
        if lost or isinstance(exc, pymysql.err.InterfaceError):
            conn.close()
            self.connection_lost()
            return failures.connection_lost(self.spec, exc)
        self.counters["queryFailures"] += 1
        if code == _SYNTAX_ERROR and _fails_after_a_semicolon(sql, exc):
            return failures.one_statement_only(self.spec)
        return failures.query_failed(self.spec, _error_message(exc))


class _OneStatementConnection(aiomysql.Connection):  # type: ignore[misc]
    """aiomysql always asks for ``CLIENT_MULTI_STATEMENTS``: this does not, so
    the server runs one statement per query and refuses a string of several
    with a syntax error."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client_flag &= ~CLIENT.MULTI_STATEMENTS


def _database_of(spec: ConnectionSpec) -> str | None:
    return spec.database or spec.default_schema


async def _connect(spec: ConnectionSpec) -> aiomysql.Connection:
    """A fresh connection, with errors already translated.

    aiomysql's ``connect_timeout`` bounds the TCP connect only; the deadline
    here bounds the whole connect, greeting and login, so a server that
    accepts and then never greets costs the connect timeout and no more.
    """
    conn = _OneStatementConnection(**connect_kwargs(spec))
    try:
        async with asyncio.timeout(spec.connect_timeout_seconds):
            # What aiomysql.connect() does, on our connection class.
            await conn._connect()
            conn.login_role = await _current_role(conn)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, TimeoutError):
            reason = "no answer before the connect timeout"
            raise failures.unavailable(spec, reason) from exc
        if isinstance(exc, pymysql.err.Error | OSError):
            raise failures.connect_failed(spec, exc) from exc
        raise
    return conn


async def _reset(conn: aiomysql.Connection, database: str | None) -> bool:
    """Wipe what the last user left on the session; False if it cannot be reused.

    ``COM_RESET_CONNECTION`` rolls back an open transaction and drops
    temporary tables, user variables, prepared statements, table and named
    locks, and every session variable (back to the global value; the
    character set goes back to the one of the handshake). It keeps the
    current database, so the configured one is selected again. Without a
    configured database the session must not have chosen one. It also keeps
    the active role: a session whose role moved is not reused.
    """
    if conn.closed:
        return False
    try:
        async with asyncio.timeout(MAX_RESET_SECONDS):
            await conn._execute_command(COM_RESET_CONNECTION, b"")
            await conn._read_ok_packet()
            if await _current_role(conn) != getattr(conn, "login_role", None):
                return False  # a role was switched: no reset undoes that
            if database:
                await conn.select_db(database)
            elif not await _no_database_selected(conn):
                return False
            # Back to the global default: set it again if that is off.
            await conn.autocommit(True)
    except (TimeoutError, pymysql.err.Error, OSError, RuntimeError):
        logger.debug("resetting a session failed", exc_info=True)
        return False
    return not conn.closed and not conn.get_transaction_status()


async def _current_role(conn: aiomysql.Connection) -> object:
    async with conn.cursor() as cursor:
        await cursor.execute("select current_role()")
        row = await cursor.fetchone()
    return row[0] if row else None


async def _no_database_selected(conn: aiomysql.Connection) -> bool:
    async with conn.cursor() as cursor:
        await cursor.execute("select database()")
        row = await cursor.fetchone()
    return row is not None and row[0] is None


async def kill_query(spec: ConnectionSpec, thread_id: int) -> bool:
    """Stop the statement running on ``thread_id``, from a second connection;
    False where the server could not be reached to ask."""
    try:
        killer = await _connect(spec)
    except DatabaseUnavailableError:
        logger.warning("could not open a connection to kill a query on %s", spec)
        return False
    try:
        async with killer.cursor() as cursor:
            await cursor.execute(f"KILL QUERY {int(thread_id)}")
    except pymysql.err.Error as exc:
        if _error_code(exc) != _UNKNOWN_THREAD:
            logger.warning("KILL QUERY failed on %s: error %s", spec, _error_code(exc))
    finally:
        await _close_quietly(killer)
    return True


async def _close_cursor_quietly(
    conn: aiomysql.Connection, cursor: aiomysql.SSCursor
) -> None:
    """Read what is left of the cursor's result off the wire (after a kill,
    the statement's end), or close the connection if that fails."""
    if conn.closed:
        return
    try:
        async with asyncio.timeout(KILL_GRACE_SECONDS):
            await cursor.close()
    except (TimeoutError, pymysql.err.Error, OSError, RuntimeError):
        conn.close()


async def _close_quietly(conn: aiomysql.Connection) -> None:
    try:
        await conn.ensure_closed()
    except (pymysql.err.Error, OSError, RuntimeError):
        conn.close()


def _columns(cursor: Any, rows: list[tuple[Any, ...]]) -> list[Column]:
    """Columns typed by their description and flags (and, for text or
    binary, by the first batch's values)."""
    description = cursor.description
    unsigned = _unsigned_columns(cursor, len(description))
    return [
        Column(str(d[0]), arrow_type(d, (row[index] for row in rows), unsigned[index]))
        for index, d in enumerate(description)
    ]


def _unsigned_columns(cursor: Any, width: int) -> list[bool]:
    """Which columns are UNSIGNED. The DB-API description leaves the flags
    out; the result's field packets (pymysql's) carry them."""
    fields = getattr(getattr(cursor, "_result", None), "fields", None)
    if not fields or len(fields) != width:
        return [False] * width
    return [bool(getattr(field, "flags", 0) & _UNSIGNED_FLAG) for field in fields]
