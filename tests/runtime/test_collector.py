"""The collector's settings for a long-running shop process: young objects collected less often,
and what survives generation 1 frozen."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopkeep.bootstrap import open_runtime
from shopkeep.runtime import collector
from tests.runtime.conftest import OpenRuntime
from tests.runtime.probe import PROBE_MIGRATIONS, Probe


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


class Node:
    """An object that can be in a reference cycle and watched by a weak reference."""

    def __init__(self) -> None:
        self.other: Node | None = None


def frozen_cycle() -> weakref.ref[Node]:
    """A reference cycle, frozen, then dropped: garbage that no collection walks."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    gc.freeze()
    return weakref.ref(first)


@pytest.mark.usefixtures("process_collector")
def test_collecting_the_frozen_frees_a_frozen_cycle_gone_to_garbage() -> None:
    collector.freeze_survivors()
    watched = frozen_cycle()
    gc.collect()
    assert watched() is not None  # frozen: no collection sees it

    collected = collector.collect_frozen()

    assert watched() is None
    assert collected >= 2


@pytest.mark.usefixtures("process_collector")
def test_without_the_freeze_collecting_the_frozen_does_nothing() -> None:
    collector._installed = False
    watched = frozen_cycle()

    assert collector.collect_frozen() == 0
    assert watched() is not None


@pytest.mark.usefixtures("process_collector")
async def test_a_runtime_that_opens_collects_what_earlier_ones_left_frozen(
    open_probe_runtime: OpenRuntime,
) -> None:
    collector.freeze_survivors()
    watched = frozen_cycle()

    await open_probe_runtime()

    assert watched() is None


@pytest.mark.usefixtures("process_collector")
async def test_a_runtime_that_opens_beside_a_running_one_leaves_the_frozen_alone(
    open_probe_runtime: OpenRuntime, tmp_path: Path
) -> None:
    collector.freeze_survivors()
    await open_probe_runtime()  # running: a full collection now would pause it
    watched = frozen_cycle()

    async with open_runtime(str(tmp_path / "beside.db"), kinds=[Probe],
                            migrations=PROBE_MIGRATIONS):
        assert watched() is not None
