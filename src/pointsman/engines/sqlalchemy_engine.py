"""Any dialect with a SQLAlchemy driver: the optional-extra dialects.

The drivers block, so a synchronous SQLAlchemy engine with a bounded
``QueuePool`` (``options.poolSize``) runs each statement on a thread of the
engine's own executor, as many threads as the pool has connections. SQL goes
to a raw DBAPI cursor exactly as written: no SQLAlchemy parameter parsing.

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
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, cast

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.exc import NoSuchModuleError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import NullPool, PoolProxiedConnection, QueuePool

from pointsman.engines import failures
from pointsman.engines.base import Engine, infer_arrow_type, pool_size, split_rows
from pointsman.engines.dialect_urls import DialectTarget, build_target, canonical
from pointsman.engines.spec import Column, ConnectionSpec, QueryResult
from pointsman.errors import (
    MissingDriverError,
    PointsmanError,
    QueryFailedError,
    QueryTimeoutError,
)

logger = logging.getLogger(__name__)

CLOSE_GRACE_SECONDS = 30.0
POOL_RECYCLE_SECONDS = 3600

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

Canceller = Callable[[], object]
# A factory for the blocking SQLAlchemy engine (tests pass their own).
EngineFactory = Callable[[ConnectionSpec, int | None], SAEngine]


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
    from pointsman.engines.dialect_urls import EXTRAS

    extra = EXTRAS.get(canonical(spec.dialect), canonical(spec.dialect))
    return MissingDriverError(
        f"Dialect {spec.dialect} needs the optional extra: "
        f"pip install 'pointsman[{extra}]'"
    )


def create_blocking_engine(spec: ConnectionSpec, size: int | None) -> SAEngine:
    """A sync SQLAlchemy engine for ``spec``: a QueuePool of ``size``
    connections, or no pool at all (``None``: one fresh connection)."""
    target = build_target(spec)
    pooling: dict[str, Any] = {"poolclass": NullPool}
    if size is not None:
        pooling = {
            "poolclass": QueuePool,
            "pool_size": size,
            "max_overflow": 0,
            "pool_timeout": spec.query_timeout_seconds,
            "pool_recycle": POOL_RECYCLE_SECONDS,
        }
    try:
        return create_engine(
            target.url,
            connect_args=dict(target.connect_args),
            hide_parameters=True,
            **pooling,
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
    """A bounded pool of blocking DBAPI connections made by a SQLAlchemy dialect."""

    def __init__(
        self,
        spec: ConnectionSpec,
        *,
        engine_factory: EngineFactory = create_blocking_engine,
    ) -> None:
        super().__init__(spec)
        self._max_size = pool_size(spec)
        self._engine_factory = engine_factory
        self._engine: SAEngine | None = None
        self._engine_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=self._max_size,
            thread_name_prefix=f"pointsman-{canonical(spec.dialect)}",
        )
        self._in_flight: set[Future[QueryResult]] = set()
        self._closing = False
        self._discarded = 0

    @classmethod
    async def server_version(cls, spec: ConnectionSpec) -> str:
        return await asyncio.to_thread(_probe_version, spec)

    # -- running ---------------------------------------------------------------

    async def run(self, sql: str, *, limit: int | None = None) -> QueryResult:
        self.touch()
        self.counters["queries"] += 1
        timeout = self.spec.query_timeout_seconds
        attempt = _Attempt(time.monotonic() + timeout)
        future = self._executor.submit(self._execute, attempt, sql, limit)
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
        work = asyncio.wrap_future(future)
        try:
            done, _ = await asyncio.wait({work}, timeout=timeout)
        except asyncio.CancelledError:
            attempt.give_up()
            future.cancel()
            raise
        if not done:
            attempt.give_up()
            future.cancel()
            self.counters["queryTimeouts"] += 1
            logger.warning("a query ran past its timeout on %s", self.spec)
            raise failures.timed_out(self.spec)
        return self._result_of(work)

    def _result_of(self, work: asyncio.Future[QueryResult]) -> QueryResult:
        try:
            return work.result()
        except QueryTimeoutError:
            self.counters["queryTimeouts"] += 1
            raise
        except QueryFailedError:
            self.counters["queryFailures"] += 1
            raise

    # -- on the executor's threads ---------------------------------------------

    def _blocking_engine(self) -> SAEngine:
        with self._engine_lock:
            if self._engine is None:
                self._engine = self._engine_factory(self.spec, self._max_size)
                logger.info("opened pool for %s", self.spec)
            return self._engine

    def _execute(self, attempt: _Attempt, sql: str, limit: int | None) -> QueryResult:
        if attempt.expired:
            raise failures.timed_out(self.spec)
        engine = self._blocking_engine()
        conn = self._checkout(engine)
        reusable = False
        try:
            result = self._run_on(engine, conn, attempt, sql, limit)
            reusable = not attempt.expired
            return result
        except QueryFailedError:
            reusable = not attempt.expired
            raise
        finally:
            self._checkin(conn, reusable=reusable)

    def _checkout(self, engine: SAEngine) -> PoolProxiedConnection:
        try:
            return engine.raw_connection()
        except PoolTimeoutError as exc:
            raise failures.timed_out(self.spec) from exc
        except (NoSuchModuleError, ImportError) as exc:
            raise missing_driver(self.spec) from exc
        except PointsmanError:
            raise
        except Exception as exc:
            raise failures.connect_failed(self.spec, exc) from exc

    def _run_on(
        self,
        engine: SAEngine,
        conn: PoolProxiedConnection,
        attempt: _Attempt,
        sql: str,
        limit: int | None,
    ) -> QueryResult:
        cursor = conn.cursor()
        try:
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
            raise self._translate(engine, conn, cursor, attempt, exc) from exc
        finally:
            _close_quietly(cursor)

    def _translate(
        self,
        engine: SAEngine,
        conn: PoolProxiedConnection,
        cursor: Any,
        attempt: _Attempt,
        exc: Exception,
    ) -> PointsmanError:
        """The engine error for a driver failure while running a statement."""
        if attempt.expired:
            return failures.timed_out(self.spec)
        dialect = engine.dialect
        dbapi = dialect.loaded_dbapi
        if isinstance(exc, dbapi.Error) and not dialect.is_disconnect(
            exc, conn.dbapi_connection, cursor
        ):
            return failures.query_failed(self.spec, str(exc))
        logger.warning(
            "lost a connection of %s (%s)", self.spec, type(exc).__name__
        )
        return failures.connect_failed(self.spec, exc)

    def _checkin(self, conn: PoolProxiedConnection, *, reusable: bool) -> None:
        if reusable and not self._closing:
            _close_quietly(conn)
            return
        self._discarded += 1
        try:
            conn.invalidate()
        except Exception as exc:
            logger.debug("discarding a connection raised %s", type(exc).__name__)

    # -- lifecycle ---------------------------------------------------------------

    async def aclose(self) -> None:
        self._closing = True
        running = [asyncio.wrap_future(future) for future in list(self._in_flight)]
        if running:
            _, pending = await asyncio.wait(running, timeout=CLOSE_GRACE_SECONDS)
            if pending:
                logger.warning("closing %s with queries still running", self.spec)
        engine, self._engine = self._engine, None
        if engine is not None:
            await asyncio.to_thread(engine.dispose)
        self._executor.shutdown(wait=False, cancel_futures=True)
        await self.wait_background()
        logger.info("closed pool for %s", self.spec)

    def pool_stats(self) -> dict[str, int]:
        engine = self._engine
        pool = cast(QueuePool, engine.pool) if engine is not None else None
        idle = pool.checkedin() if pool is not None else 0
        in_use = max(pool.checkedout(), 0) if pool is not None else 0
        return {
            "maxSize": self._max_size,
            "size": idle + in_use,
            "inUse": in_use,
            "idle": idle,
            "connectionsDiscarded": self._discarded,
        }


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
    target: DialectTarget = build_target(spec)
    engine = create_blocking_engine(spec, None)
    try:
        try:
            conn = engine.raw_connection()
        except (NoSuchModuleError, ImportError) as exc:
            raise missing_driver(spec) from exc
        except Exception as exc:
            raise failures.connect_failed(spec, exc) from exc
        try:
            cursor = conn.cursor()
            cursor.execute(target.version_sql or "select 1")
            row = cursor.fetchone()
        except Exception as exc:
            raise failures.query_failed(spec, str(exc)) from exc
        finally:
            _close_quietly(conn)
    finally:
        engine.dispose()
    if target.version_sql is None or not row:
        return target.label
    return str(row[0]).strip().splitlines()[0]
