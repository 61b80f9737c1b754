"""The longest time the event loop was kept from running anything else, during a benchmark.

A callback re-arms itself every :data:`INTERVAL_S`; how late it runs is how long the loop was
held (by a garbage collection, a long handler, the GIL held elsewhere). The longest lateness
is the stall figure; a stall shorter than the interval can hide between two ticks, which is
why the interval is small compared with the 20 ms the benchmarks are judged by.
"""

from __future__ import annotations

import asyncio
import time

INTERVAL_S = 0.002


class LoopStallMonitor:
    """Measures the running loop's longest stall between :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self.max_stall_s = 0.0
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Begin watching the running loop."""
        self._arm()

    def stop(self) -> None:
        """Stop watching; ``max_stall_s`` keeps the longest stall seen."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self) -> None:
        self._due = time.perf_counter() + INTERVAL_S
        self._handle = asyncio.get_running_loop().call_later(INTERVAL_S, self._tick)

    def _tick(self) -> None:
        late = time.perf_counter() - self._due
        if late > self.max_stall_s:
            self.max_stall_s = late
        self._arm()
