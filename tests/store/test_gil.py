"""The process that owns the loop hands the GIL to the store's threads within 0.5 ms."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from shopkeep.store.gil import SWITCH_INTERVAL_S, hand_gil_over_sooner


@pytest.fixture
def switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("switch_interval")
def test_the_interpreter_switches_threads_ten_times_sooner_than_its_default() -> None:
    sys.setswitchinterval(0.005)  # CPython's default
    hand_gil_over_sooner()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    assert sys.getswitchinterval() * 10 == pytest.approx(0.005)
