"""A cell: one live activation of an address, and the small functions that answer for it.

The eager-dispatch driver lives here too: it carries on, in a task, a handler coroutine that an
ask began running in the asker's own task (see ``ActorSystem.ask``).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections import deque
from collections.abc import Coroutine
from functools import partial
from types import CoroutineType
from typing import Any, cast

from shopkeep.runtime.actor import Actor
from shopkeep.runtime.envelope import Address, Envelope
from shopkeep.runtime.errors import AskTimeout
from shopkeep.runtime.supervision import RestartBudget
from shopkeep.store import UnitOfWork


class Cell:
    """One live activation: the actor, its mailbox while non-empty, its task while draining."""

    __slots__ = (
        "actor",
        "address",
        "behavior",
        "busy",
        "incarnation",
        "last_used",
        "listed_at",
        "mailbox",
        "needs_restart",
        "pending",
        "pending_unit",
        "restarts",
        "task",
    )

    def __init__(self, address: Address, behavior: type[Actor], now: float) -> None:
        self.address = address
        self.behavior = behavior
        self.actor: Actor | None = None
        self.mailbox: deque[Envelope] | None = None
        self.task: asyncio.Task[None] | None = None
        self.busy = False
        self.last_used = now
        self.listed_at = now
        """When the registry last put it at the end of its order (see ``registry.py``)."""
        self.incarnation = 0
        self.pending: asyncio.Future[None] | None = None
        self.pending_unit: UnitOfWork | None = None
        self.needs_restart = False
        self.restarts: RestartBudget | None = None

    @property
    def passivatable(self) -> bool:
        """Idle, nothing queued, and everything it submitted has reached the disk."""
        pending = self.pending
        return (
            not self.busy
            and self.task is None
            and not self.mailbox
            and (pending is None or pending.done())
        )

    @property
    def pinned(self) -> bool:
        """Whether its actor keeps in memory what it could not load again
        (:attr:`Actor.pinned`): the idle sweep leaves it (the cap of live actors does not)."""
        actor = self.actor
        return actor is not None and actor.pinned


def expire(reply: asyncio.Future[Any], to: Address, limit: float) -> None:
    """Fail an ask still unanswered after its timeout."""
    if not reply.done():
        reply.set_exception(AskTimeout(f"{to.kind}:{to.id} did not answer within {limit:g} s"))


def settled(cell: Cell, future: asyncio.Future[None]) -> None:
    """The cell's last submitted unit is committed (or failed): nothing of it is pending."""
    if not future.cancelled():
        # a failure is the writer's to report (on_unit_failed restarts the actor); mark it
        # seen, or asyncio logs "Future exception was never retrieved" for every failed unit
        future.exception()
    if cell.pending is future:
        cell.pending = None
        cell.pending_unit = None


def answer_after(envelope: Envelope, reply: Any, pending: asyncio.Future[None]) -> None:
    """Answer ``reply`` once ``pending`` (a unit it depends on) is committed, or its error."""
    error = pending.exception()
    if error is not None:
        envelope.fail(error)
    else:
        envelope.resolve(reply)


def answer_parked(envelope: Envelope, error: Exception, parked: asyncio.Future[None]) -> None:
    """Answer a parked message with its error once its dead letter is recorded."""
    failure = parked.exception()
    envelope.fail(failure if failure is not None else error)


def start_eager(
    loop: asyncio.AbstractEventLoop, cell: Cell, coro: Coroutine[Any, Any, None]
) -> None:
    """Run a cell's drain coroutine in the caller's stack until it first waits; if it does, a
    task carries on from exactly there (:func:`resume`). The fresh Context keeps the caller's
    context variables out of the actor (its log context comes from the envelope)."""
    context = contextvars.Context()
    try:
        yielded = context.run(coro.send, None)
    except StopIteration:
        return
    task = loop.create_task(resume(coro, yielded), context=context)
    task.add_done_callback(partial(_never_resumed, coro, yielded), context=context)
    cell.task = task


def _never_resumed(coro: Coroutine[Any, Any, None], yielded: Any, task: asyncio.Task[None]) -> None:
    """A cell's task cancelled before its first step never ran :func:`resume`: its coroutine
    would stay suspended until collected, its handler's cleanup never run (the message it was
    handling unanswered), and the future it waits for left pending, to be answered later to
    nobody ("Future exception was never retrieved"). Do here what Task.cancel does: call off
    that future, and give the coroutine the cancellation."""
    # closed (resume ran it to its end): no frame, the cheap test that spares nearly every
    # task the one of inspect
    if cast("CoroutineType[Any, Any, None]", coro).cr_frame is None or (
        inspect.getcoroutinestate(coro) != inspect.CORO_SUSPENDED
    ):
        return
    if isinstance(yielded, asyncio.Future):
        yielded.cancel()
    try:
        coro.throw(asyncio.CancelledError())
    except (StopIteration, asyncio.CancelledError):
        return
    coro.close()  # it awaited again while stopping: nothing is left to step it


async def resume(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    """Carry on a coroutine that began eagerly and has just yielded ``yielded``.

    This is what asyncio.Task does for a coroutine it started itself: wait for the future the
    coroutine waits for, then step it again. The coroutine reads the future's outcome itself
    (``Future.__await__`` calls ``result()``), so a failure or a cancellation reaches it there.
    """
    while True:
        try:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                # the coroutine's own await marked the future as being waited for; take that
                # mark over, exactly as Task.__step does before it waits in its place
                yielded._asyncio_future_blocking = False
                try:
                    await yielded
                except asyncio.CancelledError:
                    if not yielded.cancelled():
                        raise
                except Exception:
                    pass  # the coroutine receives this through the future itself
        except asyncio.CancelledError as cancel:
            try:
                yielded = coro.throw(cancel)
            except StopIteration:
                return
            continue
        try:
            yielded = coro.send(None)
        except StopIteration:
            return
