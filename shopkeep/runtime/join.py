"""Joined turns: one handler runs other actors' handlers inside its own turn, as one unit.

Why: a step that changes several actors (one that takes from two others and debits a third)
costs, as a saga of asks, one unit of work per actor and one round trip each, plus compensations
when a later step refuses. When every participant is live and idle on this loop, the asker can
instead run their handlers itself, synchronously, with no await in between: nothing else can
run meanwhile, so what a participant answered in a check still holds when the asker applies it.

Rules of a join (``Context.join``):

- The participant must be *joinable*: live, loaded, not handling a message, nothing queued, not
  marked for restart. Otherwise :class:`ParticipantBusy` is raised and nothing happened: the
  caller waits for the participant's turn and tries again, or takes its slower path (the saga
  of asks). One that is not live at all is :class:`NotJoinable`, and so is a participant
  whose memory cannot answer a check (it raises that itself): only the slower path can serve
  those.
- Its handler must finish without waiting. A handler that would wait is closed and the
  participant marked for restart (its memory may be half-changed): :class:`JoinWaited`.
- Each participant changes only its own state, as always; its writes, timers and durable
  messages join the asker's unit of work, which lists it among its owners (``unit.joined``).
  All or nothing: if the handler that joined raises, or the unit fails to commit, every
  participant is restarted from the store before its next message.
- Until that unit is committed the participant's answers to others wait for it, as they wait
  for any unit of its own (``cell.pending``).

:func:`activate` makes participants joinable before the turn that joins them: it loads those
not live yet (a read each) in the caller's own coroutine (``ActorSystem.load_here``: no message,
no task; what they are sent meanwhile waits in their mailbox; one whose id names nothing stays
live for the rest of the turn, so that its own check says so), and waits for the turn of those
handling a message or with mail queued, by queueing a message of its own behind theirs
(:data:`ACTIVATE`, which no handler sees). Waiting in the mailbox, not beside it, keeps the
participant's order fair: a joining turn comes after the messages that came before it, as an ask
would be handled, but without the saga's round trips and compensations. Whatever arrives
meanwhile may make a participant busy again by the time the turn runs; the caller then tries
again or takes its slower path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shopkeep.runtime.envelope import Address
from shopkeep.runtime.errors import ActorSystemError, AskTimeout

if TYPE_CHECKING:
    from shopkeep.runtime.actor import Context
    from shopkeep.runtime.cell import Cell
    from shopkeep.runtime.system import ActorSystem


class NotJoinable(ActorSystemError):
    """The actor cannot take part in the turn now (not loaded, busy, or queued to).

    Nobody's fault: the caller takes its path that does not join (asks). Nothing happened.
    """


class ParticipantBusy(NotJoinable):
    """The actor is loading, handling a message, has mail queued or must reload: it may join
    once its turn has come (:func:`activate` waits for that). An actor that is not live at all
    is plainly NotJoinable (after :func:`activate`, one that went away while the turn waited
    for another), which only the slower path can answer."""


class JoinWaited(ActorSystemError):
    """A joined handler tried to wait: a bug in that handler for this message.

    A handler run in another's turn must decide from memory. The participant is restarted from
    the store before its next message, and the turn that joined it fails.
    """


ACTIVATE = object()
"""The message :func:`activate` sends: the runtime loads the actor and answers None, and the
actor's ``receive`` never sees it."""


def joinable(cell: Cell | None) -> bool:
    """Whether ``cell`` can run a handler in another actor's turn right now."""
    return (
        cell is not None
        and cell.actor is not None
        and not cell.busy
        and cell.task is None
        and not cell.mailbox
        and not cell.needs_restart
    )


def join(
    system: ActorSystem, ctx: Context, to: Address, message: Any, *, check: bool = False
) -> Any:
    """Run ``to``'s handler for ``message`` now, its effects joining ``ctx``'s unit; return
    its answer. Raises NotJoinable (nothing happened) or JoinWaited (see the module).

    With ``check`` the participant only answers what it would answer (``Actor.check``): a
    read of its memory, with no context to write into; it does not become an owner of the
    unit.
    """
    cell = system.registry.get(to)
    if cell is None:
        raise NotJoinable(f"{to.kind}:{to.id} is not live")
    if not joinable(cell):
        raise ParticipantBusy(f"{to.kind}:{to.id} cannot join the turn now")
    actor = cell.actor
    assert actor is not None
    if check:
        return actor.check(message)
    joined = ctx._joining(cell)
    marks = ctx._marks()
    cell.busy = True
    try:
        coroutine = actor.receive(joined, message)
        try:
            coroutine.send(None)
        except StopIteration as finished:
            reply = finished.value
        else:
            coroutine.close()
            raise JoinWaited(f"{to.kind}:{to.id} waited while handling {type(message).__name__}")
    except BaseException:
        cell.needs_restart = True  # its memory may hold part of what it was doing
        ctx._rewind(marks)  # and none of what it wrote may reach the disk
        raise
    finally:
        cell.busy = False
    ctx._joined_by(cell)
    system.stats.messages += 1
    system.registry.touch(cell, system.clock.now())
    return reply


def restart_joined(cells: list[Cell]) -> None:
    """The turn that joined ``cells`` failed: each reloads from the store before its next
    message (their memory holds changes that will never reach the disk)."""
    for cell in cells:
        cell.needs_restart = True


WAIT_SHARE = 0.5
"""The longest :func:`activate` waits for one participant, as a share of the ask timeout. The
turn that joins is usually answering an ask: past this wait it takes its slower path while its
asker still waits, so the asker hears of what that path does (a saga records its order first)
rather than giving up on a turn that never ran."""


async def activate(system: ActorSystem, addresses: Iterable[Address]) -> None:
    """Make each of ``addresses`` joinable if it can be: load it here if it is not live and
    loaded and nothing else is at it, and wait for its turn if it is loading, busy or has mail
    queued (no message reaches a handler).

    Raises ParticipantBusy when one's turn has not come within :data:`WAIT_SHARE` of the ask
    timeout (the message it queued is answered later, to nobody); Overloaded when its mailbox
    is full; a load's failure as it is.
    """
    registry = system.registry
    wait_s = system.config.ask_timeout_s * WAIT_SHARE
    loaded: list[Address] = []
    try:
        for address in addresses:
            if joinable(registry.get(address)):
                continue
            if await system.load_here(address):
                loaded.append(address)
                continue
            try:
                await system.ask(address, ACTIVATE, internal=True, timeout=wait_s)
            except AskTimeout:
                raise ParticipantBusy(
                    f"{address.kind}:{address.id} was busy for {wait_s:g} s"
                ) from None
    finally:
        if loaded:
            # those naming nothing stay for the caller's turn (their checks say so), no longer
            system.drop_absent_soon(loaded)
