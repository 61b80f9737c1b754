"""Time, injected: a real clock for production, a virtual one that tests move by hand.

Everything in the runtime that waits (timers, back-off, ask timeouts, passivation) goes through
a :class:`Clock`, so a test can jump 30 minutes at once and see the exact order of events.
Times are seconds since the Unix epoch (timers are stored with them).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Cancellable(Protocol):
    """A scheduled callback that can be called off."""

    def cancel(self) -> None:
        """Do not run the callback (no effect once it ran)."""
        ...


class Clock(Protocol):
    """The source of time and delayed callbacks."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` on the loop at ``when`` (at once if ``when`` has passed)."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` on the loop after ``delay`` seconds."""
        ...

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds."""
        ...


async def sleep_by_callback(clock: Clock, delay: float) -> None:
    """Wait ``delay`` seconds of ``clock`` by scheduling a wake-up through its ``call_later``
    (for clocks whose time is not the loop's: the sleep then ends when that time moves)."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    handle = clock.call_later(delay, wake)
    try:
        await future
    finally:
        handle.cancel()


WALL_RECHECK_S = 1.0
"""How often a callback due at a wall time further off looks at the wall clock again. The
loop's timers count monotonic time: without a look, a callback armed before the wall clock
stepped (NTP, a person, a virtual machine resumed after a pause, which monotonic time does
not count) would run the step too early or too late."""


class _AtWallTime:
    """A callback run once the wall clock reads ``when``, looking at it every
    :data:`WALL_RECHECK_S` until then."""

    __slots__ = ("_callback", "_handle", "_when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self._when = when
        self._callback = callback
        self._arm()

    def _arm(self) -> None:
        delay = self._when - time.time()
        loop = asyncio.get_running_loop()
        if delay > WALL_RECHECK_S:
            self._handle = loop.call_later(WALL_RECHECK_S, self._arm)
        else:
            self._handle = loop.call_later(max(0.0, delay), self._callback)

    def cancel(self) -> None:
        self._handle.cancel()


class RealClock:
    """Wall time, with the event loop's timers."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` once the wall clock reads ``when``: a step of the clock moves it
        by the step (noticed within :data:`WALL_RECHECK_S`), as it moves every wall time the
        application keeps (a deadline it stored, say)."""
        return _AtWallTime(when, callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` after ``delay`` seconds."""
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds."""
        await asyncio.sleep(max(0.0, delay))


class _VirtualHandle:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


VIRTUAL_EPOCH = 1_767_225_600.0
"""2026-01-01T00:00:00Z: where a virtual clock starts unless told otherwise."""


class VirtualClock:
    """Time that moves only when a test calls :meth:`advance`.

    Callbacks due during an advance run in time order, each at its own instant, and the loop is
    given ``settle_rounds`` turns after each so that the tasks they wake can act (and schedule
    further callbacks) before time moves on.
    """

    def __init__(self, start: float = VIRTUAL_EPOCH, settle_rounds: int = 20) -> None:
        self._now = start
        self._heap: list[tuple[float, int, _VirtualHandle]] = []
        self._seq = itertools.count()
        self._settle_rounds = settle_rounds

    def now(self) -> float:
        """The virtual time."""
        return self._now

    def step(self, seconds: float) -> None:
        """Set the time ``seconds`` forward or back at once, running nothing: a wall clock
        stepped (NTP, a person). Callbacks keep their wall times: the next :meth:`advance`
        runs those it reaches."""
        self._now += seconds

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` when an advance reaches ``when`` (on the next turn if it passed)."""
        handle = _VirtualHandle(when, callback)
        if when <= self._now:
            asyncio.get_running_loop().call_soon(self._run, handle)
        else:
            heapq.heappush(self._heap, (when, next(self._seq), handle))
        return handle

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` ``delay`` virtual seconds from now."""
        return self.call_at(self._now + max(0.0, delay), callback)

    async def sleep(self, delay: float) -> None:
        """Wait until an advance moves past ``delay`` virtual seconds from now."""
        await sleep_by_callback(self, delay)

    @staticmethod
    def _run(handle: _VirtualHandle) -> None:
        if not handle.cancelled:
            handle.cancelled = True
            handle.callback()

    async def settle(self) -> None:
        """Give the loop a few turns so that woken tasks run before time moves again."""
        for _ in range(self._settle_rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every callback that falls due on the way."""
        target = self._now + seconds
        await self.settle()
        while self._heap and self._heap[0][0] <= target:
            when, _, handle = heapq.heappop(self._heap)
            self._now = max(self._now, when)
            self._run(handle)
            await self.settle()
        self._now = max(self._now, target)
        await self.settle()

    @property
    def pending(self) -> int:
        """Callbacks still scheduled (cancelled ones included until they are reached)."""
        return len(self._heap)
