"""Job ids: random version 4 UUIDs in their canonical spelling."""

from __future__ import annotations

import uuid

from pointsman.services.queries import new_job_id


def test_job_ids_are_canonical_random_uuids() -> None:
    ids = [new_job_id() for _ in range(2000)]

    assert len(set(ids)) == len(ids)
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert str(parsed) == job_id
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
