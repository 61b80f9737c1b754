"""When journeys start: closed or paced, with a ramp, until the end or an early stop.

- Closed (no ``--rate``): ``concurrency`` workers, each starting its next journey as soon as
  its last one ended. With ``--ramp``, worker ``n`` joins at ``ramp * n / concurrency``: the
  concurrency rises linearly to its target. A worker whose time to join is past the end never
  starts (a ramp longer than the run held it idle until then).
- Paced (``--rate``): an open schedule. Start ``k`` is due at a time fixed in advance
  (:func:`paced_start`; with ``--ramp`` the rate rises linearly from 0), whatever the answers
  to earlier starts. A free worker (one of ``concurrency``: the in-flight cap) takes it; its
  journey's first operation is timed from the start's due time, not from when it was made, so
  a slow shop that delays the schedule shows in the latencies (no coordinated omission). A
  start that cannot be made on time is *dropped*, counted by reason: ``busy`` when every worker
  is in a journey, ``late`` when the schedule itself is behind by more than
  :data:`LATE_BOUND_S` (the event loop was held up). The schedule lasts until the end, past
  its last start: a run is as long as it was told, however slow its rate (at 0.5 a second, a
  5 s run ended when its last journey, due at 4 s, did).

Either way a run ends at its end, plus what is in flight then.

Setting ``stop`` (Ctrl-C) ends either at once: no journey starts, those under way are
cancelled (their unfinished operation is not counted).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

from shopkeep.bench.load.recorder import Recorder

LATE_BOUND_S: Final = 0.1
"""How far behind its due time a paced start may still be made (then it is dropped)."""


@dataclass
class Lead:
    """The due time of a paced journey (the run's clock), until its first operation took it."""

    due: float | None


LEAD: ContextVar[Lead | None] = ContextVar("shopkeep_bench_lead", default=None)
"""Set in the task of each paced journey (see :func:`take_due`)."""


def take_due() -> float | None:
    """The due time of the paced journey running in this task, once (its first operation
    counts from it); None for every later operation and in a closed run."""
    lead = LEAD.get()
    if lead is None or lead.due is None:
        return None
    due, lead.due = lead.due, None
    return due


def paced_start(k: int, rate: float, ramp_s: float) -> float:
    """When start ``k`` (from 0) is due: ``rate`` a second, reached linearly over ``ramp_s``.

    Over the ramp the rate is ``rate * t / ramp_s``, so ``rate * t**2 / (2 * ramp_s)`` starts
    are due by ``t``; after it, ``rate`` more a second.
    """
    on_ramp = rate * ramp_s / 2
    if k <= on_ramp and ramp_s > 0:
        return math.sqrt(2 * ramp_s * k / rate)
    return ramp_s + (k - on_ramp) / rate


def worker_start(number: int, concurrency: int, ramp_s: float) -> float:
    """When closed worker ``number`` (from 0) joins the run."""
    return ramp_s * number / concurrency


RunOne = Callable[[int, int | None], Awaitable[None]]
"""Runs one journey on worker ``n`` (its shoppers), the start's number in a paced run (its
random picks: which worker is free to take a start depends on timing), None in a closed one
(the worker's own picks, in turn)."""


class Schedule:
    """Starts journeys through ``run_one`` until ``ends_at`` (the run's clock) or ``stop``."""

    def __init__(
        self,
        recorder: Recorder,
        run_one: RunOne,
        *,
        concurrency: int,
        ends_at: float,
        ramp_s: float = 0.0,
        rate: float | None = None,
        stop: asyncio.Event | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.recorder = recorder
        self.run_one = run_one
        self.concurrency = concurrency
        self.ends_at = ends_at
        self.ramp_s = ramp_s
        self.rate = rate
        self.stop = stop or asyncio.Event()
        self.sleep = sleep
        self.running: set[asyncio.Task[None]] = set()
        self.crash: BaseException | None = None

    async def run(self) -> None:
        """Closed or paced, as ``rate`` says; returns when every journey ended (or at stop)."""
        if self.rate is None:
            await self.closed()
        else:
            await self.paced(self.rate)

    async def _until(self, delay: float) -> None:
        if delay > 0:
            await self.sleep(delay)

    async def closed(self) -> None:
        """Each worker starts its next journey when its last one ended."""

        async def worker(number: int) -> None:
            joins = worker_start(number, self.concurrency, self.ramp_s)
            if joins >= self.ends_at:
                return  # past the end: it never starts
            await self._until(joins - self.recorder.now())
            while not self.stop.is_set() and self.recorder.now() < self.ends_at:
                await self.run_one(number, None)

        for number in range(self.concurrency):
            self._spawn(worker(number))
        await self._finish()

    async def paced(self, rate: float) -> None:
        """Starts due at :func:`paced_start`, each taken by a free worker or dropped."""
        free = list(range(self.concurrency - 1, -1, -1))

        async def journey(number: int, start: int, due: float) -> None:
            LEAD.set(Lead(due))
            try:
                await self.run_one(number, start)
            finally:
                free.append(number)

        async def dispatch() -> None:
            for k in range(2**62):
                due = paced_start(k, rate, self.ramp_s)
                if due >= self.ends_at:
                    await self._until(self.ends_at - self.recorder.now())
                    return
                await self._until(due - self.recorder.now())
                if self.stop.is_set():
                    return
                self.recorder.plan(due)
                if self.recorder.now() - due > LATE_BOUND_S:
                    self.recorder.drop("late", due)
                elif not free:
                    self.recorder.drop("busy", due)
                else:
                    self._spawn(journey(free.pop(), k, due))

        self._spawn(dispatch())
        await self._finish()

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self.running.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        if not task.cancelled() and task.exception() is not None and self.crash is None:
            self.crash = task.exception()  # a bug of the harness, not a refusal: raised

    async def _finish(self) -> None:
        """Wait until every task is done, or ``stop`` (then cancel those left)."""
        stopper = asyncio.create_task(self.stop.wait())
        try:
            while self.running and not self.stop.is_set() and self.crash is None:
                await asyncio.wait(self.running | {stopper}, return_when=asyncio.FIRST_COMPLETED)
                await asyncio.sleep(0)  # let the done callbacks run
        finally:
            stopper.cancel()
            left = list(self.running)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
        if self.crash is not None:
            raise self.crash
