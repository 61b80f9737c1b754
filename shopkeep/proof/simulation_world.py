"""The simulated world of one seed: a small shop, its clients, its gateway, and the faults.

Everything that happens is drawn from one ``random.Random(seed)``: which client does what, which
callback the network delivers next (reordered), whether its acknowledgement is lost (so the
gateway sends it again: duplicated), whether it waits past the order's deadline (late), what a
forger sends, when the database fails a call (an I/O error), when the process dies (a crash,
which loses everything not committed and reopens the file). The event loop's interleaving of
concurrent clients is drawn from the same seed (:mod:`shopkeep.runtime.determinism`), and time
is virtual, so a seed replays exactly. Each step appends a line to the trace.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from shopkeep.actors.config import ShopConfig
from shopkeep.errors import CallbackRejected, ShopError
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.proof.forgery import FORGERIES, forge
from shopkeep.proof.harness import SECRET, Hung, Life, drive
from shopkeep.runtime import VirtualClock

CONFIG = ShopConfig()
DEADLINE_S = int(CONFIG.order_timeout_s)
PRICES = (1_500, 4_000, 9_000)
STOCK = 5
BALANCE = 12_000
COUPON_VALUES = (1_000, 30_000)
MAX_DRIVE_TICKS = 600
"""Virtual seconds a step may take before it counts as hung (asks time out after 30)."""

Op = Callable[[], Awaitable[str]]


class Violation(AssertionError):
    """An invariant failed: the seed found a bug (in the shop or in the proof)."""


@dataclass
class Sent:
    """A genuine callback the gateway sends until the shop acknowledges it."""

    payment: int
    order: int
    status: str
    body: bytes


@dataclass
class World:
    """The shop under test and everything around it, for one seed."""

    seed: int
    path: str
    rng: random.Random
    clock: VirtualClock
    gateway: SandboxGateway
    life: Life | None = None
    users: list[int] = field(default_factory=list)
    goods: list[int] = field(default_factory=list)
    coupons: dict[int, list[int]] = field(default_factory=dict)
    orders: list[int] = field(default_factory=list)
    payments: dict[int, tuple[int, int]] = field(default_factory=dict)
    """payment id -> (order id, amount)."""
    network: list[Sent] = field(default_factory=list)
    """Callbacks sent and not acknowledged yet (the gateway retries them)."""
    sent: list[Sent] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    txns: int = 0
    io_fault_in: int | None = None

    # -- the shop's lives -----------------------------------------------------------------------

    @property
    def live(self) -> Life:
        """The current incarnation."""
        assert self.life is not None, "the shop is down"
        return self.life

    async def open(self) -> None:
        """Start an incarnation and point the gateway's callbacks and the fault hook at it."""
        self.life = await Life.open(self.path, self.clock, self.gateway, CONFIG)
        self.live.shop.runtime.store.writer.fault = self._io_fault

    def _io_fault(self, operation: str) -> None:
        if self.io_fault_in is None:
            return
        self.io_fault_in -= 1
        if self.io_fault_in <= 0:
            self.io_fault_in = None
            self.counts["I/O errors"] += 1
            raise OSError(f"simulated I/O error at {operation}")

    def note(self, line: str) -> None:
        """Append one line to the trace (what the step did and what it got)."""
        self.trace.append(f"{len(self.trace)} t={self.clock.now() - 1.7e9:.0f} {line}")

    # -- clients --------------------------------------------------------------------------------

    def pick(self, items: list[int]) -> int:
        """One of ``items``, drawn from the seed."""
        return items[self.rng.randrange(len(items))]

    async def client_op(self) -> tuple[str, Op]:
        """A random client operation: (description, coroutine function). Mostly on orders in
        a status where it can succeed, sometimes on any order (it must then be refused)."""
        rng = self.rng
        rows = await self.live.shop.reader.fetchall("SELECT id, status FROM orders ORDER BY id")
        known = set(self.orders)
        by_status: dict[str, list[int]] = {}
        for order_id, status in rows:
            if order_id in known:
                by_status.setdefault(str(status), []).append(int(order_id))

        def an_order(*statuses: str) -> int:
            fitting = [o for s in statuses for o in by_status.get(s, [])]
            return self.pick(fitting if fitting and rng.random() < 0.85 else self.orders)

        roll = rng.random()
        if roll < 0.35 or not self.orders:
            return self._place()
        if roll < 0.55:
            order = an_order("awaiting_payment")
            return f"pay o{self.orders.index(order)}", lambda: self._start_payment(order)
        if roll < 0.8 and self.payments:
            payment = self.pick(sorted(self.payments))
            status = "succeeded" if rng.random() < 0.85 else "failed"
            return f"gateway {status} p{payment % 10_000}", lambda: self._complete(payment, status)
        shop = self.live.shop
        if roll < 0.92:
            order = an_order("awaiting_payment", "paid", "pending")
            what, call = "cancel", partial(shop.cancel_order, order)
        elif roll < 0.96:
            order = an_order("paid")
            what, call = "ship", partial(shop.ship, order)
        else:
            order = an_order("shipped")
            what, call = "deliver", partial(shop.deliver, order)
        return f"{what} o{self.orders.index(order)}", partial(self._outcome, call)

    def _place(self) -> tuple[str, Op]:
        rng = self.rng
        user = self.pick(self.users)
        lines = sorted(rng.sample(range(len(self.goods)), rng.randint(1, 2)))
        items = [(self.goods[g], rng.randint(1, 2)) for g in lines]
        coupon = rng.choice([None, None, None, 0, 1])
        coupon_id = None if coupon is None else self.coupons[user][coupon]
        use_balance = rng.choice([0, 0, 800, 5_000])
        wait = rng.random() < 0.8
        what = f"place u{self.users.index(user)} {lines} coupon={coupon} wallet={use_balance}"

        async def place() -> str:
            try:
                order = await self.live.shop.place_order(
                    user, items, coupon_id=coupon_id, use_balance=use_balance, wait=wait
                )
            except ShopError as error:
                if error.order_id is not None:
                    self.orders.append(error.order_id)
                return error.code
            self.orders.append(order.id)
            return order.status

        return what + ("" if wait else " async"), place

    async def _start_payment(self, order: int) -> str:
        try:
            started = await self.live.shop.start_payment(order)
        except ShopError as error:
            return error.code
        self.payments[started.payment.id] = (order, started.payment.amount)
        return f"payment p{started.payment.id % 10_000} created={started.created}"

    async def _complete(self, payment: int, status: str) -> str:
        """The user pays (or fails to) at the gateway: it collects and sends the callback."""
        order, amount = self.payments[payment]
        txn = None
        if status == "succeeded":
            self.txns += 1
            txn = f"sim-{self.txns}"
            self.gateway.collect(payment, txn, amount)
        sent = Sent(
            payment, order, status, self.gateway.callback(payment, order, amount, status, txn)
        )
        self.network.append(sent)
        self.sent.append(sent)
        return "sent"

    async def _outcome(self, call: Callable[[], Awaitable[Any]]) -> str:
        try:
            result = await call()
        except ShopError as error:
            return error.code
        return str(getattr(result, "status", "ok"))

    # -- the network ----------------------------------------------------------------------------

    async def deliver(self, sent: Sent, *, ack_lost: bool) -> str:
        """Deliver a genuine callback, signed now; acknowledged, it leaves the network unless
        the acknowledgement is lost (then the gateway will send it again)."""
        shop = self.live.shop
        try:
            handled = await shop.handle_callback(sent.body, self.gateway.signature(sent.body))
        except CallbackRejected as error:
            raise Violation(f"a genuine callback was refused: {error}") from None
        self.counts["callbacks delivered"] += 1
        if handled.duplicate:
            self.counts["duplicates acknowledged"] += 1
        if handled.action == "late_payment_refund":
            self.counts["late payments"] += 1
        if ack_lost:
            self.counts["acknowledgements lost"] += 1
        elif sent in self.network:
            self.network.remove(sent)
        return f"{handled.action}{' (ack lost)' if ack_lost else ''}"

    async def forged(self) -> str:
        """A forger's callback, made from a genuine one: the shop must refuse it."""
        kind = self.rng.choice(FORGERIES)
        body, header = forge(self.rng, kind, self.pick_sent().body, SECRET, self.clock.now())
        self.counts["forged callbacks"] += 1
        try:
            handled = await self.live.shop.handle_callback(body, header)
        except CallbackRejected:
            return f"{kind}: refused"
        self.counts["forged accepted"] += 1
        raise Violation(f"a forged callback ({kind}) was accepted: {handled.action}")

    def pick_sent(self) -> Sent:
        """A genuine callback sent at some time (the forger has seen them all)."""
        return self.sent[self.rng.randrange(len(self.sent))]

    # -- running steps --------------------------------------------------------------------------

    async def drive(self, tasks: list[asyncio.Task[str]]) -> list[str]:
        """Run ``tasks`` to their end, moving time a second at a time if they wait on it (a
        restart's back-off, a retry): the answers, or what each raised."""
        try:
            await drive(self.clock, list(tasks), MAX_DRIVE_TICKS)
        except Hung as hung:
            raise Violation(f"a step hung: {hung}") from None
        return [outcome(task) for task in tasks]


def outcome(task: asyncio.Task[str]) -> str:
    """What a finished client task answered, or the exception it ended with."""
    if task.cancelled():
        return "cut"
    error = task.exception()
    if error is None:
        return task.result()
    if isinstance(error, Violation):
        raise error
    return f"error {type(error).__name__}"
