"""A shop taking payments through one provider's local fake, over its HTTP API.

:func:`provider_world` starts the fake of ``alipay``, ``wechatpay`` or ``stripe`` on
127.0.0.1 (test keys generated here: the shop's key, the provider's key), builds the provider
the way ``serve`` does (:func:`~shopkeep.payments.settings.build_provider` from key files),
opens a :class:`~shopkeep.shop.Shop` on it and serves the HTTP API on a port chosen first, so
the provider's ``notify_url`` (``public_url`` + its route) reaches the shop. The provider's
differences stay here: :meth:`ProviderWorld.pay` makes the customer pay and the provider
notify, :meth:`ProviderWorld.notification` builds a signed notification to alter.

The tests of ``tests/providers`` and ``python -m shopkeep.proof callbacks`` use it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from shopkeep.actors.config import ShopConfig
from shopkeep.http.app import make_app
from shopkeep.http.config import HttpConfig
from shopkeep.payments.alipay_wire import beijing_time
from shopkeep.payments.fakes.alipay import PATH as ALIPAY_PATH
from shopkeep.payments.fakes.alipay import FakeAlipay
from shopkeep.payments.fakes.common import Delivery, FakeRefund, FakeServer
from shopkeep.payments.fakes.stripe import FakeStripe, stripe_signature
from shopkeep.payments.fakes.wechatpay import FakeWeChatPay
from shopkeep.payments.keys import private_pem, public_pem
from shopkeep.payments.settings import ProviderSettings, build_provider
from shopkeep.runtime import Clock
from shopkeep.shop import Shop

PROVIDERS: Final = ("alipay", "wechatpay", "stripe")
"""The real providers, each with a local fake."""
ADMIN_TOKEN: Final = "provider-world-admin-token"
ALIPAY_APP_ID: Final = "2021000000000001"
WECHATPAY_MCH_ID: Final = "1900000001"
WECHATPAY_APP_ID: Final = "wx0000000000000001"
APIV3_KEY: Final = b"0123456789abcdef0123456789abcdef"
STRIPE_API_KEY: Final = "sk_test_provider_world"
STRIPE_WEBHOOK_SECRET: Final = "whsec_provider_world"
CURRENCY: Final = {"alipay": "CNY", "wechatpay": "CNY", "stripe": "USD"}
"""The shop's currency with each provider (the Chinese providers take yuan only)."""


def new_key() -> rsa.RSAPrivateKey:
    """A fresh RSA-2048 key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def listening_socket() -> socket.socket:
    """A socket bound to a port of 127.0.0.1 the kernel chose, held from now on: a port only
    found free and let go was taken meanwhile, now and then, by the fake's own (EADDRINUSE)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


class ProviderWorld:
    """The fake, the shop, and the shop's HTTP API at ``url``, for one provider."""

    def __init__(
        self, name: str, fake: FakeServer, shop: Shop, url: str, session: aiohttp.ClientSession,
        forger: rsa.RSAPrivateKey,
    ) -> None:
        self.name = name
        self.fake = fake
        self.shop = shop
        self.url = url
        self.session = session
        self.forger = forger
        self.admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    @property
    def notify_url(self) -> str:
        """Where the provider posts its notifications."""
        return self.url + self.shop.provider.callback_path

    # -- the HTTP API ---------------------------------------------------------------------------

    async def call(
        self, method: str, path: str, headers: Mapping[str, str], body: Any = None
    ) -> tuple[int, Any]:
        """``method path`` with a JSON ``body``: the status and the decoded answer."""
        async with self.session.request(
            method, self.url + path, headers=dict(headers), json=body
        ) as answer:
            raw = await answer.read()
            return answer.status, json.loads(raw) if raw else None

    async def customer(self) -> dict[str, str]:
        """A new user with a token: their Authorization header."""
        status, user = await self.call("POST", "/v1/users", self.admin, {"name": "buyer"})
        assert status == 201, user
        return {"Authorization": f"Bearer {user['token']}"}

    async def placed(self, customer: Mapping[str, str], price: int = 12_000) -> dict[str, Any]:
        """An order of one new goods at ``price``, awaiting payment."""
        status, goods = await self.call(
            "POST", "/v1/goods", self.admin, {"name": "tea", "price": price, "stock": 10}
        )
        assert status == 201, goods
        status, order = await self.call(
            "POST", "/v1/orders", customer, {"items": [{"goods_id": goods["id"], "quantity": 1}]}
        )
        assert status == 201, order
        return dict(order)

    async def start_payment(
        self, customer: Mapping[str, str], order: Mapping[str, Any], *, cashier: bool = True
    ) -> dict[str, Any]:
        """Start the order's payment; at Alipay the customer also opens the cashier page (the
        trade exists there from then on), unless not ``cashier``."""
        status, payment = await self.call(
            "POST", f"/v1/orders/{order['id']}/payment", customer
        )
        assert status in (200, 201), payment
        if self.name == "alipay" and cashier:
            await self.open_cashier(payment)
        return dict(payment)

    async def open_cashier(self, payment: Mapping[str, Any]) -> None:
        """The customer opens Alipay's cashier page of ``payment``."""
        async with self.session.get(payment["gateway_url"]) as page:
            assert page.status == 200, await page.text()

    async def order(self, order_id: str) -> dict[str, Any]:
        """The order as the admin sees it."""
        status, order = await self.call("GET", f"/v1/orders/{order_id}", self.admin)
        assert status == 200, order
        return dict(order)

    async def refunds(self, order_id: str) -> list[dict[str, Any]]:
        """The order's refunds."""
        status, page = await self.call("GET", f"/v1/orders/{order_id}/refunds", self.admin)
        assert status == 200, page
        return list(page["items"])

    async def audit_ok(self) -> None:
        """Every invariant holds, once the shop is quiet."""
        await self.shop.runtime.system.quiet()
        status, report = await self.call("GET", "/v1/audit", self.admin)
        assert status == 200 and report["ok"], report

    # -- the provider's side --------------------------------------------------------------------

    def key_of(self, payment: Mapping[str, Any]) -> str:
        """The payment's id at the provider (Stripe: its PaymentIntent)."""
        if isinstance(self.fake, FakeStripe):
            return str(self.fake.intent_of(payment["id"])["id"])
        return str(payment["id"])

    async def payment_started(
        self, *, cashier: bool = True
    ) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        """A new customer's order, its payment started at the provider (at Alipay, its
        cashier opened unless not ``cashier``): (customer, order, payment)."""
        customer = await self.customer()
        order = await self.placed(customer)
        return customer, order, await self.start_payment(customer, order, cashier=cashier)

    async def paid_order(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        """A new customer's order, paid through the provider and its notification
        acknowledged: (customer, order, payment)."""
        customer, order, payment = await self.payment_started()
        await self.pay(payment)
        return customer, order, payment

    async def pay(self, payment: Mapping[str, Any], *, notify: bool = True) -> Delivery | None:
        """The customer pays; the provider notifies the shop (unless ``notify`` is False),
        retrying until acknowledged."""
        fake: Any = self.fake
        return await fake.pay(self.key_of(payment), notify=notify)  # type: ignore[no-any-return]

    def notification(
        self, payment: Mapping[str, Any], *, forged: bool = False, at: float | None = None,
        **changes: Any,
    ) -> tuple[bytes, dict[str, str]]:
        """A signed success notification of the paid ``payment`` (body, headers), with
        ``changes`` to its fields before signing; ``forged``: signed with another key; ``at``:
        the time it says it was signed or sent (default the shop's clock's now)."""
        when = int(self.shop.system.clock.now() if at is None else at)
        key = self.key_of(payment)
        other = changes.pop("out_trade_no", None)
        if other is not None:  # about a payment the shop never started: a copy of this one
            books: Any = self.fake.trades if isinstance(self.fake, FakeAlipay) else (
                self.fake.orders  # type: ignore[attr-defined]
            )
            books[other] = dataclasses.replace(books[key], out_trade_no=other)
            key = other
        if isinstance(self.fake, FakeAlipay):
            fake_a = self.fake
            saved = fake_a._key
            if forged:
                fake_a._key = self.forger
            try:
                body = fake_a.notification(key, **({"notify_time": beijing_time(when)} | changes))
            finally:
                fake_a._key = saved
            return body, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        if isinstance(self.fake, FakeWeChatPay):
            fake_w = self.fake
            body = fake_w.notification(key, **changes)
            saved = fake_w._platform_key
            if forged:
                fake_w._platform_key = self.forger
            try:
                return body, fake_w.headers_for(body, when)
            finally:
                fake_w._platform_key = saved
        assert isinstance(self.fake, FakeStripe)
        intent = dict(self.fake.intents[key]) | changes
        body = self.fake.event("payment_intent.succeeded", intent)
        secret = "whsec_forger" if forged else self.fake.webhook_secret
        return body, {"Content-Type": "application/json",
                      "Stripe-Signature": stripe_signature(secret, body, when)}

    def refunds_under(self, refund_id: str) -> list[FakeRefund]:
        """The refunds the provider made under ``refund_id`` as idempotency key (Alipay keys
        them by trade and ``out_request_no``, Stripe's key is the refund id)."""
        return [r for key, r in self.fake.refunds.items() if _names(key, refund_id)]

    def calls_under(self, refund_id: str) -> int:
        """How many refund calls reached the provider under ``refund_id``, failed ones too."""
        return sum(1 for key in self.fake.refund_calls if _names(key, refund_id))

    async def post(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """POST a notification to the shop's route: its status and body."""
        async with self.session.post(self.notify_url, data=body, headers=dict(headers)) as got:
            return got.status, await got.read()

    def acknowledged(self, status: int, body: bytes) -> bool:
        """Whether the shop's answer acknowledges a notification, by the provider's rule."""
        if self.name == "alipay":
            return status == 200 and body == b"success"
        return 200 <= status < 300


@asynccontextmanager
async def provider_world(
    name: str, folder: Path, *, clock: Clock | None = None, config: ShopConfig | None = None,
    time_scale: float = 1e-6,
) -> AsyncIterator[ProviderWorld]:
    """The world of the module's docstring for provider ``name``, in ``folder``."""
    shop_key, provider_key, forger = new_key(), new_key(), new_key()
    (folder / "shop.pem").write_bytes(private_pem(shop_key))
    (folder / "provider.pub").write_bytes(public_pem(provider_key.public_key()))
    listener = listening_socket()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    fake: FakeServer
    if name == "alipay":
        fake = FakeAlipay(app_id=ALIPAY_APP_ID, app_public_key=shop_key.public_key(),
                          key=provider_key, time_scale=time_scale)
    elif name == "wechatpay":
        fake = FakeWeChatPay(mch_id=WECHATPAY_MCH_ID, merchant_public_key=shop_key.public_key(),
                             platform_key=provider_key, apiv3_key=APIV3_KEY,
                             time_scale=time_scale)
    elif name == "stripe":
        fake = FakeStripe(api_key=STRIPE_API_KEY, webhook_secret=STRIPE_WEBHOOK_SECRET,
                          webhook_url=url + "/v1/payments/stripe/webhook", time_scale=time_scale)
    else:
        raise ValueError(f"no fake of {name!r}: one of {', '.join(PROVIDERS)}")
    (folder / "apiv3.key").write_bytes(APIV3_KEY + b"\n")
    (folder / "stripe.key").write_text(STRIPE_API_KEY + "\n")
    (folder / "stripe.whsec").write_text(STRIPE_WEBHOOK_SECRET + "\n")
    with listener:  # closed at the end, or when the world fails to start
        async with fake:
            settings = ProviderSettings(
                gateway=name, currency=CURRENCY[name], public_url=url,
                alipay_app_id=ALIPAY_APP_ID, alipay_private_key_file=str(folder / "shop.pem"),
                alipay_public_key_file=str(folder / "provider.pub"),
                alipay_url=fake.url + ALIPAY_PATH,
                wechatpay_mch_id=WECHATPAY_MCH_ID, wechatpay_app_id=WECHATPAY_APP_ID,
                wechatpay_private_key_file=str(folder / "shop.pem"),
                wechatpay_cert_serial="5157F09E",
                wechatpay_apiv3_key_file=str(folder / "apiv3.key"),
                wechatpay_platform_public_key_file=str(folder / "provider.pub"),
                wechatpay_url=fake.url,
                stripe_api_key_file=str(folder / "stripe.key"),
                stripe_webhook_secret_file=str(folder / "stripe.whsec"), stripe_api_base=fake.url,
            )
            provider = build_provider(settings, lambda: None, timeout_s=1.0)  # type: ignore[arg-type,return-value]
            shop_config = config or ShopConfig()
            shop_config = ShopConfig(**{**shop_config.__dict__, "currency": CURRENCY[name]})
            async with Shop.open(
                str(folder / "shop.db"), gateway=provider, clock=clock, config=shop_config,
                gateway_secret=secrets.token_hex(16),
            ) as shop:
                app = make_app(shop, HttpConfig(admin_token=ADMIN_TOKEN, rate_limit_per_s=0))
                runner = web.AppRunner(app, handle_signals=False)
                await runner.setup()
                try:
                    await web.SockSite(runner, listener).start()
                    async with aiohttp.ClientSession() as session:
                        yield ProviderWorld(name, fake, shop, url, session, forger)
                finally:
                    await runner.cleanup()


def _names(key: str, refund_id: str) -> bool:
    """Whether an idempotency key at a fake is the one of ``refund_id``."""
    return re.split(r"[/-]", key)[-1] == refund_id


def stale(seconds: float = 3600.0) -> int:
    """A Unix time ``seconds`` ago (a replayed signature's)."""
    return int(time.time() - seconds)
