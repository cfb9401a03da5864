"""query/wait sends its jobs one at a time: a client that leaves part-way
loses only what was handed over; the rest can be collected again."""

from __future__ import annotations

from collections import deque

import orjson
import pytest

from pointsman.api.queries import _collected
from pointsman.engines.spec import Column, QueryResult
from pointsman.routing.resolver import Route
from pointsman.services.jobs import Job, Jobs

pytestmark = pytest.mark.anyio


async def finished_jobs(jobs: Jobs, count: int) -> list[Job]:
    route = Route("base", "base", None, "base", "no environment claims it")
    made = []
    for index in range(count):

        async def work(value: int = index) -> QueryResult:
            return QueryResult([Column("a", "int64")], [(value,)])

        job = jobs.submit(
            job_id=f"job-{index}",
            owner_id="u1",
            route=route,
            sql="select a",
            result_type="json",
            work=work,
        )
        await job.task
        job.claimed = True
        made.append(job)
    return made


async def test_a_client_gone_after_the_first_line_leaves_the_rest_collectible() -> None:
    jobs = Jobs()
    made = await finished_jobs(jobs, 3)
    body = _collected(jobs, deque(made), b"", b"", b'{"footer":true}\n')

    line = await body.__anext__()
    await body.aclose()

    assert orjson.loads(line)["job_id"] == "job-0"
    assert jobs.get("job-0") is None  # handed over: gone
    assert [jobs.get(f"job-{i}") for i in (1, 2)] == made[1:]
    assert not any(job.claimed for job in made[1:])


async def test_every_job_sent_is_let_go_and_the_footer_comes_last() -> None:
    jobs = Jobs()
    made = await finished_jobs(jobs, 2)

    body = [
        chunk
        async for chunk in _collected(
            jobs, deque(made), b'{"results":[', b",", b'{"timed_out":"false"}'
        )
    ]

    whole = orjson.loads(b"".join(body))
    assert [line["result"] for line in whole["results"]] == [[{"a": 0}], [{"a": 1}]]
    assert whole["timed_out"] == "false"
    assert all(jobs.get(job.id) is None for job in made)
