"""The actor system: virtual actors, mailboxes, asks, supervision, passivation, shutdown.

Shape (the rest of this module follows it):

- A *cell* is one live activation of an address. The registry (a dict, oldest use first) is the
  only place cells live, so one address never has two. A cell has a mailbox only while messages
  wait, and a task only while it drains them: an idle cell is a small object and nothing else.
- ``tell`` enqueues and returns. ``ask`` enqueues with a reply future; when the target is idle,
  the ask runs the handler at once in the asker's task until the handler first waits (eager
  dispatch), which saves two task switches per round trip. Either way messages are handled one
  at a time, in arrival order, and every ask gets an answer: a reply, an error, or ActorStopped.
- A handler's effects are one unit of work (other idle actors' handlers may join it: ``join.py``),
  submitted to the group-commit writer; the ask is answered, and leaves flight, once it is
  committed. The actor goes on with its next message meanwhile. Supervision decides what an
  exception means (``supervision.py``); a failed commit makes the actor reload from the store.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, Final

import msgspec
import structlog

from shopkeep.runtime.actor import ActivationContext, Actor, Context
from shopkeep.runtime.cell import Cell, answer_after, expire, start_eager
from shopkeep.runtime.clock import Cancellable, Clock, RealClock
from shopkeep.runtime.completion import complete, submit
from shopkeep.runtime.config import RuntimeConfig
from shopkeep.runtime.dead_letters import park
from shopkeep.runtime.envelope import (
    Address,
    Envelope,
    current_scope,
    current_trace,
)
from shopkeep.runtime.errors import (
    ActivationFailed,
    ActorStopped,
    AskCycle,
    Overloaded,
    ShuttingDown,
    UnknownActorKind,
    WrongLoop,
)
from shopkeep.runtime.ids import IdGenerator, largest_stored_id
from shopkeep.runtime.join import ACTIVATE, restart_joined
from shopkeep.runtime.outbox import OutboxDispatcher
from shopkeep.runtime.registry import Registry
from shopkeep.runtime.stats import RuntimeStats
from shopkeep.runtime.supervision import Directive, RestartBudget, SupervisionPolicy
from shopkeep.runtime.timers import TimerService
from shopkeep.store import Store, UnitOfWork
from shopkeep.store.errors import CommitFailed

log = structlog.get_logger("shopkeep.runtime")

PASSIVATION_SLICE = 512
"""Idle activations the periodic sweep drops in one turn of the loop: 0.6 ms (3.8 ms the
longest), where the 50,000 – 60,000 activations of a busy half minute took 110 – 160 ms in one
turn."""


REFUSALS_SAID_EVERY_S: Final = 10.0
"""How often, at most, the log says the store refuses units for its own sake."""
SETTLED: Final = object()
"""The message :meth:`ActorSystem.settled` sends: no handler sees it; its answer comes once the
actor's last unit of work is done."""


class ActorSystem:
    """Hosts actor kinds on one store. The composition root builds one and starts it."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        config: RuntimeConfig | None = None,
        on_escalate: Callable[[Address, Exception], None] | None = None,
        id_floors: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.id_floors = tuple(id_floors)
        """Queries of the application's ids kept in no ``id`` column, which :attr:`ids` never
        hands out again (see :func:`~shopkeep.runtime.ids.largest_stored_id`)."""
        self.clock: Clock = clock or RealClock()
        self.config = config or RuntimeConfig()
        self.ids = IdGenerator(self.clock)
        self.on_escalate = on_escalate
        self.stats = RuntimeStats()
        self.timers = TimerService(self)
        self.outbox = OutboxDispatcher(self)
        self._kinds: dict[str, type[Actor]] = {}
        self._decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {}
        self._registry = Registry()
        self._mailed: set[Cell] = set()  # the cells whose mailbox exists (mail queued or draining)
        self._in_flight = 0
        self._incarnations = 0
        self._eager_streak = 0
        self._accepting = False
        self.closed_words = "the actor system is not taking messages"
        """What :class:`ShuttingDown` says to a caller from outside once the system stopped
        taking messages (the program built on it names itself)."""
        self._stopping = False
        self._drained: asyncio.Future[None] | None = None
        self._quiet_waiters: list[asyncio.Future[None]] = []
        self._passivation: Cancellable | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refusals_said_at = 0.0  # time.monotonic() of the last store_refusing_writes
        self._refusal_began = 0  # the store's refused units before its run of refusals
        store.writer.on_unit_failed = self._unit_failed
        store.writer.on_refusal_changed = self._refusal_changed

    # -- set-up ---------------------------------------------------------------------------------

    def register(self, behavior: type[Actor]) -> None:
        """Make actor kind ``behavior.kind`` addressable."""
        self._kinds[behavior.kind] = behavior
        if behavior.messages is not None:
            self._decoders[behavior.kind] = msgspec.msgpack.Decoder(behavior.messages)

    def decode(self, kind: str, payload: bytes) -> Any:
        """Decode a stored message (timer payload, durable message) for actor kind ``kind``."""
        decoder = self._decoders.get(kind)
        if decoder is None:
            raise UnknownActorKind(f"no stored-message type registered for kind {kind!r}")
        return decoder.decode(payload)

    async def start(self) -> None:
        """Load timers and undelivered messages, start passivation, then take messages."""
        self._loop = asyncio.get_running_loop()
        floor = await self.store.writer.call(partial(largest_stored_id, also=self.id_floors))
        self.ids.advance_to(floor)
        await self.timers.start()
        await self.outbox.start()
        self._schedule_passivation()
        self._accepting = True

    # -- sending --------------------------------------------------------------------------------

    def submit_so_far(self, cell: Cell, ctx: Context) -> None:
        """Submit what ``ctx``'s handler in ``cell`` has written so far as a unit of its own
        (:meth:`Context.checkpoint`)."""
        submit(self, cell, ctx)

    def tell(self, to: Address, message: Any, *, internal: bool = False) -> None:
        """Enqueue ``message`` for ``to`` and return. Raises Overloaded when full."""
        scope = current_scope.get()
        if scope is None:
            if not self._accepting and not internal:
                raise ShuttingDown(self.closed_words)
            self.check_loop()
            envelope = Envelope(message, None, (), current_trace.get())
        else:
            address, handling = scope
            envelope = Envelope(message, None, (*handling.chain, address), handling.trace)
        self._enqueue(self._cell(to), envelope)

    def check_loop(self) -> None:
        """Raise WrongLoop unless called on the system's loop (an entry point's check: within
        an actor, the caller is on it)."""
        WrongLoop.unless_on(self._loop)

    async def ask(
        self,
        to: Address,
        message: Any,
        *,
        timeout: float | None = None,
        internal: bool = False,
        caller: Context | None = None,
    ) -> Any:
        """Send ``message`` to ``to`` and wait for the answer (after its unit is committed, or,
        for an asking actor's ``caller`` context, as soon as it is submitted: see Context.ask)."""
        scope = current_scope.get()
        if scope is None:
            if not self._accepting and not internal:
                raise ShuttingDown(self.closed_words)
            self.check_loop()
            chain: tuple[Address, ...] = ()
            trace = current_trace.get()
        else:
            address, handling = scope
            chain = (*handling.chain, address)
            trace = handling.trace
            if to in chain:
                raise AskCycle((*chain, to))
        cell = self._cell(to)
        assert self._loop is not None, "start() the actor system first"
        reply: asyncio.Future[Any] = self._loop.create_future()
        envelope = Envelope(message, reply, chain, trace)
        envelope.caller = caller
        if cell.task is None and not cell.busy and not cell.mailbox and self.config.eager:
            self._admit()
            start_eager(self._loop, cell, self._drain(cell, envelope))
            if reply.done():
                # a run of asks that never wait would never let the loop turn: yield now and then
                self._eager_streak += 1
                if self._eager_streak >= 64:
                    self._eager_streak = 0
                    await asyncio.sleep(0)
                return reply.result()
        else:
            self._enqueue(cell, envelope)
        if envelope.handled:
            return await reply  # only its commit is awaited, and every commit answers
        limit = self.config.ask_timeout_s if timeout is None else timeout
        handle = self.clock.call_later(limit, partial(expire, reply, to, limit))
        try:
            return await reply
        finally:
            handle.cancel()

    def deliver(self, to: Address, envelope: Envelope) -> None:
        """Enqueue a prepared envelope (timer fires and durable messages use this)."""
        self._enqueue(self._cell(to), envelope)

    def _refuse_if_full(self) -> None:
        if self._in_flight >= self.config.max_in_flight:
            self.stats.overloaded += 1
            raise Overloaded(
                f"{self._in_flight} messages in flight", self.config.overload_retry_after_s
            )

    def _admit(self) -> None:
        self._refuse_if_full()
        self._in_flight += 1

    def _enqueue(self, cell: Cell, envelope: Envelope) -> None:
        mailbox = cell.mailbox
        if mailbox is None:
            mailbox = cell.mailbox = deque()
            self._mailed.add(cell)
        elif len(mailbox) >= self.config.mailbox_size:
            self.stats.overloaded += 1
            raise Overloaded(
                f"mailbox of {cell.address.kind}:{cell.address.id} is full",
                self.config.overload_retry_after_s,
            )
        self._admit()
        mailbox.append(envelope)
        if cell.task is None and not cell.busy:
            self._start_drain(cell)

    def _start_drain(self, cell: Cell) -> None:
        assert self._loop is not None, "start() the actor system first"
        cell.task = self._loop.create_task(self._drain(cell, None), context=contextvars.Context())

    # -- the registry ---------------------------------------------------------------------------

    def _cell(self, address: Address) -> Cell:
        cell = self._registry.get(address)
        if cell is None:
            behavior = self._kinds.get(address[0])
            if behavior is None:
                raise UnknownActorKind(f"no actor kind {address[0]!r} is registered")
            # a message about to be refused must not leave a cell behind (a flood of messages to
            # new actor ids, each refused, would otherwise grow the registry by one each)
            self._refuse_if_full()
            if len(self._registry) >= self.config.max_live_actors:
                evicted = self._registry.evict(max(1, self.config.max_live_actors // 100))
                if not evicted:
                    self.stats.overloaded += 1
                    raise Overloaded("every live actor is busy", self.config.overload_retry_after_s)
                self.stats.passivations += evicted
            cell = Cell(address, behavior, self.clock.now())
            self._registry.add(cell)
        return cell

    def passivate_idle(self) -> int:
        """Drop every activation idle for longer than the idle timeout, now, in one turn (the
        periodic sweep takes a slice a turn); return how many."""
        return self._passivate(self.clock.now() - self.config.idle_timeout_s, len(self._registry))

    def _passivate(self, cutoff: float, most: int) -> int:
        went = self._registry.passivate_idle(cutoff, most)
        self.stats.passivations += went
        return went

    def _schedule_passivation(self) -> None:
        interval = max(0.5, min(60.0, self.config.idle_timeout_s / 2))
        self._passivation = self.clock.call_later(interval, self._passivation_tick)

    def _passivation_tick(self, cutoff: float | None = None) -> None:
        # A slice a turn of the loop: a busy interval's activations, going idle together and
        # dropped in one turn, held every other callback for over 100 milliseconds.
        if self._stopping:
            return
        if cutoff is None:
            cutoff = self.clock.now() - self.config.idle_timeout_s
        if self._passivate(cutoff, PASSIVATION_SLICE) == PASSIVATION_SLICE:
            assert self._loop is not None
            self._loop.call_soon(self._passivation_tick, cutoff)
        else:
            self._schedule_passivation()

    @property
    def registry(self) -> Registry:
        """The live activations (for the runtime's own modules)."""
        return self._registry

    @property
    def live_actors(self) -> int:
        """Activations in memory."""
        return len(self._registry)

    @property
    def in_flight(self) -> int:
        """Messages queued or being handled."""
        return self._in_flight

    def is_live(self, address: Address) -> bool:
        """Whether ``address`` has an activation in memory."""
        return address in self._registry

    def mailbox_depths(self) -> Iterator[int]:
        """The length of every non-empty mailbox (for metrics): of the cells that have one, not
        a walk of every live cell (at the 200,000 the registry may hold, a scrape of the
        metrics would stall the loop for tens of milliseconds)."""
        for cell in list(self._mailed):
            if cell.mailbox:
                yield len(cell.mailbox)

    # -- handling -------------------------------------------------------------------------------

    async def _drain(self, cell: Cell, envelope: Envelope | None) -> None:
        """Handle ``envelope`` (if given), then every queued message, one at a time."""
        address = cell.address
        try:
            if envelope is None and cell.mailbox:
                envelope = cell.mailbox.popleft()
            while envelope is not None:
                cell.busy = True
                current_scope.set((address, envelope))
                try:
                    await self._handle(cell, envelope)
                except asyncio.CancelledError:
                    envelope.fail(ActorStopped(f"{address.kind}:{address.id} was stopped"))
                    raise
                except BaseException as exc:  # a bug in the runtime: still answer, loudly
                    log.exception("runtime_error", actor=f"{address.kind}:{address.id}")
                    envelope.fail(exc)
                finally:
                    self._handled(cell, envelope)
                mailbox = cell.mailbox
                envelope = mailbox.popleft() if mailbox else None
        finally:
            cell.task = None
            if cell.mailbox is not None and not cell.mailbox:
                cell.mailbox = None
                self._mailed.discard(cell)
            self._drop_if_absent(cell)

    def _drop_if_absent(self, cell: Cell) -> None:
        """Drop the activation of an id that names nothing (``Actor.absent``) once it is idle:
        messages to ids that do not exist must not fill the registry."""
        actor = cell.actor
        if actor is not None and actor.absent and cell.passivatable:
            self._registry.remove(cell)

    def _handled(self, cell: Cell, envelope: Envelope) -> None:
        cell.busy = False
        self.stats.messages += 1
        self._registry.touch(cell, self.clock.now())
        if not envelope.answer_waits:
            self._left_flight()

    def answered_after(self, envelope: Envelope, reply: Any, commit: asyncio.Future[None]) -> None:
        """The commit an answer waited for is done: answer, and the message leaves flight."""
        answer_after(envelope, reply, commit)
        self._left_flight()

    def _left_flight(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            if self._drained is not None and not self._drained.done():
                self._drained.set_result(None)
            waiters, self._quiet_waiters = self._quiet_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _handle(self, cell: Cell, envelope: Envelope) -> None:
        if (cell.actor is None or cell.needs_restart) and not await self._load(cell, envelope):
            return
        if envelope.message is ACTIVATE:
            envelope.resolve(None)
            return
        if envelope.message is SETTLED:
            pending = cell.pending
            if pending is None or pending.done():
                envelope.resolve(None)
            else:
                pending.add_done_callback(lambda _: envelope.resolve(None))
            return
        fire = envelope.timer
        if fire is not None:
            if not self.timers.is_current(fire):
                envelope.resolve(None)  # canceled or re-armed since it fired
                return
            self.timers.record_lateness(self.clock.now() - fire.due_at)
        policy = cell.behavior.supervision or self.config.supervision
        attempt = 1
        while True:
            actor = cell.actor
            assert actor is not None
            ctx = Context(self, cell, envelope)
            try:
                reply = await actor.receive(ctx, envelope.message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                restart_joined(ctx._joined)
                directive = self._decide(cell, policy, exc)
                if directive is Directive.RESTART:
                    if not await self._load(cell, envelope):
                        return
                    if attempt < policy.max_attempts:
                        await self.clock.sleep(policy.backoff(attempt))
                        attempt += 1
                        continue
                park(self, cell.address, envelope, exc, attempt)
                if directive in (Directive.STOP, Directive.ESCALATE):
                    self._stop_cell(cell, f"{directive.value} after {type(exc).__name__}")
                    if directive is Directive.ESCALATE and self.on_escalate is not None:
                        self.on_escalate(cell.address, exc)
                return
            complete(self, cell, envelope, ctx, reply)
            return

    def _decide(self, cell: Cell, policy: SupervisionPolicy, exc: Exception) -> Directive:
        directive = policy.decider(exc)
        if directive is Directive.RESTART:
            budget = cell.restarts
            if budget is None:
                budget = cell.restarts = RestartBudget()
            if not budget.allow(self.clock.now(), policy):
                directive = Directive.STOP
        log.warning(
            "actor_failed",
            actor=f"{cell.address.kind}:{cell.address.id}",
            error=f"{type(exc).__name__}: {exc}",
            directive=directive.value,
            exc_info=exc,
        )
        return directive

    async def load_here(self, address: Address) -> bool:
        """Load ``address`` in the caller's own coroutine, when it is not live or is live but
        idle and unloaded (or must reload): no message, no task of its own; True when it is
        loaded then (absent ones too: see ``Actor.absent``). False when it is another
        message's turn (loading, handling, mail queued): wait in its mailbox instead.

        An absent one with no mail is left live, for the caller's turn to hear from its own
        check that it names nothing: the caller drops it after (:meth:`drop_absent_soon`).

        What the cell is sent meanwhile waits in its mailbox and is handled after the load,
        in a task of its own, as it would be behind a message. Raises ActivationFailed when the
        load fails (the cell stays unloaded: its next message tries again)."""
        cell = self._cell(address)
        if cell.busy or cell.task is not None or cell.mailbox:
            return False
        if cell.actor is not None and not cell.needs_restart:
            return True
        cell.busy = True
        try:
            await self._activate(cell, ACTIVATE)
        finally:
            cell.busy = False
            if cell.mailbox:
                self._start_drain(cell)  # which drops it after them, if absent
        self._registry.touch(cell, self.clock.now())
        return True

    def drop_absent_soon(self, addresses: Iterable[Address]) -> None:
        """Once the current turn is over (the loop's next callbacks), drop the activations
        of ``addresses`` that name nothing and are idle, as a message handled to one would."""
        assert self._loop is not None, "start() the actor system first"
        for address in addresses:
            cell = self._registry.get(address)
            if cell is not None:
                self._loop.call_soon(self._drop_if_absent, cell)

    async def _load(self, cell: Cell, envelope: Envelope) -> bool:
        """(Re)activate for ``envelope``: False, and ``envelope`` failed, if it could not."""
        try:
            await self._activate(cell, envelope.message)
        except ActivationFailed as error:
            envelope.fail(error)
            return False
        return True

    async def _activate(self, cell: Cell, first: Any) -> None:
        """(Re)activate: wait until all the old activation submitted is settled, then load
        (for the message ``first``, on a first activation). ActivationFailed if it could not."""
        pending = cell.pending
        if pending is not None and not pending.done():
            await asyncio.wait([pending])
        restarting = cell.actor is not None or cell.needs_restart
        cell.actor = None
        actor = cell.behavior(cell.address)
        try:
            await actor.on_activate(
                ActivationContext(self, cell.address, None if restarting else first)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "activation_failed",
                actor=f"{cell.address.kind}:{cell.address.id}",
                error=f"{type(exc).__name__}: {exc}",
            )
            error = ActivationFailed(f"{cell.address.kind}:{cell.address.id} could not load")
            raise error from exc
        self._incarnations += 1
        cell.incarnation = self._incarnations
        cell.needs_restart = False
        cell.actor = actor
        self.stats.activations += 1
        if restarting:
            self.stats.restarts += 1

    def _unit_failed(self, unit: UnitOfWork, error: CommitFailed) -> None:
        owner = unit.owner
        actor = f"{owner.kind}:{owner.id}" if isinstance(owner, Address) else str(owner)
        if error.of_data:  # every try fails alike: a person must look
            log.warning("unit_failed", actor=actor, error=str(error))
        else:
            # the store's own (a full disk: said once a while, not a line a unit), or built
            # on a unit that failed (said of that one)
            log.debug("unit_failed", actor=actor, error=str(error))
            if error.refused_by_store:
                self._remind_refusals()
        for address, incarnation in unit.owners():
            cell = self._registry.get(address) if isinstance(address, Address) else None
            if cell is not None and cell.incarnation == incarnation:
                cell.needs_restart = True  # its memory is ahead of the disk: reload first
        self.timers.resync()
        # durable messages go out when their unit is known to be committed: one that failed
        # may have committed all the same, so what it sent is looked for in the table
        self.outbox.rescan()

    def _refusal_changed(self, refusing: bool) -> None:
        """Say in the log when a run of the store's own refusals (a full disk) begins and
        ends: two lines, not a warning a unit refused (hundreds a second under load)."""
        stats = self.store.writer.stats
        if refusing:  # at its first refused unit
            self._refusal_began = stats.refused_units - 1
            self._say_refusals(1)
            return
        log.warning(
            "store_writing_again",
            refused_units=stats.refused_units - self._refusal_began,
            detail="commits succeed again: writes are kept",
        )

    def _remind_refusals(self) -> None:
        """Say again, every :data:`REFUSALS_SAID_EVERY_S` while the run lasts, that the store
        refuses units."""
        if time.monotonic() - self._refusals_said_at >= REFUSALS_SAID_EVERY_S:
            self._say_refusals(self.store.writer.stats.refused_units - self._refusal_began)

    def _say_refusals(self, units: int) -> None:
        stats = self.store.writer.stats
        log.warning(
            "store_refusing_writes",
            error=str(stats.refusal_cause),
            refused_units=units,
            detail="commits fail for the store's own sake, not for what they write (the "
            "error says why: a full disk, an I/O error, a writer process gone, the database "
            "file moved): their writes are not kept, and their callers told so",
        )
        self._refusals_said_at = time.monotonic()

    def _stop_cell(self, cell: Cell, reason: str) -> None:
        address = cell.address
        self._registry.remove(cell)
        mailbox, cell.mailbox = cell.mailbox, None
        self._mailed.discard(cell)
        cell.actor = None
        for envelope in mailbox or ():
            self._in_flight -= 1
            if envelope.reply is None:
                self.stats.dropped += 1
            envelope.fail(ActorStopped(f"{address.kind}:{address.id} stopped: {reason}"))

    def park_message(
        self, address: Address, envelope: Envelope, exc: BaseException, attempts: int
    ) -> None:
        """Record ``envelope``'s message to ``address`` as a dead letter, answering it with
        ``exc`` once recorded (:func:`~shopkeep.runtime.dead_letters.park`)."""
        park(self, address, envelope, exc, attempts)

    async def settled(self, address: Address) -> None:
        """Wait until what ``address`` was asked before is handled and committed (or failed):
        a message behind the others in its mailbox, answered once the unit of the last is
        done. For a request cut short (its caller canceled), which goes on in the actor."""
        await self.ask(address, SETTLED, internal=True)

    async def quiet(self) -> None:
        """Wait until nothing more will happen without the clock moving: no message queued or
        running, every unit committed, no durable message being delivered.

        For tests and tools that need the consequences of what they did (a release delivered
        through the outbox, say) before they look. Durable messages waiting to be retried, and
        timers, wait for the clock; they do not keep the system from being quiet.
        """
        assert self._loop is not None, "start() the actor system first"
        writer = self.store.writer
        idle_turns = 0
        while idle_turns < 10_000:  # a bound, in case a stopped outbox holds its backlog
            await writer.flush()
            await asyncio.sleep(0)  # commit callbacks answer asks and hand out durable messages
            if self._in_flight:
                idle_turns = 0
                waiter = self._loop.create_future()
                self._quiet_waiters.append(waiter)
                await waiter
            elif self.outbox.delivering or writer.backlog:
                idle_turns += 1
            else:
                return

    # -- shutdown -------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop intake, drain every mailbox, let the writer commit all; nothing acked is lost.

        Timers and undelivered durable messages stay in the database and resume at next start.
        """
        if self._stopping:
            return
        self._accepting = False
        self._stopping = True
        if self._passivation is not None:
            self._passivation.cancel()
        self.timers.stop()
        self.outbox.stop()
        if self._in_flight:
            assert self._loop is not None
            self._drained = self._loop.create_future()
            try:
                await asyncio.wait_for(
                    asyncio.shield(self._drained), self.config.drain_timeout_s
                )
            except TimeoutError:
                log.error("drain_timeout", in_flight=self._in_flight)
                for cell in self._registry.cells():
                    if cell.task is not None:
                        cell.task.cancel()
                    self._stop_cell(cell, "shutdown")
        await self.store.writer.flush()
        await asyncio.sleep(0)  # let commit callbacks answer their asks

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` has begun."""
        return self._stopping
