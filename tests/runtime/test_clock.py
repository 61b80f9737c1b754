"""The real clock keeps wall time: a callback due at a wall time runs when the wall clock
reads it, even when the clock steps meanwhile (the loop's own timers count monotonic time)."""

from __future__ import annotations

import asyncio
import time

import pytest

from shopkeep.runtime import clock as clock_module
from shopkeep.runtime.clock import RealClock

RECHECK_S = 0.02
WAIT_S = 5.0


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The wall clock's step, which a test sets: time.time() is the real time plus it."""
    step = [0.0]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + step[0])
    monkeypatch.setattr(clock_module, "WALL_RECHECK_S", RECHECK_S)
    return step


async def test_a_callback_an_hour_off_runs_at_once_when_the_wall_clock_steps_past_it(
    wall: list[float],
) -> None:
    # a virtual machine resumed after an hour's pause: the loop's monotonic timer would
    # have waited the whole hour more, and the deadlines due meanwhile for the sweep
    ran = asyncio.Event()
    RealClock().call_at(time.time() + 3600, ran.set)

    wall[0] = 3600

    await asyncio.wait_for(ran.wait(), WAIT_S)


async def test_a_callback_runs_no_sooner_than_its_wall_time_when_the_clock_steps_back(
    wall: list[float],
) -> None:
    ran = asyncio.Event()
    due = time.time() + 10 * RECHECK_S
    RealClock().call_at(due, ran.set)

    wall[0] = -10 * RECHECK_S  # it is due twice as far off now
    await asyncio.wait_for(ran.wait(), WAIT_S)

    assert time.time() >= due


async def test_a_canceled_callback_never_runs(wall: list[float]) -> None:
    ran = asyncio.Event()
    handle = RealClock().call_at(time.time() + 3 * RECHECK_S, ran.set)
    handle.cancel()
    after = asyncio.Event()
    RealClock().call_at(time.time() + 6 * RECHECK_S, after.set)

    await asyncio.wait_for(after.wait(), WAIT_S)

    assert not ran.is_set()
