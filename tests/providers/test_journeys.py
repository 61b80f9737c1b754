"""A whole journey through shopkeep's HTTP API with each real provider, against its local fake:
place, start paying, the provider collects and notifies, the order is paid; cancel, the
refund reaches the provider under the refund id; the audit holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shopkeep.payments.fakes.stripe import FakeStripe
from shopkeep.proof.provider_world import PROVIDERS, ProviderWorld, provider_world

CHECKOUT_FIELD = {"alipay": "gateway_url", "wechatpay": "code_url", "stripe": "client_secret"}


@pytest.fixture(params=PROVIDERS)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProviderWorld]:
    async with provider_world(request.param, tmp_path) as made:
        yield made


async def test_a_customer_pays_cancels_and_is_refunded_through_the_provider(
    world: ProviderWorld,
) -> None:
    alice = await world.customer()
    order = await world.placed(alice)
    assert order["currency"] == world.shop.config.currency
    payment = await world.start_payment(alice, order)
    assert payment["gateway"] == world.name
    assert payment["currency"] == world.shop.config.currency
    assert payment[CHECKOUT_FIELD[world.name]]
    assert {"gateway_url", "qr_code", "code_url", "client_secret"} & set(payment) == {
        CHECKOUT_FIELD[world.name]
    }

    delivery = await world.pay(payment)
    assert delivery is not None and delivery.acknowledged and delivery.attempts == 1
    assert (await world.order(order["id"]))["status"] == "paid"

    status, canceled = await world.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
    assert (status, canceled["status"]) == (200, "canceled")
    await world.shop.runtime.system.quiet()
    [refund] = await world.refunds(order["id"])
    assert (refund["status"], refund["gateway_amount"]) == ("refunded", payment["amount"])
    [made] = world.refunds_under(refund["id"])  # the refund id is the idempotency key
    assert made.amount == payment["amount"]
    await world.audit_ok()


async def test_starting_a_payment_again_answers_the_same_checkout(world: ProviderWorld) -> None:
    alice = await world.customer()
    order = await world.placed(alice)
    first = await world.start_payment(alice, order)
    again = await world.start_payment(alice, order)
    assert again == first
    status, got = await world.call("GET", f"/v1/payments/{first['id']}", alice)
    assert (status, got) == (200, first)


async def test_alipay_gives_a_qr_code_when_asked_for_the_qr_channel(tmp_path: Path) -> None:
    async with provider_world("alipay", tmp_path) as world:
        alice = await world.customer()
        order = await world.placed(alice)
        status, payment = await world.call(
            "POST", f"/v1/orders/{order['id']}/payment?channel=qr", alice
        )
        assert status == 201, payment
        assert payment["qr_code"] and "gateway_url" not in payment


async def test_an_alipay_payment_started_as_a_page_gives_its_qr_code_when_asked_after(
    tmp_path: Path,
) -> None:
    async with provider_world("alipay", tmp_path) as world:
        alice = await world.customer()
        order = await world.placed(alice)
        path = f"/v1/orders/{order['id']}/payment"
        status, page = await world.call("POST", path, alice)
        assert status == 201 and page["gateway_url"] and "qr_code" not in page
        status, both = await world.call("POST", f"{path}?channel=qr", alice)
        assert status == 200, both  # the same open payment, with its QR code as well
        assert both["id"] == page["id"] and both["gateway_url"] == page["gateway_url"]
        assert both["qr_code"]
        status, again = await world.call("POST", path, alice)
        assert (status, again) == (200, both)
        status, got = await world.call("GET", f"/v1/payments/{page['id']}", alice)
        assert (status, got) == (200, both)


async def test_one_key_for_an_alipay_qr_code_and_its_page_is_a_conflict(tmp_path: Path) -> None:
    # the second channel's answer overwrote the first's, which the key then replayed as 200
    async with provider_world("alipay", tmp_path) as world:
        alice = await world.customer()
        order = await world.placed(alice)
        path = f"/v1/orders/{order['id']}/payment"
        keyed = {**alice, "Idempotency-Key": "k"}
        status, first = await world.call("POST", f"{path}?channel=qr", keyed)
        assert status == 201, first
        status, other = await world.call("POST", path, keyed)
        assert (status, other["code"]) == (409, "idempotency_conflict")
        status, again = await world.call("POST", f"{path}?channel=qr", keyed)
        assert (status, again) == (201, first)


async def test_a_second_stripe_intent_of_a_paid_payment_is_the_one_refunded(
    tmp_path: Path,
) -> None:
    # SPEC 3.4: the same payment with another transaction is refunded: that transaction
    async with provider_world("stripe", tmp_path) as world:
        fake = world.fake
        assert isinstance(fake, FakeStripe)
        alice, order, payment = await world.paid_order()
        first = fake.intent_of(payment["id"])
        fake.intents["pi_second"] = {**first, "id": "pi_second", "client_secret": "pi_second_s"}
        await fake.pay("pi_second")
        await world.shop.runtime.system.quiet()
        status, _ = await world.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
        assert status == 200
        await world.shop.runtime.system.quiet()
        refunds = await world.refunds(order["id"])
        assert [(r["kind"], r["status"]) for r in refunds] == [
            ("duplicate_payment", "refunded"), ("cancel", "refunded")
        ]
        made = {refund.payment: refund.amount for refund in fake.refunds.values()}
        assert made == {"pi_second": payment["amount"], first["id"]: payment["amount"]}
        await world.audit_ok()
