"""Placing an order from the embedded API: the ask, its Idempotency-Key, and a placement that
runs longer than the ask waits (SPEC 2, 7).

The order id is minted here, and the new order asks the user's BeginOrder itself (see
``Place.begin``): the user binds the key to it, so a second placement under the same key
learns of the first (:class:`~shopkeep.actors.order_messages.PlacedBefore`). What that second
one answers, in this order:

1. the first placement's answer, recorded with the key when it placed (or, with
   ``?wait=false``, accepted) its order, or refused it before any order was recorded: the
   order as it was then, or that refusal;
2. else the first order's outcome now, asked of it again (it is still running: the ask waits
   behind it; or a crash cut it before its answer was recorded: it is placed now, or undone);
3. unless that outcome is a failure that did nothing for the customer (overloaded,
   unavailable, interrupted, or a 422: ``BINDS_NOTHING``): then the key is bound to a new placement
   and the request runs afresh (SPEC 7: such a first attempt does not bind its key). An
   order accepted pending is asked too, and its key bound afresh when its placement did
   nothing; any other outcome of it is answered as 1 (the order accepted, pending).

A placement still running when the ask times out goes on: the answer is then the order as it
stands, pending (from the store, or as its first step records it), never a 503 that would
invite a second order. HTTP answers it 202, as it answers ``?wait=false``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import msgspec

from shopkeep.actors.assets import given_back
from shopkeep.actors.config import ShopConfig
from shopkeep.actors.key_rules import decode_answer, request_hash
from shopkeep.actors.key_store import placement_answer
from shopkeep.actors.order import order_view
from shopkeep.actors.order_messages import (
    Accept,
    Items,
    OrderView,
    Place,
    PlacedBefore,
)
from shopkeep.actors.order_rules import (
    line_problems,
    new_order,
    placement_outcome,
    request_problems,
)
from shopkeep.actors.order_state import PENDING
from shopkeep.actors.order_store import load_order
from shopkeep.actors.placement import UNDONE_FAILURES
from shopkeep.actors.protocol import BeginOrder
from shopkeep.errors import ShopError, answer
from shopkeep.idempotency import IdempotencyKey, InFlight, key_of
from shopkeep.refusals import VALIDATION_ERROR, Refusal
from shopkeep.requests import Problems, check_amount, check_choice, check_id, checked_items
from shopkeep.runtime import ActorSystem, Address, AskTimeout
from shopkeep.store.reader import Reader

BINDS_NOTHING: Final = UNDONE_FAILURES | {VALIDATION_ERROR}
"""The outcomes of a first placement that leave its Idempotency-Key to the retry: those that
did nothing for the customer, and a 422 (SPEC 7; an order accepted ``?wait=false`` and refused
so once priced, the amount past any the shop takes, did nothing either)."""


class PlaceRequest(msgspec.Struct, frozen=True, gc=False):
    """A placement as the caller asked for it (checked already)."""

    user_id: int
    lines: Items
    coupon_id: int | None
    use_balance: int
    expected_total: int | None
    wait: bool

    @classmethod
    def checked(
        cls,
        user_id: int,
        items: Any,
        coupon_id: int | None,
        use_balance: int,
        expected_total: int | None,
        wait: bool,
        config: ShopConfig,
        idempotency_key: str | IdempotencyKey | None = None,
    ) -> PlaceRequest:
        """The request, or ShopError validation_error listing every problem found, the
        ``idempotency_key``'s among them (checked here only when another is found: the key
        is checked as it is used)."""
        # Every placement passes here: the checks in a row, raising at the first problem, cost
        # half what gathering them does; only a request refused is checked again, gathering.
        if type(items) is not list and type(items) is not tuple:
            # read once (a generator is read up by the first checks, and the second found it
            # empty: "an order needs at least one item"); no lines at all are refused as such
            with contextlib.suppress(TypeError):
                items = tuple(items)
        try:
            check_id("user_id", user_id)
            lines = checked_items(items)
            if coupon_id is not None:
                check_id("coupon_id", coupon_id)
            check_amount("use_balance", use_balance)
            if expected_total is not None:
                check_amount("expected_total", expected_total)
            if type(wait) is not bool:  # "no" is true, and 0 no bool: refused, not guessed
                check_choice("wait", wait, WAIT_CHOICES)
            if not request_problems(lines, use_balance, expected_total, config):
                return cls(user_id, lines, coupon_id, use_balance, expected_total, wait)
        except ShopError as refusal:
            if refusal.code != VALIDATION_ERROR:
                raise
        raise every_problem(
            user_id, items, coupon_id, use_balance, expected_total, wait, config, idempotency_key
        )

    def message(self, begin: BeginOrder | None) -> Place | Accept:
        """The order's message: Place (wait for the outcome) or Accept (pending at once)."""
        kind = Place if self.wait else Accept
        return kind(
            self.user_id, self.lines, self.coupon_id, self.use_balance, self.expected_total,
            begin=begin,
        )

    def identity(self) -> str:
        """What an Idempotency-Key binds to: the body (SPEC 2: the same key with the same body
        returns the same order), not ``?wait=``. A retry that waits where the first did not
        (or the reverse) is answered the first answer: the order as it was accepted, pending,
        or as it was placed.

        The body is hashed as the waiting request's was when ``?wait=`` counted: a key bound
        then (by a waiting placement, nearly every one) still matches its retry."""
        return request_hash(
            "place_order", self.lines, self.coupon_id, self.use_balance, self.expected_total,
            _AS_WAITING,
        )


WAIT_CHOICES: Final = (True, False, None)
"""What ``wait`` may be (None: as if left out, ``Shop.place_order`` waits), as a refusal names
them."""
_AS_WAITING: Final = True
"""The last part of every placement's identity: once ``?wait=``, now always as if true (see
:meth:`PlaceRequest.identity`)."""


class Placer:
    """Places orders for a Shop (see the module)."""

    __slots__ = ("config", "in_flight", "reader", "system")

    def __init__(
        self, system: ActorSystem, reader: Reader, config: ShopConfig, in_flight: InFlight
    ) -> None:
        self.system = system
        self.reader = reader
        self.config = config
        self.in_flight = in_flight

    async def place(self, request: PlaceRequest, key: IdempotencyKey | None) -> OrderView:
        """The placed (or, without ``wait``, accepted) order, or ShopError with the refusal."""
        order_id = self.system.ids.next()
        if key is None:
            return await self._begin(request, None, "", None, order_id)
        held = self.in_flight.hold(request.user_id, key.value)
        async with held:
            try:
                return await self._begin(request, key, request.identity(), None, order_id)
            except asyncio.CancelledError:  # it goes on in the shop: see Held.keep_until
                held.keep_until(self.system.settled(Address("order", order_id)))
                raise

    async def _begin(
        self,
        request: PlaceRequest,
        key: IdempotencyKey | None,
        identity: str,
        replaces: int | None,
        order_id: int,
    ) -> OrderView:
        value = None if key is None else key.value
        begin = BeginOrder(order_id, value, identity, self.config.max_unpaid_orders, replaces)
        reply = await self._ask(order_id, request.message(begin), request)
        if isinstance(reply, PlacedBefore):
            assert key is not None  # only a key names an earlier placement
            return await self._again(request, key, identity, reply.order_id, replaces is None)
        if isinstance(reply, Refusal) and reply.order_id is not None:
            # a recorded order failed: what it took is given back before the refusal is told
            await given_back(self.system, reply.order_id)
        return answer(reply, OrderView)

    async def _again(
        self,
        request: PlaceRequest,
        key: IdempotencyKey,
        identity: str,
        first_id: int,
        may_rebind: bool,
    ) -> OrderView:
        """What a placement answers when ``key`` was bound to ``first_id`` (see the module)."""
        kept = await placement_answer(self.reader, request.user_id, key.value, first_id)
        first: OrderView | Refusal | PlacedBefore | None = (
            None if kept is None else decode_answer(kept, OrderView)
        )
        if first is None or (may_rebind and _accepted(first)):
            # Asked again, an order answers its placement's outcome; one that does not exist
            # (a crash cut its placement after the user kept the key, before the order was
            # recorded) is placed now. An order accepted (?wait=false) whose placement then
            # did nothing binds nothing either.
            reply = await self._ask(first_id, request.message(None), request)
            if may_rebind and isinstance(reply, Refusal) and reply.code in BINDS_NOTHING:
                return await self._begin(request, key, identity, first_id, self.system.ids.next())
            if first is None:
                # no answer kept, so none was given (the first attempt was cut by a crash, or
                # answered 503 when a write after the key's failed): this is the first answer,
                # not a replay
                return answer(reply, OrderView)
        key.replayed = True
        return answer(first, OrderView, replayed=True)

    async def _ask(
        self, order_id: int, message: Place | Accept, request: PlaceRequest
    ) -> OrderView | Refusal | PlacedBefore:
        try:
            reply: OrderView | Refusal | PlacedBefore = await self.system.ask(
                Address("order", order_id), message
            )
        except AskTimeout:
            return await self._still_placing(order_id, request)
        return reply

    async def _still_placing(self, order_id: int, request: PlaceRequest) -> OrderView | Refusal:
        """The order of a placement the ask gave up waiting for: as the store has it, or as its
        first step records it (pending) when it has not reached the store yet."""
        state = await load_order(self.reader, order_id)
        if state is None:
            now = self.system.clock.now()
            state, _ = new_order(
                order_id, request.user_id, request.lines, request.coupon_id,
                request.use_balance, now, self.config.currency,
            )
        return placement_outcome(state) or order_view(state)


def _accepted(first: OrderView | Refusal | PlacedBefore) -> bool:
    """Whether a placement's first answer was its order accepted, pending (``?wait=false``)."""
    return isinstance(first, OrderView) and first.status == PENDING


def every_problem(
    user_id: Any,
    items: Any,
    coupon_id: Any,
    use_balance: Any,
    expected_total: Any,
    wait: Any,
    config: ShopConfig,
    idempotency_key: Any,
) -> ShopError:
    """The validation_error listing every problem of a placement request that has one (the
    checks of :meth:`PlaceRequest.checked`, each run whatever the others found)."""
    each = Problems()
    each(check_id, "user_id", user_id)
    lines = each(checked_items, items)
    if coupon_id is not None:
        each(check_id, "coupon_id", coupon_id)
    each(check_amount, "use_balance", use_balance)
    if expected_total is not None:
        each(check_amount, "expected_total", expected_total)
    if type(wait) is not bool:
        each(check_choice, "wait", wait, WAIT_CHOICES)
    # the order's rules for its lines (its amounts' are check_amount's above), beside the
    # lines' types: of every line, or of what the lines that are no pairs of numbers say
    read = lines if lines is not None else _loose_lines(items)
    if read is not None:
        each.add(line_problems(read, config))
    each(key_of, idempotency_key)
    return ShopError.invalid(each.found)


def _loose_lines(items: Any) -> list[tuple[object, object]] | None:
    """``items`` as (goods id, quantity) lines, each part None where it is no id or no whole
    number (refused already by ``checked_items``); None when ``items`` are no lines at all."""
    if not isinstance(items, list | tuple):
        return None
    lines: list[tuple[object, object]] = []
    for item in items:
        pair = isinstance(item, tuple | list) and len(item) == 2
        goods, quantity = item if pair else (None, None)
        try:
            check_id("goods_id", goods)
        except ShopError:
            goods = None
        lines.append((goods, quantity if type(quantity) is int else None))
    return lines
