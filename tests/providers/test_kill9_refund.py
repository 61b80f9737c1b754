"""kill -9 of a real ``shopkeep serve --gateway <provider>`` while the refund's call to the
provider is under way (its record written, the provider not answered), for each provider: after
the restart the refund is sent again under the same idempotency key, made once, and the audit
holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from shopkeep.payments.fakes.alipay import PATH as ALIPAY_PATH
from shopkeep.payments.fakes.alipay import FakeAlipay
from shopkeep.payments.fakes.common import FakeServer
from shopkeep.payments.fakes.stripe import FakeStripe
from shopkeep.payments.fakes.wechatpay import FakeWeChatPay
from shopkeep.payments.keys import private_pem, public_pem
from shopkeep.proof.provider_world import (
    ALIPAY_APP_ID,
    APIV3_KEY,
    WECHATPAY_APP_ID,
    WECHATPAY_MCH_ID,
    new_key,
)
from shopkeep.proof.serving import ServeProcess

ADMIN_TOKEN = "kill9-provider-admin-token"
API_KEY = "sk_test_kill9"
WEBHOOK_SECRET = "whsec_kill9"


@asynccontextmanager
async def provider(name: str, folder: Path) -> AsyncIterator[tuple[FakeServer, list[str]]]:
    """The provider's fake, running, and the ``serve`` flags that point the shop at it."""
    shop_key, provider_key = new_key(), new_key()
    (folder / "shop.pem").write_bytes(private_pem(shop_key))
    (folder / "provider.pub").write_bytes(public_pem(provider_key.public_key()))
    fake: FakeServer
    if name == "alipay":
        fake = FakeAlipay(app_id=ALIPAY_APP_ID, app_public_key=shop_key.public_key(),
                          key=provider_key)  # fmt: skip
    elif name == "wechatpay":
        fake = FakeWeChatPay(mch_id=WECHATPAY_MCH_ID, merchant_public_key=shop_key.public_key(),
                             platform_key=provider_key, apiv3_key=APIV3_KEY)  # fmt: skip
    else:
        fake = FakeStripe(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET)
    (folder / "apiv3.key").write_bytes(APIV3_KEY + b"\n")
    (folder / "stripe.key").write_text(API_KEY + "\n")
    (folder / "stripe.whsec").write_text(WEBHOOK_SECRET + "\n")
    async with fake:
        flags = {
            "alipay": [
                "--currency", "CNY", "--alipay-app-id", ALIPAY_APP_ID,
                "--alipay-private-key-file", str(folder / "shop.pem"),
                "--alipay-public-key-file", str(folder / "provider.pub"),
                "--alipay-url", fake.url + ALIPAY_PATH,
            ],
            "wechatpay": [
                "--currency", "CNY", "--wechatpay-mch-id", WECHATPAY_MCH_ID,
                "--wechatpay-app-id", WECHATPAY_APP_ID,
                "--wechatpay-private-key-file", str(folder / "shop.pem"),
                "--wechatpay-cert-serial", "5157F09E",
                "--wechatpay-apiv3-key-file", str(folder / "apiv3.key"),
                "--wechatpay-platform-public-key-file", str(folder / "provider.pub"),
                "--wechatpay-url", fake.url,
            ],
            "stripe": [
                "--currency", "USD", "--stripe-api-key-file", str(folder / "stripe.key"),
                "--stripe-webhook-secret-file", str(folder / "stripe.whsec"),
                "--stripe-api-base", fake.url,
            ],
        }[name]  # fmt: skip
        yield fake, ["--gateway", name, "--admin-token", ADMIN_TOKEN, *flags]


async def pay(fake: FakeServer, payment: dict[str, object], http: aiohttp.ClientSession) -> None:
    """The customer pays ``payment`` at the provider, which notifies the shop (at Alipay the
    customer opens the cashier page first: the trade exists there from then on)."""
    payment_id = str(payment["id"])
    if isinstance(fake, FakeStripe):
        delivery = await fake.pay(str(fake.intent_of(payment_id)["id"]))
    else:
        if isinstance(fake, FakeAlipay):
            async with http.get(str(payment["gateway_url"])) as page:
                assert page.status == 200, await page.text()
        assert isinstance(fake, FakeAlipay | FakeWeChatPay)
        delivery = await fake.pay(payment_id)
    assert delivery is not None and delivery.acknowledged


@pytest.mark.parametrize("name", ["alipay", "wechatpay", "stripe"])
async def test_a_refund_cut_by_kill_9_is_sent_again_after_restart_and_made_once(
    tmp_path: Path, name: str
) -> None:
    async with provider(name, tmp_path) as (fake, flags):
        with ServeProcess(tmp_path / "shop.db", tmp_path, flags) as server:
            if isinstance(fake, FakeStripe):
                fake.webhook_url = server.url + "/v1/payments/stripe/webhook"
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with aiohttp.ClientSession(base_url=server.url) as http:
                await server.start(http)

                async def call(method: str, path: str, who: dict[str, str],
                               body: object = None) -> dict[str, object]:
                    async with http.request(method, path, headers=who, json=body) as answer:
                        assert answer.status < 300, await answer.text()
                        return dict(await answer.json())

                user = await call("POST", "/v1/users", admin, {"name": "alice"})
                alice = {"Authorization": f"Bearer {user['token']}"}
                goods = await call("POST", "/v1/goods", admin,
                                   {"name": "tea", "price": 12_000, "stock": 5})
                order = await call("POST", "/v1/orders", alice,
                                   {"items": [{"goods_id": goods["id"], "quantity": 1}]})
                payment = await call("POST", f"/v1/orders/{order['id']}/payment", alice)
                await pay(fake, payment, http)

                fake.hang_refunds(1)  # the provider takes the call and never answers
                await call("POST", f"/v1/orders/{order['id']}/cancel", alice)
                await fake.refund_arrived.wait()
                server.kill()  # kill -9 inside the refund's call
                assert fake.refunds == {}  # no money moved yet

                fake.refund_arrived.clear()
                await server.start(http)  # the refund's attempt is delivered again
                await fake.refund_arrived.wait()
                refunds: dict[str, object] = {}
                # the other process records it once the provider answered: nothing here to
                # await but its answer, so ask again for a bounded while
                for _ in range(200):
                    page = await call("GET", f"/v1/orders/{order['id']}/refunds", admin)
                    [refunds] = page["items"]  # type: ignore[misc]
                    if refunds["status"] == "refunded":
                        break
                    await asyncio.sleep(0.05)
                assert refunds["status"] == "refunded"
                assert len(fake.refunds) == 1
                [made] = fake.refunds.values()
                assert made.key.endswith(str(refunds["id"])) and made.amount == 12_000
                assert len(fake.refund_calls) == 2  # the cut call and the one after restart
                report = await call("GET", "/v1/audit", admin)
                assert report["ok"], report
