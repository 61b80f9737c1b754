"""The actor base class and the context a handler writes its effects into.

An actor kind subclasses :class:`Actor`, loads its state in :meth:`Actor.on_activate` and handles
one message at a time in :meth:`Actor.receive`. Everything a message changes goes into the
context: SQL statements, timers armed or canceled, durable messages to other actors. When the
handler returns, the runtime submits all of it as one unit of work, and answers the asker only
after that unit is committed. If the handler raises, none of it happens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from shopkeep.runtime.envelope import Address, Envelope, TimerKey
from shopkeep.runtime.join import NotJoinable, activate, join
from shopkeep.runtime.outbox import SEND_SQL
from shopkeep.runtime.supervision import SupervisionPolicy
from shopkeep.runtime.timers import ARM_TIMER_SQL, CANCEL_TIMER_SQL
from shopkeep.store import UnitOfWork
from shopkeep.store.reader import KeyedLoads, Reader

if TYPE_CHECKING:
    from shopkeep.runtime.cell import Cell
    from shopkeep.runtime.system import ActorSystem

_encode = msgspec.msgpack.Encoder().encode


class Actor:
    """Base class of actor kinds. Subclasses set ``kind`` and ``messages``.

    ``messages`` is the type (a tagged msgspec Struct or a union of them) of the messages that
    may be stored: timer payloads and durable messages are encoded with msgspec and decoded
    with it after a restart. Subclasses should declare ``__slots__`` for their state: an idle
    live actor should cost a few hundred bytes.
    """

    __slots__ = ("address",)

    kind: ClassVar[str]
    messages: ClassVar[Any] = None
    supervision: ClassVar[SupervisionPolicy | None] = None

    def __init__(self, address: Address) -> None:
        self.address = address

    @property
    def pinned(self) -> bool:
        """Whether the actor keeps in memory, for a short while, what it could not load again
        (its questions out to another system, with what the answers said so far): the idle
        sweep leaves it live until it lets go. The cap of live actors passivates it all the
        same when it is among the least recently used: a cap that pinned actors could fill
        would leave no room for the actors that answer them."""
        return False

    @property
    def absent(self) -> bool:
        """Whether the entity this actor stands for does not exist (it loaded nothing and was
        not created). An absent activation is dropped as soon as it is idle, so messages to ids
        that exist nowhere leave nothing in memory."""
        return False

    async def on_activate(self, ctx: ActivationContext) -> None:
        """Load the state from the store. Called before the first message of an activation."""

    async def receive(self, ctx: Context, message: Any) -> Any:
        """Handle one message; the return value is the ask's answer."""
        raise NotImplementedError

    def check(self, message: Any) -> Any:
        """Answer what handling ``message`` now would answer, from memory, changing nothing.

        For another actor's turn that must know every participant's answer before it changes
        anything (``Context.join(..., check=True)``). A kind answers the messages it can;
        anything else raises NotJoinable, and the asker takes its path of asks.
        """
        raise NotJoinable(f"{self.kind} actors answer no checks")


class ActivationContext:
    """What :meth:`Actor.on_activate` may use: the read connection, the clock, and the message
    the activation was started for.

    ``first_message`` is None on a restart (after a failure the store is the only truth). On a
    first activation an actor may take a hint from it: a message that creates a new entity
    under an id its sender just minted needs nothing read from the store.
    """

    __slots__ = ("address", "first_message", "keyed_loads", "reader", "system", "threaded_reader")

    def __init__(self, system: ActorSystem, address: Address, first_message: Any = None) -> None:
        self.system = system
        self.address = address
        self.first_message = first_message
        self.reader: Reader = system.store.point_reader
        """Reads on the loop's own thread: the cheapest read, for actors loaded again and again,
        whose rows are mostly in SQLite's page cache."""
        self.threaded_reader: Reader = system.store.reader
        """Reads on a thread of its own: for kinds loaded once each, cold. A read that starts
        while the writer updates the WAL index is retried by SQLite, with back-off sleeps; on
        this thread that sleep cannot stall the loop (measured on the loop: stalls of 15-44
        ms when thousands of such actors were loaded a second)."""
        self.keyed_loads: KeyedLoads = system.store.keyed_loads
        """The threaded reader's loads by key, those of one loop turn made as one query: for
        kinds loaded once each, many at a time."""

    def now(self) -> float:
        """The current time (from the injected clock)."""
        return self.system.clock.now()


class Context:
    """The effects of the message being handled: written together, or not at all."""

    __slots__ = (
        "_after",
        "_cell",
        "_join_envelope_",
        "_joined",
        "_sends",
        "_system",
        "_timer_ops",
        "_unit",
        "address",
        "envelope",
    )

    def __init__(self, system: ActorSystem, cell: Cell, envelope: Envelope) -> None:
        self._system = system
        self._cell = cell
        self.address: Address = cell.address
        self.envelope = envelope
        self._unit: UnitOfWork | None = None
        self._timer_ops: list[tuple[TimerKey, float, int, Any] | tuple[TimerKey, None]] = []
        self._sends: list[tuple[int, Address, Any]] = []
        self._after: list[UnitOfWork] = []  # others' units this message's effects build on
        self._joined: list[Cell] = []  # the actors whose handlers joined this turn
        self._join_envelope_: Envelope | None = None

    # -- reading --------------------------------------------------------------------------------

    def now(self) -> float:
        """The current time (from the injected clock)."""
        return self._system.clock.now()

    def new_id(self) -> int:
        """A new unique, time-ordered 64-bit id."""
        return self._system.ids.next()

    @property
    def timer(self) -> str | None:
        """The name of the timer whose fire this message is, or ``None``."""
        fire = self.envelope.timer
        return fire.key[2] if fire is not None else None

    @property
    def trace(self) -> str | None:
        """The trace (request) id that caused this message."""
        return self.envelope.trace

    # -- writing --------------------------------------------------------------------------------

    @property
    def unit(self) -> UnitOfWork:
        """The unit of work of this message (created on first use)."""
        unit = self._unit
        if unit is None:
            unit = self._unit = UnitOfWork(self.address, self._cell.incarnation)
        return unit

    def execute(self, sql: str, params: Any = ()) -> None:
        """Add a statement to this message's unit of work."""
        self.unit.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> None:
        """Add a statement run once per row to this message's unit of work."""
        self.unit.executemany(sql, rows)

    def arm_timer(self, name: str, due_at: float, message: Any) -> None:
        """Deliver ``message`` to this actor at ``due_at``, durably; re-arming replaces.

        The timer is written in this message's unit of work, so it exists if and only if the
        state change that armed it does.
        """
        seq = self._system.ids.next()
        address = self.address
        self.unit.execute(
            ARM_TIMER_SQL, (address.kind, address.id, name, due_at, seq, _encode(message))
        )
        self._timer_ops.append(((address.kind, address.id, name), due_at, seq, message))

    def cancel_timer(self, name: str) -> None:
        """Cancel the timer ``name`` of this actor, in this message's unit of work."""
        address = self.address
        self.unit.execute(CANCEL_TIMER_SQL, (address.kind, address.id, name))
        self._timer_ops.append(((address.kind, address.id, name), None))

    def send(self, to: Address, message: Any) -> int:
        """Send ``message`` durably: written in this unit, delivered after it commits, retried
        until the receiver's own unit commits. Returns the message id."""
        message_id = self._system.ids.next()
        self.unit.execute(SEND_SQL, (message_id, to.kind, to.id, _encode(message), self.now()))
        self._sends.append((message_id, to, message))
        return message_id

    def checkpoint(self) -> None:
        """Submit what this message has written so far as a unit of its own, now.

        Units commit in submission order, so everything this handler writes or causes from here
        on (in this actor or, through asks, in others) reaches the disk after it. A saga uses
        this to make its intent durable before its first step. The asker is still answered
        after the handler's last unit.
        """
        self._system.submit_so_far(self._cell, self)

    async def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Read committed state, after every unit this actor has submitted is committed.

        For the rare reads an actor's memory cannot answer (is this compensation already
        applied?): they must see this actor's own latest writes.
        """
        pending = self._cell.pending
        if pending is not None and not pending.done():
            await asyncio.wait([pending])
        return await self._system.store.point_reader.fetchall(sql, params)

    # -- talking --------------------------------------------------------------------------------

    def tell(self, to: Address, message: Any) -> None:
        """Enqueue ``message`` for ``to`` now (not durable: lost if the process dies)."""
        self._system.tell(to, message, internal=True)

    async def ask(self, to: Address, message: Any, timeout: float | None = None) -> Any:
        """Ask ``to`` and wait for its answer (fails at once on an ask cycle).

        The answer comes as soon as ``to`` has handled the message, before its unit of work is
        committed: this message's own unit is submitted later, so it commits after it, and the
        writer fails it if that unit fails. Nobody outside hears of either before both are on
        disk. (A saga's steps thus cost no commit wait each; only its last answer waits.)
        """
        return await self._system.ask(to, message, timeout=timeout, internal=True, caller=self)

    def join(self, to: Address, message: Any, *, check: bool = False) -> Any:
        """Run ``to``'s handler for ``message`` inside this turn, now, and return its answer;
        its effects join this message's unit of work, all or nothing (see ``join.py``).

        With ``check``, ``to`` only answers what it would answer (``Actor.check``), changing
        nothing. Raises NotJoinable when ``to`` is not live and idle, or cannot answer from
        memory (nothing happened: take the path of asks).
        """
        return join(self._system, self, to, message, check=check)

    async def activate(self, addresses: Iterable[Address]) -> None:
        """Make ``addresses`` joinable for the rest of this turn if they can be: load those
        not live (a read each), wait for the turn of those busy (a message queued behind
        theirs); an idle, live one costs a lookup. See ``join.activate``."""
        await activate(self._system, addresses)

    def _joining(self, cell: Cell) -> Context:
        """The context a handler joined to this turn runs with: its own address, this turn's
        trace and chain, and this turn's unit, timers, sends and dependencies themselves, so
        what it writes is this turn's with nothing to copy (see :meth:`_rewind`)."""
        joined = Context.__new__(Context)
        joined._system = self._system
        joined._cell = cell
        joined.address = cell.address
        joined.envelope = self._join_envelope()
        joined._unit = self.unit
        joined._timer_ops = self._timer_ops
        joined._sends = self._sends
        joined._after = self._after
        joined._joined = self._joined
        joined._join_envelope_ = self._join_envelope_
        return joined

    def _join_envelope(self) -> Envelope:
        """The envelope the handlers joined to this turn see: this turn's trace and chain (one
        for all of them; they read no message from it, and no answer goes through it)."""
        envelope = self._join_envelope_
        if envelope is None:
            own = self.envelope
            envelope = Envelope(None, None, (*own.chain, self.address), own.trace)
            self._join_envelope_ = envelope
        return envelope

    def _marks(self) -> tuple[int, int, int, int]:
        """How much this turn has written so far (see :meth:`_rewind`)."""
        unit = self.unit
        return len(unit.statements), len(self._timer_ops), len(self._sends), len(self._after)

    def _rewind(self, marks: tuple[int, int, int, int]) -> None:
        """Drop what was written since ``marks``: a joined handler that failed wrote it."""
        statements, timer_ops, sends, after = marks
        del self.unit.statements[statements:]
        del self._timer_ops[timer_ops:]
        del self._sends[sends:]
        del self._after[after:]

    def _joined_by(self, cell: Cell) -> None:
        """``cell``'s handler joined this turn: it owns this turn's unit too."""
        if cell not in self._joined:
            self._joined.append(cell)
        owner = (cell.address, cell.incarnation)
        unit = self.unit
        if owner not in unit.joined:
            unit.joined.append(owner)

    def _depend(self, unit: UnitOfWork) -> None:
        """This message's effects build on ``unit`` (another actor's, not yet committed)."""
        self._after.append(unit)
