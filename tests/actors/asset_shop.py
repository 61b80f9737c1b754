"""The asset kinds on a real SQLite file, and what their tests do with it.

The asset actors are asked directly here (no order actor): where a test needs an order's own
rows (orders, items, payments, refunds) for the audit, it writes them as the order actor would,
through the store's writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec

from shopkeep.actors.assets import AssetsActor
from shopkeep.actors.config import ShopConfig
from shopkeep.actors.coupon import CouponActor
from shopkeep.actors.goods import GoodsActor
from shopkeep.actors.order_rules import shipping_fee
from shopkeep.actors.refund_rules import RefundAttempt, RefundQuery
from shopkeep.actors.user import UserActor
from shopkeep.bootstrap import Runtime, open_runtime
from shopkeep.runtime import Actor, Address, VirtualClock

ASSET_KINDS: list[type[Actor]] = [UserActor, GoodsActor, CouponActor, AssetsActor]


@asynccontextmanager
async def open_shop(path: str) -> AsyncIterator[Runtime]:
    """A runtime with the asset kinds on ``path``, on a virtual clock."""
    async with open_runtime(path, kinds=ASSET_KINDS, clock=VirtualClock()) as runtime:
        yield runtime


def user(user_id: int) -> Address:
    """The address of user ``user_id``."""
    return Address("user", user_id)


def goods(goods_id: int) -> Address:
    """The address of goods ``goods_id``."""
    return Address("goods", goods_id)


def coupon(coupon_id: int) -> Address:
    """The address of coupon ``coupon_id``."""
    return Address("coupon", coupon_id)


def assets(order_id: int) -> Address:
    """The release fan-out of order ``order_id``."""
    return Address("assets", order_id)


async def settled(rt: Runtime) -> None:
    """Return once every durable message sent so far is applied and committed.

    Each round awaits the writer and a read (real work on their threads), then gives the loop
    one turn so that deliveries of what just committed can start: no waiting for time.
    """
    for _ in range(1_000):
        await rt.store.writer.flush()
        row = await rt.store.reader.fetchone("SELECT count(*) FROM outbox")
        if row == (0,) and rt.system.in_flight == 0:
            return
        await asyncio.sleep(0)
    raise AssertionError("durable messages are still in flight")


async def rows(rt: Runtime, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """What the database holds, once everything submitted is committed."""
    await rt.store.writer.flush()
    return await rt.store.reader.fetchall(sql, params)


async def record_order(
    rt: Runtime,
    order_id: int,
    user_id: int,
    status: str,
    items: dict[int, int],
    *,
    coupon_id: int | None = None,
    wallet_amount: int = 0,
    cancel_reason: str | None = None,
    points: int = 0,
) -> None:
    """Write an order's row and items as the order actor would, priced as SPEC 2 prices it
    (the goods' prices, the default shipping, the coupon's value, ``wallet_amount``) unless
    it is pending (a placement running: not priced yet), with the ``points`` it gave."""
    now = rt.system.clock.now()
    config = ShopConfig()

    def write(conn: sqlite3.Connection) -> None:
        priced = status != "pending"
        price_of = "SELECT price FROM goods WHERE id = ?"
        prices = {
            goods_id: conn.execute(price_of, (goods_id,)).fetchone()[0] for goods_id in items
        } if priced else dict.fromkeys(items)  # fmt: skip
        goods = sum(price * items[goods_id] for goods_id, price in prices.items() if price)
        shipping = shipping_fee(goods, config) if priced and items else 0
        value = 0
        if coupon_id is not None and priced:
            [(value,)] = conn.execute("SELECT value FROM coupons WHERE id = ?", (coupon_id,))
        discount = min(value, goods + shipping)
        # the times its status says: paid, canceled, or a deadline to pay by
        paid_at = now if status in ("paid", "shipped", "delivered", "returned") else None
        canceled_at = now if status == "canceled" else None
        expires_at = now + config.order_timeout_s if status == "awaiting_payment" else None
        conn.execute(
            "INSERT INTO orders (id, user_id, status, cancel_reason, coupon_id, goods_amount, "
            "shipping_fee, order_amount, coupon_discount, wallet_amount, pay_amount, "
            "created_at, paid_at, canceled_at, expires_at, points) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (order_id, user_id, status, cancel_reason, coupon_id, goods, shipping,
             goods + shipping, discount, wallet_amount, goods + shipping - discount - wallet_amount,
             now, paid_at, canceled_at, expires_at, points),
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO order_items (order_id, goods_id, quantity, unit_price) "
            "VALUES (?, ?, ?, ?)",
            [(order_id, goods_id, n, prices[goods_id]) for goods_id, n in items.items()],
        )

    await rt.store.writer.call(write)


async def record_payment(
    rt: Runtime, payment_id: int, order_id: int, amount: int, *, refund_id: int | None = None
) -> None:
    """A payment collected through the gateway (its verified callback logged), and, with
    ``refund_id``, the refund of it that was opened (refunding, with its log, its refunder's
    query an hour away)."""
    now = rt.system.clock.now()
    body = (
        f'{{"payment_id":"{payment_id}","order_id":"{order_id}","amount":{amount},'
        f'"status":"succeeded","gateway_txn_id":"txn-{payment_id}"}}'
    ).encode()

    def write(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO payments (id, order_id, amount, status, gateway_txn_id, created_at, "
            "updated_at) VALUES (?, ?, ?, 'succeeded', ?, ?, ?)",
            (payment_id, order_id, amount, f"txn-{payment_id}", now, now),
        )
        conn.execute(
            "INSERT INTO payment_log (payment_id, order_id, verified, duplicate, action, body, "
            "at) VALUES (?, ?, 1, 0, 'applied', ?, ?)",
            (payment_id, order_id, body, now),
        )
        if refund_id is not None:
            conn.execute(
                "INSERT INTO refunds (id, order_id, payment_id, kind, wallet_amount, "
                "gateway_amount, status, created_at) "
                "VALUES (?, ?, ?, 'cancel', 0, ?, 'refunding', ?)",
                (refund_id, order_id, payment_id, amount, now),
            )
            conn.execute(
                "INSERT INTO refund_log (refund_id, event, at) VALUES (?, 'created', ?)",
                (refund_id, now),
            )
            # what drives it: its refunder asks the provider again later (the provider took
            # it, and has not paid it out yet)
            attempt = RefundAttempt(refund_id, order_id, payment_id, amount)
            conn.execute(
                "INSERT INTO timers (kind, actor_id, name, due_at, seq, payload) "
                "VALUES ('refunder', ?, 'query', ?, ?, ?)",
                (refund_id, now + 3600, refund_id, msgspec.msgpack.encode(RefundQuery(attempt))),
            )

    await rt.store.writer.call(write)
