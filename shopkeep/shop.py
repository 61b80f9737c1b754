"""The embedded Python API: every operation of the HTTP API as an async method, no HTTP.

A shop's own program opens a :class:`Shop` on a database file and calls it::

    async with Shop.open("shop.db", gateway="sandbox") as shop:
        alice = await shop.create_user("alice", balance=5_000)
        tea = await shop.create_goods("tea", price=1_200, stock=40)
        order = await shop.place_order(alice.user.id, [(tea.id, 2)])
        payment = (await shop.start_payment(order.id)).payment

Writes go to the actors (one mailbox per order, per user, per goods, ...); reads come from the
read connection. A refusal raises :class:`shopkeep.errors.ShopError` with a stable code, and
changes nothing (a placement that failed is recorded as such, with its order id in the error).
The HTTP layer (``shopkeep/http``) is a thin adapter over this class.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import secrets
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Literal, TypeVar

from shopkeep.actors import order_store
from shopkeep.actors.assets import RECENTLY_CANCELED_S, AssetsActor, given_back
from shopkeep.actors.audit import AuditReport, audit
from shopkeep.actors.config import ShopConfig
from shopkeep.actors.coupon import CouponActor, list_coupons
from shopkeep.actors.goods import GoodsActor, list_goods
from shopkeep.actors.key_store import KEYS_ORDER_IDS_SQL
from shopkeep.actors.key_sweep import KeySweepActor, start_key_sweep
from shopkeep.actors.kinds import as_provider, order_kinds
from shopkeep.actors.order_messages import (
    ApproveReturn,
    AsUser,
    Cancel,
    Deliver,
    GetOrder,
    GetRefunds,
    OrderView,
    RefundView,
    RequestReturn,
    ReturnAsked,
    ReturnView,
    SettleRefund,
    Ship,
)
from shopkeep.actors.order_state import BY_ADMIN, BY_USER, CANCELED, STATUSES
from shopkeep.actors.order_stats import OrderStats
from shopkeep.actors.order_store import HistoryEntry
from shopkeep.actors.protocol import (
    CouponView,
    CreateCoupon,
    CreateGoods,
    GetCoupon,
    GetGoods,
    GoodsView,
    UpdateGoods,
)
from shopkeep.actors.recovery import recover_cut_placements, start_deadline_sweep
from shopkeep.actors.refund_store import refund_standing
from shopkeep.actors.user import UserActor
from shopkeep.back_office import BackOffice
from shopkeep.bootstrap import Runtime, finish_despite_cancel, open_runtime
from shopkeep.errors import ShopError, answer
from shopkeep.idempotency import InFlight, Key, Once, key_of
from shopkeep.logs import log_through_stdlib_unless_configured
from shopkeep.opening import check_database, check_upgrade
from shopkeep.paging import Page, page_after, paged
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.payments.provider import (
    PaymentProvider,
)
from shopkeep.payments.sandbox import SandboxProvider
from shopkeep.placing import Placer, PlaceRequest
from shopkeep.refusals import NOT_FOUND
from shopkeep.requests import (
    MAX_REASON,
    Problems,
    actor_of,
    check_amount,
    check_choice,
    check_id,
    check_name,
    check_scope,
    check_time,
    is_text,
    refused,
)
from shopkeep.runtime import Address, Clock, RealClock, RuntimeConfig, ShuttingDown
from shopkeep.shop_accounts import Accounts
from shopkeep.shop_payments import Payments
from shopkeep.store.reader import Reader, Row

T = TypeVar("T")

ASSET_KINDS = (UserActor, GoodsActor, CouponActor, AssetsActor, KeySweepActor)
"""The kinds bound to nothing (the order's kinds are bound to the settings and the gateway)."""

C = TypeVar("C", bound=type)


def _on_the_shops_loop(cls: C) -> C:
    """``cls`` whose public coroutine methods (its bases' too) first check that they run on the
    shop's loop (WrongLoop, having done nothing, else): called from another thread's loop, a
    write was done on the shop's loop while its caller got a bare RuntimeError, and a read could
    meet the shop's own reads' futures."""
    for name in dir(cls):
        method = getattr(cls, name)
        if not name.startswith("_") and inspect.iscoroutinefunction(method):
            setattr(cls, name, _checked_loop(method))
    return cls


def _checked_loop(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def on_its_loop(self: Shop, *args: Any, **kwargs: Any) -> Any:
        self.system.check_loop()
        return await method(self, *args, **kwargs)

    return on_its_loop


@_on_the_shops_loop
class Shop(Accounts, Payments, BackOffice):
    """The shop's operations over one database. Build it with :meth:`Shop.open`.

    Users and their tokens are its base class :class:`~shopkeep.shop_accounts.Accounts`'s;
    payments started, read and called back its base class
    :class:`~shopkeep.shop_payments.Payments`'s; the operator's reads beyond SPEC 7 (users, the
    stock ledger, dead letters, per-minute figures; what the admin console shows) its base
    class :class:`~shopkeep.back_office.BackOffice`'s."""

    def __init__(
        self,
        runtime: Runtime,
        config: ShopConfig,
        gateway: PaymentProvider | SandboxGateway,
        gateway_secret: str = "",
        queries: Counter[str] | None = None,
        order_stats: OrderStats | None = None,
    ) -> None:
        self.runtime = runtime
        self.system = runtime.system
        self.config = config
        self.provider: PaymentProvider = as_provider(gateway, config.currency)
        """The payment provider (SPEC 10): payments start, callbacks verify, refunds go
        through it."""
        self.gateway: SandboxGateway | None = (
            self.provider.gateway if isinstance(self.provider, SandboxProvider) else None
        )
        """The sandbox gateway behind the provider, in sandbox mode (None otherwise); see
        :attr:`sandbox`."""
        self.reader: Reader = runtime.store.reader
        self._gateway_secret = gateway_secret
        self.rejected_callbacks: Counter[str] = Counter()
        """Callbacks refused before any order saw them, by reason (for metrics)."""
        self.order_stats = OrderStats() if order_stats is None else order_stats
        """What the orders decided (for metrics): the one their kind was bound to."""
        self.active_queries: Counter[str] = Counter() if queries is None else queries
        """Active queries of the provider (SPEC 10), by what they learned (for metrics)."""
        self._token_users = OrderedDict()
        self._token_epoch = 0
        self._once = Once(self.system)
        self._placer = Placer(self.system, self.reader, config, self._once.in_flight)
        # one request at a time asks the provider for a payment's checkout: concurrent starts
        # would each make one (a Stripe PaymentIntent after a replayed failure), and only the
        # one the payment keeps would ever be closed
        self._checkouts = InFlight()
        # and one at a time under one Idempotency-Key, so that a second replays the first whole
        self._keyed_starts = InFlight()
        self._letters_in_hand = InFlight()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        gateway: PaymentProvider | SandboxGateway | Literal["sandbox"],
        config: ShopConfig | None = None,
        clock: Clock | None = None,
        gateway_secret: str | None = None,
        runtime_config: RuntimeConfig | None = None,
        synchronous: str = "FULL",
        inline: bool = False,
        writer: str = "thread",
    ) -> AsyncIterator[Shop]:
        """Open the shop on the database at ``path`` until the block ends (then stop cleanly).

        ``gateway`` is the payment provider, always named (SPEC 10: no silent fake):
        ``"sandbox"`` for an in-process :class:`SandboxGateway` that signs callbacks with
        ``gateway_secret`` (random when not given) and delivers them to this shop; a
        SandboxGateway of the caller's (delivered to this shop too, one open shop at a time:
        ValueError while another has it); or any
        :class:`~shopkeep.payments.provider.PaymentProvider` (see
        :func:`shopkeep.payments.settings.build_provider`). The shop closes it at the end.
        At start, placements cut by a crash are undone and the sweep of overdue unpaid orders
        begins. ``writer="process"`` commits in a process of its own, which a busy shop is
        faster with (see :mod:`shopkeep.store.writer_process`); the default keeps everything
        in this one.
        """
        log_through_stdlib_unless_configured()
        path = os.fspath(path)  # a pathlib.Path too
        if not isinstance(path, str):
            raise TypeError(f"path {path!r}: a str or an os.PathLike of str")
        if config is not None and not isinstance(config, ShopConfig):
            raise TypeError(f"config {config!r}: a ShopConfig (its fields are serve's flags)")
        if gateway_secret is not None and not isinstance(gateway_secret, str):
            raise TypeError(f"gateway_secret: a str, not {type(gateway_secret).__name__}")
        settings = config or ShopConfig()
        secret = gateway_secret or secrets.token_hex(32)
        the_clock = clock or RealClock()
        if isinstance(gateway, str):
            if gateway != "sandbox":
                raise ValueError(f"gateway {gateway!r}: 'sandbox' or a PaymentProvider")
            chosen: PaymentProvider | SandboxGateway = SandboxGateway(secret, the_clock)
        elif isinstance(gateway, SandboxGateway | PaymentProvider):
            chosen = gateway
        else:  # None above all: SPEC 10 wants the gateway named, never a silent default
            raise TypeError(
                f"gateway {gateway!r}: 'sandbox', a SandboxGateway or a PaymentProvider"
            )
        provider = as_provider(chosen, settings.currency)
        queries: Counter[str] = Counter()
        stats = OrderStats()
        fits = functools.partial(
            check_database, path=path, currency=settings.currency, gateway=provider.name
        )
        agrees = functools.partial(
            check_upgrade, path=path, currency=settings.currency, gateway=provider.name
        )
        if isinstance(chosen, SandboxGateway):
            chosen.claim()  # before any await: a second shop opening beside it is refused
        closed = False
        try:
            async with open_runtime(
                path,
                synchronous=synchronous,
                clock=the_clock,
                config=runtime_config,
                kinds=[*ASSET_KINDS, *order_kinds(settings, provider, queries, stats)],
                inline=inline,
                writer=writer,
                id_floors=(KEYS_ORDER_IDS_SQL,),
                prepare=fits,
                agree=agrees,
            ) as runtime:
                runtime.system.closed_words = CLOSED  # a closed shop's calls say so alike
                shop = cls(runtime, settings, provider, secret, queries, stats)
                if shop.gateway is not None:
                    shop.gateway.attach(shop.acknowledge_callback)
                await recover_cut_placements(runtime.system)
                sweep = start_deadline_sweep(runtime.system, settings)
                start_key_sweep(runtime.system)
                try:
                    yield shop
                finally:
                    sweep.cancel()
                    closed = True  # before the actors stop: no callback delivered to them
                    await finish_despite_cancel(provider.close())
                    # a shop kept past its block answers every call as its actors do:
                    # ShuttingDown (a read would otherwise meet a closed connection's ValueError)
                    shop.reader = _CLOSED
        finally:
            if not closed:  # the database refused (check_database), or the start failed
                await finish_despite_cancel(provider.close())

    @property
    def sandbox(self) -> SandboxGateway:
        """The sandbox gateway (:attr:`gateway`, typed as present): AttributeError (so
        ``hasattr`` says False) on a shop whose payments go through a real provider, where
        nothing but the provider collects."""
        if self.gateway is None:
            raise AttributeError(
                f"this shop's payments go through {self.provider.name}, not the sandbox gateway"
            )
        return self.gateway

    async def _ask(self, address: Address, message: Any) -> Any:
        return await self.system.ask(address, message)

    def _check_open(self) -> None:
        if self.reader is _CLOSED:
            raise ShuttingDown(CLOSED)

    # -- goods ----------------------------------------------------------------------------------

    async def create_goods(
        self, name: str, price: int, stock: int, *, idempotency_key: Key = None
    ) -> GoodsView:
        """A new goods (SKU) with its price and opening stock; under a key, one."""
        with Problems() as each:
            each(check_name, name)
            each(check_amount, "price", price)
            each(check_amount, "stock", stock, of="units")
            key = each(key_of, idempotency_key)
        request = ("create_goods", name, price, stock)
        message = CreateGoods(name, price, stock)
        return await self._once.ask(
            Address("goods", self.system.ids.next()), message, GoodsView, key, request
        )

    async def update_goods(
        self,
        goods_id: int,
        *,
        price: int | None = None,
        restock: int | None = None,
        idempotency_key: Key = None,
    ) -> GoodsView:
        """Change a goods' price and/or add stock; under a key, once."""
        with Problems() as each:
            each(check_id, "goods_id", goods_id)
            if price is not None:
                each(check_amount, "price", price)
            if restock is not None:
                each(check_amount, "restock", restock, minimum=1, of="units")
            key = each(key_of, idempotency_key)
        request = ("update_goods", goods_id, price, restock)
        message = UpdateGoods(price, restock)
        return await self._once.ask(actor_of("goods", goods_id), message, GoodsView, key, request)

    async def get_goods(self, goods_id: int) -> GoodsView:
        """The goods, or ShopError not_found."""
        return answer(await self._ask(actor_of("goods", goods_id), GetGoods()), GoodsView)

    async def list_goods(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[GoodsView]:
        """Goods, newest first."""
        return await list_goods(self.reader, limit, cursor)

    # -- coupons --------------------------------------------------------------------------------

    async def create_coupon(
        self,
        user_id: int,
        value: int,
        *,
        min_order_amount: int | None = 0,
        expires_at: float | None = None,
        idempotency_key: Key = None,
    ) -> CouponView:
        """A coupon for ``user_id`` worth ``value``; under a key, one. A ``min_order_amount``
        of None is 0, as an absent one (the HTTP API's ``null``)."""
        min_order_amount = 0 if min_order_amount is None else min_order_amount
        with Problems() as each:
            each(check_id, "user_id", user_id)
            each(check_amount, "value", value, minimum=1)
            each(check_amount, "min_order_amount", min_order_amount)
            if expires_at is not None:
                each(check_time, "expires_at", expires_at)
            key = each(key_of, idempotency_key)
        if expires_at is not None:
            expires_at = float(expires_at)  # a time is a float in every view, read back or not
        await self.get_user(user_id)
        request = ("create_coupon", user_id, value, min_order_amount, expires_at)
        message = CreateCoupon(user_id, value, min_order_amount, expires_at)
        return await self._once.ask(
            Address("coupon", self.system.ids.next()), message, CouponView, key, request
        )

    async def get_coupon(self, coupon_id: int, *, user_id: int | None = None) -> CouponView:
        """The coupon; with ``user_id``, only if it is theirs (else not_found, as a missing
        one)."""
        user_id = check_scope(user_id)
        coupon = answer(await self._ask(actor_of("coupon", coupon_id), GetCoupon()), CouponView)
        if user_id is not None and coupon.user_id != user_id:
            raise ShopError(NOT_FOUND, f"coupon {coupon_id} does not exist")
        return coupon

    async def list_coupons(
        self, user_id: int, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[CouponView]:
        """A user's coupons, newest first."""
        return await list_coupons(self.reader, check_id("user_id", user_id), limit, cursor)

    # -- orders ---------------------------------------------------------------------------------

    async def place_order(
        self,
        user_id: int,
        items: Iterable[tuple[int, int]],
        *,
        coupon_id: int | None = None,
        use_balance: int | None = 0,
        expected_total: int | None = None,
        idempotency_key: Key = None,
        wait: bool | None = True,
    ) -> OrderView:
        """Place an order (SPEC 2): the confirmed (or paid) order, or ShopError with the
        refusal (and the failed order's id); without ``wait``, or when the placement outlasts
        the ask timeout (it goes on), the pending order (poll it). Under an
        ``idempotency_key`` the same request answers the first answer again; see
        :mod:`shopkeep.placing`. A ``use_balance`` of None is 0 (the HTTP API's ``null``), a
        ``wait`` of None waits (the HTTP API's ``?wait=`` left out)."""
        request = PlaceRequest.checked(
            user_id, items, coupon_id, 0 if use_balance is None else use_balance,
            expected_total, True if wait is None else wait, self.config,
            idempotency_key,
        )
        return await self._placer.place(request, key_of(idempotency_key))

    async def _ask_order(self, order_id: int, user_id: int | None, message: Any) -> Any:
        """Ask the order ``message``; for a user, only if the order is theirs (the order
        actor checks it: another user's order answers not_found, as a missing one)."""
        user_id = check_scope(user_id)
        wrapped = message if user_id is None else AsUser(user_id, message)
        return await self._ask(actor_of("order", order_id), wrapped)

    async def get_order(self, order_id: int, *, user_id: int | None = None) -> OrderView:
        """The order; with ``user_id``, only if it is theirs (else not_found). One canceled
        a moment ago (by its deadline, a failed placement) is answered once what it gave back
        is committed: a poll that sees it canceled and then orders the same last unit or
        coupon again finds them free (:func:`~shopkeep.actors.assets.given_back`)."""
        order = answer(await self._ask_order(order_id, user_id, GetOrder()), OrderView)
        await self._given_back(order)
        return order

    async def _given_back(self, *orders: OrderView) -> None:
        """Wait for what each of ``orders`` canceled in the last :data:`RECENTLY_CANCELED_S`
        gave back (:func:`~shopkeep.actors.assets.given_back`): a read that shows an order
        canceled shows its stock, coupon and wallet back after it."""
        now = self.system.clock.now()
        recent = [
            order for order in orders
            if order.canceled_at is not None and now - order.canceled_at < RECENTLY_CANCELED_S
        ]
        if recent:
            await asyncio.gather(*(given_back(self.system, o.id, o) for o in recent))

    async def list_orders(
        self,
        *,
        user_id: int | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[OrderView]:
        """Orders (a user's, or all), newest first, optionally of one status: the back
        office's :meth:`find_orders` without bounds in time; those canceled a moment ago once
        what they gave back is committed, as :meth:`get_order`."""
        page = await self.find_orders(user_id=user_id, status=status, limit=limit, cursor=cursor)
        await self._given_back(*page.items)
        return page

    async def order_history(
        self,
        order_id: int,
        *,
        user_id: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[HistoryEntry]:
        """The order's status changes, oldest first, a page at a time; an order canceled a
        moment ago, once what it gave back is committed, as :meth:`get_order`."""
        # exists, and is theirs
        order = answer(await self._ask_order(order_id, user_id, GetOrder()), OrderView)
        page = await order_store.order_history(self.reader, order_id, limit, cursor)
        if any(entry.to_status == CANCELED for entry in page.items):
            if order.canceled_at is None:  # canceled after it was asked above: asked again
                order = answer(await self._ask_order(order_id, None, GetOrder()), OrderView)
            await self._given_back(order)
        return page

    async def cancel_order(
        self,
        order_id: int,
        *,
        by: str | None = None,
        user_id: int | None = None,
        idempotency_key: Key = None,
        if_status: str | None = None,
    ) -> OrderView:
        """Cancel the order (SPEC 5); canceling twice answers the order as it is. ``by``
        (its cancel reason, ``user`` or ``admin``) is the caller's: the user's with a
        ``user_id``, else the admin's. ``if_status``: only if the order is still in that
        status when its turn comes (the status a page showed), else invalid_state and
        nothing done: a payment between a look and the cancel is not refunded by it."""
        if by is None:
            by = BY_ADMIN if user_id is None else BY_USER
        check_choice("by", by, (BY_USER, BY_ADMIN))
        if if_status is not None:
            check_choice("if_status", if_status, STATUSES)
        cancel = Cancel(by, if_status)  # type: ignore[arg-type]
        request: tuple[object, ...] = ("cancel_order", order_id, by)
        if if_status is not None:  # a key's request as before, when no status is named
            request = (*request, if_status)
        canceled = await self._once.ask(
            actor_of("order", order_id), cancel, OrderView, idempotency_key, request, user_id
        )
        await given_back(self.system, canceled.id, canceled)
        return canceled

    async def ship(self, order_id: int, *, idempotency_key: Key = None) -> OrderView:
        """The paid order leaves the warehouse (admin)."""
        request = ("ship", order_id)
        return await self._once.ask(
            actor_of("order", order_id), Ship(), OrderView, idempotency_key, request
        )

    async def deliver(self, order_id: int, *, idempotency_key: Key = None) -> OrderView:
        """The shipped order was delivered (admin)."""
        request = ("deliver", order_id)
        return await self._once.ask(
            actor_of("order", order_id), Deliver(), OrderView, idempotency_key, request
        )

    async def request_return(
        self,
        order_id: int,
        reason: str | None = "",
        *,
        user_id: int | None = None,
        idempotency_key: Key = None,
    ) -> ReturnAsked:
        """Ask to return a delivered order (asking again answers the same request, not
        ``created``); a ``reason`` of None is none given (the HTTP API's ``null``)."""
        reason = "" if reason is None else reason
        if type(reason) is not str or len(reason) > MAX_REASON or not is_text(reason):
            raise refused("/reason", f"a reason is text of at most {MAX_REASON} characters, "
                          "none a control character or a lone surrogate")
        request = ("request_return", order_id, reason)
        return await self._once.ask(
            actor_of("order", order_id), RequestReturn(reason), ReturnAsked, idempotency_key,
            request, user_id,
        )

    async def get_return(self, return_id: int, *, user_id: int | None = None) -> ReturnView:
        """A return as last committed; with ``user_id``, only if its order is theirs."""
        user_id = check_scope(user_id)
        found = await order_store.return_request(self.reader, check_id("return_id", return_id))
        if found is None or (user_id is not None and found.user_id != user_id):
            raise ShopError(NOT_FOUND, f"return {return_id} does not exist")
        return ReturnView(found.id, found.order_id, found.status)

    async def approve_return(self, return_id: int, *, idempotency_key: Key = None) -> ReturnView:
        """Approve a return (admin): refund, and the stock goes back."""
        key = key_of(idempotency_key)  # checked before the read
        order_id = await order_store.return_order(self.reader, check_id("return_id", return_id))
        if order_id is None:
            raise ShopError(NOT_FOUND, f"return {return_id} does not exist")
        request = ("approve_return", return_id)
        approved = await self._once.ask(
            Address("order", order_id), ApproveReturn(return_id), ReturnView, key, request
        )
        await given_back(self.system, order_id)
        return approved

    async def refunds(
        self,
        order_id: int,
        *,
        user_id: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[RefundView]:
        """The order's after-sale records, oldest first, a page at a time."""
        size, after = page_after(limit, cursor)
        refunds = answer(await self._ask_order(order_id, user_id, GetRefunds()), tuple)
        later = [refund for refund in refunds if refund.id > after][: size + 1]
        return paged(later, [refund.id for refund in later], size)

    async def settle_refund(
        self, refund_id: int, note: str, *, idempotency_key: Key = None
    ) -> RefundView:
        """The provider failed or refused the refund (it stays ``refunding``) and the shop's
        staff paid it back another way, which ``note`` says (admin): mark it refunded, with a
        history row; a refused one is not sent to the provider again.

        Decided by the refund's refunder, between its tries: a try under way is answered
        first. Refused invalid_state for a refund the provider has neither failed nor refused,
        or took after all (that try included): it may pay it out, and the money would go back
        twice."""
        key = key_of(idempotency_key)  # checked before the read
        if type(note) is not str or len(note) > MAX_REASON or not is_text(note, blank=False):
            raise refused("/note", f"a note says how it was paid back, in 1 to {MAX_REASON} "
                          "characters, none a control character or a lone surrogate")
        standing = await refund_standing(self.reader.fetchall, check_id("refund_id", refund_id))
        if standing is None:  # no refunder is woken for a refund that never was
            raise ShopError(NOT_FOUND, f"refund {refund_id} does not exist")
        request = ("settle_refund", refund_id, note)
        return await self._once.ask(
            Address("refunder", refund_id), SettleRefund(refund_id, note), RefundView, key,
            request,
        )  # fmt: skip

    # -- audit ----------------------------------------------------------------------------------

    def store_busy_s(self) -> float:
        """How long the store has been at its current commit (0 between commits): seconds
        here mean a disk that stopped answering, with every write waiting on it."""
        return self.runtime.store.writer.stats.busy_s()

    def store_refusal(self, within_s: float) -> str | None:
        """What SQLite said if the store is refusing writes for its own sake (a full disk, an
        I/O error), its last refusal in the last ``within_s`` seconds."""
        return self.runtime.store.writer.stats.refusing(within_s)

    async def audit(self) -> AuditReport:
        """The invariants of SPEC section 6, computed from the database now, on a read
        connection of the audit's own: the lists and logins do not wait for it."""
        self._check_open()  # a closed writer's wait would not say so
        store = self.runtime.store
        await store.writer.settled_so_far()
        return await audit(store.audit_reader)


CLOSED: Final = "the shop is closed: open it again (Shop.open) to use it"


class _ClosedReader:
    """The reader of a shop whose block has ended: every read is :class:`ShuttingDown`."""

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        raise ShuttingDown(CLOSED)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        raise ShuttingDown(CLOSED)

    async def close(self) -> None:
        """Nothing is open."""


_CLOSED: Final = _ClosedReader()
