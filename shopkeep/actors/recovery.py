"""Supervision of the order sagas at start and over time.

- :func:`recover_cut_placements` (run once, right after the system starts): every order still
  ``pending`` in the database is a placement cut by a crash (nothing else leaves one pending
  once its handler is gone). Each is told :class:`UndoPlacement`, and the order actor releases
  whatever the placement may have taken and ends canceled, placement_failed, failure code
  ``interrupted`` (SPEC 2: a cut placement is completed or fully undone, never half-done).
  The compensations give back only what the order holds, so running this twice is harmless.
- :func:`start_deadline_sweep`: a periodic backup of the durable deadline timers (SPEC 4).
  Every ``sweep_interval_s`` it tells DeadlineReached to each unpaid order past its deadline,
  and UndoPlacement to each order pending for longer than a grace period (a placement whose
  message was lost, e.g. parked as a dead letter, would otherwise wait for the next restart).

Both only *tell* the order actors: the order's mailbox serialises them with everything else, so
an UndoPlacement queued behind a running placement finds it finished and does nothing, and a
DeadlineReached for an order paid meanwhile does nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_messages import DeadlineReached, UndoPlacement
from shopkeep.actors.order_store import overdue_orders, pending_orders
from shopkeep.runtime import ActorSystem, Address, Overloaded
from shopkeep.runtime.clock import Cancellable

log = structlog.get_logger("shopkeep.recovery")

BATCH = 1000
"""Orders asked at once during recovery; and the most told per sweep and query."""


async def recover_cut_placements(system: ActorSystem) -> int:
    """Undo every placement left pending by a previous run; answer how many were undone.

    Call it after the system has started and before taking requests (a pending order of this
    run would be found too, and be left alone: its UndoPlacement waits behind its placement).
    """
    undone = await _undo_pending(system)
    if undone:  # what a restart after a crash did, for whoever checks on it
        log.info("placements_recovered", undone=undone)
    return undone


async def _undo_pending(system: ActorSystem) -> int:
    now = system.clock.now()
    undone = 0
    while True:
        order_ids = await pending_orders(system.store.reader, now, BATCH)
        if not order_ids:
            return undone
        answers = await asyncio.gather(
            *(system.ask(Address("order", order_id), UndoPlacement(), internal=True)
              for order_id in order_ids),
            return_exceptions=True,
        )
        undone_now = 0
        for order_id, answer in zip(order_ids, answers, strict=True):
            if isinstance(answer, BaseException):
                log.error("placement_recovery_failed", order_id=order_id,
                          error=f"{type(answer).__name__}: {answer}")
            else:
                undone_now += 1
        undone += undone_now
        await system.store.writer.flush()
        if len(order_ids) < BATCH or undone_now == 0:  # the rest fail again: the sweep's
            return undone


class DeadlineSweep:
    """The periodic sweep; :meth:`cancel` stops it."""

    def __init__(self, system: ActorSystem, config: ShopConfig) -> None:
        self._system = system
        self._config = config
        self._handle: Cancellable | None = None
        self._task: asyncio.Task[int] | None = None
        self._stopped = False
        self.sweeps = 0
        self.told = 0

    @property
    def pending_grace_s(self) -> float:
        """How long an order may stay pending before the sweep undoes it."""
        return max(60.0, 2 * self._config.sweep_interval_s, self._system.config.ask_timeout_s * 2)

    def start(self) -> None:
        """Schedule the first sweep one interval from now."""
        self._handle = self._system.clock.call_later(self._config.sweep_interval_s, self._tick)

    def cancel(self) -> None:
        """Stop sweeping; a sweep under way stops where it is (the next start sweeps again,
        and an order told twice handles the message once)."""
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._task is not None:
            self._task.cancel()

    def _tick(self) -> None:
        self._handle = None
        if self._stopped or self._system.stopping:
            return
        self._task = asyncio.get_running_loop().create_task(self.sweep())
        self._task.add_done_callback(self._swept)

    def _swept(self, task: asyncio.Task[int]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("deadline_sweep_failed", error=repr(task.exception()))
        if not self._stopped and not self._system.stopping:
            self.start()

    async def sweep(self) -> int:
        """One sweep now: tell every overdue or stuck order; answer how many were told."""
        system = self._system
        now = system.clock.now()
        reader = system.store.reader
        overdue = await overdue_orders(reader, now, BATCH)
        stuck = await pending_orders(reader, now - self.pending_grace_s, BATCH)
        told = self._tell(overdue, DeadlineReached()) + self._tell(stuck, UndoPlacement())
        self.sweeps += 1
        self.told += told
        if told:
            log.info("deadline_sweep", overdue=len(overdue), stuck=len(stuck))
        return told

    def _tell(self, order_ids: Iterable[int], message: object) -> int:
        told = 0
        for order_id in order_ids:
            try:
                self._system.tell(Address("order", order_id), message, internal=True)
            except Overloaded:
                break  # the next sweep tries again
            told += 1
        return told


def start_deadline_sweep(system: ActorSystem, config: ShopConfig) -> DeadlineSweep:
    """Start the periodic sweep of overdue unpaid orders; ``.cancel()`` the handle to stop."""
    sweep = DeadlineSweep(system, config)
    sweep.start()
    return sweep
