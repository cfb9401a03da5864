"""PostgreSQL results wanted in Arrow, read into Arrow by ADBC's driver.

psycopg makes a Python object of every value, which is most of the cost of
a large result; ADBC's PostgreSQL driver (``adbc-driver-postgresql``) reads
the rows in PostgreSQL's binary COPY format straight into Arrow arrays, in
C and outside the GIL. Here it is an accelerator and nothing more: the
Arrow a client gets is the Arrow the psycopg path gives for the same
statement (``tests/engines/test_arrow_path.py`` holds the two to the same
IPC bytes). So a statement is described first, and only one that is a
query and whose every column is of a type listed in :data:`_KINDS` runs
here; any other (intervals, arrays, network types, DDL, ``show``, a syntax
error) runs on psycopg, where it fails or succeeds exactly as it would have.

Each ADBC session lives in a thread of its own (the driver blocks), in the
same pool as the psycopg sessions and under the same limits (see
:mod:`pointsman.engines.pool`), is configured as they are and reset between
two users with the same statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from pointsman.engines import failures, postgres_calendar, results
from pointsman.engines.spec import Column, ConnectionSpec
from pointsman.errors import PointsmanError

logger = logging.getLogger(__name__)

# Record batches of about this size: small enough that a limit stops the
# statement early and a streamed result stays small in memory, large enough
# that a batch costs little per row.
BATCH_SIZE_HINT_BYTES = 1024 * 1024
# How long a cancelled statement may take to end before its session is
# given up (its server no longer answering) and the caller goes on.
CANCEL_WAIT_SECONDS = 2.0
_BATCH_SIZE_OPTION = "adbc.postgresql.batch_size_hint_bytes"

_TYPE_KEY = b"POSTGRESQL:type"
_TYPMOD_KEY = b"POSTGRESQL:typmod"

# The PostgreSQL types read here, by the OID whose Arrow type the psycopg
# path declares (``postgres.arrow_type``).
_KINDS = {
    "bool": 16,
    "bytea": 17,
    "char": 18,
    "name": 19,
    "int8": 20,
    "int2": 21,
    "int4": 23,
    "text": 25,
    "oid": 26,
    "json": 114,
    "float4": 700,
    "float8": 701,
    "bpchar": 1042,
    "varchar": 1043,
    "date": 1082,
    "time": 1083,
    "timestamp": 1114,
    "timestamptz": 1184,
    "numeric": 1700,
    "uuid": 2950,
    "jsonb": 3802,
}
# A statement COPY can wrap starts with one of these words (after comments
# and opening parentheses).
_QUERY_START = re.compile(
    r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*(select|with|values|table)\b",
    re.IGNORECASE | re.DOTALL,
)
_NUMERIC_TYPE = psycopg.adapters.types["numeric"]
# What Python's date and datetime can hold, as Arrow stores them.
_MIN_DAY, _MAX_DAY = -719_162, 2_932_896
# The day PostgreSQL's timestamps start (4714-11-24 BC, a year before its
# dates), in days from 1970-01-01: a smaller number is a large one that the
# driver's shift to 1970 wrapped around.
_PG_MIN_DAY = -2_440_588
_MIN_MICROS = postgres_calendar.PYTHON_MIN_MICROS
_MAX_MICROS = postgres_calendar.PYTHON_MAX_MICROS
_DAY_MICROS = postgres_calendar.DAY_MICROS
# How the driver stores PostgreSQL's infinities: its epoch shift applied to
# PostgreSQL's sentinels, wrapping around.
_INFINITE = {
    "date": {-2_147_472_692: "infinity", -2_147_472_691: "-infinity"},
    "timestamp": {
        -9_222_425_352_054_775_809: "infinity",
        -9_222_425_352_054_775_808: "-infinity",
    },
}
# The driver's words for the numerics that are not numbers, and the server's.
_NUMERIC_WORDS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def available() -> bool:
    """Whether ADBC's PostgreSQL driver is installed."""
    return importlib.util.find_spec("adbc_driver_postgresql") is not None


def is_query(sql: str) -> bool:
    """Whether ``sql`` starts as a query COPY can wrap (a cheap first test;
    the description decides)."""
    return _QUERY_START.match(sql) is not None


def conninfo(kwargs: dict[str, Any]) -> str:
    """libpq's keyword/value string: the driver takes no keywords. It stays
    in memory; it is never logged, and errors are scrubbed of the password."""
    return " ".join(f"{key}={_quote(str(value))}" for key, value in kwargs.items())


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ArrowSession:
    """One ADBC connection, used from a thread of its own."""

    def __init__(self, conn: Any, executor: ThreadPoolExecutor) -> None:
        self.conn = conn
        self.cursor = conn.cursor()
        self.cursor.adbc_statement.set_options(
            **{_BATCH_SIZE_OPTION: str(BATCH_SIZE_HINT_BYTES)}
        )
        self.executor = executor
        self.reader: Any = None
        self.zone = "UTC"  # the session's TimeZone, read when it opens
        self.stuck = False

    @classmethod
    async def open(
        cls, spec: ConnectionSpec, kwargs: dict[str, Any], settings: str
    ) -> ArrowSession:
        """Connect and apply ``settings``, within the connect timeout."""
        from adbc_driver_postgresql import dbapi

        executor = ThreadPoolExecutor(1, thread_name_prefix="pointsman-adbc")
        info = conninfo(kwargs)

        def connect() -> ArrowSession:
            conn = dbapi.connect(info, autocommit=True)
            try:
                session = cls(conn, executor)
                session.execute_update(settings)
                session.zone = session.time_zone()
            except BaseException:
                conn.close()
                raise
            return session

        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(executor, connect)
        try:
            async with asyncio.timeout(spec.connect_timeout_seconds):
                return await asyncio.shield(future)
        except TimeoutError as exc:
            future.add_done_callback(_close_when_done)
            executor.shutdown(wait=False)
            raise failures.unavailable(
                spec, "no answer before the connect timeout"
            ) from exc
        except Exception as exc:
            executor.shutdown(wait=False)
            raise failures.connect_failed(spec, _Scrubbed(exc, spec)) from None

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function`` in this session's thread; a task cancelled (or
        timed out) meanwhile cancels the statement on the server and waits
        up to ``CANCEL_WAIT_SECONDS`` for the thread to give the session back
        before it raises. A session whose thread is still busy then (a
        server that stopped answering) is ``stuck``: never used again, and
        closed by its own thread once that lets go."""
        if self.stuck:
            raise SessionStuckError
        future = asyncio.get_running_loop().run_in_executor(
            self.executor, function, *args
        )
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # libpq's cancel connects to the server and waits for it, with
            # no timeout of its own: never on the event loop.
            threading.Thread(
                target=self.cancel, name="pointsman-adbc-cancel", daemon=True
            ).start()
            await asyncio.wait([future], timeout=CANCEL_WAIT_SECONDS)
            if not future.done():
                self.stuck = True
                future.add_done_callback(_retrieved)
            elif not future.cancelled():
                future.exception()  # retrieved: the cancellation wins
            raise

    async def aclose(self) -> None:
        """Close in the session's own thread (never beside a statement still
        running there); a stuck session is closed whenever its thread is
        free again, without anyone waiting for it."""
        future = asyncio.get_running_loop().run_in_executor(self.executor, self.close)
        if self.stuck:
            future.add_done_callback(_retrieved)
            return
        await future

    def cancel(self) -> None:
        try:
            self.cursor.adbc_cancel()
        except Exception:
            logger.debug("cancelling an ADBC statement failed", exc_info=True)

    def execute_update(self, sql: str) -> None:
        """Statements without rows, in one simple-protocol message."""
        statement = self.cursor.adbc_statement
        statement.set_sql_query(sql)
        statement.execute_update()

    def time_zone(self) -> str:
        self.cursor.execute("select current_setting('TimeZone')")
        row = self.cursor.fetchone()
        return str(row[0]) if row else "UTC"

    def describe(self, sql: str) -> pa.Schema:
        return self.cursor.adbc_execute_schema(sql)

    def start(self, sql: str) -> Any:
        """Run ``sql``; the record-batch reader of its rows. The driver wraps
        the statement in ``COPY (...)``: the line break ends a trailing
        ``--`` comment that would swallow the closing parenthesis."""
        self.cursor.execute(sql + "\n")
        self.reader = self.cursor.fetch_record_batch()
        return self.reader

    def close_reader(self) -> None:
        """Stop reading the statement's rows (what is left is cancelled)."""
        reader, self.reader = self.reader, None
        if reader is not None:
            self.cancel()
            reader.close()

    def close(self) -> None:
        try:
            with contextlib.suppress(Exception):
                self.close_reader()
            self.cursor.close()
            self.conn.close()
        finally:
            self.executor.shutdown(wait=False)


class SessionStuckError(Exception):
    """The session's thread is still in a statement its server never ended."""


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _close_when_done(future: asyncio.Future[ArrowSession]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


class _Scrubbed(Exception):
    """A driver error's message without the password, for connect_reason."""

    def __init__(self, exc: BaseException, spec: ConnectionSpec) -> None:
        text = str(exc)
        for secret in spec.secrets.values():
            if secret:  # as the connection string spells it
                text = failures.without_secret(text, _quote(secret)[1:-1])
        super().__init__(failures.scrub(text, spec))


# -- which statements run here ---------------------------------------------------


def columns_of(schema: pa.Schema) -> list[Column] | None:
    """The columns as the psycopg path declares them; None if a column is of
    a type not read here (or there are none: not a query)."""
    from pointsman.engines.postgres import arrow_type

    if not len(schema):
        return None
    out = []
    for field in schema:
        metadata = field.metadata or {}
        oid = _KINDS.get(metadata.get(_TYPE_KEY, b"").decode())
        if oid is None:
            return None
        precision = scale = None
        if oid == _KINDS["numeric"]:
            typmod = int(metadata.get(_TYPMOD_KEY, b"-1"))
            precision = _NUMERIC_TYPE.get_precision(typmod)
            scale = _NUMERIC_TYPE.get_scale(typmod)
        out.append(Column(field.name, arrow_type(oid, precision, scale)))
    return out


# -- the driver's columns as the psycopg path gives them ----------------------------


def normalize(
    table: pa.Table,
    columns: list[Column],
    schema: pa.Schema | None = None,
    *,
    zone: str = "UTC",
) -> pa.Table:
    """``table`` (as the driver read it) typed as the psycopg path types the
    same rows: the declared types, or text where a value does not fit them.
    With ``schema`` (a stream's first part), the same schema or an error.
    ``zone``: the session's ``TimeZone``, in which PostgreSQL spells a
    ``timestamptz`` that Python cannot hold."""
    arrays = []
    for index, (column, field) in enumerate(zip(columns, table.schema, strict=True)):
        kind = (field.metadata or {}).get(_TYPE_KEY, b"").decode()
        declared = results.arrow_type(column.type)
        array = _column(table.column(index), kind, declared, zone)
        if schema is not None and array.type != schema.field(index).type:
            array = _as(array, schema.field(index))
        arrays.append(array)
    names = [column.name for column in columns]
    return pa.Table.from_arrays(arrays, names=names)


def _column(array: pa.ChunkedArray, kind: str, declared: pa.DataType, zone: str) -> Any:
    if isinstance(array.type, pa.BaseExtensionType):
        if kind == "uuid":
            return results._array(array.to_pylist(), declared)
        array = _storage(array)
    if kind == "timestamptz":
        return _timestamptz(array, declared, zone)
    if kind in ("date", "timestamp", "time"):
        return _temporal(array, kind, declared, zone)
    if kind == "numeric":
        return _numeric(array, declared)
    if kind == "oid":
        return pc.cast(_view(array, pa.uint32()), declared)
    if array.type != declared:
        return pc.cast(array, declared)
    return array


def _storage(array: pa.ChunkedArray) -> pa.ChunkedArray:
    return pa.chunked_array(
        [chunk.storage for chunk in array.chunks], type=array.type.storage_type
    )


def _view(array: pa.ChunkedArray, type_: pa.DataType) -> pa.ChunkedArray:
    return pa.chunked_array([chunk.view(type_) for chunk in array.chunks], type=type_)


def _temporal(
    array: pa.ChunkedArray, kind: str, declared: pa.DataType, zone: str
) -> Any:
    """Dates and times as they are where Python holds them; a column with
    an infinity (or a value Python cannot hold) as the psycopg path spells
    it: text."""
    if kind == "time":
        numbers = _view(array, pa.int64())
        low, high = 0, _DAY_MICROS - 1
    elif kind == "date":
        numbers = _view(array, pa.int32())
        low, high = _MIN_DAY, _MAX_DAY
    else:
        numbers = _view(array, pa.int64())
        low, high = _MIN_MICROS, _MAX_MICROS
    bounds = pc.min_max(numbers)
    smallest, largest = bounds["min"].as_py(), bounds["max"].as_py()
    if smallest is None or (low <= smallest and largest <= high):
        return array
    inside = pc.and_(pc.greater_equal(numbers, low), pc.less_equal(numbers, high))
    python = pc.if_else(inside, array, pa.scalar(None, array.type)).to_pylist()
    special = _INFINITE.get("timestamp" if kind != "date" else "date", {})
    values: list[Any] = []
    for value, number, fits in zip(
        python, numbers.to_pylist(), inside.to_pylist(), strict=True
    ):
        if fits is False:
            value = special.get(number) or _beyond_python(number, kind, zone)
        values.append(value)
    return results._array(values, declared)


def _timestamptz(array: pa.ChunkedArray, declared: pa.DataType, zone: str) -> Any:
    """Instants as they are wherever psycopg makes them a datetime (in the
    session's zone, within years 1 to 9999); a column with an infinity or a
    value beyond that as psycopg spells it: text, its datetimes in the
    session's zone."""
    numbers = _view(array, pa.int64())
    bounds = pc.min_max(numbers)
    smallest, largest = bounds["min"].as_py(), bounds["max"].as_py()
    margin = 2 * _DAY_MICROS  # more than any zone's offset
    if smallest is None or (
        _MIN_MICROS + margin <= smallest and largest <= _MAX_MICROS - margin
    ):
        return array
    values: list[Any] = []
    as_text = False
    for number in numbers.to_pylist():
        if number is None:
            values.append(None)
            continue
        special = _INFINITE["timestamp"].get(number)
        local = None
        if special is None:
            local = postgres_calendar.local_datetime(_unwrapped(number), zone)
        if local is None:
            values.append(special or _beyond_python(number, "timestamptz", zone))
            as_text = True
        else:
            values.append(local)
    return results._array(values, declared) if as_text else array


def _unwrapped(micros: int) -> int:
    """A timestamp the driver's shift to 1970 wrapped past 2^63, unwrapped."""
    return micros + 2**64 if micros < _PG_MIN_DAY * _DAY_MICROS else micros


def _beyond_python(number: int, kind: str, zone: str) -> str:
    """A value Python's types cannot hold, other than an infinity, as the
    text PostgreSQL prints (and the psycopg path gives)."""
    if kind == "time":
        return "24:00:00" if number == _DAY_MICROS else str(number)
    if kind == "date":
        if number < _PG_MIN_DAY:  # the driver's shift to 1970 wrapped past 2^31
            number += 2**32
        return postgres_calendar.date_text(number)
    number = _unwrapped(number)
    if kind == "timestamptz":
        return postgres_calendar.timestamp_text(number, zone)
    return postgres_calendar.timestamp_text(number)


def _numeric(array: pa.ChunkedArray, declared: pa.DataType) -> Any:
    """Numerics as the psycopg path gives them: decimal128 of the declared
    precision, or the server's own text (``0.0000001``, ``NaN``)."""
    if pa.types.is_decimal(declared):
        try:
            return pc.cast(array, declared)
        except results._ARROW_FAILURES:
            decimals = [None if v is None else Decimal(v) for v in array.to_pylist()]
            return results._array(decimals, declared)
    if not pc.any(pc.match_substring_regex(array, "[a-z]")).as_py():
        return array
    texts = array.to_pylist()
    return pa.array([_NUMERIC_WORDS.get(text, text) for text in texts], pa.string())


def _as(array: Any, field: pa.Field) -> Any:
    """A later batch's column in the stream's first schema: as text where
    that says string, else the psycopg path's error."""
    if field.type == pa.string():
        values = array.to_pylist()
        return pa.array([results._text(value) for value in values], pa.string())
    try:
        return pc.cast(array, field.type)
    except results._ARROW_FAILURES:
        raise PointsmanError(
            f"Column {field.name} holds a value that is not "
            f"{field.type} past the first rows",
            status=400,
        ) from None


# -- errors -------------------------------------------------------------------------

_CONNECTION_LOST_STATES = ("08", "57P01", "57P02", "57P03")
# In class 08 but about the statement (``select $1`` without a parameter):
# the session lives on.
PROTOCOL_VIOLATION = "08P01"
_COPY_LINE = re.compile(r"^LINE 1: (?:\.\.\.)?(COPY \()", re.M)
_NOT_WRAPPABLE = ("42601", "0A000")  # syntax error, feature not supported
_DRIVER_PREFIX = re.compile(r"^[A-Z_]+: (?:\[libpq\] )?(?:[^:\n]*: )*?ERROR:  ", re.S)
_DRIVER_SUFFIX = re.compile(r"\n*(?:\nQuery was: .*)?\. SQLSTATE: \w+\s*$", re.S)


def sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", None) or "")


def lost_state(state: str) -> bool:
    """Whether a SQLSTATE says the session is gone (psycopg's and ADBC's)."""
    return state != PROTOCOL_VIOLATION and state.startswith(_CONNECTION_LOST_STATES)


def connection_lost(exc: BaseException) -> bool:
    state = sqlstate(exc)
    if state:
        return lost_state(state)
    return type(exc).__name__ in ("OperationalError", "InterfaceError")


def message(exc: BaseException) -> str:
    """The server's message, as psycopg shows it (without the driver's
    status, the ``ERROR:`` tag and the statement echoed back)."""
    text = str(exc)
    text = _DRIVER_SUFFIX.sub("", text)
    text = _DRIVER_PREFIX.sub("", text).strip()
    return _without_copy(text)


def _without_copy(text: str) -> str:
    """The first line of the statement shown without the driver's ``COPY (``
    before it, the caret under the same character."""
    found = _COPY_LINE.search(text)
    if found is None:
        return text
    start, end = found.span(1)
    text = text[:start] + text[end:]
    caret_line = text.find("\n", start)
    if caret_line >= 0 and text.startswith(" " * 6, caret_line + 1):
        text = text[: caret_line + 1] + text[caret_line + 7 :]
    return text


def is_timeout(exc: BaseException) -> bool:
    return sqlstate(exc) == "57014" and "statement timeout" in str(exc)


def is_wrapping_error(exc: BaseException) -> bool:
    """A syntax error or an unsupported feature from a statement that was
    described without either: the driver's ``COPY (...)`` could not wrap it
    (a trailing semicolon, a data-modifying statement), and nothing ran."""
    return is_driver_error(exc) and sqlstate(exc) in _NOT_WRAPPABLE


# Failures met while reading the rows come from the Arrow stream, not the
# driver's error types: its text says what the server said, with severity.
_READ_ERROR = re.compile(r"\[libpq\][^\n]*?\b(ERROR|FATAL|PANIC):  (.*)", re.S)


def read_failure(exc: BaseException) -> tuple[str, str] | None:
    """For a failure while reading rows: ``("failed", message)`` where the
    server refused the statement (the session lives on), ``("lost", "")``
    where the session is gone; None for anything else."""
    if not isinstance(exc, OSError | pa.ArrowException):
        return None
    found = _READ_ERROR.search(str(exc))
    if found is None:
        return ("lost", "") if "[libpq]" in str(exc) else None
    if found[1] != "ERROR":
        return ("lost", "")
    return ("failed", found[2].strip())


def is_driver_error(exc: BaseException) -> bool:
    from adbc_driver_manager import Error

    return isinstance(exc, Error)
