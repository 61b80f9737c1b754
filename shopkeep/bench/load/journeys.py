"""The customer journeys of :data:`shopkeep.bench.load.mix.JOURNEYS`, one method each.

A journey is a few operations of one shopper on one order, each timed into the recorder under
its operation's name (``place``, ``start_payment``, ``callback_duplicate``, ...). The first
refusal ends the journey (it is already counted: as an expected refusal or as an error). A
refusal is expected only where the journey provokes it (:data:`~.mix.EXPECTED`): a placement's
``insufficient_stock`` only when it asks for the scarce goods, a ship's ``invalid_state`` only
in ``cancel_race`` when the cancel won; the same code anywhere else is an error (a shop refusing
every placement, or every ship, does not pass).

What the server does asynchronously is waited for by polling the order (``get_order``, every
:data:`POLL_S`, at most :data:`WAIT_BOUND_S`); the time from the request to the state the
journey waits for is recorded too (``await_placed``, ``await_paid``, ``await_refund``), so the
report shows how long a sandbox payment takes to land, not only how fast the 202 came back.

Late callbacks need the order to be canceled by its deadline first. The deadline is read from
the order itself (``expires_at - confirmed_at`` is the server's ``--order-timeout``), so no
flag has to repeat it. Waiting does not hold a worker: the order is *parked* in a task of its
own that sleeps until the deadline has passed, then sends the callback (or, without the gateway
secret, completes the payment through the sandbox, whose gateway calls back), while the worker
goes on with its next journey. An order whose deadline falls after the end of the run is not parked
(it is canceled instead, and the journey counted as skipped): with the server's default
timeout of 30 minutes a short run has no late callbacks, by design.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

import msgspec

from shopkeep.actors.order_state import PLACEMENT_FAILED
from shopkeep.bench.load.mix import placement_provokes
from shopkeep.bench.load.recorder import Recorder
from shopkeep.bench.load.schedule import take_due
from shopkeep.bench.load.target import Customer, Order, Payment, Refused, Target
from shopkeep.payments.provider import CallbackBody

T = TypeVar("T")

Provoked = Callable[[str], bool]
"""Whether a refusal's code was provoked on purpose by the journey that got it."""


def unprovoked(code: str) -> bool:
    """No refusal is provoked: every code is an error."""
    return False


POLL_S = 0.02
WAIT_BOUND_S = 15.0
DEADLINE_MARGIN_S = 0.25
"""How long after an order's deadline a parked order starts asking whether it timed out."""
HOLD_LIMIT = 4
"""Orders a shopper leaves unpaid at once on purpose, for their deadline (``place`` and
``late_callback``): the server's default cap is 10, and the other journeys hold one more at a
time."""
BY_DEADLINE = "timeout"
"""The cancel reason of an order its payment deadline canceled."""
SCARCE_SHARE = 0.1
COUPON_SHARE = 0.2
WALLET_SHARE = 0.3
OPENING_BALANCE = 100_000
"""Each shopper's wallet balance when the harness creates it."""


@dataclass
class Shopper:
    """A user the harness created, the coupons it has not used (and which of them a cancel gave
    back), and the deadlines of the orders it left unpaid on purpose."""

    customer: Customer
    coupons: list[str] = field(default_factory=list)
    holding: list[float] = field(default_factory=list)
    wallet_floor: int = OPENING_BALANCE
    """The least its wallet may hold, as the harness knows it: the opening balance less what
    its placements asked of the wallet, those in flight and refused included (what comes
    back, from a cancel or a failed placement's undo, does so asynchronously: not counted)."""
    given_back: set[str] = field(default_factory=set)
    """Coupons a cancel gave back (a user's, the deadline's, a failed placement's undo) and
    not used since: the shop releases them asynchronously, so one may still be on its way back
    (its next use refused coupon_unavailable is expected; a coupon's first use, never)."""

    def may_hold(self, now: float) -> bool:
        """Whether one more unpaid order may be left for its deadline."""
        self.holding = [due for due in self.holding if due > now]
        return len(self.holding) < HOLD_LIMIT


def _hold(shopper: Shopper, order: Order) -> None:
    """``order`` is left unpaid until its deadline: one more of the shopper's holdings."""
    if order.expires_at is not None:
        shopper.holding.append(time.time() + order.expires_at - (order.confirmed_at or 0))


@dataclass(frozen=True)
class Catalog:
    """The goods the harness created: plenty of most, and one scarce goods that runs out."""

    plentiful: list[str]
    scarce: str


class Journeys:
    """The journeys, over ``target``, timed into ``recorder``; runs end at ``ends_at`` (seconds
    on the recorder's clock)."""

    def __init__(
        self, target: Target, recorder: Recorder, catalog: Catalog, run_id: str, ends_at: float
    ) -> None:
        self.target = target
        self.recorder = recorder
        self.catalog = catalog
        self.run_id = run_id
        self.ends_at = ends_at
        self.parked: set[asyncio.Task[None]] = set()
        self._keys = itertools.count(1)
        self.by_name: dict[str, Callable[[Shopper, random.Random], Awaitable[None]]] = {
            "place": self.place,
            "place_async": self.place_async,
            "pay": self.pay,
            "pay_fail": self.pay_fail,
            "duplicate_callback": self.duplicate_callback,
            "late_callback": self.late_callback,
            "cancel_unpaid": self.cancel_unpaid,
            "cancel_paid": self.cancel_paid,
            "ship": self.ship,
            "return": self.return_goods,
            "cancel_race": self.cancel_race,
        }

    # -- timing -------------------------------------------------------------------------------

    async def timed(self, name: str, call: Awaitable[T], provoked: Provoked = unprovoked) -> T:
        """The answer of ``call``, its latency recorded under ``name``; a refusal is recorded
        (an expected refusal if ``provoked`` says the journey provoked its code, else an
        error) and raised again (it ends the journey). A paced journey's first operation is
        timed from the journey's due time (:func:`~.schedule.take_due`)."""
        started = self.recorder.now()
        due = take_due()
        if due is not None:
            started = min(started, due)
        try:
            answer = await call
        except Refused as refused:
            expected = provoked(refused.code)
            self.recorder.outcome(name, self.recorder.now() - started, refused.code, expected)
            raise
        self.recorder.answered(name, self.recorder.now() - started)
        return answer

    async def wait_for(
        self,
        shopper: Shopper,
        order_id: str,
        statuses: set[str],
        name: str,
        since: float,
        *,
        ends: frozenset[str] = frozenset(),
        failed_placement: Provoked | None = None,
    ) -> Order:
        """Poll the order until its status is one of ``statuses``; the wait since ``since``
        (a ``perf_counter`` time) is recorded under ``name``. An order that reaches one of
        ``ends`` instead, where it stays, ends the wait as ``invalid_state``: expected when
        its deadline canceled it (a payment that lands after it is refunded), else an
        error. Given ``failed_placement`` (whether the journey provoked a refusal's code), an
        order whose placement failed ends the wait as that refusal (:meth:`_failed_placement`)."""
        bound = time.perf_counter() + WAIT_BOUND_S
        while True:
            order = await self.timed("get_order", self.target.get_order(shopper.customer, order_id))
            if failed_placement is not None and order.cancel_reason == PLACEMENT_FAILED:
                await self._failed_placement(shopper, order, name, since, failed_placement)
            if order.status in statuses:
                self.recorder.answered(name, time.perf_counter() - since)
                return order
            if order.status in ends:
                by_deadline = order.cancel_reason == BY_DEADLINE
                waited = time.perf_counter() - since
                code = "invalid_state" if by_deadline else _ended_as(order)
                self.recorder.outcome(name, waited, code, by_deadline)
                raise Refused("invalid_state", f"order {order_id} is {order.status}")
            if time.perf_counter() > bound:
                self.recorder.failed(name, "wait_timeout")
                raise Refused("wait_timeout", f"order {order_id} stayed {order.status}")
            await asyncio.sleep(POLL_S)

    async def _failed_placement(
        self, shopper: Shopper, order: Order, name: str, since: float, provoked: Provoked
    ) -> NoReturn:
        """Record the wait ``name`` for ``order``, whose placement failed, as its refusal (the
        code its history names), expected when ``provoked``; its coupon is the shopper's
        again (the undo gives it back asynchronously); end the journey."""
        waited = time.perf_counter() - since
        code = await self.timed(
            "get_history", self.target.placement_failure(shopper.customer, order.id)
        )
        self.recorder.outcome(name, waited, code, provoked(code))
        self._give_back(shopper, order)
        raise Refused(code, f"order {order.id}'s placement failed: {code}")

    # -- building blocks ----------------------------------------------------------------------

    async def _place(
        self, shopper: Shopper, pick: random.Random, *, wait: bool = True, name: str = "place"
    ) -> Order:
        """A placement as a journey makes it (:meth:`_placing`)."""
        order, _ = await self._placing(shopper, pick, wait=wait, name=name)
        return order

    async def _placing(
        self, shopper: Shopper, pick: random.Random, *, wait: bool = True, name: str = "place"
    ) -> tuple[Order, Provoked]:
        """Place an order of the plentiful goods (sometimes the scarce one, a coupon, the
        wallet), under a key of its own, timed as ``name``: the order, and whether this
        placement provoked a refusal's code (:func:`~.mix.placement_provokes`)."""
        goods = pick.sample(self.catalog.plentiful, k=pick.choice((1, 1, 2)))
        if pick.random() < SCARCE_SHARE:
            goods[0] = self.catalog.scarce
        items = [(goods_id, pick.randint(1, 2)) for goods_id in goods]
        coupon = None
        if shopper.coupons and pick.random() < COUPON_SHARE:
            coupon = shopper.coupons.pop()
        use_balance = pick.randint(100, 500) if pick.random() < WALLET_SHARE else 0
        floor, shopper.wallet_floor = shopper.wallet_floor, shopper.wallet_floor - use_balance
        key = f"{self.run_id}-{next(self._keys)}"
        provoked = functools.partial(
            placement_provokes,
            scarce=self.catalog.scarce in goods,
            coupon=coupon is not None and coupon in shopper.given_back,
            wallet=use_balance > 0 and floor < use_balance,
            holding=any(due > time.time() for due in shopper.holding),
        )
        try:
            order = await self.timed(
                name,
                self.target.place_order(
                    shopper.customer,
                    items,
                    coupon_id=coupon,
                    use_balance=use_balance,
                    key=key,
                    wait=wait,
                ),
                provoked,
            )
        except Refused as refused:
            if coupon is not None:
                shopper.coupons.append(coupon)
                if refused.code != "coupon_unavailable":  # the placement may have taken it:
                    shopper.given_back.add(coupon)  # its undo gives it back asynchronously
            raise
        if coupon is not None:
            shopper.given_back.discard(coupon)
        return order, provoked

    async def _paid(self, shopper: Shopper, pick: random.Random) -> tuple[Order, Payment]:
        order, payment = await self._placed_and_paying(shopper, pick)
        since = time.perf_counter()
        await self.timed("complete_success", self.target.complete_payment(payment.id, "succeeded"))
        try:
            # its deadline may come first (a short --order-timeout, a server paused): the
            # payment is then refunded as late (SPEC 3), and the order stays canceled
            order = await self.wait_for(
                shopper, order.id, {"paid"}, "await_paid", since, ends=frozenset({"canceled"})
            )
        except Refused:
            self._give_back(shopper, order)
            raise
        return order, payment

    async def _placed_and_paying(
        self, shopper: Shopper, pick: random.Random
    ) -> tuple[Order, Payment]:
        """Place an order (:meth:`_place`) and start paying it. The payment start refused
        ``invalid_state`` is expected only once the order's deadline may have come (its
        timeout has passed since the placement was sent: the deadline canceled it
        meanwhile); sooner, it is an error."""
        since = time.perf_counter()
        order = await self._place(shopper, pick)
        timeout = None
        if order.expires_at is not None and order.confirmed_at is not None:
            timeout = order.expires_at - order.confirmed_at

        def provoked(code: str) -> bool:
            return (
                code == "invalid_state"
                and timeout is not None
                and time.perf_counter() - since >= timeout
            )

        paying = self.target.start_payment(shopper.customer, order.id)
        return order, await self.timed("start_payment", paying, provoked)

    def _signed_success(self, payment: Payment) -> tuple[bytes, str]:
        """A success callback for ``payment``, as the gateway signs it (its own transaction
        id: one payment, one transaction, however often it is sent)."""
        body = CallbackBody(
            payment.id, payment.order_id, payment.amount, "succeeded", f"bench-{payment.id}"
        )
        raw = msgspec.json.encode(body)
        return raw, self.target.sign(raw, int(time.time()))

    async def _cancel(self, shopper: Shopper, order: Order, name: str) -> None:
        canceled = await self.timed(name, self.target.cancel_order(shopper.customer, order.id))
        self._give_back(shopper, canceled)

    @staticmethod
    def _give_back(shopper: Shopper, order: Order) -> None:
        """A canceled order's coupon is the shopper's to use again (the shop releases it
        asynchronously, so the next use may be refused coupon_unavailable: expected, as
        :attr:`Shopper.given_back`)."""
        if order.coupon_id is not None and order.status == "canceled":
            shopper.coupons.append(order.coupon_id)
            shopper.given_back.add(order.coupon_id)

    # -- the journeys -------------------------------------------------------------------------

    async def place(self, shopper: Shopper, pick: random.Random) -> None:
        """Place and leave unpaid, for the deadline to cancel (or cancel at once, when the
        shopper already holds enough unpaid orders)."""
        if not shopper.may_hold(time.time()):
            self.recorder.skipped["place"] += 1
            await self.cancel_unpaid(shopper, pick)
            return
        _hold(shopper, await self._place(shopper, pick))

    async def place_async(self, shopper: Shopper, pick: random.Random) -> None:
        """Place with ``?wait=false``, poll until placed, then cancel. A placement that failed
        (canceled ``placement_failed``) is ``await_placed``'s refusal, by the code its order's
        history names: expected when the journey provoked it, as a refusal of a placement that
        waits is (the scarce goods sold out, say), else an error."""
        since = time.perf_counter()
        order, provoked = await self._placing(shopper, pick, wait=False, name="place_async")
        statuses = {"awaiting_payment", "paid", "canceled"}
        order = await self.wait_for(
            shopper, order.id, statuses, "await_placed", since, failed_placement=provoked
        )
        if order.status == "awaiting_payment":
            await self._cancel(shopper, order, "cancel_unpaid")

    async def pay(self, shopper: Shopper, pick: random.Random) -> None:
        """Pay through the sandbox and wait until the order is paid."""
        await self._paid(shopper, pick)

    async def pay_fail(self, shopper: Shopper, pick: random.Random) -> None:
        """A payment that fails at the sandbox, then a cancel."""
        order, payment = await self._placed_and_paying(shopper, pick)
        await self.timed("complete_failure", self.target.complete_payment(payment.id, "failed"))
        await self._cancel(shopper, order, "cancel_unpaid")

    async def duplicate_callback(self, shopper: Shopper, pick: random.Random) -> None:
        """The same signed success callback twice: both acknowledged, the order paid once."""
        order, payment = await self._placed_and_paying(shopper, pick)
        raw, signature = self._signed_success(payment)
        try:
            await self.timed("callback", self.target.send_callback(raw, signature))
            await self.timed("callback_duplicate", self.target.send_callback(raw, signature))
        except Refused:
            # refused (a --gateway-secret not the server's): the order left unpaid would
            # count against the shopper's unpaid cap, and every later placement be refused
            with contextlib.suppress(Refused):
                await self._cancel(shopper, order, "cancel_unpaid")
            raise
        order = await self.timed("get_order", self.target.get_order(shopper.customer, order.id))
        # a deadline that came before the first callback canceled the order: both callbacks
        # are acknowledged and the payment refunded (SPEC 3.4), as await_paid takes it
        if order.status != "paid" and order.cancel_reason != BY_DEADLINE:
            self.recorder.failed("callback_duplicate", _ended_as(order))

    async def late_callback(self, shopper: Shopper, pick: random.Random) -> None:
        """Start paying, let the deadline cancel the order, then call back a success: the
        shop must acknowledge it and refund it (see the module docstring). The order is held
        unpaid until then, as :meth:`place`'s, within the same bound."""
        if not shopper.may_hold(time.time()):
            self.recorder.skipped["late_callback"] += 1
            await self.cancel_unpaid(shopper, pick)
            return
        order, payment = await self._placed_and_paying(shopper, pick)
        timeout = (order.expires_at or 0) - (order.confirmed_at or 0)
        due = self.recorder.now() + timeout + DEADLINE_MARGIN_S
        if order.expires_at is None or due > self.ends_at:
            self.recorder.skipped["late_callback"] += 1
            await self._cancel(shopper, order, "cancel_unpaid")
            return
        _hold(shopper, order)
        task = asyncio.create_task(self._call_back_late(shopper, payment, due))
        self.parked.add(task)
        task.add_done_callback(self.parked.discard)

    async def _call_back_late(self, shopper: Shopper, payment: Payment, due: float) -> None:
        await asyncio.sleep(max(0.0, due - self.recorder.now()))
        try:
            since = time.perf_counter()
            await self.wait_for(shopper, payment.order_id, {"canceled"}, "await_timeout", since)
            since = time.perf_counter()
            if self.target.signs:
                raw, signature = self._signed_success(payment)
                await self.timed("callback_late", self.target.send_callback(raw, signature))
            else:  # the sandbox gateway calls back, signed with the server's own secret
                paying = self.target.complete_payment(payment.id, "succeeded")
                await self.timed("complete_late", paying)
            while True:
                kinds = await self.timed(
                    "get_refunds", self.target.refund_kinds(shopper.customer, payment.order_id)
                )
                if "late_payment" in kinds:
                    self.recorder.answered("await_refund", time.perf_counter() - since)
                    return
                if time.perf_counter() - since > WAIT_BOUND_S:
                    self.recorder.failed("await_refund", "no_late_payment_refund")
                    return
                await asyncio.sleep(POLL_S)
        except Refused:
            return  # counted already

    async def cancel_unpaid(self, shopper: Shopper, pick: random.Random) -> None:
        """Place, then cancel before paying (the coupon, if any, comes back)."""
        order = await self._place(shopper, pick)
        await self._cancel(shopper, order, "cancel_unpaid")

    async def cancel_paid(self, shopper: Shopper, pick: random.Random) -> None:
        """Pay, then cancel: the shop intercepts fulfilment and refunds."""
        order, _ = await self._paid(shopper, pick)
        await self._cancel(shopper, order, "cancel_paid")

    async def ship(self, shopper: Shopper, pick: random.Random) -> None:
        """Pay, ship, deliver."""
        order, _ = await self._paid(shopper, pick)
        await self.timed("ship", self.target.ship(order.id))
        await self.timed("deliver", self.target.deliver(order.id))

    async def return_goods(self, shopper: Shopper, pick: random.Random) -> None:
        """Pay, ship, deliver, ask for a return, approve it."""
        order, _ = await self._paid(shopper, pick)
        await self.timed("ship", self.target.ship(order.id))
        await self.timed("deliver", self.target.deliver(order.id))
        return_id = await self.timed(
            "request_return", self.target.request_return(shopper.customer, order.id)
        )
        await self.timed("approve_return", self.target.approve_return(return_id))

    async def cancel_race(self, shopper: Shopper, pick: random.Random) -> None:
        """Pay, then ship and cancel at once: exactly one of them wins, and the other, second,
        is refused invalid_state (an expected refusal of ``ship`` or ``cancel_paid``). Both
        refused, or both done, is an error: each half is recorded once both have answered,
        and a refusal is expected only when the other half won (a shop that never ships, or
        that ships a canceled order, does not pass)."""
        order, _ = await self._paid(shopper, pick)
        ship = self._unrecorded(self.target.ship(order.id))
        cancel = self._unrecorded(self.target.cancel_order(shopper.customer, order.id))
        # which is sent first, drawn: in process the first one asked is the first the order
        # handles, so a fixed order would let the same one win every race
        cancel_first = pick.random() < 0.5
        outcomes = await asyncio.gather(
            *((cancel, ship) if cancel_first else (ship, cancel)), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        canceled, shipped = outcomes if cancel_first else outcomes[::-1]
        assert not isinstance(canceled, BaseException) and not isinstance(shipped, BaseException)
        (cancel_s, cancel_answer), (ship_s, ship_answer) = canceled, shipped
        cancel_won = isinstance(cancel_answer, Order) and cancel_answer.status == "canceled"
        ship_won = not isinstance(ship_answer, Refused)
        if isinstance(ship_answer, Refused):
            expected = ship_answer.code == "invalid_state" and cancel_won
            self.recorder.outcome("ship", ship_s, ship_answer.code, expected)
        else:
            self.recorder.answered("ship", ship_s)
        if isinstance(cancel_answer, Refused):
            expected = cancel_answer.code == "invalid_state" and ship_won
            self.recorder.outcome("cancel_paid", cancel_s, cancel_answer.code, expected)
        elif not cancel_won:  # answered, not canceled: a cancel is done or refused (SPEC 5)
            self.recorder.failed("cancel_paid", f"order_{cancel_answer.status}")
        elif ship_won:  # a shipped order canceled too
            self.recorder.failed("cancel_paid", "race_both_done")
        else:
            self.recorder.answered("cancel_paid", cancel_s)
            self._give_back(shopper, cancel_answer)

    async def _unrecorded(self, call: Awaitable[T]) -> tuple[float, T | Refused]:
        """The answer of ``call`` (or its refusal) and how long it took, not recorded yet."""
        started = self.recorder.now()
        try:
            answer: T | Refused = await call
        except Refused as refused:
            answer = refused
        return self.recorder.now() - started, answer


def _ended_as(order: Order) -> str:
    """An error's code for a journey's order found where it should not be: its status, and
    who canceled it (``order_canceled_by_admin``: another client's cancel, not the shop's)."""
    reason = f"_by_{order.cancel_reason}" if order.cancel_reason else ""
    return f"order_{order.status}{reason}"
