"""Result bodies written batch by batch, so that a large result never sits
whole in the server's memory.

Three shapes: the raw CSV and raw Arrow IPC streams (``Accept: text/csv`` or
``application/vnd.apache.arrow.stream``, an extension), and the job line of
spec §7 whose ``result`` value is written as it is produced. In the job line
``status`` and ``summary`` come after ``result`` (JSON objects are unordered;
the row count is known only at the end), so that a failure part-way still
ends the line as a valid ``"status": "ERROR"`` job.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import Any

import orjson
import pyarrow as pa
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from pointsman.api.http import dumps
from pointsman.engines import results
from pointsman.engines.spec import Column, QueryResult
from pointsman.engines.streams import ArrowStream, RowStream
from pointsman.errors import PointsmanError

log = logging.getLogger(__name__)

CSV = "text/csv"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
RAW_TYPES = (CSV, ARROW_STREAM)

Result = QueryResult | RowStream
# Called once when a result has been sent (or failed): status, error, rows.
Finish = Callable[[str, PointsmanError | None, int], None]


def raw_type(accept: str) -> str | None:
    """The raw stream a client asked for in ``Accept``, if any: one it
    accepts at least as much (by ``q``) as anything else it names."""
    weights = accept_weights(accept)
    best = max(weights.values(), default=0.0)
    for kind in RAW_TYPES:
        if weights.get(kind, 0.0) > 0 and weights[kind] >= best:
            return kind
    return None


def accept_weights(accept: str) -> dict[str, float]:
    """Media type -> its ``q`` (1 when not given, 0 when not a number)."""
    weights: dict[str, float] = {}
    for part in accept.split(","):
        kind, *parameters = (piece.strip() for piece in part.split(";"))
        if not kind:
            continue
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
                weight = min(max(weight, 0.0), 1.0) if math.isfinite(weight) else 0.0
        kind = kind.lower()
        weights[kind] = max(weights.get(kind, 0.0), weight)
    return weights


# -- reading ------------------------------------------------------------------


async def row_batches(result: Result) -> AsyncIterator[list[tuple[Any, ...]]]:
    if isinstance(result, QueryResult):
        if result.rows:
            yield result.rows
        return
    async for batch in result.batches():
        yield batch


async def close(result: Result) -> None:
    if isinstance(result, RowStream):
        await result.aclose()


# -- encoders -----------------------------------------------------------------


class _Chunks:
    """A write-only file that keeps what pyarrow writes until it is taken."""

    closed = False

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


class ArrowEncoder:
    """An Arrow IPC stream, one record batch per batch of rows.

    The schema is fixed by the first batch (the declared column types, or
    ``string`` where its values did not fit them); later batches are
    converted to it, as text where the schema says ``string``.
    """

    def __init__(self, columns: list[Column], first: list[tuple[Any, ...]]) -> None:
        table = results.to_arrow_table(QueryResult(columns, first))
        self._schema = table.schema
        self._sink = _Chunks()
        self._writer = pa.ipc.new_stream(self._sink, self._schema)
        self._pending = table

    def rows(self, batch: list[tuple[Any, ...]]) -> bytes:
        # The first batch is the first rows, unless a limit cut it shorter.
        table, self._pending = self._pending, None
        if table is None or table.num_rows != len(batch):
            table = self._table(batch)
        self._writer.write_table(table)
        return self._sink.take()

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def header(self) -> bytes:
        return self._sink.take()

    def finish(self) -> bytes:
        self._writer.close()
        return self._sink.take()

    def _table(self, batch: list[tuple[Any, ...]]) -> pa.Table:
        columns = list(zip(*batch, strict=True))
        arrays = []
        for field, values in zip(self._schema, columns, strict=True):
            try:
                arrays.append(pa.array(values, type=field.type))
            except results._ARROW_FAILURES:
                if field.type != pa.string():
                    raise PointsmanError(
                        f"Column {field.name} holds a value that is not "
                        f"{field.type} past the first rows",
                        status=400,
                    ) from None
                texts = [results._text(value) for value in values]
                arrays.append(pa.array(texts, type=pa.string()))
        return pa.Table.from_arrays(arrays, schema=self._schema)


class Base64Text:
    """Base64 of a byte stream, written as it comes (whole 3-byte groups)."""

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        data = self._carry + data
        cut = len(data) - len(data) % 3
        self._carry = data[cut:]
        return base64.b64encode(data[:cut])

    def finish(self) -> bytes:
        carry, self._carry = self._carry, b""
        return base64.b64encode(carry)


def _first_rows(result: Result) -> list[tuple[Any, ...]]:
    """The rows the schema is taken from (without consuming them)."""
    if isinstance(result, QueryResult):
        return result.rows
    return result.first_rows


# -- raw bodies ---------------------------------------------------------------


async def raw_csv(result: Result, finish: Finish) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        yield results.csv_header(result.columns).encode()
        async for batch in row_batches(result):
            yield results.csv_lines(batch).encode()

    async for chunk in _finishing(result, body(), finish):
        yield chunk


async def arrow_ipc(
    result: Result, schemas: list[pa.Schema] | None = None
) -> AsyncIterator[bytes]:
    """The result as an Arrow IPC stream, part by part: tables the driver
    read into Arrow as they are, rows through :class:`ArrowEncoder`. The
    schema written is added to ``schemas``."""
    schemas = [] if schemas is None else schemas
    if isinstance(result, ArrowStream):
        schemas.append(result.schema)
        async for part in _ipc(result.schema, result.tables()):
            yield part
        return
    if isinstance(result, QueryResult) and result.table is not None:
        schemas.append(result.table.schema)
        async for part in _ipc(result.table.schema, _one(result.table)):
            yield part
        return
    encoder = ArrowEncoder(result.columns, _first_rows(result))
    schemas.append(encoder.schema)
    yield encoder.header()
    async for batch in row_batches(result):
        yield encoder.rows(batch)
    yield encoder.finish()


async def _ipc(
    schema: pa.Schema, tables: AsyncIterator[pa.Table]
) -> AsyncIterator[bytes]:
    sink = _Chunks()
    writer = pa.ipc.new_stream(sink, schema)
    yield sink.take()
    async for table in tables:
        writer.write_table(table)
        yield sink.take()
    writer.close()
    yield sink.take()


async def _one(table: pa.Table) -> AsyncIterator[pa.Table]:
    yield table


async def raw_arrow(result: Result, finish: Finish) -> AsyncIterator[bytes]:
    async for chunk in _finishing(result, arrow_ipc(result), finish):
        yield chunk


async def _finishing(
    result: Result, body: AsyncIterator[bytes], finish: Finish
) -> AsyncIterator[bytes]:
    """``body``, then the result closed and the outcome recorded. A failure
    part-way is re-raised: the response is cut off, which the client sees
    as an incomplete body."""
    status, error = "ERROR", None
    try:
        async for chunk in body:
            yield chunk
        status = "COMPLETE"
    except PointsmanError as exc:
        status, error = _status_of(exc), exc
        raise
    except asyncio.CancelledError:
        status = "CANCELLED"
        raise
    finally:
        await close_quietly(result)
        finish(status, error, result.row_count)


# -- the job line -------------------------------------------------------------


async def job_line(
    head: dict[str, Any],
    display_sql: str,
    result: Result,
    result_type: str | None,
    finish: Finish,
) -> AsyncIterator[bytes]:
    """One job line of spec §7 (without the newline), ``result`` written
    batch by batch: a JSON array of rows, a CSV string, or base64 Arrow."""
    yield dumps(head)[:-1] + b',"result":'
    status, error = "ERROR", None
    schemas: list[pa.Schema] = []
    closing = b"]" if result_type == "json" else b'"'
    try:
        if result_type == "json":
            async for chunk in _json_rows(result):
                yield chunk
        elif result_type == "csv":
            async for chunk in _csv_string(result):
                yield chunk
        else:
            closing = b""  # the string closes itself, still readable Arrow
            async for chunk in _arrow_string(result, schemas):
                yield chunk
        status = "COMPLETE"
    except PointsmanError as exc:
        status, error = _status_of(exc), exc
        yield closing
    except asyncio.CancelledError:
        status = "CANCELLED"
        raise
    except Exception as exc:  # the line still ends as a job, then the footer
        log.error("a streamed result failed: unhandled %s", type(exc).__name__)
        status, error = "ERROR", PointsmanError()
        yield closing
    finally:
        await close_quietly(result)
        finish(status, error, result.row_count)
    if schemas:
        fields = results.fields_in(result.columns, schemas[0])
    else:
        fields = [{"name": c.name, "type": c.type} for c in result.columns]
    tail: dict[str, Any] = {
        "status": "COMPLETE" if error is None else "ERROR",
        "summary": {
            "display_sql": display_sql,
            "fields": fields,
            "row_count": result.row_count,
            "truncated": result.truncated,
        },
    }
    if error is not None:
        tail["error"] = error.body()
    yield b"," + dumps(tail)[1:]


async def _json_rows(result: Result) -> AsyncIterator[bytes]:
    yield b"["
    separator = b""
    async for batch in row_batches(result):
        rows = results.to_json_bytes(QueryResult(result.columns, batch))
        yield separator + rows[1:-1]
        separator = b","
    yield b"]"


async def _csv_string(result: Result) -> AsyncIterator[bytes]:
    yield b'"'
    yield _json_string_body(results.csv_header(result.columns))
    async for batch in row_batches(result):
        yield _json_string_body(results.csv_lines(batch))
    yield b'"'


# Arrow IPC's end-of-stream marker: a continuation token and a zero length.
_END_OF_ARROW_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"


async def _arrow_string(
    result: Result, schemas: list[pa.Schema]
) -> AsyncIterator[bytes]:
    """Base64 of the Arrow stream as a JSON string; a failure part-way still
    closes it as a readable stream of the rows sent so far, then raises."""
    yield b'"'
    text = Base64Text()
    try:
        async for part in arrow_ipc(result, schemas):
            yield text.feed(part)
    except Exception:
        if schemas:
            yield text.feed(_END_OF_ARROW_STREAM) + text.finish() + b'"'
        else:
            yield text.finish() + b'"'
        raise
    yield text.finish() + b'"'


def _json_string_body(text: str) -> bytes:
    """``text`` escaped for the inside of a JSON string."""
    return orjson.dumps(text)[1:-1]


def _status_of(error: PointsmanError) -> str:
    return "TIMEOUT" if error.status == 408 else "ERROR"


async def close_quietly(result: Result) -> None:
    try:
        await close(result)
    except Exception:
        log.warning("closing a result stream failed", exc_info=False)


# -- the response -------------------------------------------------------------


class BodyStream(Response):
    """A response written from an async iterator of bytes.

    Unlike Starlette's streaming response, the iterator is always closed
    before this returns, the client going away cancels the writing (so the
    statement behind it is cancelled), and a failure part-way ends the
    response without completing it (the client sees a cut-off body).
    """

    def __init__(
        self,
        body: AsyncIterator[bytes],
        media_type: str,
        headers: dict[str, str] | None = None,
        *,
        cleanup: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(None, media_type=media_type, headers=headers)
        del self.headers["content-length"]
        self._body = body
        self._cleanup = cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = asyncio.ensure_future(self._send_all(send))
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not sender.done():
                sender.cancel()
            with suppress(asyncio.CancelledError):
                await sender

    async def _send_all(self, send: Send) -> None:
        body = self._body
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async for chunk in body:
                if chunk:
                    await send(
                        {"type": "http.response.body", "body": chunk, "more_body": True}
                    )
            await send({"type": "http.response.body", "body": b""})
        except PointsmanError as exc:
            log.warning("a result stream ended early: %s", exc.detail)
        except OSError:
            log.info("the client went away during a result stream")
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
            # A body never started never ran its own clean-up.
            if self._cleanup is not None:
                await self._cleanup()


async def _disconnected(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return
