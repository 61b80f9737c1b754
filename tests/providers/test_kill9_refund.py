"""kill -9 of a real ``main.py serve --gateway stripe`` while the refund's call to Stripe is
under way (its record written, the provider not answered): after the restart the refund is
sent again under the same idempotency key, made once, and the audit holds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from shopkeep.payments.fakes.stripe import FakeStripe
from shopkeep.proof.serving import ServeProcess

ADMIN_TOKEN = "kill9-provider-admin-token"
API_KEY = "sk_test_kill9"
WEBHOOK_SECRET = "whsec_kill9"


async def test_a_refund_cut_by_kill_9_is_sent_again_after_restart_and_made_once(
    tmp_path: Path,
) -> None:
    (tmp_path / "stripe.key").write_text(API_KEY + "\n")
    (tmp_path / "stripe.whsec").write_text(WEBHOOK_SECRET + "\n")
    async with FakeStripe(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET) as fake:
        assert isinstance(fake, FakeStripe)
        flags = [
            "--gateway", "stripe", "--currency", "USD", "--admin-token", ADMIN_TOKEN,
            "--stripe-api-key-file", str(tmp_path / "stripe.key"),
            "--stripe-webhook-secret-file", str(tmp_path / "stripe.whsec"),
            "--stripe-api-base", fake.url,
        ]  # fmt: skip
        with ServeProcess(tmp_path / "shop.db", tmp_path, flags) as server:
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
                intent = fake.intent_of(str(payment["id"]))
                delivery = await fake.pay(str(intent["id"]))
                assert delivery is not None and delivery.acknowledged

                fake.hang_refunds(1)  # the provider takes the call and never answers
                await call("POST", f"/v1/orders/{order['id']}/cancel", alice)
                await fake.refund_arrived.wait()
                server.kill()  # kill -9 inside the refund's call
                assert fake.refunds == {}  # no money moved yet

                fake.refund_arrived.clear()
                await server.start(http)  # the refund's attempt is delivered again
                await fake.refund_arrived.wait()
                refunds: dict[str, object] = {}
                # the other process records it once Stripe answered: nothing here to await
                # but its answer, so ask again for a bounded while
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
