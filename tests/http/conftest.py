"""Fixtures: the HTTP app over a Shop on a real SQLite file in tmp_path, on a virtual clock.

:class:`Api` speaks to the app the way a storefront does (bearer tokens, JSON) and builds
signed payment callbacks with the test's gateway secret, so tests read as the story they tell.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict
from pytest_aiohttp import AiohttpClient

from shopkeep.http.app import make_app
from shopkeep.http.config import HttpConfig
from shopkeep.http.server import ServeOptions, Server, running
from shopkeep.payments.signature import sign
from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop

SECRET = "test-gateway-secret"
ADMIN_TOKEN = "test-admin-token"

Client = TestClient[web.Request, web.Application]


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of ``token``."""
    return {"Authorization": f"Bearer {token}"}


ADMIN = bearer(ADMIN_TOKEN)
WRONG = bearer("nobody-holds-this-token")
NONE: dict[str, str] = {}


@dataclass(frozen=True)
class Customer:
    """A user as the tests hold them: their id and their Authorization header."""

    id: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: its status, its decoded JSON body (None when empty), its headers."""

    status: int
    body: Any
    content_type: str
    headers: CIMultiDict[str]


class Api:
    """The app, spoken to as a storefront and as the payment gateway would."""

    def __init__(self, client: Client, shop: Shop, clock: VirtualClock) -> None:
        self.client = client
        self.shop = shop
        self.clock = clock

    async def call(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        json: Any = None,
        data: bytes | None = None,
    ) -> Answer:
        """Send one request; ``json`` is encoded unless ``data`` (raw bytes) is given."""
        raw = data if data is not None or json is None else msgspec.json.encode(json)
        async with self.client.request(method, path, headers=headers, data=raw) as response:
            text = await response.read()
            body = msgspec.json.decode(text) if text and "json" in response.content_type else None
            answered = CIMultiDict(response.headers)
            return Answer(response.status, body, response.content_type, answered)

    async def customer(self, balance: int = 0, name: str = "customer") -> Customer:
        """A new user, made by the admin."""
        made = await self.call("POST", "/v1/users", ADMIN, {"name": name, "balance": balance})
        assert made.status == 201, made.body
        return Customer(made.body["id"], bearer(made.body["token"]))

    async def goods(self, price: int = 1_000, stock: int = 10) -> str:
        """A new goods' id."""
        made = await self.call(
            "POST", "/v1/goods", ADMIN, {"name": "tea", "price": price, "stock": stock}
        )
        assert made.status == 201, made.body
        return str(made.body["id"])

    async def order(self, customer: Customer, goods_id: str, quantity: int = 1) -> dict[str, Any]:
        """A placed order, awaiting payment."""
        placed = await self.call(
            "POST",
            "/v1/orders",
            customer.headers,
            {"items": [{"goods_id": goods_id, "quantity": quantity}]},
        )
        assert placed.status == 201, placed.body
        return dict(placed.body)

    def callback(
        self,
        payment: dict[str, Any],
        status: str = "succeeded",
        *,
        amount: int | None = None,
        txn: str = "txn-1",
    ) -> bytes:
        """The raw body the gateway sends for ``payment``."""
        body = {
            "payment_id": payment["id"],
            "order_id": payment["order_id"],
            "amount": payment["amount"] if amount is None else amount,
            "status": status,
            "gateway_txn_id": txn,
        }
        return msgspec.json.encode(body)

    def signed(self, raw: bytes, *, at: int | None = None) -> dict[str, str]:
        """The ``Shopkeep-Signature`` header for ``raw``, signed now (or ``at``)."""
        when = int(self.clock.now()) if at is None else at
        return {"Shopkeep-Signature": sign(SECRET, when, raw)}

    async def pay(self, customer: Customer, order: dict[str, Any]) -> dict[str, Any]:
        """Start the order's payment and have the gateway call back a success."""
        started = await self.call("POST", f"/v1/orders/{order['id']}/payment", customer.headers)
        assert started.status == 201, started.body
        raw = self.callback(started.body)
        acknowledged = await self.call("POST", "/v1/payments/callback", self.signed(raw), data=raw)
        assert acknowledged.status == 200, acknowledged.body
        return dict(started.body)

    async def delivered(self, customer: Customer, order: dict[str, Any]) -> None:
        """Pay, ship and deliver the order."""
        await self.pay(customer, order)
        for step in ("ship", "deliver"):
            moved = await self.call("POST", f"/v1/orders/{order['id']}/{step}", ADMIN)
            assert moved.status == 200, moved.body

    async def settle(self) -> None:
        """Wait until durable releases and refunds are delivered and applied."""
        await self.shop.runtime.system.quiet()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def config() -> HttpConfig:
    return HttpConfig(admin_token=ADMIN_TOKEN)


@pytest.fixture
async def shop(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[Shop]:
    async with Shop.open(
        str(tmp_path / "shop.db"), gateway="sandbox", clock=clock, gateway_secret=SECRET
    ) as opened:
        yield opened


@pytest.fixture
async def api(
    aiohttp_client: AiohttpClient, shop: Shop, clock: VirtualClock, config: HttpConfig
) -> Api:
    client = await aiohttp_client(make_app(shop, config))
    return Api(client, shop, clock)


@asynccontextmanager
async def serving(folder: Path, **options: Any) -> AsyncIterator[Server]:
    """A real server on 127.0.0.1 (a port of its own) over a new database in ``folder``, with
    ``options`` (``ServeOptions``' fields); the admin token a first start makes is not shown."""
    served = ServeOptions(db=str(folder / "shop.db"), port=0, **options)
    async with running(served, announce=lambda token: None) as server:
        yield server
