"""Any dialect with a SQLAlchemy driver: the optional-extra dialects.

A synchronous SQLAlchemy engine is the dialect-aware way to open one DBAPI
connection (it runs the dialect's connect hooks); pooling is the base
class's bounded :class:`~pointsman.engines.pool.Pool`, sized from
``options.poolSize``/``maxOverflow`` and counted against the server-wide
connection cap like every other dialect's. (A SQLAlchemy ``QueuePool`` under
it would keep connections the cap cannot see, so the SQLAlchemy engine uses
``NullPool``.) The drivers block, so connecting, running and closing happen
on the engine's own executor, as many threads as the pool has connections.
SQL goes to a raw DBAPI cursor exactly as written: no SQLAlchemy parameter
parsing.

The query timeout is enforced as well as each driver allows:

1. on the server where the dialect has a setting for it (see the table in
   ``dialect_urls``), so a forgotten statement does not run on;
2. by a ``threading.Timer`` armed for the time left when the statement
   starts, which calls the first of ``cursor.cancel()``,
   ``connection.cancel()`` or ``connection.interrupt()`` the driver has
   (databricks, trino and athena cancel their cursor);
3. by the waiting side, which answers ``QueryTimeoutError`` at the deadline
   whatever the driver does. A driver with no way to cancel (bigquery,
   clickhouse, snowflake, pymssql) keeps its thread until the statement
   ends; that connection is then discarded, never reused.

A connection whose statement timed out or was cancelled is always discarded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.exc import NoSuchModuleError
from sqlalchemy.pool import NullPool, PoolProxiedConnection

from pointsman.engines import failures
from pointsman.engines.base import Engine, infer_arrow_type, split_rows
from pointsman.engines.dialect_urls import (
    EXTRAS,
    DialectTarget,
    build_target,
    canonical,
)
from pointsman.engines.spec import Column, ConnectionSpec, QueryResult
from pointsman.errors import (
    DatabaseUnavailableError,
    MissingDriverError,
    PointsmanError,
    QueryFailedError,
    QueryTimeoutError,
)

logger = logging.getLogger(__name__)

# How long a thread past its timeout may keep its connection before the
# pool gives the connection up (it is closed when the thread lets go).
CLOSE_GRACE_SECONDS = 30.0

# Column types named by the driver (trino, databricks, bigquery, athena),
# used only when no value tells (every value NULL or no row at all).
_ARROW_BY_TYPE_NAME = {
    "boolean": "bool",
    "bool": "bool",
    "tinyint": "int8",
    "smallint": "int16",
    "int": "int32",
    "integer": "int32",
    "bigint": "int64",
    "int64": "int64",
    "real": "float32",
    "float": "float64",
    "double": "float64",
    "float64": "float64",
    "varchar": "string",
    "char": "string",
    "string": "string",
    "date": "date32",
    "varbinary": "binary",
    "binary": "binary",
    "bytes": "binary",
}

T = TypeVar("T")
Canceller = Callable[[], object]
# Makes the blocking SQLAlchemy engine of a spec (tests pass their own).
EngineFactory = Callable[[ConnectionSpec], SAEngine]


def column_type(type_code: Any, values: Iterable[Any]) -> str:
    """The Arrow type name of a result column: from its values, else its name."""
    inferred = infer_arrow_type(values)
    if inferred != "null" or not isinstance(type_code, str):
        return inferred
    base = type_code.split("(")[0].strip().lower()
    return _ARROW_BY_TYPE_NAME.get(base, "null")


def find_canceller(cursor: Any, connection: Any) -> Canceller | None:
    """The driver's way to stop a running statement from another thread."""
    for owner, name in ((cursor, "cancel"), (connection, "cancel")):
        method = getattr(owner, name, None)
        if callable(method):
            return cast(Canceller, method)
    interrupt = getattr(connection, "interrupt", None)
    return cast(Canceller, interrupt) if callable(interrupt) else None


def missing_driver(spec: ConnectionSpec) -> MissingDriverError:
    extra = EXTRAS.get(canonical(spec.dialect), canonical(spec.dialect))
    return MissingDriverError(
        f"Dialect {spec.dialect} needs the optional extra: "
        f"pip install 'pointsman[{extra}]'"
    )


# Phrases of the optional drivers, read before the shared table in
# ``failures`` (FreeTDS says "unavailable or does not exist" of a refused
# connection, which that table would take for a missing database).
_DRIVER_REASONS = (
    ("connection refused", "connection refused"),
    ("timed out", "no answer before the connect timeout"),
    ("login failed", "authentication failed"),
    ("incorrect username or password", "authentication failed"),
    ("invalid_grant", "authentication failed"),
    ("adaptive server is unavailable", "the server is unavailable"),
)


def connect_error(spec: ConnectionSpec, exc: BaseException) -> PointsmanError:
    """DatabaseUnavailableError with a short reason; never the driver's text."""
    message = " ".join(str(link) for link in _chain(exc)).lower()
    for phrase, reason in _DRIVER_REASONS:
        if phrase in message:
            return failures.unavailable(spec, reason)
    return failures.connect_failed(spec, exc)


def create_blocking_engine(
    spec: ConnectionSpec, target: DialectTarget | None = None
) -> SAEngine:
    """A sync SQLAlchemy engine for ``spec`` that opens a fresh DBAPI
    connection each time (``NullPool``): the pool is the engine's own."""
    target = target or build_target(spec)
    try:
        return create_engine(
            target.url,
            poolclass=NullPool,
            connect_args=dict(target.connect_args),
            hide_parameters=True,
            **target.engine_kwargs,
        )
    except (NoSuchModuleError, ImportError) as exc:
        raise missing_driver(spec) from exc


class _Attempt:
    """One statement's deadline, shared by the waiting side and its thread.

    ``expire`` runs once, from the timer or from the waiting side giving up:
    it marks the attempt and calls the driver's canceller, if one is armed.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._lock = threading.Lock()
        self._cancel: Canceller | None = None
        self._timer: threading.Timer | None = None

    def arm(self, cancel: Canceller | None) -> bool:
        """Start the timer; False if the attempt already expired."""
        with self._lock:
            if self.expired:
                return False
            self._cancel = cancel
            remaining = max(self.deadline - time.monotonic(), 0.0)
            self._timer = threading.Timer(remaining, self.expire)
            self._timer.daemon = True
            self._timer.start()
            return True

    def disarm(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._cancel = None

    def expire(self) -> None:
        with self._lock:
            if self.expired:
                return
            self.expired = True
            cancel, self._cancel = self._cancel, None
        if cancel is not None:
            try:
                cancel()
            except Exception as exc:  # the statement may have just ended
                logger.debug("cancel raised %s", type(exc).__name__)

    def give_up(self) -> None:
        """Expire from the event loop: a canceller may block, so on a thread."""
        threading.Thread(target=self.expire, daemon=True).start()


class SQLAlchemyEngine(Engine):
    """DBAPI connections made by a SQLAlchemy dialect, in the bounded pool."""

    def __init__(
        self,
        spec: ConnectionSpec,
        *,
        engine_factory: EngineFactory | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec, **kwargs)
        self._engine_factory = engine_factory or create_blocking_engine
        self._engine: SAEngine | None = None
        self._engine_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=self.limits.max_size,
            thread_name_prefix=f"pointsman-{canonical(spec.dialect)}",
        )
        self._executor_closed = False

    @classmethod
    async def server_version(cls, spec: ConnectionSpec) -> str:
        return await asyncio.to_thread(_probe_version, spec)

    # -- connections (opened and closed on the executor) -------------------------

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function, *args)
        except RuntimeError:
            if not self._executor_closed:
                raise
            # Closed: a connection coming back late still gets closed.
            return await asyncio.to_thread(function, *args)

    async def _open_connection(self) -> PoolProxiedConnection:
        return await self._call(self._open)

    async def _close_connection(self, conn: PoolProxiedConnection) -> None:
        await self._call(_close_quietly, conn)

    def _alive(self, conn: PoolProxiedConnection) -> bool:
        return conn.is_valid

    def _blocking_engine(self) -> SAEngine:
        with self._engine_lock:
            if self._engine is None:
                self._engine = self._engine_factory(self.spec)
            return self._engine

    def _open(self) -> PoolProxiedConnection:
        engine = self._blocking_engine()
        try:
            return engine.raw_connection()
        except (NoSuchModuleError, ImportError) as exc:
            raise missing_driver(self.spec) from exc
        except Exception as exc:
            raise connect_error(self.spec, exc) from exc

    # -- running -------------------------------------------------------------------

    # TODO: implement _open_batches (fetchmany in the worker) so that large
    # results stream here too; until then they are built in memory.
    async def _run_admitted(
        self, sql: str, limit: int | None, acquire_deadline: float
    ) -> QueryResult:
        conn = await self.acquire(acquire_deadline)
        self.counters["queries"] += 1
        timeout = self.spec.query_timeout_seconds
        attempt = _Attempt(time.monotonic() + timeout)
        future = self._executor.submit(self._execute, conn, attempt, sql, limit)
        work = asyncio.wrap_future(future)
        work.add_done_callback(_retrieve)
        try:
            done, _ = await asyncio.wait({work}, timeout=timeout)
        except asyncio.CancelledError:
            self._abandon(conn, attempt, work)
            raise
        if not done:
            self._abandon(conn, attempt, work)
            self.counters["queryTimeouts"] += 1
            logger.warning("a query ran past its timeout on %s", self.spec)
            raise failures.timed_out(self.spec)
        return self._finish(conn, attempt, work)

    def _finish(
        self,
        conn: PoolProxiedConnection,
        attempt: _Attempt,
        work: asyncio.Future[QueryResult],
    ) -> QueryResult:
        """Give the connection back (or discard it) and answer the result."""
        try:
            result = work.result()
        except QueryFailedError:
            self.counters["queryFailures"] += 1
            self.pool.release(conn, reusable=not attempt.expired)
            raise
        except QueryTimeoutError:
            self.counters["queryTimeouts"] += 1
            self.pool.release(conn, reusable=False)
            raise
        except DatabaseUnavailableError:
            self.pool.release(conn, reusable=False)
            self.connection_lost()
            raise
        except BaseException:
            self.pool.release(conn, reusable=False)
            raise
        self.pool.release(conn, reusable=not attempt.expired)
        return result

    def _abandon(
        self,
        conn: PoolProxiedConnection,
        attempt: _Attempt,
        work: asyncio.Future[QueryResult],
    ) -> None:
        """Stop waiting: cancel the statement if the driver can, and discard
        the connection once its thread lets go of it."""
        attempt.give_up()
        self.spawn(self._retire(conn, work))

    async def _retire(
        self, conn: PoolProxiedConnection, work: asyncio.Future[QueryResult]
    ) -> None:
        done, _ = await asyncio.wait({work}, timeout=CLOSE_GRACE_SECONDS)
        if not done:
            logger.warning("a driver ignored its timeout on %s", self.spec)
            self.pool.forget(conn)
            return
        self.pool.release(conn, reusable=False)

    # -- on the executor's threads -------------------------------------------------

    def _execute(
        self,
        conn: PoolProxiedConnection,
        attempt: _Attempt,
        sql: str,
        limit: int | None,
    ) -> QueryResult:
        if attempt.expired:
            raise failures.timed_out(self.spec)
        cursor: Any = None
        try:
            cursor = conn.cursor()
            if not attempt.arm(find_canceller(cursor, conn.dbapi_connection)):
                raise failures.timed_out(self.spec)
            try:
                cursor.execute(sql)
                return _fetch(cursor, limit)
            finally:
                attempt.disarm()
        except PointsmanError:
            raise
        except Exception as exc:
            raise self._translate(conn, cursor, attempt, exc) from exc
        finally:
            if cursor is not None:
                _close_quietly(cursor)

    def _translate(
        self,
        conn: PoolProxiedConnection,
        cursor: Any,
        attempt: _Attempt,
        exc: Exception,
    ) -> PointsmanError:
        """The engine error for a driver failure while running a statement."""
        if attempt.expired:
            return failures.timed_out(self.spec)
        dialect = self._blocking_engine().dialect
        if isinstance(exc, dialect.loaded_dbapi.Error):
            lost = dialect.is_disconnect(
                cast(Any, exc), conn.dbapi_connection, cursor
            ) or _network_failure(exc)
            if not lost:
                return failures.query_failed(self.spec, str(exc))
        logger.warning("lost a connection of %s (%s)", self.spec, type(exc).__name__)
        return connect_error(self.spec, exc)

    # -- lifecycle -------------------------------------------------------------------

    async def _close_shared(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await self._call(engine.dispose)
        self._executor_closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _network_failure(exc: BaseException) -> bool:
    """Whether a socket error lies under ``exc``: drivers that connect
    lazily over HTTP (trino, databricks, athena) report an unreachable
    server only when the first statement is sent."""
    return any(isinstance(link, OSError) for link in _chain(exc))


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark an outcome nobody may wait for any more as seen (no log noise)."""
    if not future.cancelled():
        future.exception()


def _fetch(cursor: Any, limit: int | None) -> QueryResult:
    description: Sequence[Sequence[Any]] | None = cursor.description
    if not description:
        return QueryResult(columns=[], rows=[])
    fetched = cursor.fetchall() if limit is None else cursor.fetchmany(limit + 1)
    rows, truncated = split_rows([tuple(row) for row in fetched], limit)
    columns = [
        Column(str(d[0]), column_type(d[1], (row[i] for row in rows)))
        for i, d in enumerate(description)
    ]
    return QueryResult(columns=columns, rows=rows, truncated=truncated)


def _close_quietly(closable: Any) -> None:
    try:
        closable.close()
    except Exception as exc:
        logger.debug("close raised %s", type(exc).__name__)


def _probe_version(spec: ConnectionSpec) -> str:
    """Connect afresh (no pool), answer the server's version or the dialect."""
    target = build_target(spec)
    engine = create_blocking_engine(spec, target)
    try:
        try:
            conn = engine.raw_connection()
        except (NoSuchModuleError, ImportError) as exc:
            raise missing_driver(spec) from exc
        except Exception as exc:
            raise connect_error(spec, exc) from exc
        try:
            cursor = conn.cursor()
            cursor.execute(target.version_sql or "select 1")
            row = cursor.fetchone()
        except Exception as exc:
            if _network_failure(exc):
                raise connect_error(spec, exc) from exc
            raise failures.query_failed(spec, str(exc)) from exc
        finally:
            _close_quietly(conn)
    finally:
        engine.dispose()
    if target.version_sql is None or not row:
        return target.label
    return str(row[0]).strip().splitlines()[0]
