"""Query jobs: a query runs as a task so that a response can stop waiting
for it (``timed_out: "true"``) while it goes on, and ``query/wait`` can
collect it later."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pointsman.engines.spec import QueryResult
from pointsman.engines.streams import RowStream
from pointsman.errors import PointsmanError, ServiceUnavailable
from pointsman.routing.resolver import Route
from pointsman.services.queries import new_job_id

log = logging.getLogger(__name__)

KEEP_FINISHED_SECONDS = 600.0
SWEEP_SECONDS = 10.0


@dataclass
class Job:
    id: str
    owner_id: str
    route: Route
    sql: str
    result_type: str | None
    task: asyncio.Task[QueryResult | RowStream]
    client_result_id: str = field(default_factory=new_job_id)
    finished_at: float | None = None
    # Set when no response waits for the job any more: a result too large to
    # stream is then read into memory, for query/wait to collect.
    detached: bool = False
    # Records how a streamed result ended (status, error, rows sent).
    finish: Callable[[str, PointsmanError | None, int], None] | None = None
    # The memory its held result takes (taken as its rows are read).
    held_bytes: int = 0
    # Being sent by one query/wait: no other one hands it out.
    claimed: bool = False

    def error(self) -> PointsmanError | None:
        if not self.task.done() or self.task.cancelled():
            return None
        exc = self.task.exception()
        if exc is None:
            return None
        if isinstance(exc, PointsmanError):
            return exc
        return PointsmanError()


class Jobs:
    """The jobs of this process. A job is known only to the process that
    runs it; ``query/wait`` on another replica answers 404."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._next_sweep = 0.0
        self._held_bytes = 0  # of every result held for query/wait

    def submit(
        self,
        *,
        job_id: str,
        owner_id: str,
        route: Route,
        sql: str,
        result_type: str | None,
        work: Callable[[], Awaitable[QueryResult | RowStream]],
    ) -> Job:
        self.forget_old()
        task = asyncio.get_running_loop().create_task(self._run(job_id, work))
        job = Job(job_id, owner_id, route, sql, result_type, task)
        self._jobs[job_id] = job
        return job

    async def _run(
        self, job_id: str, work: Callable[[], Awaitable[QueryResult | RowStream]]
    ) -> QueryResult | RowStream:
        try:
            return await work()
        finally:
            job = self._jobs.get(job_id)
            if job is not None:
                job.finished_at = time.monotonic()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def discard(self, job_id: str) -> None:
        job = self._jobs.pop(job_id, None)
        if job is not None:
            self._held_bytes -= job.held_bytes

    def held_room(self, job_id: str, total: int) -> HeldRoom:
        """The memory a job's held result may take: what every held result
        together leaves of ``total``."""
        return HeldRoom(self, job_id, total)

    def release_held(self, job_id: str) -> None:
        """Give back what a job's held result took (it failed: nothing held)."""
        job = self._jobs.get(job_id)
        if job is not None:
            self._held_bytes -= job.held_bytes
            job.held_bytes = 0

    def _take_held(self, job_id: str, size: int) -> None:
        job = self._jobs.get(job_id)
        if job is not None:  # else discarded meanwhile: nobody collects it
            job.held_bytes += size
            self._held_bytes += size

    @property
    def held_bytes(self) -> int:
        return self._held_bytes

    def forget_old(self) -> None:
        """Drop jobs finished long ago (at most once per SWEEP_SECONDS: a scan
        of every job on every query would cost more than the jobs). Called
        on every submit and every SWEEP_SECONDS, so that an idle server
        gives back what uncollected results held too."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        cutoff = now - KEEP_FINISHED_SECONDS
        stale = [
            job_id
            for job_id, job in self._jobs.items()
            if job.finished_at is not None and job.finished_at < cutoff
        ]
        for job_id in stale:
            self.discard(job_id)

    async def cancel_all(self) -> None:
        running = [job.task for job in self._jobs.values() if not job.task.done()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


HELD_FULL = (
    "Too many results are held for query/wait right now; "
    "collect finished ones or try again later"
)


class HeldRoom:
    """One job's share of the memory held results may take (see
    ``streams.Room``): taken as its rows are read, given back when the job
    is collected or forgotten."""

    def __init__(self, jobs: Jobs, job_id: str, total: int) -> None:
        self._jobs = jobs
        self._job_id = job_id
        self._total = total

    def left(self) -> int:
        if self._jobs.get(self._job_id) is None:
            return 0
        return max(0, self._total - self._jobs.held_bytes)

    def take(self, size: int) -> None:
        self._jobs._take_held(self._job_id, size)

    def none_left(self) -> Exception:
        return ServiceUnavailable(HELD_FULL)


async def wait_for(jobs: list[Job], seconds: float) -> None:
    """Wait until every job is done or ``seconds`` pass."""
    pending = [job.task for job in jobs if not job.task.done()]
    if pending and seconds > 0:
        await asyncio.wait(pending, timeout=seconds)


def consume_result(job: Job) -> Any:
    """Mark a finished task's exception as retrieved (avoids asyncio noise)."""
    if job.task.done() and not job.task.cancelled():
        return job.task.exception()
    return None
