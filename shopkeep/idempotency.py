"""Idempotency-Keys at the embedded API's edge: the key a caller gives, and one request at a
time under each key.

The rules (what binds a key, what a replay answers) are ``actors/key_rules.py``; the record
is kept by the actor that does the work (``actors/key_store.py``). Here:

- :class:`IdempotencyKey`: a key, checked (SPEC 7: printable ASCII, 1 to 255 characters), and
  after the call whether its answer was the first answer again (HTTP says so with
  ``Idempotent-Replayed: true``). A plain ``str`` is taken wherever a key is.
- :class:`InFlight`: two requests under one key of one principal never run at once: the second
  waits for the first's answer, then finds its record (a replay) or none (the first did nothing;
  it runs afresh). Without it, the same key sent at the same moment to two different actors
  would each see it free.
- :class:`Once`: how the Shop asks an operation under a key (placements: ``placing.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from shopkeep.actors.key_rules import ADMIN, decode_answer, request_hash
from shopkeep.actors.order_messages import AsUser
from shopkeep.actors.protocol import Keyed, Replayed
from shopkeep.errors import answer
from shopkeep.requests import KEY_RULE, MAX_KEY, check_scope, refused_parameter
from shopkeep.runtime import ActorSystem, Address

T = TypeVar("T")


class IdempotencyKey:
    """An Idempotency-Key given to a :class:`~shopkeep.shop.Shop` operation.

    ``replayed`` is set by the operation: True when its answer is the first answer to the same
    request under this key, given again with nothing done again.
    """

    __slots__ = ("replayed", "value")

    def __init__(self, value: str) -> None:
        # KEY_PATTERN with str's own tests, a few times cheaper than the expression, and here
        # rather than in a function of its own: a keyed request makes one key, and a call
        # costs as much as these tests. Printable ASCII is 0x20 to 0x7E (a space is printable).
        # The detail never repeats the key: it may hold any bytes at all.
        if not (
            isinstance(value, str)
            and 0 < len(value) <= MAX_KEY
            and value.isascii()
            and value.isprintable()
            and value[0] != " "
            and value[-1] != " "
        ):
            raise refused_parameter("idempotency_key", KEY_RULE)
        self.value = value
        self.replayed = False

    def __repr__(self) -> str:
        return f"IdempotencyKey({self.value!r}, replayed={self.replayed})"


Key = str | IdempotencyKey | None
"""An optional Idempotency-Key given to a Shop operation: a string, or an IdempotencyKey to
learn whether the answer was replayed (SPEC 7)."""


def key_of(given: Key) -> IdempotencyKey | None:
    """``given`` as an IdempotencyKey (checked: ShopError validation_error), or None. An
    IdempotencyKey given again starts unreplayed: its ``replayed`` says what this operation
    answered, not what the last one under it did."""
    if given is None:
        return None
    if isinstance(given, IdempotencyKey):
        given.replayed = False
        return given
    return IdempotencyKey(given)


class InFlight:
    """The (principal, key) pairs whose request is running, each with the requests waiting for
    it. Entries live only while a request holds or waits: memory is bounded by the requests in
    flight."""

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[tuple[int, str], _Entry] = {}

    def hold(self, principal: int, key: str) -> Held:
        """``async with`` it to run the block alone under ``key`` of ``principal``."""
        return Held(self._locks, (principal, key))

    def __len__(self) -> int:
        return len(self._locks)


_GOING_ON: set[asyncio.Future[Any]] = set()
"""Work going on past the caller that asked for it (:meth:`Held.keep_until`,
:func:`to_its_end`): a task nothing refers to may be collected before it ends."""


def to_its_end(step: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """``step`` run to its end whatever becomes of its caller: await the result to have its
    answer; canceled meanwhile, the caller is, not ``step``, whose outcome is then dropped
    (its error too, unlogged: the caller asked for it, and is gone)."""
    task = asyncio.ensure_future(step)
    _GOING_ON.add(task)
    task.add_done_callback(_ended)
    return asyncio.shield(task)


def _ended(task: asyncio.Future[Any]) -> None:
    _GOING_ON.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: asyncio would log one nobody awaited


_Entry = tuple[asyncio.Lock, list[int]]
"""A key's lock, and how many requests hold or wait for it."""


class Held:
    """One request's turn under a key (:meth:`InFlight.hold`).

    A class rather than an ``asynccontextmanager``: every keyed request goes through it, and
    a generator-based context manager costs about 2 us more a request (measured under uvloop).
    """

    __slots__ = ("_entry", "_kept", "_locks", "_scope")

    def __init__(self, locks: dict[tuple[int, str], _Entry], scope: tuple[int, str]) -> None:
        self._locks = locks
        self._scope = scope
        self._kept = False

    async def __aenter__(self) -> None:
        entry = self._locks.get(self._scope)
        if entry is None:
            entry = self._locks[self._scope] = (asyncio.Lock(), [0])
        self._entry = entry
        entry[1][0] += 1
        try:
            await entry[0].acquire()
        except BaseException:  # cancelled while waiting: no longer a user of the entry
            self._leave()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        if not self._kept:
            self._release()

    def keep_until(self, settled: Awaitable[None]) -> None:
        """Hold the key past the block, until ``settled`` is done: a request whose caller
        stopped waiting goes on in the shop, and a retry under its key must wait for it (and
        then replay it), not run beside it (its unit would meet the first's key row)."""
        self._kept = True
        task = asyncio.ensure_future(self._release_after(settled))
        _GOING_ON.add(task)
        task.add_done_callback(_ended)

    async def _release_after(self, settled: Awaitable[None]) -> None:
        try:
            with contextlib.suppress(Exception):  # failed or refused: settled all the same
                await settled
        finally:
            self._release()

    def _release(self) -> None:
        self._entry[0].release()
        self._leave()

    def _leave(self) -> None:
        users = self._entry[1]
        users[0] -= 1
        if not users[0]:
            del self._locks[self._scope]


class Once:
    """Asks the actors for a Shop, each request under an Idempotency-Key at most once."""

    __slots__ = ("in_flight", "system")

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self.in_flight = InFlight()

    async def ask(
        self,
        address: Address,
        message: Any,
        kind: type[T],
        idempotency_key: str | IdempotencyKey | None,
        request: tuple[Any, ...],
        user_id: int | None = None,
    ) -> T:
        """Ask ``message`` (for ``user_id``: only if the order is theirs) and answer as ``kind``.

        Under a key (of ``user_id``, or of the admin) ``request`` (the operation's name, its
        ids and values) is done at most once: the actor that does it records the key and its
        answer with its effect, and the same request again answers that answer (the key's
        ``replayed``); another request under the key, ShopError idempotency_conflict."""
        user_id = check_scope(user_id)
        key = key_of(idempotency_key)
        principal = ADMIN if user_id is None else user_id
        if key is not None:
            message = Keyed(principal, key.value, request_hash(*request), message)
        if user_id is not None:
            message = AsUser(user_id, message)
        if key is None:
            return answer(await self.system.ask(address, message), kind)
        held = self.in_flight.hold(principal, key.value)
        async with held:
            try:
                reply = await self.system.ask(address, message)
            except asyncio.CancelledError:  # it goes on in the actor: see Held.keep_until
                held.keep_until(self.system.settled(address))
                raise
        if isinstance(reply, Replayed):
            key.replayed = True
            return answer(decode_answer(reply.answer, kind), kind, replayed=True)
        return answer(reply, kind)
