"""How long the event loop goes without getting back to its timers: its stalls.

A coroutine that computes for 50 ms without awaiting, a full collection of the garbage
collector, a synchronous read of a file: while one runs, nothing else on the loop does, and
every request waiting on it is late by as much. :class:`LoopMonitor` sees them from the
outside, cheaply: a callback that asks to run every ``interval_s`` measures, each time it runs,
how much later than asked it did. That lateness is a stall (the loop was busy with something
else, or with many things in one go), read with a resolution of about ``interval_s``: a stall
that began just after a tick is seen ``interval_s`` shorter than it was, never longer.

What it keeps: the longest stall since start (:attr:`LoopMonitor.max_stall_s`), how many
stalls reached ``threshold_s`` (:attr:`LoopMonitor.stalls`), and the lateness of the last
ticks (:attr:`LoopMonitor.recent`), for quantiles. At the default interval of 5 ms it runs 200
callbacks a second, each a few microseconds: a thousandth of a core or less.

It also times the cyclic garbage collector's collections (``gc.callbacks``), the usual cause
of a long stall in a process with a large heap: the longest pause of each generation since
start (:attr:`LoopMonitor.gc_pause_max_s`), so a stall can be told apart from a collection.

A stall is either work or waiting: the loop's own Python running long, or its thread not
running at all (waiting for the GIL another thread holds, or for a core the system gave to
another process). The monitor tells them apart by the loop thread's CPU time
(``time.thread_time``) over the interval that ended in the longest stall
(:attr:`LoopMonitor.max_stall_cpu_s`): close to the stall, the loop was working; far below,
it was waiting.

It knows nothing of what runs on the loop; the clock and the loop are given, so a test can
drive it on a loop of its own with a clock it moves by hand.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

from shopkeep.tally import Tally

INTERVAL_S: Final = 0.005
"""How often the monitor asks to run: the resolution of what it measures."""
THRESHOLD_S: Final = 0.020
"""A lateness from which a tick counts as a stall (:attr:`LoopMonitor.stalls`)."""
RECENT_TICKS: Final = 1024
LAG_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
"""Bounds of the lateness histogram, seconds: on an idle loop a tick is late by well under a
millisecond; the 20 ms bucket is the benchmarks' stall bound."""
"""How many of the latest latenesses are kept for quantiles."""


class Cancellable(Protocol):
    """A callback asked for, which can be called off (asyncio's ``TimerHandle``)."""

    def cancel(self) -> None:
        """Do not call it."""


class TimerLoop(Protocol):
    """What the monitor needs of an event loop: to be called back after a delay."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> Cancellable:
        """Call ``callback`` in ``delay`` seconds (asyncio's signature, without ``*args``)."""
        ...


class LoopMonitor:
    """A periodic callback that records how late it runs; see the module's docstring."""

    def __init__(
        self,
        loop: TimerLoop,
        *,
        interval_s: float = INTERVAL_S,
        threshold_s: float = THRESHOLD_S,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self._loop = loop
        self._interval_s = interval_s
        self.threshold_s = threshold_s
        """A tick at least this late counts in :attr:`stalls`."""
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._due = 0.0
        self._last_cpu = 0.0
        self._last_tick = 0.0
        self._handle: Cancellable | None = None
        self.max_stall_s = 0.0
        """The longest lateness seen since :meth:`start`, seconds."""
        self.max_stall_cpu_s = 0.0
        """The loop thread's CPU time from the tick before the longest stall to its end,
        seconds: the part of that interval the loop spent working."""
        self.max_stall_span_s = 0.0
        """The wall time from the tick before the longest stall to its end, seconds (the
        interval :attr:`max_stall_cpu_s` is measured over)."""
        self.stalls = 0
        """How many ticks were at least ``threshold_s`` late."""
        self.ticks = 0
        """How many ticks ran."""
        self.recent: deque[float] = deque(maxlen=RECENT_TICKS)
        """The lateness of the latest ticks, seconds, oldest first."""
        self.lag_s = Tally(LAG_BUCKETS)
        """Every tick's lateness since :meth:`start`, counted in buckets (a histogram)."""
        self.gc_pause_max_s = [0.0, 0.0, 0.0]
        """The longest collection of each generation (0, 1, 2) since :meth:`start`, seconds."""
        self.gc_seconds = [0.0, 0.0, 0.0]
        """The time spent in collections of each generation since :meth:`start`, seconds: the
        collector's share of the process, beside the loop's CPU."""
        self.gc_collections = [0, 0, 0]
        """Collections of each generation since :meth:`start`."""
        self._gc_started = 0.0

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._handle is not None

    def start(self) -> None:
        """Begin ticking (again, after a stop; the figures go on from where they were)."""
        if self._handle is None:
            self._last_cpu = self._cpu_clock()
            self._arm()
            self._last_tick = self._clock()
            gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        """Stop ticking; the figures stay readable."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # The collector calls this before and after each collection, in whichever thread
        # allocated last: a pause is per process, as a stall of the loop is.
        if phase == "start":
            self._gc_started = self._clock()
            return
        pause = self._clock() - self._gc_started
        generation = info["generation"]
        self.gc_seconds[generation] += pause
        self.gc_collections[generation] += 1
        if pause > self.gc_pause_max_s[generation]:
            self.gc_pause_max_s[generation] = pause

    def _arm(self) -> None:
        self._due = self._clock() + self._interval_s
        self._handle = self._loop.call_later(self._interval_s, self._tick)

    def _tick(self) -> None:
        now, cpu = self._clock(), self._cpu_clock()
        late = max(0.0, now - self._due)
        self.ticks += 1
        self.recent.append(late)
        self.lag_s.observe(late)
        if late > self.max_stall_s:
            self.max_stall_s = late
            self.max_stall_cpu_s = cpu - self._last_cpu
            self.max_stall_span_s = now - self._last_tick
        if late >= self.threshold_s:
            self.stalls += 1
        self._last_cpu, self._last_tick = cpu, now
        self._arm()
