"""PostgreSQL and Redshift through psycopg 3, on pointsman's bounded pool.

Timeouts are enforced twice: the server's ``statement_timeout`` (set on every
pooled session) cancels the statement where it runs, and a client-side
deadline a little later cancels the awaiting task, which makes psycopg send a
cancel request to the server before the connection goes back to the pool.

A pooled session serves many users, so nothing one of them sets may reach the
next: every connection is reset between two users (see :func:`_start_reset`
and :func:`_settled`), and every statement goes through the extended query
protocol, which runs exactly one statement (the simple protocol would run
``select 1; select 2``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import AsyncGenerator, Callable, Generator, Hashable, Iterator
from contextlib import aclosing
from typing import Any, cast

import psycopg
import pyarrow as pa
from psycopg import AsyncConnection, generators
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import AdaptersMap, Loader
from psycopg.pq import ConnStatus, ExecStatus, Format, TransactionStatus
from psycopg.pq.abc import PGresult
from psycopg.sql import SQL, Composed, Identifier, Literal
from psycopg.types.string import TextLoader

from pointsman.engines import failures, postgres_arrow, postgres_limit
from pointsman.engines.base import Engine
from pointsman.engines.memo import Memo
from pointsman.engines.postgres_arrow import ArrowSession
from pointsman.engines.spec import Column, ConnectionSpec, QueryResult
from pointsman.engines.streams import ArrowPart, Batches, RowStream
from pointsman.errors import QueryFailedError

logger = logging.getLogger(__name__)

# The client deadline trails the server's statement_timeout by this much, so
# that the server normally cancels first and the client is only a backstop.
CLIENT_GRACE_SECONDS = 0.5
STREAM_CHUNK_ROWS = 1000
# A reset that takes longer than this means a sick link: it is closed instead.
MAX_RESET_SECONDS = 5.0
DEFAULT_PORTS = {"postgres": 5432, "redshift": 5439}
# The pool kind of ADBC sessions (psycopg sessions are the default kind).
ARROW_SESSION = "adbc"
# ADBC costs about a millisecond more per statement than psycopg (a describe
# and a prepare before the rows, hops to its thread) and saves a few
# microseconds per value: a statement whose result had no more rows than
# this runs on psycopg the next time, until it gives more.
SMALL_RESULT_ROWS = 256
_ARROW_AVAILABLE = postgres_arrow.available()

_SYNTAX_ERROR = "42601"
COPY_REFUSED = (
    "COPY does not run through query/run: run its query instead"
    " (resultType csv, or Accept: text/csv, gives the rows as CSV)"
)

# What DISCARD ALL does, spelled out (as its documentation lists it) so that
# it can share one round trip with re-applying the pool's own settings:
# DISCARD ALL itself refuses to run in the implicit transaction of a
# multi-statement query. Session authorization and role, every SET (back to
# the connect-time values: application_name comes with the startup packet),
# prepared statements, open cursors, LISTEN, advisory locks, cached plans,
# temporary tables and sequence state.
_DISCARD_ALL = (
    "close all",
    "set session authorization default",
    "reset all",
    "deallocate all",
    "unlisten *",
    "select pg_advisory_unlock_all()",
    "discard plans",
    "discard temp",
    "discard sequences",
)
# Redshift has no DISCARD, LISTEN, cursors WITH HOLD or advisory locks.
_REDSHIFT_DISCARD = ("reset all",)


class _BeyondPythonAsText(Loader):
    """A date, time or interval as psycopg loads it, or as its text where
    Python's types cannot hold it (``infinity``, ``-infinity``, years past
    9999 or before 1, ``24:00``, intervals of millions of years), instead of
    failing the whole query. Such a column is then text in Arrow, as a
    column of mixed kinds is."""

    def __init__(self, oid: int, context: AdaptContext | None = None):
        super().__init__(oid, context)
        loader = psycopg.adapters.get_loader(oid, Format.TEXT)
        assert loader is not None, oid
        self._load = loader(oid, context).load

    def load(self, data: Buffer) -> Any:
        try:
            return self._load(data)
        except (psycopg.DataError, NotImplementedError):
            # NotImplementedError: a style psycopg cannot read, set by the
            # statement itself (the session's own is reset to one it can).
            return bytes(data).decode()


class _IntervalOrText(_BeyondPythonAsText):
    """An interval, or its text when it is beyond ``timedelta`` (about 2.7
    million years): psycopg's own loader wraps such years around silently."""

    def load(self, data: Buffer) -> Any:
        text = bytes(data)
        if b"y" in text or b"mon" in text:
            days = sum(
                int(number) * _DAYS_PER[unit[:3]]
                for number, unit in _INTERVAL_PARTS.findall(text)
            )
            if abs(days) > _MAX_TIMEDELTA_DAYS:
                return text.decode()
        return super().load(data)


_INTERVAL_PARTS = re.compile(rb"(-?\d+) (years?|mons?|days?)")
_DAYS_PER = {b"yea": 365, b"mon": 30, b"day": 1}
_MAX_TIMEDELTA_DAYS = 999_999_999


# JSON stays text: a result column is declared "string", not a Python dict.
_ADAPTERS = AdaptersMap(psycopg.adapters)
_ADAPTERS.register_loader("json", TextLoader)
_ADAPTERS.register_loader("jsonb", TextLoader)
for _name in ("date", "time", "timetz", "timestamp", "timestamptz"):
    _ADAPTERS.register_loader(_name, _BeyondPythonAsText)
_ADAPTERS.register_loader("interval", _IntervalOrText)
# Ranges in PostgreSQL's own spelling, ``[1,5)``, not Python's.
for _name in ("int4range", "int8range", "numrange", "daterange", "tsrange"):
    _ADAPTERS.register_loader(_name, TextLoader)
    _ADAPTERS.register_loader(_name.replace("range", "multirange"), TextLoader)
_ADAPTERS.register_loader("tstzrange", TextLoader)
_ADAPTERS.register_loader("tstzmultirange", TextLoader)

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

    _reset_bytes: bytes | None = None

    @classmethod
    async def server_version(cls, spec: ConnectionSpec) -> str:
        conn = await _connect(spec)
        async with conn:
            try:
                cursor = await conn.execute("select version()")
                row = await cursor.fetchone()
            except psycopg.Error as exc:
                raise _query_error(spec, exc) from exc
        return str(row[0]) if row else ""

    # -- running with a limit --------------------------------------------------------

    async def stream(
        self,
        sql: str,
        *,
        limit: int | None,
        threshold: int | None,
        arrow: bool = False,
    ) -> QueryResult | RowStream:
        """As :meth:`Engine.stream`; a query with a ``limit`` is wrapped in
        one where the server accepts that (see :mod:`postgres_limit`)."""
        if limit is None or not postgres_limit.wanted(
            self.spec, limit, postgres_arrow.is_query(sql)
        ):
            return await super().stream(
                sql, limit=limit, threshold=threshold, arrow=arrow
            )
        wrapped = postgres_limit.wrap(sql, limit)
        return await super().stream(
            wrapped, limit=limit, threshold=threshold, arrow=arrow
        )

    @functools.cached_property
    def _limit_decisions(self) -> Memo[bool]:
        """Whether each query's wrapped statement may run, as the server said."""
        return Memo()

    # -- connections -------------------------------------------------------------

    async def _open_connection(self) -> AsyncConnection[Any]:
        return await _connect(self.spec, configure=session_settings(self.spec))

    async def _close_connection(
        self, conn: AsyncConnection[Any] | ArrowSession
    ) -> None:
        if isinstance(conn, ArrowSession):
            await conn.aclose()
            return
        await conn.close()

    def _alive(self, conn: AsyncConnection[Any] | ArrowSession) -> bool:
        if isinstance(conn, ArrowSession):
            return not conn.stuck
        return not conn.closed and not conn.broken

    async def acquire(
        self, deadline: float, kind: Hashable = None, *, any_kind: bool = False
    ) -> Any:
        """A pooled session whose reset (sent when its last user gave it
        back) has finished; one whose reset failed is closed and replaced."""
        while True:
            conn = await super().acquire(deadline, kind, any_kind=any_kind)
            if isinstance(conn, ArrowSession):
                return conn  # reset when it was given back
            try:
                settled = await _settled(conn)
            except BaseException:  # cancelled (its client left) mid-reset
                self.pool.release(conn, reusable=False)
                raise
            if settled:
                return conn
            self.pool.release(conn, reusable=False)

    async def _give_back(self, conn: AsyncConnection[Any]) -> None:
        """Send the reset for the next user, or close the session if it cannot
        be reset. The reset is not waited for here: the next user takes its
        answer, which by then has usually arrived, so no response waits for
        it (it still costs one more write to the server per query)."""
        reusable = False
        try:
            if self._reset_bytes is None:
                # Rendered once: composing it costs more than sending it.
                self._reset_bytes = self._reset_sql.as_bytes(conn)
            reusable = await _start_reset(conn, self._reset_bytes)
        except TimeoutError:
            logger.warning("resetting a session timed out on %s", self.spec)
        finally:
            self.pool.release(conn, reusable=reusable)

    @functools.cached_property
    def _reset_sql(self) -> Composed:
        discard = _REDSHIFT_DISCARD if self.spec.dialect == "redshift" else _DISCARD_ALL
        statements = [SQL(statement) for statement in discard]
        return SQL("; ").join([*statements, session_settings(self.spec)])

    # -- Arrow sessions (ADBC) --------------------------------------------------------

    async def _open_kind(self, kind: Hashable) -> Any:
        if kind == ARROW_SESSION:
            kwargs = connect_kwargs(self.spec)
            settings = session_settings(self.spec).as_string()
            return await ArrowSession.open(self.spec, kwargs, settings)
        return await self._open_connection()

    @functools.cached_property
    def _reset_text(self) -> str:
        """The reset as one string, for an ADBC session (which may be in a
        transaction its user opened: rolled back first)."""
        return "rollback; " + self._reset_sql.as_string()

    def _open_arrow_batches(self, sql: str, acquire_deadline: float) -> Batches | None:
        # Statements found not to be read by ADBC, or whose last result was
        # small, go to psycopg without being described again.
        if (
            self.spec.dialect != "postgres"
            or not _ARROW_AVAILABLE
            or sql in self._not_arrow
            or not postgres_arrow.is_query(sql)
        ):
            return None
        if sql in self._small_results:
            return self._small_batches(sql, acquire_deadline)
        return self._arrow_batches(sql, acquire_deadline)

    async def _small_batches(self, sql: str, acquire_deadline: float) -> Batches:
        """A statement whose last result was small, on psycopg, or on an ADBC
        session where the pool has one idle and no room (swapping it would
        cost a connect); forgotten as small once it gives more rows."""
        conn = await self.acquire(acquire_deadline, any_kind=True)
        if isinstance(conn, ArrowSession):
            source = self._arrow_batches(sql, acquire_deadline, conn)
            async with aclosing(source) as parts:
                async for part in parts:
                    yield part
            return
        rows = 0
        async with aclosing(self._batches(sql, acquire_deadline, conn)) as batches:
            async for columns, batch in batches:
                assert not isinstance(batch, ArrowPart)
                rows += len(batch)
                if rows > SMALL_RESULT_ROWS:
                    self._small_results.forget(sql)
                yield columns, batch

    async def _arrow_batches(
        self, sql: str, acquire_deadline: float, conn: ArrowSession | None = None
    ) -> Batches:
        """Record batches read by ADBC, from an Arrow session of the pool;
        the psycopg path's rows instead where the statement is not one read
        here (see :mod:`pointsman.engines.postgres_arrow`)."""
        if conn is None:
            conn = await self.acquire(acquire_deadline, ARROW_SESSION)
        assert isinstance(conn, ArrowSession)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.query_timeout_seconds + CLIENT_GRACE_SECONDS
        state = _ArrowRun(conn, self._reset_text, self._limit_decisions)
        try:
            with _counted_in_the_query(lambda: state.ran):
                columns = await self._arrow_call(state, deadline, state.begin, sql)
            if columns is None:
                # Not read here: the psycopg path runs it (nothing ran yet).
                if state.reusable:
                    self._not_arrow.set(sql, True)
                self._release_arrow(state)
                async with aclosing(self._batches(sql, acquire_deadline)) as rows:
                    async for batch in rows:
                        yield batch
                return
            self.counters["queries"] += 1
            normalize = functools.partial(_normalize, columns, conn.zone)
            read = 0
            first = True
            while True:
                with _counted_in_the_query(lambda: state.ran):
                    table = await self._arrow_call(state, deadline, state.next)
                if table is None and not first:
                    break
                if table is None:
                    assert state.schema is not None
                    table = state.schema.empty_table()
                first = False
                read += table.num_rows
                yield columns, ArrowPart(table, normalize)
            if read <= SMALL_RESULT_ROWS:
                self._small_results.set(sql, True)
            else:
                self._small_results.forget(sql)
        finally:
            if not state.released:
                await self._give_back_arrow(state)

    async def _arrow_call(
        self, state: _ArrowRun, deadline: float, function: Any, *args: Any
    ) -> Any:
        """``function`` in the session's thread, its failures as the psycopg
        path reports them."""
        timeout = asyncio.timeout_at(deadline)
        try:
            async with timeout:
                return await state.conn.call(function, *args)
        except TimeoutError as exc:
            if not timeout.expired():
                raise
            raise self._timed_out(by_server=False) from exc
        except Exception as exc:
            read = postgres_arrow.read_failure(exc)
            if read is not None:
                raise self._read_failed(state, read, exc) from exc
            if not postgres_arrow.is_driver_error(exc):
                state.reusable = False
                raise
            if postgres_arrow.is_timeout(exc):
                raise self._timed_out(by_server=True) from exc
            if postgres_arrow.connection_lost(exc):
                state.reusable = False
                self.connection_lost()
                raise failures.connection_lost(self.spec, exc) from exc
            self.counters["queryFailures"] += 1
            raise failures.query_failed(self.spec, postgres_arrow.message(exc)) from exc

    def _read_failed(
        self, state: _ArrowRun, read: tuple[str, str], exc: BaseException
    ) -> Exception:
        """The error for a failure met while reading rows (see
        :func:`postgres_arrow.read_failure`)."""
        kind, message = read
        if kind == "lost":
            state.reusable = False
            self.connection_lost()
            return failures.connection_lost(self.spec, exc)
        if "statement timeout" in message:
            return self._timed_out(by_server=True)
        self.counters["queryFailures"] += 1
        return failures.query_failed(self.spec, message)

    @functools.cached_property
    def _not_arrow(self) -> Memo[bool]:
        """Statements lately found not to be read by ADBC."""
        return Memo()

    @functools.cached_property
    def _small_results(self) -> Memo[bool]:
        """Statements whose last result was small."""
        return Memo()

    def _release_arrow(self, state: _ArrowRun) -> None:
        state.released = True
        self.pool.release(state.conn, reusable=state.reusable)

    async def _give_back_arrow(self, state: _ArrowRun) -> None:
        """Stop what is left of the statement, reset the session for the next
        user (in its thread), and give it back; closed if either fails."""
        try:
            if state.conn.stuck:
                state.reusable = False
            elif not state.settled and state.reusable:
                async with asyncio.timeout(MAX_RESET_SECONDS):
                    await state.conn.call(state.settle)
        except (TimeoutError, Exception):
            logger.debug("resetting an ADBC session failed", exc_info=True)
            state.reusable = False
        finally:
            self._release_arrow(state)

    # -- running -------------------------------------------------------------------

    def _open_batches(self, sql: str, acquire_deadline: float) -> Batches:
        return self._batches(sql, acquire_deadline)

    async def _batches(
        self,
        sql: str,
        acquire_deadline: float,
        conn: AsyncConnection[Any] | None = None,
    ) -> Batches:
        """Rows in batches of ``STREAM_CHUNK_ROWS`` from one pooled session
        (``conn`` if already taken), given back (reset) when the generator
        closes; closing early cancels the rest of the statement on the
        server."""
        if conn is None:
            conn = await self.acquire(acquire_deadline)
        deadline = asyncio.get_running_loop().time() + (
            self.spec.query_timeout_seconds + CLIENT_GRACE_SECONDS
        )
        self.counters["queries"] += 1
        try:
            statement = postgres_limit.decided(sql, self._limit_decisions)
            if statement is None:  # the server must be asked, once per query
                statement = await self._limited(conn, sql, deadline)
            sql = statement
            with _counted_in_the_query(lambda: sql):
                async with conn.cursor() as cursor:
                    size = (
                        STREAM_CHUNK_ROWS
                        if psycopg.capabilities.has_stream_chunked()
                        else 1
                    )
                    rows = cast(
                        AsyncGenerator[Any, None], cursor.stream(sql, size=size)
                    )
                    async with aclosing(rows):
                        first, done = True, False
                        while not done:
                            batch, done = await self._next_batch(rows, deadline)
                            if batch or first:
                                description = cursor.description
                                if description is None and done:
                                    description = await _described(
                                        cursor, sql, deadline
                                    )
                                yield _columns(description), batch
                            first = False
        finally:
            await self._give_back(conn)

    async def _limited(
        self, conn: AsyncConnection[Any], sql: str, deadline: float
    ) -> str:
        """The statement to run for ``sql`` (see :func:`postgres_limit.choose`),
        failures as a query's."""
        try:
            async with asyncio.timeout_at(deadline):
                return await postgres_limit.choose(conn, sql, self._limit_decisions)
        except TimeoutError as exc:
            raise self._timed_out(by_server=False) from exc
        except psycopg.Error as exc:
            raise self._failed(exc) from exc

    async def _next_batch(
        self, rows: AsyncGenerator[Any, None], deadline: float
    ) -> tuple[list[tuple[Any, ...]], bool]:
        """Up to ``STREAM_CHUNK_ROWS`` rows, and whether they were the last
        (a statement without a result set, such as DDL, has none)."""
        batch: list[tuple[Any, ...]] = []
        timeout = asyncio.timeout_at(deadline)
        try:
            async with timeout:
                async for row in rows:
                    batch.append(row)
                    if len(batch) >= STREAM_CHUNK_ROWS:
                        return batch, False
        except TimeoutError as exc:
            if not timeout.expired():
                raise
            raise self._timed_out(by_server=False) from exc
        except psycopg.errors.QueryCanceled as exc:
            if "statement timeout" not in str(exc):
                raise _query_error(self.spec, exc) from exc
            raise self._timed_out(by_server=True) from exc
        except (psycopg.ProgrammingError, psycopg.InternalError) as exc:
            if not _without_result_set(exc):
                raise self._failed(exc) from exc
        except psycopg.Error as exc:
            raise self._failed(exc) from exc
        return batch, True

    def _timed_out(self, *, by_server: bool) -> Exception:
        """A query past its timeout: cancelled by the server's
        ``statement_timeout`` or by pointsman (counted and logged either way)."""
        self.counters["queryTimeouts"] += 1
        if by_server:
            logger.warning("statement_timeout cancelled a query on %s", self.spec)
        else:
            logger.warning("cancelled a query past its timeout on %s", self.spec)
        return failures.timed_out(self.spec)

    def _failed(self, exc: psycopg.Error) -> Exception:
        if _connection_lost(exc):
            self.connection_lost()
        else:
            self.counters["queryFailures"] += 1
        return _query_error(self.spec, exc)


def session_settings(spec: ConnectionSpec) -> SQL | Composed:
    """``set statement_timeout``, the date and interval output styles psycopg
    reads (a database or role may set others: ``DateStyle`` keeps its day
    and month order), and (with a default schema) ``search_path``."""
    timeout_ms = Literal(spec.query_timeout_seconds * 1000)
    statements = [
        SQL("set statement_timeout = {}").format(timeout_ms),
        SQL("set datestyle to 'ISO'"),
        SQL("set intervalstyle to 'postgres'"),
    ]
    if spec.default_schema:
        schema = Identifier(spec.default_schema)
        statements.append(SQL("set search_path to {}").format(schema))
    return SQL("; ").join(statements)


async def _connect(
    spec: ConnectionSpec, configure: SQL | Composed | None = None
) -> AsyncConnection[Any]:
    """A fresh connection, configured, within the connect timeout.

    libpq's own ``connect_timeout`` never waits less than 2 seconds and does
    not cover the settings sent after connecting: the deadline here bounds
    the whole of it, so a server that accepts and never answers costs the
    connect timeout and no more.
    """
    kwargs = connect_kwargs(spec)
    try:
        async with asyncio.timeout(spec.connect_timeout_seconds):
            conn = await AsyncConnection.connect(
                autocommit=True,
                context=_ADAPTERS,
                # Every session is reset after each query, which drops
                # prepared statements: preparing them would be wasted.
                prepare_threshold=None,
                **kwargs,
            )
            try:
                if configure is not None:
                    await conn.execute(configure)
            except BaseException:
                await conn.close()
                raise
    except TimeoutError as exc:
        reason = "no answer before the connect timeout"
        raise failures.unavailable(spec, reason) from exc
    except psycopg.Error as exc:
        raise failures.connect_failed(spec, exc) from exc
    return conn


async def _start_reset(conn: AsyncConnection[Any], reset_sql: bytes) -> bool:
    """Send what wipes the last user's session state; False if the session
    cannot be reused.

    An open transaction (the user ran ``begin``) is rolled back first. Then
    one simple-protocol message discards all session state and re-applies
    the pool's own settings (``statement_timeout``, ``search_path``); its
    answer is read by :func:`_settled` before anyone runs on the session.
    """
    if conn.closed or conn.broken:
        return False
    pgconn = conn.pgconn
    status = pgconn.transaction_status
    try:
        if status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
            async with asyncio.timeout(MAX_RESET_SECONDS):
                await conn.rollback()
        elif status != TransactionStatus.IDLE:
            return False
        pgconn.send_query(reset_sql)
        # Nearly always the socket takes all of it at once: then there is
        # nothing to wait for (no timer, no trip through the event loop).
        if pgconn.flush() != 0:
            async with asyncio.timeout(MAX_RESET_SECONDS):
                await conn.wait(generators.send(pgconn))
    except psycopg.Error:
        logger.debug("resetting a session failed", exc_info=True)
        return False
    return True


async def _settled(conn: AsyncConnection[Any]) -> bool:
    """Read the answer to a reset in flight (a session that is ACTIVE while
    idle in the pool has one); False unless every part of it succeeded and
    the session is idle, outside any transaction."""
    if conn.closed or conn.broken:
        return False
    pgconn = conn.pgconn
    if pgconn.transaction_status == TransactionStatus.ACTIVE:
        try:
            answers = await _reset_answers(conn)
        except (psycopg.Error, TimeoutError):
            logger.debug("resetting a session failed", exc_info=True)
            return False
        if any(answer.status not in _RESET_OK for answer in answers):
            logger.debug("resetting a session failed: %s", answers)
            return False
    return pgconn.transaction_status == TransactionStatus.IDLE and _still_open(conn)


async def _reset_answers(conn: AsyncConnection[Any]) -> list[PGresult]:
    """The answers to the reset in flight: read at once where they have all
    arrived (the usual case: the session sat in the pool meanwhile), else
    awaited, up to ``MAX_RESET_SECONDS``."""
    pgconn = conn.pgconn
    pgconn.consume_input()
    reading = generators.fetch_many(pgconn)
    try:
        wanted = next(reading)
    except StopIteration as done:
        answers: list[PGresult] = done.value
        return answers
    async with asyncio.timeout(MAX_RESET_SECONDS):
        return await conn.wait(_resumed(reading, wanted))


def _resumed(
    started: Generator[Any, Any, list[PGresult]], wanted: Any
) -> Generator[Any, Any, list[PGresult]]:
    """A psycopg generator that already asked to wait for ``wanted``, as
    one not started yet (what ``AsyncConnection.wait`` drives)."""
    ready = yield wanted
    while True:
        try:
            wanted = started.send(ready)
        except StopIteration as done:
            answers: list[PGresult] = done.value
            return answers
        ready = yield wanted


def _still_open(conn: AsyncConnection[Any]) -> bool:
    """Whether the server kept an idle session open. One it ended (a restart,
    a failover, ``pg_terminate_backend``) has sent its last words and closed
    the socket: reading without waiting, once for the words and once more
    for the end, finds that out without a round trip."""
    try:
        conn.pgconn.consume_input()
        conn.pgconn.consume_input()
    except psycopg.OperationalError:
        return False
    return conn.pgconn.status == ConnStatus.OK


_RESET_OK = (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK)


def _without_result_set(exc: psycopg.Error) -> bool:
    """stream()'s complaint about a statement that returned no rows at all,
    or about a query holding only comments: psycopg's own, not the server's."""
    if exc.sqlstate is not None:
        return False
    message = str(exc)
    if type(exc) is psycopg.ProgrammingError:
        return "didn't produce a result" in message
    return type(exc) is psycopg.InternalError and "EMPTY_QUERY" in message


async def _described(
    cursor: psycopg.AsyncCursor[Any], sql: str, deadline: float
) -> list[psycopg.Column] | None:
    """The columns of a statement whose result had no rows, which psycopg's
    streaming leaves undescribed: the statement is prepared (unnamed) and
    described again, one more round trip for an empty result only. None
    where it has no result set (DDL) or cannot be described."""
    conn = cursor.connection
    pgconn = conn.pgconn
    try:
        async with asyncio.timeout_at(deadline):
            pgconn.send_prepare(b"", sql.encode(conn.info.encoding))
            [prepared] = await conn.wait(generators.execute(pgconn))
            if prepared.status != ExecStatus.COMMAND_OK:
                return None
            pgconn.send_describe_prepared(b"")
            [described] = await conn.wait(generators.execute(pgconn))
    except (psycopg.Error, TimeoutError, ValueError):
        logger.debug("describing an empty result failed", exc_info=True)
        return None
    if described.status != ExecStatus.COMMAND_OK or not described.nfields:
        return None
    cursor.pgresult = described
    return cursor.description


def _columns(description: list[psycopg.Column] | None) -> list[Column]:
    return [
        Column(d.name, arrow_type(d.type_code, d.precision, d.scale))
        for d in description or []
    ]


def _connection_lost(exc: psycopg.Error) -> bool:
    state = exc.sqlstate or ""
    if state:
        return postgres_arrow.lost_state(state)
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def _query_error(spec: ConnectionSpec, exc: psycopg.Error) -> Exception:
    if _connection_lost(exc):
        return failures.connection_lost(spec, exc)
    if exc.sqlstate == _SYNTAX_ERROR and "multiple commands" in str(exc):
        return failures.one_statement_only(spec)
    if exc.sqlstate is None and str(exc).startswith("COPY cannot be used"):
        return failures.query_failed(spec, COPY_REFUSED)
    return failures.query_failed(spec, str(exc))


@contextlib.contextmanager
def _counted_in_the_query(ran: Callable[[], str]) -> Iterator[None]:
    """Failures of a statement wrapped in a limit (``ran()``: the statement
    that ran), with their ``LINE n`` as in the query alone."""
    try:
        yield
    except QueryFailedError as exc:
        if postgres_limit.unwrap(ran()) is None:
            raise
        detail = postgres_limit.as_in_the_query(exc.detail, ran())
        raise QueryFailedError(detail) from exc.__cause__


class _ArrowRun:
    """One statement on an ADBC session, as its thread sees it."""

    def __init__(
        self, conn: ArrowSession, reset_sql: str, decisions: Memo[bool]
    ) -> None:
        self.conn = conn
        self.reset_sql = reset_sql
        self.decisions = decisions
        self.ran = ""  # the statement begun: the one asked for, or its query
        self.reader: Any = None
        self.schema: pa.Schema | None = None
        self.reusable = True
        self.settled = False
        self.released = False

    def begin(self, sql: str) -> list[Column] | None:
        """Describe ``sql``; run it if ADBC reads its columns (their declared
        types), else None. A statement the server refuses to describe is
        left to psycopg too, which reports it as it does for any format. A
        query wrapped in a limit runs wrapped only where the server takes
        both (see :mod:`postgres_limit`)."""
        query = postgres_limit.unwrap(sql)
        if query is not None:
            sql = self._limited(query, sql)
        self.ran = sql
        schema = self._schema(sql)
        if schema is None:
            return None
        columns = postgres_arrow.columns_of(schema)
        if columns is None:
            return None
        try:
            self.reader = self.conn.start(sql)
        except Exception as exc:
            if postgres_arrow.is_wrapping_error(exc):
                return None
            raise
        self.schema = self.reader.schema
        return columns

    def _schema(self, sql: str) -> pa.Schema | None:
        try:
            return self.conn.describe(sql)
        except Exception as exc:
            if not postgres_arrow.is_driver_error(exc):
                raise
            if postgres_arrow.connection_lost(exc):
                self.reusable = False
            return None

    def _limited(self, query: str, wrapped: str) -> str:
        wrappable = self.decisions.get(query)
        if wrappable is None:
            if self._schema(query) is None:
                return query  # its own mistake (or a lost session): not kept
            wrappable = self._schema(wrapped) is not None
            if self.reusable:  # not a session lost meanwhile
                self.decisions.set(query, wrappable)
        return wrapped if wrappable else query

    def next(self) -> pa.Table | None:
        """The next record batch as a table; None at the end, when the
        session is also reset (one trip to its thread for both)."""
        if self.reader is None:
            return None
        try:
            batch = self.reader.read_next_batch()
        except StopIteration:
            self.reader = self.conn.reader = None  # read to its end: no cancel
            self.settle()
            return None
        return pa.Table.from_batches([batch])

    def settle(self) -> None:
        """Stop what is left of the statement, then reset the session."""
        self.reader = None
        self.conn.close_reader()
        self.conn.execute_update(self.reset_sql)
        self.settled = True


def _normalize(
    columns: list[Column], zone: str, table: pa.Table, schema: pa.Schema | None
) -> pa.Table:
    typed = postgres_arrow.normalize(table, columns, schema, zone=zone)
    return typed.combine_chunks() if schema is None else typed
