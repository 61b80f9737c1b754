"""Dead letters: a message that failed every try is parked in a table, with its traceback.

Parking is one unit of its own (no owner: it stands whatever happens to the actor). It also
consumes the message's durable sources, so a parked outbox message or timer fire is not
delivered again; a person looks at the table and decides (the admin console lists them with
:func:`list_dead_letters`, and :func:`retry` or :func:`discard` one).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec

from shopkeep.runtime.cell import answer_parked
from shopkeep.runtime.envelope import Address, Envelope
from shopkeep.runtime.errors import MessageFailed, ShuttingDown, UnknownActorKind
from shopkeep.runtime.outbox import CONSUME_SQL, SEND_SQL
from shopkeep.runtime.timers import FIRE_DONE_SQL
from shopkeep.store import UnitOfWork

if TYPE_CHECKING:
    from shopkeep.runtime.system import ActorSystem
    from shopkeep.store.reader import Reader

DEAD_LETTER_SQL = (
    "INSERT INTO dead_letters (kind, actor_id, message, payload, error, traceback, attempts, at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
LIST_SQL = (
    "SELECT id, kind, actor_id, message, error, '', attempts, at, payload IS NOT NULL "
    "FROM dead_letters WHERE id < ? ORDER BY id DESC LIMIT ?"
)
GET_SQL = (
    "SELECT id, kind, actor_id, message, error, traceback, attempts, at, payload IS NOT NULL "
    "FROM dead_letters WHERE id = ?"
)
COUNT_SQL = "SELECT count(*) FROM dead_letters"
PAYLOAD_SQL = "SELECT kind, actor_id, payload FROM dead_letters WHERE id = ?"
DELETE_SQL = "DELETE FROM dead_letters WHERE id = ?"
_encode = msgspec.msgpack.Encoder().encode


class DeadLetter(msgspec.Struct, frozen=True, gc=False):
    """A parked message as a person reads it (``traceback`` is empty in lists)."""

    id: int
    kind: str
    actor_id: int
    message: str
    error: str
    traceback: str
    attempts: int
    at: float
    retryable: bool
    """Whether its message was stored whole (encodable), so :func:`retry` can send it again."""


def park(
    system: ActorSystem, address: Address, envelope: Envelope, exc: BaseException, attempts: int
) -> None:
    """Record the message as a dead letter and answer it with the error.

    Whatever the message and the error hold, the row is written: a message that failed may be
    one that cannot be encoded (a string of lone surrogates, from header bytes that were not
    UTF-8) and an error's text may hold what SQLite cannot bind, so each column is made in a
    way that cannot raise (:func:`_text`), and a payload that does not encode is left NULL.
    """
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


async def list_dead_letters(system: ActorSystem, below: int, count: int) -> list[DeadLetter]:
    """Up to ``count`` dead letters with an id below ``below``, newest first (no tracebacks)."""
    rows = await _reader(system).fetchall(LIST_SQL, (below, count))
    return [_letter(row) for row in rows]


async def get_dead_letter(system: ActorSystem, letter_id: int) -> DeadLetter | None:
    """The dead letter with its traceback, or None."""
    row = await _reader(system).fetchone(GET_SQL, (letter_id,))
    return None if row is None else _letter(row)


def _reader(system: ActorSystem) -> Reader:
    """The store's reader, while the system runs: once it stops, ShuttingDown, as its actors
    answer (its store's connections close next)."""
    if system.stopping:
        raise ShuttingDown(system.closed_words)
    return system.store.reader


def _letter(row: Any) -> DeadLetter:
    return DeadLetter(
        int(row[0]), str(row[1]), int(row[2]), str(row[3]), str(row[4]), str(row[5]),
        int(row[6]), float(row[7]), bool(row[8]),
    )


async def count_dead_letters(system: ActorSystem) -> int:
    """How many dead letters wait for a person (the counter ``dead_letters`` counts since
    start; this is what is in the table now)."""
    row = await _reader(system).fetchone(COUNT_SQL)
    return 0 if row is None else int(row[0])


async def retry(system: ActorSystem, letter_id: int) -> bool:
    """Send the parked message again, as a durable message (the outbox), and remove it from
    the dead letters, in one unit: delivered at least once from here on, applied once as any
    outbox message. False when there is no such letter, or its message was not stored whole
    (it cannot be sent again; discard it), or no longer decodes (a message of an older
    version's kind, or a payload damaged on disk)."""
    row = await _reader(system).fetchone(PAYLOAD_SQL, (letter_id,))
    if row is None or row[2] is None:
        return False
    kind, actor_id, payload = str(row[0]), int(row[1]), bytes(row[2])
    try:
        message: Any = system.decode(kind, payload)
    except (msgspec.DecodeError, UnknownActorKind):
        return False
    message_id = system.ids.next()
    unit = UnitOfWork()
    unit.execute(SEND_SQL, (message_id, kind, actor_id, payload, system.clock.now()))
    unit.execute(DELETE_SQL, (letter_id,))
    await system.store.writer.submit(unit)
    system.outbox.committed(message_id, Address(kind, actor_id), message)
    return True


async def discard(system: ActorSystem, letter_id: int) -> bool:
    """Delete the dead letter (a person decided its message is not to be applied); False
    when there is no such letter."""
    if await get_dead_letter(system, letter_id) is None:
        return False
    unit = UnitOfWork()
    unit.execute(DELETE_SQL, (letter_id,))
    await system.store.writer.submit(unit)
    return True
