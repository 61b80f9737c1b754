"""Group 2's traffic: clients driving mixed writes at a real server, each write recorded.

Every write ends in one of three outcomes, as Jepsen's histories have them:

- ``ok``: a 2xx answer; the write is acknowledged and must survive any crash after it;
- ``failed``: any other answer, or a connection that was never made (nothing was asked);
- ``unknown``: the connection broke once the request may have reached the server (the kill
  cut it); after the restart it must be wholly applied or wholly absent.

The writes are the ones a storefront and a payment gateway make: place an order (synchronous,
or asynchronous with ``?wait=false``; a unique ``Idempotency-Key`` each, some with a coupon
or wallet money), start a payment, the gateway's signed callback (success, sometimes failure,
sometimes twice or with another transaction id), and user cancels. Orders nobody pays are left
to their deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import msgspec

from shopkeep.bench.http import create
from shopkeep.payments.signature import HEADER, sign

Outcome = Literal["ok", "failed", "unknown"]
Kind = Literal["place", "pay_start", "callback", "cancel"]
ORDERS_KEPT = 12
"""Orders remembered per customer, to pay or cancel later (the most recent ones)."""


@dataclass(frozen=True)
class Customer:
    """A user of the shop as the clients hold them."""

    id: str
    token: str
    coupons: tuple[str, ...]

    @property
    def headers(self) -> dict[str, str]:
        """Their Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Fixture:
    """The shop the traffic runs against: made once, used by every cycle."""

    admin: str
    secret: str
    customers: tuple[Customer, ...]
    goods: tuple[str, ...]


@dataclass
class Write:
    """One write request and what became of it."""

    kind: Kind
    customer: Customer
    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    outcome: Outcome = "failed"
    status: int | None = None
    answer: Any = None
    order_id: str | None = None
    """The order it is about, when known before the answer (not for a placement)."""


@dataclass
class History:
    """Everything the clients did, in one cycle, and what the clients know across cycles."""

    writes: list[Write] = field(default_factory=list)
    orders: dict[str, list[str]] = field(default_factory=dict)
    """Customer id -> their most recent acknowledged orders."""
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Order id -> its payment, as the last start-payment answer gave it."""


async def send(session: aiohttp.ClientSession, url: str, write: Write) -> Write:
    """Send ``write`` and record its outcome (see the module's docstring)."""
    try:
        async with session.request(
            write.method, url + write.path, data=write.body, headers=write.headers
        ) as response:
            raw = await response.read()
            write.answer = msgspec.json.decode(raw) if raw else None
            write.status = response.status
            write.outcome = "ok" if 200 <= response.status < 300 else "failed"
    except aiohttp.ClientConnectorError:
        write.outcome = "failed"  # never connected: the server had nothing to apply
    except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError):
        write.outcome = "unknown"
    return write


def callback_write(
    fixture: Fixture, customer: Customer, payment: dict[str, Any], status: str, txn: str
) -> Write:
    """The gateway's callback for ``payment``, signed now."""
    raw = msgspec.json.encode(
        {
            "payment_id": payment["id"],
            "order_id": payment["order_id"],
            "amount": payment["amount"],
            "status": status,
            "gateway_txn_id": txn,
        }
    )
    return Write(
        "callback",
        customer,
        "POST",
        "/v1/payments/callback",
        raw,
        signed_headers(fixture.secret, raw),
        order_id=str(payment["order_id"]),
    )


def signed_headers(secret: str, raw: bytes) -> dict[str, str]:
    """The headers of a callback body signed now, as the gateway signs it."""
    return {HEADER: sign(secret, int(time.time()), raw), "Content-Type": "application/json"}


class Clients:
    """``count`` clients writing until told to stop or until the server is gone."""

    def __init__(self, fixture: Fixture, history: History, url: str, seed: str) -> None:
        self.fixture = fixture
        self.history = history
        self.url = url
        self.seed = seed
        self.keys = itertools.count(1)
        self.stop = asyncio.Event()

    async def run(self, session: aiohttp.ClientSession, count: int) -> None:
        """Run ``count`` clients until :attr:`stop` is set or each loses the server."""
        await asyncio.gather(*(self.client(session, n) for n in range(count)))

    async def client(self, session: aiohttp.ClientSession, n: int) -> None:
        """One client's loop: pick a write, send it, learn from the answer."""
        rng = random.Random(f"{self.seed}-{n}")
        while not self.stop.is_set():
            customer = rng.choice(self.fixture.customers)
            roll = rng.random()
            if roll < 0.45:
                done = await self.place(session, rng, customer, wait=rng.random() < 0.85)
            elif roll < 0.85:
                done = await self.pay(session, rng, customer)
            else:
                done = await self.cancel(session, rng, customer)
            if not done:
                return

    def record(self, write: Write) -> Write:
        """Add ``write`` to the history (before it is sent: a cut one is still recorded)."""
        self.history.writes.append(write)
        return write

    async def deliver(self, session: aiohttp.ClientSession, write: Write) -> bool:
        """Send a recorded write; False once the server is gone (the client then stops)."""
        await send(session, self.url, self.record(write))
        return write.status is not None

    async def place(
        self, session: aiohttp.ClientSession, rng: random.Random, customer: Customer, *, wait: bool
    ) -> bool:
        """Place an order with a key of its own; remember it when acknowledged."""
        goods = rng.sample(self.fixture.goods, rng.choice((1, 1, 2)))
        body: dict[str, Any] = {
            "items": [{"goods_id": g, "quantity": rng.randint(1, 3)} for g in goods]
        }
        if customer.coupons and rng.random() < 0.2:
            body["coupon_id"] = rng.choice(customer.coupons)
        if rng.random() < 0.3:
            body["use_balance"] = rng.randint(1, 2_000)
        key = f"{self.seed}-{next(self.keys)}"
        headers = {**customer.headers, "Idempotency-Key": key, "Content-Type": "application/json"}
        path = "/v1/orders" if wait else "/v1/orders?wait=false"
        write = Write("place", customer, "POST", path, msgspec.json.encode(body), headers)
        done = await self.deliver(session, write)
        if write.outcome == "ok":
            self.remember(customer, str(write.answer["id"]))
        return done

    def remember(self, customer: Customer, order_id: str) -> None:
        """Keep ``order_id`` among the customer's recent orders."""
        orders = self.history.orders.setdefault(customer.id, [])
        orders.append(order_id)
        del orders[:-ORDERS_KEPT]

    async def pay(
        self, session: aiohttp.ClientSession, rng: random.Random, customer: Customer
    ) -> bool:
        """Start the payment of a recent order, then call back as the gateway would."""
        orders = self.history.orders.get(customer.id)
        if not orders:
            return await self.place(session, rng, customer, wait=True)
        order_id = rng.choice(orders)
        started = Write(
            "pay_start",
            customer,
            "POST",
            f"/v1/orders/{order_id}/payment",
            b"",
            customer.headers,
            order_id=order_id,
        )
        if not await self.deliver(session, started):
            return False
        if started.outcome != "ok":
            return True
        payment: dict[str, Any] = started.answer
        self.history.payments[order_id] = payment
        status = "failed" if rng.random() < 0.1 else "succeeded"
        txn = f"txn-{payment['id']}" if rng.random() < 0.95 else f"txn-{payment['id']}-again"
        for _ in range(2 if rng.random() < 0.15 else 1):  # the gateway retries: duplicates
            write = callback_write(self.fixture, customer, payment, status, txn)
            if not await self.deliver(session, write):
                return False
        return True

    async def cancel(
        self, session: aiohttp.ClientSession, rng: random.Random, customer: Customer
    ) -> bool:
        """Cancel one of the customer's recent orders."""
        orders = self.history.orders.get(customer.id)
        if not orders:
            return await self.place(session, rng, customer, wait=True)
        order_id = rng.choice(orders)
        write = Write(
            "cancel",
            customer,
            "POST",
            f"/v1/orders/{order_id}/cancel",
            b"",
            customer.headers,
            order_id=order_id,
        )
        return await self.deliver(session, write)


async def make_fixture(
    session: aiohttp.ClientSession, url: str, admin: str, secret: str, customers: int, goods: int
) -> Fixture:
    """Create the customers (with wallet money and two coupons each) and the goods (most
    plentiful, two scarce, so some placements fail for stock and are undone)."""

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await create(session, url, admin, path, body)

    goods_ids = []
    for n in range(goods):
        stock = 15 if n < 2 else 1_000_000
        made = await post(
            "/v1/goods", {"name": f"goods {n}", "price": 1_500 + 700 * n, "stock": stock}
        )
        goods_ids.append(str(made["id"]))
    people = []
    for n in range(customers):
        user = await post("/v1/users", {"name": f"customer {n}", "balance": 50_000})
        coupons = [
            await post("/v1/coupons", {"user_id": user["id"], "value": 300 + 100 * k})
            for k in range(2)
        ]
        people.append(
            Customer(str(user["id"]), user["token"], tuple(str(c["id"]) for c in coupons))
        )
    return Fixture(admin, secret, tuple(people), tuple(goods_ids))
