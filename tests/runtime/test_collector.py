"""The collector's settings for a long-running shop process: young objects collected less often,
and what survives generation 1 frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shopkeep.runtime import collector


@pytest.fixture
def process_collector() -> Iterator[None]:
    """The test process's collector as it was, once the test is over."""
    thresholds = gc.get_threshold()
    callbacks = list(gc.callbacks)
    installed = collector._installed
    try:
        yield
    finally:
        gc.callbacks[:] = callbacks
        collector._installed = installed
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@pytest.mark.usefixtures("process_collector")
def test_young_objects_are_collected_at_the_shops_thresholds() -> None:
    collector.freeze_survivors()

    assert gc.get_threshold() == collector.THRESHOLDS


@pytest.mark.usefixtures("process_collector")
def test_what_survives_a_generation_1_collection_is_frozen() -> None:
    collector.freeze_survivors()
    frozen = collector.frozen_objects()
    survivors = [[n] for n in range(1_000)]

    gc.collect(1)

    assert collector.frozen_objects() >= frozen + len(survivors)


@pytest.mark.usefixtures("process_collector")
def test_freezing_twice_installs_one_callback() -> None:
    collector.freeze_survivors()
    collector.freeze_survivors()

    assert gc.callbacks.count(collector._freeze_after_generation_1) == 1
