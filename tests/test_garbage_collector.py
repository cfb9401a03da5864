"""``pointsman serve`` collects garbage less often and leaves start-up objects
out of every scan."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pointsman.cli import GC_THRESHOLDS, settle_garbage_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_the_server_collects_less_often_and_skips_start_up_objects(
    restored_collector: None,
) -> None:
    settle_garbage_collector()

    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 1000
