"""What happens after a handler ran: its unit of work submitted, its answer released in time.

An answer must not be seen before the writes it shows: an ask from outside is answered once
the handler's unit is committed; an ask from another actor (a step of its work) at once, its unit
becoming a commit dependency of the asker's. Durable messages the unit sends go out after its
commit; a timer fire or durable message it consumes is deleted in the same unit.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

from shopkeep.runtime.cell import Cell, answer_after, settled
from shopkeep.runtime.envelope import Address, Envelope
from shopkeep.runtime.outbox import CONSUME_SQL
from shopkeep.runtime.timers import FIRE_DONE_SQL
from shopkeep.store import UnitOfWork

if TYPE_CHECKING:
    from shopkeep.runtime.actor import Context
    from shopkeep.runtime.system import ActorSystem

_LOST = UnitOfWork()
_LOST.failed = True
"""Stands for a unit that failed and is gone: a unit built on it is failed too."""


def complete(
    system: ActorSystem, cell: Cell, envelope: Envelope, ctx: Context, reply: Any
) -> None:
    """After a handler ran: consume its timer fire or durable message in its unit, submit the
    unit, and answer the envelope when what the answer shows is safe to be seen."""
    envelope.handled = True
    if envelope.outbox_id is not None:
        ctx.unit.execute(CONSUME_SQL, (envelope.outbox_id,))
    fire = envelope.timer
    if fire is not None:
        ctx.unit.execute(FIRE_DONE_SQL, (*fire.key, fire.seq))
        system.timers.consumed(fire)
    if ctx._unit is None and ctx._after:
        ctx.unit  # noqa: B018 - an empty unit carries what this answer builds on
    caller: Context | None = envelope.caller
    if ctx._unit is None:
        pending = cell.pending
        if pending is None or pending.done():
            envelope.resolve(reply)
        elif caller is not None and cell.pending_unit is not None:
            caller._depend(cell.pending_unit)
            envelope.resolve(reply)
        else:
            # what this reply shows must not be seen before the writes it depends on
            _answer_after(system, envelope, reply, pending)
        return
    unit = ctx._unit
    if caller is not None:
        # What an asking actor causes is built on what it has submitted so far (a step of
        # its work already recorded): should that fail to commit, this must not commit
        # either, or it would hold what it took for an asker whose record never reached
        # the disk.
        asker = caller._cell
        if asker.needs_restart:
            ctx._after.append(_LOST)  # it already failed: the asker runs on lost state
        elif asker.pending_unit is not None:
            ctx._after.append(asker.pending_unit)
    future = submit(system, cell, ctx)
    if caller is not None:
        caller._depend(unit)
        envelope.resolve(reply)
    else:
        _answer_after(system, envelope, reply, future)


def _answer_after(
    system: ActorSystem, envelope: Envelope, reply: Any, commit: asyncio.Future[None]
) -> None:
    """Answer ``reply`` once ``commit`` is done. An ask stays in flight until then: what
    bounds the messages in flight bounds the callers waiting for commits too (a message
    handled in one turn then waits for its commit only)."""
    if envelope.reply is None:
        commit.add_done_callback(partial(answer_after, envelope, reply))
        return
    envelope.answer_waits = True
    commit.add_done_callback(partial(system.answered_after, envelope, reply))


def submit(system: ActorSystem, cell: Cell, ctx: Context) -> asyncio.Future[None]:
    """Submit the context's unit; its arms and cancels take effect in memory now, its
    durable messages go out after the commit. The context starts a fresh unit."""
    unit = ctx._unit
    assert unit is not None
    if ctx._after:
        unit.after = ctx._after
        ctx._after = []
    system.timers.apply(ctx._timer_ops)
    future = system.store.writer.submit(unit)
    cell.pending = future
    cell.pending_unit = unit
    future.add_done_callback(partial(settled, cell))
    if ctx._joined:
        # the actors that joined the turn changed with it: their answers wait for it too
        for joined in ctx._joined:
            joined.pending = future
            joined.pending_unit = unit
            future.add_done_callback(partial(settled, joined))
        ctx._joined = []
    sends = ctx._sends
    if sends:
        future.add_done_callback(partial(_dispatch, system, sends))
    ctx._unit = None
    ctx._timer_ops = []
    ctx._sends = []
    return future


def _dispatch(
    system: ActorSystem, sends: list[tuple[int, Address, Any]], future: asyncio.Future[None]
) -> None:
    if not future.cancelled() and future.exception() is None:
        for message_id, to, message in sends:
            system.outbox.committed(message_id, to, message)
