"""The loop monitor: each tick's lateness, on a loop and a clock the test moves by hand."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from collections.abc import Callable

import pytest

from shopkeep.runtime.loop_monitor import RECENT_TICKS, LoopMonitor


class Handle:
    """A timer's handle: whether it was called off."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


Timer = tuple[float, Callable[[], object], Handle]


class HandLoop:
    """A loop whose time moves only when the test says: ``busy`` is a callback that hogs it,
    ``idle`` lets due timers run on time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.cpu = 0.0
        """The loop thread's CPU time: it moves while a callback works, not while it waits."""
        self.timers: list[Timer] = []

    def clock(self) -> float:
        return self.now

    def cpu_clock(self) -> float:
        return self.cpu

    def call_later(self, delay: float, callback: Callable[[], object]) -> Handle:
        handle = Handle()
        self.timers.append((self.now + delay, callback, handle))
        return handle

    def idle(self, seconds: float) -> None:
        """Run every timer due within ``seconds``, each on time."""
        end = self.now + seconds
        while due := self._next_due(end):
            when, callback, handle = due
            self.timers.remove(due)
            self.now = max(self.now, when)  # a timer runs at its time, or late
            if not handle.cancelled:
                callback()
        self.now = end

    def busy(self, seconds: float) -> None:
        """Hold the loop for ``seconds``: timers due meanwhile run late, when it is over."""
        self.now += seconds
        self.cpu += seconds
        self.idle(0.0)

    def off_cpu(self, seconds: float, working: float = 0.0) -> None:
        """Hold the loop for ``seconds`` of which its thread ran only ``working`` (it waited
        for the GIL or a core the rest of the time)."""
        self.now += seconds
        self.cpu += working
        self.idle(0.0)

    def _next_due(self, end: float) -> Timer | None:
        due = [timer for timer in self.timers if timer[0] <= end]
        return min(due, key=lambda timer: timer[0]) if due else None


@pytest.fixture
def loop() -> HandLoop:
    return HandLoop()


def monitor_on(loop: HandLoop, **options: float) -> LoopMonitor:
    monitor = LoopMonitor(
        loop, clock=loop.clock, cpu_clock=loop.cpu_clock, interval_s=0.005, **options
    )
    monitor.start()
    return monitor


def test_an_idle_loop_has_no_stall(loop: HandLoop) -> None:
    monitor = monitor_on(loop)

    loop.idle(1.0)

    assert monitor.ticks == pytest.approx(200, abs=1)  # 5 ms in floats does not add to 1 s
    assert (monitor.max_stall_s, monitor.stalls) == (0.0, 0)


def test_a_busy_callback_is_seen_as_a_stall_as_long_as_it_held_the_loop_past_the_tick(
    loop: HandLoop,
) -> None:
    monitor = monitor_on(loop, threshold_s=0.020)
    loop.idle(0.005)  # a tick ran at 5 ms and asked for 10 ms

    loop.busy(0.050)  # from 5 ms to 55 ms: the tick due at 10 ms runs at 55

    assert monitor.max_stall_s == pytest.approx(0.045)
    assert monitor.stalls == 1
    assert monitor.recent[-1] == pytest.approx(0.045)


def test_the_longest_stall_is_kept_and_only_stalls_over_the_threshold_are_counted(
    loop: HandLoop,
) -> None:
    monitor = monitor_on(loop, threshold_s=0.020)
    for hold in (0.010, 0.040, 0.030, 0.012):
        loop.busy(hold)  # the next tick was due within 5 ms: it runs hold to hold - 5 ms late
        loop.idle(0.1)

    assert 0.035 <= monitor.max_stall_s <= 0.040
    assert monitor.stalls == 2


def test_the_longest_stall_says_how_much_of_it_the_loop_spent_working(loop: HandLoop) -> None:
    monitor = monitor_on(loop)
    loop.idle(0.005)  # a tick ran at 5 ms

    loop.busy(0.030)  # working from 5 to 35 ms
    loop.idle(0.1)
    assert (monitor.max_stall_cpu_s, monitor.max_stall_span_s) == pytest.approx((0.030, 0.030))

    loop.off_cpu(0.050, working=0.002)  # a longer one, spent waiting
    assert monitor.max_stall_s == pytest.approx(0.045, abs=0.005)
    assert monitor.max_stall_cpu_s == pytest.approx(0.002)
    assert 0.050 <= monitor.max_stall_span_s <= 0.055  # from the tick before, up to 5 ms earlier


def test_after_a_stall_the_ticks_are_on_time_again(loop: HandLoop) -> None:
    monitor = monitor_on(loop)
    loop.busy(0.100)
    ticks = monitor.ticks

    loop.idle(0.5)

    assert monitor.ticks == pytest.approx(ticks + 100, abs=1)  # no burst of catching-up ticks
    assert list(monitor.recent)[-99:] == [0.0] * 99


def test_only_the_latest_ticks_are_kept_for_quantiles(loop: HandLoop) -> None:
    monitor = monitor_on(loop)

    loop.idle(0.005 * (RECENT_TICKS + 10))

    assert len(monitor.recent) == RECENT_TICKS


def test_a_stopped_monitor_ticks_no_more_and_keeps_its_figures(loop: HandLoop) -> None:
    monitor = monitor_on(loop)
    loop.busy(0.030)
    monitor.stop()
    seen = (monitor.ticks, monitor.max_stall_s)

    loop.busy(0.500)

    assert not monitor.running
    assert (monitor.ticks, monitor.max_stall_s) == seen


async def test_on_a_real_loop_a_blocking_call_is_measured() -> None:
    monitor = LoopMonitor(asyncio.get_running_loop(), interval_s=0.001)
    monitor.start()
    try:
        await asyncio.sleep(0.01)  # let it tick
        time.sleep(0.060)  # hold the loop: this is what it must see
        await asyncio.sleep(0.01)
    finally:
        monitor.stop()

    assert 0.050 <= monitor.max_stall_s < 0.5
    assert monitor.ticks > 2
    assert monitor.max_stall_cpu_s < 0.040  # a sleep holds the loop without working


async def test_on_a_real_loop_a_stall_spent_computing_shows_its_cpu_time() -> None:
    monitor = LoopMonitor(asyncio.get_running_loop(), interval_s=0.001)
    monitor.start()
    try:
        await asyncio.sleep(0.01)  # let it tick
        started = time.thread_time()
        while time.thread_time() - started < 0.060:  # hold the loop, working
            pass
        await asyncio.sleep(0.01)
    finally:
        monitor.stop()

    assert monitor.max_stall_s >= 0.050
    assert monitor.max_stall_cpu_s >= 0.060


def test_a_garbage_collection_is_timed_by_generation(loop: HandLoop) -> None:
    readings = itertools.count()
    monitor = LoopMonitor(loop, clock=lambda: float(next(readings)))  # each reading 1 s on
    monitor.start()
    try:
        gc.collect(2)
    finally:
        monitor.stop()

    assert monitor.gc_pause_max_s[2] == 1.0
    assert monitor._on_gc not in gc.callbacks  # a stopped monitor leaves the collector alone


def test_the_time_in_collections_is_added_up_by_generation(loop: HandLoop) -> None:
    readings = itertools.count()
    monitor = LoopMonitor(loop, clock=lambda: float(next(readings)))  # each reading 1 s on
    gc.disable()  # only these three: no automatic collection in between
    monitor.start()
    try:
        gc.collect(2)
        gc.collect(2)
        gc.collect(0)
    finally:
        monitor.stop()
        gc.enable()

    assert monitor.gc_collections == [1, 0, 2]
    assert monitor.gc_seconds == [1.0, 0.0, 2.0]  # each collection read the clock twice
