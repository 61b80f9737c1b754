"""A small shop around the order kinds for integration tests: real SQLite file, virtual clock.

:func:`open_shop` runs the asset kinds and ``order_kinds(config, gateway)`` on a database in
``tmp_path`` with an in-process :class:`SandboxGateway` whose callbacks go through a minimal
callback handler (verify the signature, ask the order). :class:`Shop` asks actors directly and
reads the tables; :meth:`Shop.quiet` waits (without sleeping) until every durable message is
applied, so the ledgers can be compared.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

from shopkeep.actors.assets import AssetsActor
from shopkeep.actors.audit import audit
from shopkeep.actors.config import ShopConfig
from shopkeep.actors.coupon import CouponActor
from shopkeep.actors.goods import GoodsActor
from shopkeep.actors.kinds import order_kinds
from shopkeep.actors.order_messages import (
    CallbackHandled,
    CheckoutReady,
    GetOrder,
    OrderView,
    PaymentCallback,
    PaymentStarted,
    Place,
    StartPayment,
)
from shopkeep.actors.protocol import (
    BeginOrder,
    CouponView,
    CreateCoupon,
    CreateGoods,
    CreateUser,
    GetCoupon,
    GetGoods,
    GetUser,
    GoodsView,
    OrderTicket,
    UserView,
)
from shopkeep.actors.user import UserActor
from shopkeep.bootstrap import Runtime, open_runtime
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.payments.provider import CallbackBody, Checkout
from shopkeep.payments.signature import verify
from shopkeep.refusals import Refusal
from shopkeep.runtime import Actor, ActorSystem, Address, VirtualClock

SECRET = "test-gateway-secret"


class Shop:
    """The runtime, the sandbox gateway and the clock, with sentences for tests."""

    def __init__(self, rt: Runtime, gateway: SandboxGateway, clock: VirtualClock,
                 config: ShopConfig) -> None:
        self.rt = rt
        self.gateway = gateway
        self.clock = clock
        self.config = config
        self.callbacks: list[tuple[PaymentCallback, Any]] = []

    @property
    def system(self) -> ActorSystem:
        """The actor system."""
        return self.rt.system

    def new_id(self) -> int:
        """A fresh id."""
        return self.system.ids.next()

    async def ask(self, kind: str, actor_id: int, message: Any) -> Any:
        """Ask ``kind:actor_id``."""
        return await self.system.ask(Address(kind, actor_id), message)

    # -- setting up ---------------------------------------------------------------------------

    async def user(self, balance: int = 0) -> int:
        """A new user with ``balance``."""
        user_id = self.new_id()
        view = await self.ask("user", user_id, CreateUser(f"u{user_id}", balance, f"h{user_id}"))
        assert isinstance(view, UserView)
        return user_id

    async def goods(self, price: int, stock: int) -> int:
        """A new goods."""
        goods_id = self.new_id()
        view = await self.ask("goods", goods_id, CreateGoods(f"g{goods_id}", price, stock))
        assert isinstance(view, GoodsView)
        return goods_id

    async def coupon(self, user_id: int, value: int, min_order_amount: int = 0) -> int:
        """A new coupon of ``user_id``."""
        coupon_id = self.new_id()
        view = await self.ask("coupon", coupon_id, CreateCoupon(user_id, value, min_order_amount))
        assert isinstance(view, CouponView)
        return coupon_id

    # -- ordering and paying ------------------------------------------------------------------

    async def begin(self, user_id: int, order_id: int) -> None:
        """What the shop asks before placing: the user counts the order as unpaid."""
        ticket = await self.ask(
            "user", user_id, BeginOrder(order_id, None, "", self.config.max_unpaid_orders)
        )
        assert isinstance(ticket, OrderTicket), ticket

    async def place(
        self,
        user_id: int,
        items: Sequence[tuple[int, int]],
        coupon_id: int | None = None,
        use_balance: int = 0,
        expected_total: int | None = None,
        *,
        saga: bool = False,
    ) -> OrderView | Refusal:
        """Place synchronously as the shop does (``placing.py``): Place carrying its
        BeginOrder, decided in one turn where every participant can join. With ``saga``, the
        user is asked BeginOrder first and Place carries none: the saga of asks and
        compensations, the path of a placement whose participant is busy."""
        order_id = self.new_id()
        begin = BeginOrder(order_id, None, "", self.config.max_unpaid_orders)
        if saga:
            await self.begin(user_id, order_id)
        place = Place(
            user_id, tuple(items), coupon_id, use_balance, expected_total,
            None if saga else begin,
        )
        answer = await self.ask("order", order_id, place)
        assert isinstance(answer, OrderView | Refusal)
        return answer

    async def placed(self, user_id: int, items: Sequence[tuple[int, int]], **kw: Any) -> OrderView:
        """Place an order that must succeed."""
        answer = await self.place(user_id, items, **kw)
        assert isinstance(answer, OrderView), answer
        return answer

    async def start_payment(self, order_id: int) -> PaymentStarted:
        """StartPayment, which must succeed."""
        started = await self.ask("order", order_id, StartPayment())
        assert isinstance(started, PaymentStarted), started
        payment = started.payment
        if payment.has_checkout:
            return started
        # what shopkeep.shop.Shop does: ask the provider (the sandbox), keep its answer
        checkout = Checkout(gateway_url=self.gateway.payment_url(payment.id))
        kept = CheckoutReady(payment.id, msgspec.json.encode(checkout).decode())
        given = await self.ask("order", order_id, kept)
        assert isinstance(given, PaymentStarted), given
        return given

    async def pay(self, order_id: int, status: str = "succeeded", txn_id: str | None = None
                  ) -> PaymentStarted:
        """Start a payment and have the sandbox gateway complete it (callback acknowledged)."""
        started = await self.start_payment(order_id)
        payment = started.payment
        assert await self.gateway.complete(payment.id, order_id, payment.amount, status, txn_id)
        return started

    async def handle_callback(self, raw_body: bytes, header: str) -> bool:
        """A minimal callback endpoint: verify, decode, ask the order; True = acknowledged."""
        ok, _ = verify(SECRET, header, raw_body, self.clock.now(), 300)
        if not ok:
            return False
        body = msgspec.json.decode(raw_body, type=CallbackBody)
        message = PaymentCallback(
            int(body.payment_id), body.status, body.amount, body.gateway_txn_id  # type: ignore[arg-type]
        )
        answer = await self.ask("order", int(body.order_id), message)
        self.callbacks.append((message, answer))
        return isinstance(answer, CallbackHandled)

    # -- reading ------------------------------------------------------------------------------

    async def order(self, order_id: int) -> OrderView:
        """The order as its actor answers it."""
        view = await self.ask("order", order_id, GetOrder())
        assert isinstance(view, OrderView), view
        return view

    async def stock(self, goods_id: int) -> int:
        """Stock on hand."""
        view = await self.ask("goods", goods_id, GetGoods())
        assert isinstance(view, GoodsView)
        return view.stock

    async def wallet(self, user_id: int) -> tuple[int, int]:
        """(balance, points)."""
        view = await self.ask("user", user_id, GetUser())
        assert isinstance(view, UserView)
        return view.balance, view.points

    async def coupon_holder(self, coupon_id: int) -> int | None:
        """The order holding the coupon (None: unused)."""
        view = await self.ask("coupon", coupon_id, GetCoupon())
        assert isinstance(view, CouponView)
        return view.order_id

    async def quiet(self) -> None:
        """Wait until every message and durable message is handled and committed."""
        system = self.system
        for _ in range(500):
            await self.rt.store.writer.flush()
            await self.clock.settle()
            idle = system.in_flight == 0 and system.outbox.backlog == 0
            if idle and self.rt.store.writer.backlog == 0:
                return
        raise AssertionError(f"not quiet: {system.in_flight} in flight, "
                             f"{system.outbox.backlog} durable messages")

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Committed rows (after a flush)."""
        await self.rt.store.writer.flush()
        return await self.rt.store.reader.fetchall(sql, params)

    async def history(self, order_id: int) -> list[str]:
        """The order's history operations, oldest first."""
        rows = await self.rows(
            "SELECT operation FROM order_history WHERE order_id = ? ORDER BY id", (order_id,)
        )
        return [str(row[0]) for row in rows]

    async def audit_ok(self) -> None:
        """Every invariant of SPEC 6 holds (once quiet)."""
        await self.quiet()
        report = await audit(self.rt.store.reader)
        assert report.ok, [check for check in report.checks if not check.ok]


@asynccontextmanager
async def open_shop(
    path: Path, clock: VirtualClock, config: ShopConfig | None = None
) -> AsyncIterator[Shop]:
    """A shop on the database at ``path`` (inline: no threads, exact virtual timing)."""
    config = config or ShopConfig()
    gateway = SandboxGateway(SECRET, clock)
    kinds: list[type[Actor]] = [
        UserActor, GoodsActor, CouponActor, AssetsActor, *order_kinds(config, gateway)
    ]
    async with open_runtime(str(path), kinds=kinds, clock=clock, inline=True) as rt:
        shop = Shop(rt, gateway, clock, config)
        gateway.attach(shop.handle_callback)
        try:
            yield shop
        finally:
            await gateway.close()
            await asyncio.sleep(0)
