"""Dead letters: a message that failed every try is parked in a table, with its traceback.

Parking is one unit of its own (no owner: it stands whatever happens to the actor). It also
consumes the message's durable sources, so a parked outbox message or timer fire is not
delivered again; a person looks at the table and decides.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import msgspec

from shopkeep.runtime.cell import Cell, answer_parked
from shopkeep.runtime.envelope import Envelope
from shopkeep.runtime.errors import MessageFailed
from shopkeep.runtime.outbox import CONSUME_SQL
from shopkeep.runtime.timers import FIRE_DONE_SQL
from shopkeep.store import UnitOfWork

if TYPE_CHECKING:
    from shopkeep.runtime.system import ActorSystem

DEAD_LETTER_SQL = (
    "INSERT INTO dead_letters (kind, actor_id, message, payload, error, traceback, attempts, at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_encode = msgspec.msgpack.Encoder().encode


def park(
    system: ActorSystem, cell: Cell, envelope: Envelope, exc: Exception, attempts: int
) -> None:
    """Record the message as a dead letter and answer it with the error.

    Whatever the message and the error hold, the row is written: a message that failed may be
    one that cannot be encoded (a string of lone surrogates, from header bytes that were not
    UTF-8) and an error's text may hold what SQLite cannot bind, so each column is made in a
    way that cannot raise (:func:`_text`), and a payload that does not encode is left NULL.
    """
    address = cell.address
    try:
        payload: bytes | None = _encode(envelope.message)
    except Exception:  # whatever the message's fields raise: the repr below stands for it
        payload = None
    error_text = _text(lambda: f"{type(exc).__name__}: {exc}")
    unit = UnitOfWork()
    unit.execute(
        DEAD_LETTER_SQL,
        (
            address.kind,
            address.id,
            _text(lambda: repr(envelope.message))[:4000],
            payload,
            error_text,
            _text(lambda: "".join(traceback.format_exception(exc))),
            attempts,
            system.clock.now(),
        ),
    )
    if envelope.outbox_id is not None:
        unit.execute(CONSUME_SQL, (envelope.outbox_id,))
    fire = envelope.timer
    if fire is not None:
        unit.execute(FIRE_DONE_SQL, (*fire.key, fire.seq))
        system.timers.consumed(fire)
    system.stats.dead_letters += 1
    error = MessageFailed(
        f"{address.kind}:{address.id} failed on {type(envelope.message).__name__}: "
        f"{error_text}",
        dead_lettered=True,
    )
    error.__cause__ = exc
    system.store.writer.submit(unit).add_done_callback(partial(answer_parked, envelope, error))


def _text(make: Callable[[], str]) -> str:
    """``make()`` as text SQLite can store: lone surrogates escaped, and a stand-in naming the
    failure when ``make`` itself raises (an exception whose ``__str__`` or ``__repr__`` fails)."""
    try:
        text = make()
    except Exception as failure:
        text = f"<unprintable: {type(failure).__name__}>"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
