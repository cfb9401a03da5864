"""Running SQL (spec §7), the route explanation and the query log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route as HttpRoute

from pointsman import policy
from pointsman.api import streaming
from pointsman.api.auth import Caller, caller
from pointsman.api.connections import live_connection
from pointsman.api.http import call, dumps, read_json, respond
from pointsman.engines import results
from pointsman.engines.spec import QueryResult
from pointsman.engines.streams import RowStream, cut
from pointsman.errors import (
    NotFound,
    PointsmanError,
    RequestTimeout,
    ValidationFailed,
)
from pointsman.policy import Action
from pointsman.routing.resolver import Route
from pointsman.services import queries
from pointsman.services.container import Services
from pointsman.services.jobs import (
    SWEEP_SECONDS,
    Job,
    Jobs,
    consume_result,
    wait_for,
)
from pointsman.services.paging import is_uuid
from pointsman.services.query_log import list_entries
from pointsman.store.models import utcnow

NDJSON = "application/x-ndjson"

log = logging.getLogger(__name__)


async def start(app: Starlette) -> None:
    app.state.jobs = jobs = Jobs()
    app.state.services.metrics.held.bytes = lambda: jobs.held_bytes
    app.state.pool_reaper = asyncio.create_task(close_idle_pools(app.state.services))
    app.state.job_sweeper = asyncio.create_task(sweep_jobs(jobs))


async def sweep_jobs(jobs: Jobs) -> None:
    """Forget jobs finished long ago even when no query comes."""
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        jobs.forget_old()


async def close_idle_pools(services: Services) -> None:
    """Close pools nobody used for a while, so a thousand tenants do not mean
    a thousand open pools forever."""
    idle = services.settings.pool_idle_seconds
    while True:
        await asyncio.sleep(max(1.0, min(60.0, idle / 4)))
        closed = await services.engines.close_idle(idle)
        if closed:
            log.info("closed %d idle pool(s)", len(closed))


async def stop(app: Starlette) -> None:
    app.state.pool_reaper.cancel()
    app.state.job_sweeper.cancel()
    await app.state.jobs.cancel_all()
    services = app.state.services
    await services.query_log.flush()
    await services.engines.close_all()


def wants_plain_json(request: Request) -> bool:
    """Omni's OpenAPI shape, for a client that prefers JSON (by ``q``) to
    NDJSON and to anything that would stand for it (``*/*``)."""
    weights = streaming.accept_weights(request.headers.get("accept", ""))
    json = weights.get("application/json", 0.0)
    ndjson = max(
        weights.get(kind, 0.0)
        for kind in ("application/x-ndjson", "application/*", "*/*")
    )
    return json > 0 and json > ndjson


# -- running ------------------------------------------------------------------


class Outcome:
    """Records how one query ended: metrics and its query-log entry, once."""

    def __init__(self, who: Caller, job_id: str, runner_id: str, route: Route):
        self._who, self._job_id, self._runner_id = who, job_id, runner_id
        self._route = route
        self._started, self._clock = utcnow(), time.perf_counter()
        self._done = False

    def __call__(
        self, status: str, error: PointsmanError | None, rows: int | None
    ) -> None:
        if self._done:
            return
        self._done = True
        services, route = self._who.services, self._route
        elapsed = time.perf_counter() - self._clock
        services.metrics.observe(
            route.connection_id, route.source, status.lower(), elapsed
        )
        services.query_log.record(
            {
                "id": self._job_id,
                "started_at": self._started,
                "duration_ms": round(elapsed * 1000, 3),
                "user_id": self._runner_id,
                "token_id": self._who.actor.token.id,
                "base_connection_id": route.base_connection_id,
                "connection_id": route.connection_id,
                "connection_environment_id": route.connection_environment_id,
                "source": route.source,
                "reason": route.reason,
                "row_count": rows,
                "status": status,
                "error": CANCELLED if status == "CANCELLED" else _detail(error),
            }
        )


CANCELLED = "The client went away; the statement was cancelled"


def _detail(error: PointsmanError | None) -> str | None:
    return None if error is None else error.detail


def _status_of(error: PointsmanError) -> str:
    return "TIMEOUT" if error.status == 408 else "ERROR"


async def _execute(
    who: Caller,
    jobs: Jobs,
    job_id: str,
    runner_id: str,
    route: Route,
    request: queries.RunRequest,
    arrow: bool,
) -> QueryResult | RowStream:
    """Run the query. A result longer than the stream threshold comes back
    open, for the response to stream (and record when it ends), unless no
    response waits for it any more."""
    services = who.services
    outcome = Outcome(who, job_id, runner_id, route)
    try:
        spec = await services.specs.get(route.connection_id, who.snapshot.version)
        result = await services.engines.stream(
            spec,
            request.sql,
            limit=request.limit,
            threshold=services.settings.stream_threshold_rows,
            arrow=arrow,
        )
        job = jobs.get(job_id)
        if isinstance(result, RowStream):
            if job is not None and not job.detached:
                job.finish = outcome
                return result
            # Held for query/wait: bounded (and read no further), so that
            # results nobody collects cannot fill the server's memory.
            result = await _held(jobs, job_id, services, result)
        elif job is not None and job.detached:
            result = await _held(jobs, job_id, services, result)
    except PointsmanError as exc:
        outcome(_status_of(exc), exc, None)
        raise
    except asyncio.CancelledError:
        outcome("CANCELLED", None, None)
        raise
    except BaseException as exc:
        log.error("a query failed: unhandled %s", type(exc).__name__)
        outcome("ERROR", PointsmanError(), None)
        raise
    outcome("COMPLETE", None, result.row_count)
    return result


async def _held(
    jobs: Jobs, job_id: str, services: Services, result: QueryResult | RowStream
) -> QueryResult:
    """The result kept in memory for query/wait: within the per-result
    limits and the memory every held result together may take
    (``held_results_total_bytes``; a 503 where not one row fits)."""
    settings = services.settings
    room = jobs.held_room(job_id, settings.held_results_total_bytes)
    max_rows, max_bytes = settings.held_result_max_rows, settings.held_result_max_bytes
    try:
        if isinstance(result, RowStream):
            return await result.read_all(max_rows, max_bytes, room)
        return cut(result, max_rows, max_bytes, room)
    except BaseException:
        jobs.release_held(job_id)  # failed part-way: none of it is kept
        raise


def job_line(job: Job) -> dict[str, Any]:
    """The finished job as Omni's clients read it."""
    error = job.error()
    line: dict[str, Any] = {
        "job_id": job.id,
        "client_result_id": job.client_result_id,
        "route": job.route.as_dict(),
    }
    if error is not None:
        line.update(status="ERROR", error=error.body())
        return line
    result = job.task.result()
    assert isinstance(result, QueryResult), "a detached job reads its rows"
    fields = results.field_list(result)
    if job.result_type == "json":
        encoded: Any = orjson.Fragment(results.to_json_bytes(result))
    elif job.result_type == "csv":
        encoded = results.to_csv(result)
    else:
        table = results.to_arrow_table(result)
        fields = results.fields_in(result.columns, table.schema)
        encoded = results.table_base64(table)
    line.update(
        status="COMPLETE",
        summary={
            "display_sql": job.sql,
            "fields": fields,
            "row_count": result.row_count,
            "truncated": result.truncated,
        },
        result=encoded,
    )
    return line


# Results up to this many rows are encoded on the event loop: a hop to a
# worker thread costs more than encoding them.
INLINE_ENCODE_ROWS = 200


async def encode_line(job: Job) -> dict[str, Any]:
    if job.error() is not None or job.task.result().row_count <= INLINE_ENCODE_ROWS:
        return job_line(job)
    return await call(job_line, job)


def _row_count(job: Job) -> int:
    result = job.task.result()
    return result.row_count if isinstance(result, QueryResult) else 0


def ndjson(lines: list[dict[str, Any]], route: Route | None = None) -> Response:
    body = b"".join(dumps(line) + b"\n" for line in lines)
    response = Response(body, media_type=NDJSON)
    if route is not None:
        response.headers["X-Pointsman-Connection-Id"] = route.connection_id
    return response


def footer(remaining: list[str]) -> dict[str, Any]:
    return {
        "remaining_job_ids": remaining,
        "timed_out": "true" if remaining else "false",
    }


def planned(job_id: str, route: Route, sql: str, plain: bool) -> Response:
    line = {
        "job_id": job_id,
        "status": "PLANNED",
        "client_result_id": job_id,
        "summary": {
            "display_sql": sql,
            "fields": [],
            "row_count": 0,
            "truncated": False,
        },
        "route": route.as_dict(),
    }
    if plain:
        response: Response = respond({"completedQueries": [line], "jobIds": []})
    else:
        response = ndjson([{"jobs_submitted": {job_id: job_id}}, line, footer([])])
    response.headers["X-Pointsman-Connection-Id"] = route.connection_id
    return response


async def run_query(request: Request) -> Response:
    """
    summary: Run SQL through a base connection, routed for the effective user
    description: NDJSON by default (jobs_submitted, job lines, footer). A client
      that accepts only application/json gets completedQueries/jobIds.
      `sql`, `waitSeconds`, the route and the X-Pointsman-Connection-Id header
      are extensions.
    """
    who = await caller(request)
    run = queries.parse_run(await read_json(request, exact_numbers=False))
    plain = wants_plain_json(request)
    runner = queries.effective_actor(who.snapshot, who.actor, run.user_id)
    connection = live_connection(who, run.connection_id)
    route = queries.route_for(who.snapshot, runner, connection, run.branch_id)
    job_id = queries.new_job_id()
    if run.plan_only:
        return planned(job_id, route, run.sql, plain)

    raw = streaming.raw_type(request.headers.get("accept", ""))
    arrow = raw == streaming.ARROW_STREAM or (
        raw is None and run.result_type not in ("json", "csv")
    )
    jobs: Jobs = request.app.state.jobs
    job = jobs.submit(
        job_id=job_id,
        owner_id=runner.user.id,
        route=route,
        sql=run.sql,
        result_type=run.result_type,
        work=lambda: _execute(who, jobs, job_id, runner.user.id, route, run, arrow),
    )
    wait = run.wait_seconds
    if wait is None:
        wait = who.services.settings.query_wait_seconds
    if await _client_left_first(request, job, wait):
        # Nobody will read the answer: stop the statement on the database.
        _abandon(job)
        jobs.discard(job.id)
        return Response(status_code=499)
    if not job.task.done():
        job.detached = True
        return _still_running(job, plain or raw is not None)
    jobs.discard(job.id)
    error = job.error()
    if error is not None:
        consume_result(job)
        raise error
    result = job.task.result()
    if raw is not None or isinstance(result, RowStream):
        return _streamed(job, result, raw, plain)
    line = await encode_line(job)
    if plain:
        response: Response = respond({"completedQueries": [line], "jobIds": []})
        response.headers["X-Pointsman-Connection-Id"] = route.connection_id
        return response
    submitted = {"jobs_submitted": {job.id: job.client_result_id}}
    return ndjson([submitted, line, footer([])], route)


_closing: set[asyncio.Task[None]] = set()


def _abandon(job: Job) -> None:
    """Cancel a job nobody waits for; a stream it opened all the same (it
    finished in the same instant) is closed."""
    job.detached = True
    job.task.cancel()
    job.task.add_done_callback(lambda task: _close_orphan(job))


def _close_orphan(job: Job) -> None:
    task = job.task
    if task.cancelled() or task.exception() is not None:
        return
    result = task.result()
    if isinstance(result, RowStream):
        if job.finish is not None:
            job.finish("CANCELLED", None, 0)
        closing = asyncio.get_running_loop().create_task(result.aclose())
        _closing.add(closing)
        closing.add_done_callback(_closing.discard)


def _ignore(status: str, error: PointsmanError | None, rows: int) -> None:
    """A result read whole was recorded when the job ended."""


def _streamed(
    job: Job, result: QueryResult | RowStream, raw: str | None, plain: bool
) -> Response:
    """The result written as it is read: raw CSV or Arrow, or the §7 job line."""
    finish = job.finish or _ignore

    async def cleanup() -> None:
        # Whatever happened to the body, the connection goes back and the
        # query is recorded (a second record of an ended stream is ignored).
        await streaming.close_quietly(result)
        finish("CANCELLED", None, result.row_count)

    headers = {
        "X-Pointsman-Connection-Id": job.route.connection_id,
        "X-Pointsman-Job-Id": job.id,
    }
    if raw == streaming.CSV:
        body = streaming.raw_csv(result, finish)
        return streaming.BodyStream(
            body, "text/csv; charset=utf-8", headers, cleanup=cleanup
        )
    if raw == streaming.ARROW_STREAM:
        body = streaming.raw_arrow(result, finish)
        return streaming.BodyStream(
            body, streaming.ARROW_STREAM, headers, cleanup=cleanup
        )
    head = {
        "job_id": job.id,
        "client_result_id": job.client_result_id,
        "route": job.route.as_dict(),
    }
    line = streaming.job_line(head, job.sql, result, job.result_type, finish)
    if plain:
        body = _wrapped(b'{"completedQueries":[', line, b'],"jobIds":[]}')
        return streaming.BodyStream(body, "application/json", headers, cleanup=cleanup)
    submitted = dumps({"jobs_submitted": {job.id: job.client_result_id}}) + b"\n"
    end = b"\n" + dumps(footer([])) + b"\n"
    body = _wrapped(submitted, line, end)
    return streaming.BodyStream(body, NDJSON, headers, cleanup=cleanup)


async def _wrapped(
    before: bytes, body: AsyncIterator[bytes], after: bytes
) -> AsyncIterator[bytes]:
    yield before
    try:
        async for chunk in body:
            yield chunk
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
    yield after


# A job is watched for its client going away once it has run this long: the
# watcher (a task reading the request's channel) costs more than a short
# query, and a client leaving sooner is noticed this much later.
WATCH_AFTER_SECONDS = 0.05


async def _client_left_first(request: Request, job: Job, wait: float) -> bool:
    """Wait for the job (up to ``wait``), watching for the client going away;
    True if it went away before the job finished."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    if await _finished_within(job.task, min(wait, WATCH_AFTER_SECONDS)):
        return False
    rest = max(0.0, wait - (loop.time() - started))
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait(
            {job.task, watcher}, timeout=rest, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        watcher.cancel()
    return watcher.done() and not watcher.cancelled() and not job.task.done()


async def _finished_within(task: asyncio.Task[Any], seconds: float) -> bool:
    """Whether ``task`` is done within ``seconds``, waited for with a bare
    future and a timer (less than ``asyncio.wait`` costs)."""
    if task.done() or seconds <= 0:
        return task.done()
    loop = asyncio.get_running_loop()
    woken = loop.create_future()

    def wake(_: object = None) -> None:
        if not woken.done():
            woken.set_result(None)

    task.add_done_callback(wake)
    timer = loop.call_later(seconds, wake)
    try:
        await woken
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    return task.done()


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body was already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _still_running(job: Job, plain: bool) -> Response:
    if plain:
        body = {
            **RequestTimeout(
                "The query is still running; collect it with query/wait"
            ).body(),
            "timed_out": True,
            "remaining_job_ids": [job.id],
        }
        return respond(body, status=408)
    submitted = {"jobs_submitted": {job.id: job.client_result_id}}
    return ndjson([submitted, footer([job.id])], job.route)


def _job_ids(request: Request) -> list[str]:
    raw = request.query_params.get("job_ids")
    ids: list[Any]
    if raw is not None:
        try:
            ids = orjson.loads(raw)
        except orjson.JSONDecodeError:
            ids = raw.split(",")
        if not isinstance(ids, list):
            ids = [ids]
    else:
        ids = [
            part for part in request.query_params.get("jobIds", "").split(",") if part
        ]
    ids = [str(value).strip() for value in ids if str(value).strip()]
    if not ids:
        raise ValidationFailed("job_ids", "Required")
    if not all(is_uuid(value) for value in ids):
        raise ValidationFailed("job_ids", "Invalid uuid")
    return list(dict.fromkeys(value.lower() for value in ids))  # each once


async def wait_query(request: Request) -> Response:
    """
    summary: Collect jobs that query/run left running (job_ids JSON array or jobIds CSV)
    """
    who = await caller(request)
    jobs: Jobs = request.app.state.jobs
    found = []
    for job_id in _job_ids(request):
        job = jobs.get(job_id)
        if (
            job is None
            or job.claimed
            or not policy.may_see_job(who.actor, job.owner_id)
        ):
            raise NotFound(f"Job {job_id} not found")
        found.append(job)
    await wait_for(found, who.services.settings.query_wait_seconds)
    # Each finished job goes to one response: claimed here, with no pause
    # between looking and claiming (one another wait claimed meanwhile is
    # its to send).
    done = deque(job for job in found if job.task.done() and not job.claimed)
    for job in done:
        job.claimed = True
    remaining = [job.id for job in found if not job.task.done()]
    if wants_plain_json(request):
        body = _collected(jobs, done, b'{"results":[', b",", dumps(footer(remaining)))
        return StreamingResponse(body, media_type="application/json")
    body = _collected(jobs, done, b"", b"", dumps(footer(remaining)) + b"\n")
    return StreamingResponse(body, media_type=NDJSON)


async def _collected(
    jobs: Jobs, done: deque[Job], opening: bytes, separator: bytes, last: bytes
) -> AsyncIterator[bytes]:
    """The finished jobs' lines, encoded one at a time and each job let go
    of once handed to the server to send, so that collecting several large
    results holds one encoding at a time; then ``last`` (the footer; in the
    plain JSON shape its keys join the object that ``opening`` began). Jobs
    not handed over when the client leaves can be collected again."""
    try:
        first = True
        while done:
            line = dumps(await encode_line(done[0]))
            jobs.discard(done.popleft().id)
            if opening:
                line = (opening if first else separator) + line
            else:
                line += b"\n"
            first = False
            yield line
        if opening:
            yield (opening if first else b"") + b"]," + last[1:]
        else:
            yield last
    finally:
        for job in done:  # the client left before these were sent
            job.claimed = False


# -- route explanation and log -------------------------------------------------


async def explain_route(request: Request) -> Response:
    """
    summary: Where a user's query through this base would go, and why
    x-pointsman-extension: true
    """
    who = await caller(request)
    base = live_connection(who, request.path_params["id"])
    user_id = request.query_params.get("userId")
    if user_id and not is_uuid(user_id):  # as query/run answers
        raise ValidationFailed("userId", "Invalid uuid")
    runner, own = who.actor, True
    if user_id and user_id.lower() != who.actor.user.id:
        policy.require(who.snapshot, who.actor, Action.ORG_ADMIN)
        user = who.snapshot.users.get(user_id.lower())
        if user is None or not user.active:  # as query/run answers for them
            raise NotFound("User not found")
        runner, own = queries.impersonate(who.actor, user), False
    branch_id = request.query_params.get("branchId") or None
    if branch_id is not None and not is_uuid(branch_id):
        raise ValidationFailed("branchId", "Invalid uuid")
    # The caller's own route needs the right to run it; an admin may ask
    # where anyone would go, even someone who may not query.
    route = queries.route_for(
        who.snapshot, runner, base, branch_id and branch_id.lower(), check=own
    )
    return respond(route.as_dict())


async def query_log(request: Request) -> Response:
    """
    summary: Where each query went and why (org admin; a member sees their own)
    x-pointsman-extension: true
    """
    who = await caller(request)
    await who.services.query_log.flush()
    only_user = policy.query_log_scope(who.actor)
    params = dict(request.query_params)
    return respond(await call(list_entries, who.services.store, params, only_user))


routes = [
    HttpRoute("/api/v1/query/run", run_query, methods=["POST"]),
    HttpRoute("/api/v1/query/wait", wait_query, methods=["GET"]),
    HttpRoute("/api/v1/query/log", query_log, methods=["GET"]),
    HttpRoute("/api/v1/connections/{id}/route", explain_route, methods=["GET"]),
]
