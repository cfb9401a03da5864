"""Jobs finished long ago are forgotten, with the memory their held results
took, even while no query comes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pointsman.api import queries as api_queries
from pointsman.routing.resolver import Route
from pointsman.services import jobs as jobs_module
from pointsman.services.jobs import Jobs

pytestmark = pytest.mark.anyio


async def test_an_idle_server_forgets_old_jobs_and_what_they_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jobs_module, "KEEP_FINISHED_SECONDS", 0.05)
    monkeypatch.setattr(jobs_module, "SWEEP_SECONDS", 0.05)
    monkeypatch.setattr(api_queries, "SWEEP_SECONDS", 0.05)
    jobs = Jobs()

    async def work() -> Any:
        return None

    route = Route("base", "base", None, "base", "no environment claims it")
    job = jobs.submit(
        job_id="j1",
        owner_id="u1",
        route=route,
        sql="select 1",
        result_type=None,
        work=work,
    )
    await job.task
    jobs.held_room("j1", 1000).take(600)
    assert jobs.held_bytes == 600

    sweeper = asyncio.create_task(api_queries.sweep_jobs(jobs))
    try:
        await asyncio.sleep(0.3)
    finally:
        sweeper.cancel()

    assert jobs.get("j1") is None
    assert jobs.held_bytes == 0
