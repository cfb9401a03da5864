"""Job ids: time-ordered random UUIDs (version 7) in their canonical spelling."""

from __future__ import annotations

import time
import uuid

from pointsman.services.queries import new_job_id


def test_job_ids_are_canonical_unique_version_7_uuids() -> None:
    ids = [new_job_id() for _ in range(2000)]

    assert len(set(ids)) == len(ids)
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert str(parsed) == job_id
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122


def test_job_ids_carry_the_time_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    job_id = new_job_id()
    after = time.time_ns() // 1_000_000

    assert before <= uuid.UUID(job_id).int >> 80 <= after


def test_later_job_ids_sort_after_earlier_ones() -> None:
    first = new_job_id()
    time.sleep(0.002)

    assert new_job_id() > first
