"""The callback proof's adversarial set, with each real provider against its local fake
(SPEC 3 and 10): what fails verification, or names a wrong amount, currency, merchant or
payment, changes nothing; duplicates are acknowledged and applied once; a success for a
canceled order, and a second success, are refunded; refunds outlast a provider answering 500
or not at all; a notification that never comes is found by the active query, and a payment
still open at its order's deadline is closed at the provider."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from shopkeep.http.metrics import active_queries
from shopkeep.payments.fakes.alipay import FakeAlipay
from shopkeep.payments.fakes.common import Unpayable
from shopkeep.payments.fakes.stripe import FakeStripe
from shopkeep.payments.fakes.wechatpay import FakeWeChatPay
from shopkeep.payments.provider import GatewayRefused, PaymentRef
from shopkeep.proof.provider_world import PROVIDERS, ProviderWorld, provider_world
from shopkeep.runtime import VirtualClock
from tests.providers.conftest import past_the_deadline

WRONG_AMOUNT: dict[str, dict[str, Any]] = {
    "alipay": {"total_amount": "0.01"},
    "wechatpay": {"amount": {"total": 1, "payer_total": 1, "currency": "CNY",
                             "payer_currency": "CNY"}},
    "stripe": {"amount_received": 1},
}
WRONG_CURRENCY: dict[str, dict[str, Any]] = {
    "alipay": {"trans_currency": "USD"},  # a cross-border trade's pricing currency
    "wechatpay": {"amount": {"total": 12_000, "payer_total": 12_000, "currency": "USD",
                             "payer_currency": "USD"}},
    "stripe": {"currency": "eur"},
}
WRONG_MERCHANT: dict[str, dict[str, Any]] = {
    "alipay": {"app_id": "2021999999999999"},
    "wechatpay": {"mchid": "1999999999"},
}
OTHER_TRANSACTION: dict[str, dict[str, Any]] = {
    "alipay": {"trade_no": "2024OTHER"},
    "wechatpay": {"transaction_id": "4200OTHER"},
    "stripe": {"id": "pi_OTHER"},
}


@pytest.fixture(params=PROVIDERS)
async def world(
    request: pytest.FixtureRequest, tmp_path: Path, clock: VirtualClock
) -> AsyncIterator[ProviderWorld]:
    async with provider_world(request.param, tmp_path, clock=clock) as made:
        yield made


async def paid_at_provider(world: ProviderWorld) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order whose payment the provider collected, without notifying yet."""
    _, order, payment = await world.payment_started()
    assert await world.pay(payment, notify=False) is None
    return order, payment


def unknown_payment(world: ProviderWorld) -> dict[str, Any]:
    if world.name == "stripe":
        return {"metadata": {"payment_id": "999", "order_id": "998"}}
    return {"out_trade_no": "999"}


async def refused(world: ProviderWorld, body: bytes, headers: dict[str, str]) -> None:
    status, answer = await world.post(body, headers)
    assert not world.acknowledged(status, answer), (status, answer)
    assert status == 400


@pytest.mark.parametrize(
    "attack", ["forged", "altered", "amount", "currency", "merchant", "unknown", "stale"]
)
async def test_a_bad_notification_is_refused_and_changes_nothing(
    world: ProviderWorld, attack: str
) -> None:
    order, payment = await paid_at_provider(world)
    if attack == "forged":
        body, headers = world.notification(payment, forged=True)
    elif attack == "altered":
        body, headers = world.notification(payment)
        altered = body.replace(b"total_amount=120.00", b"total_amount=120.01").replace(
            b'"id": "', b'"id": "X'
        )
        assert altered != body
        body = altered
    elif attack == "amount":
        body, headers = world.notification(payment, **WRONG_AMOUNT[world.name])
    elif attack == "currency":
        body, headers = world.notification(payment, **WRONG_CURRENCY[world.name])
    elif attack == "merchant":
        if world.name not in WRONG_MERCHANT:
            pytest.skip("a Stripe webhook is the account's own: no merchant id to check")
        body, headers = world.notification(payment, **WRONG_MERCHANT[world.name])
    elif attack == "unknown":
        body, headers = world.notification(payment, **unknown_payment(world))
    else:
        if world.name == "alipay":
            pytest.skip("Alipay signs no time: its replays are duplicates (see below)")
        body, headers = world.notification(payment, at=time.time() - 3600)
    await refused(world, body, headers)
    assert (await world.order(order["id"]))["status"] == "awaiting_payment"
    assert sum(world.shop.rejected_callbacks.values()) + await logged_rejections(world) >= 1
    await world.audit_ok()


async def test_an_authentic_notification_of_no_payment_here_is_refused_with_a_warning(
    world: ProviderWorld,
) -> None:
    # a database restored from a backup older than the payment: the money is at the provider
    _, payment = await paid_at_provider(world)
    unknown = [unknown_payment(world)]
    if world.name == "alipay":  # its order carried back, or not: the shop looks the payment up
        unknown.append({**unknown[0], "passback_params": ""})
    for changes in unknown:
        body, headers = world.notification(payment, **changes)
        with capture_logs() as logs:
            await refused(world, body, headers)
        warned = [line for line in logs if line["event"] == "callback_refused"]
        assert [(line["log_level"], line["reason"], line["payment_id"]) for line in warned] == [
            ("warning", "unknown_payment", "999")
        ]


async def test_an_authentic_notification_for_another_app_is_refused_with_a_warning(
    world: ProviderWorld,
) -> None:
    # a shop set up with the wrong app or merchant id refuses every real notification
    if world.name not in WRONG_MERCHANT:
        pytest.skip("a Stripe webhook is the account's own: no merchant id to check")
    _, payment = await paid_at_provider(world)
    body, headers = world.notification(payment, **WRONG_MERCHANT[world.name])

    with capture_logs() as logs:
        await refused(world, body, headers)

    warned = [line for line in logs if line["event"] == "callback_refused"]
    assert [(line["log_level"], line["reason"], line["provider"]) for line in warned] == [
        ("warning", "wrong_app", world.name)
    ]


async def logged_rejections(world: ProviderWorld) -> int:
    """Authentic notifications refused by their order (amount, currency), as logged."""
    rows = await world.shop.reader.fetchall(
        "SELECT count(*) FROM payment_log WHERE verified = 0", ()
    )
    return int(rows[0][0])


async def test_a_duplicated_or_replayed_notification_is_acknowledged_and_applied_once(
    world: ProviderWorld,
) -> None:
    order, payment = await paid_at_provider(world)
    body, headers = world.notification(payment)
    for _ in range(3):
        status, answer = await world.post(body, headers)
        assert world.acknowledged(status, answer), (status, answer)
    assert (await world.order(order["id"]))["status"] == "paid"
    rows = await world.shop.reader.fetchall(
        "SELECT action FROM payment_log WHERE order_id = ? ORDER BY id", (int(order["id"]),)
    )
    assert [row[0] for row in rows] == ["applied", "duplicate", "duplicate"]
    await world.audit_ok()


async def test_a_success_for_a_canceled_order_is_refunded(world: ProviderWorld) -> None:
    alice, order, payment = await world.payment_started()
    await world.pay(payment, notify=False)  # collected as the customer cancels: news to come
    status, _ = await world.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
    assert status == 200
    body, headers = world.notification(payment)
    status, answer = await world.post(body, headers)
    assert world.acknowledged(status, answer), (status, answer)
    await world.shop.runtime.system.quiet()
    [refund] = await world.refunds(order["id"])
    assert (refund["kind"], refund["status"]) == ("late_payment", "refunded")
    assert len(world.refunds_under(refund["id"])) == 1  # found by the query and notified: once
    await world.audit_ok()


async def test_a_payment_open_when_its_order_is_canceled_is_closed_at_the_provider(
    world: ProviderWorld,
) -> None:
    alice, order, payment = await world.payment_started()
    status, _ = await world.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
    assert status == 200
    await world.shop.runtime.system.quiet()

    assert world.shop.active_queries["payment:closed"] == 1
    with pytest.raises(Unpayable):  # the customer still on the checkout page
        await world.pay(payment)
    assert await world.refunds(order["id"]) == []
    await world.audit_ok()


async def test_an_alipay_cashier_opened_after_its_order_was_canceled_and_paid_is_refunded(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # canceled before the cashier was opened, the trade did not exist to close; opened after,
    # and paid, its notification lost, it was never asked about again: collected, unrefunded
    async with provider_world("alipay", tmp_path, clock=clock) as world:
        alice, order, payment = await world.payment_started(cashier=False)
        status, _ = await world.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
        assert status == 200
        await world.shop.runtime.system.quiet()
        await world.open_cashier(payment)  # the customer, still on the page
        await world.pay(payment, notify=False)

        config = world.shop.config
        await clock.advance(config.order_timeout_s + config.payment_query_grace_s)
        await world.shop.runtime.system.quiet()

        refunds = await world.refunds(order["id"])
        assert [(r["kind"], r["status"]) for r in refunds] == [("late_payment", "refunded")]
        await world.audit_ok()


async def test_an_alipay_cashier_paid_just_after_its_order_timed_out_is_refunded(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # at the deadline the trade did not exist to close; Alipay's clock a few seconds behind
    # the shop's let the customer on the page pay it just after, its notification lost
    async with provider_world("alipay", tmp_path, clock=clock) as world:
        _, order, payment = await world.payment_started(cashier=False)
        config = world.shop.config
        await clock.advance(config.order_timeout_s)
        await world.shop.runtime.system.quiet()
        assert (await world.order(order["id"]))["cancel_reason"] == "timeout"
        await world.open_cashier(payment)
        await world.pay(payment, notify=False)

        await clock.advance(config.payment_query_grace_s)
        await world.shop.runtime.system.quiet()

        refunds = await world.refunds(order["id"])
        assert [(r["kind"], r["status"]) for r in refunds] == [("late_payment", "refunded")]
        await world.audit_ok()


async def test_a_second_success_for_a_paid_order_is_refunded(world: ProviderWorld) -> None:
    order, payment = await paid_at_provider(world)
    if isinstance(world.fake, FakeStripe):  # a second intent of the payment, collected too:
        paid = world.fake.intent_of(payment["id"])  # the refund goes through it
        world.fake.intents["pi_OTHER"] = {**paid, "id": "pi_OTHER"}
    if isinstance(world.fake, FakeWeChatPay):  # a second transaction of it, collected too
        world.fake.other_transactions["4200OTHER"] = str(payment["id"])
    if isinstance(world.fake, FakeAlipay):  # a second trade of it, collected too
        world.fake.other_trades["2024OTHER"] = str(payment["id"])
    first, headers = world.notification(payment)
    second, more = world.notification(payment, **OTHER_TRANSACTION[world.name])
    for body, sent in ((first, headers), (second, more)):
        status, answer = await world.post(body, sent)
        assert world.acknowledged(status, answer), (status, answer)
    await world.shop.runtime.system.quiet()
    assert (await world.order(order["id"]))["status"] == "paid"
    [refund] = await world.refunds(order["id"])
    assert (refund["kind"], refund["status"]) == ("duplicate_payment", "refunded")
    [made] = world.refunds_under(refund["id"])  # the second transaction's money, not the first
    assert made.payment in OTHER_TRANSACTION[world.name].values()
    await world.audit_ok()


async def test_a_refund_of_an_alipay_trade_alipay_never_made_is_refused_not_taken_from_the_paid_one(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # a signed success naming another trade_no (the shop believes what Alipay signs): its
    # refund names that trade, which Alipay takes before out_trade_no, and refuses
    async with provider_world("alipay", tmp_path, clock=clock) as world:
        order, payment = await paid_at_provider(world)
        for body, headers in (world.notification(payment),
                              world.notification(payment, trade_no="2024OTHER")):
            status, answer = await world.post(body, headers)
            assert world.acknowledged(status, answer), (status, answer)
        await world.shop.runtime.system.quiet()

        [refund] = await world.refunds(order["id"])
        [waiting] = await world.shop.refunds_in_flight()
        assert (refund["kind"], refund["status"]) == ("duplicate_payment", "refunding")
        assert "ACQ.TRADE_NOT_EXIST" in (waiting.provider_failed or "")
        assert world.fake.refunded(str(payment["id"])) == 0  # the customer keeps paying
        assert (await world.order(order["id"]))["status"] == "paid"


async def test_a_stripe_refund_failed_after_it_succeeded_is_refunding_again_for_the_staff(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # refund.failed was acknowledged and said as a warning alone: the refund still read
    # refunded, the audit counted it paid back, and the console showed nothing to settle
    async with provider_world("stripe", tmp_path, clock=clock) as world:
        alice, order, payment = await world.paid_order()
        status, _ = await world.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
        assert status == 200
        await world.shop.runtime.system.quiet()
        [refund] = await world.refunds(order["id"])
        assert refund["status"] == "refunded"
        assert isinstance(world.fake, FakeStripe)

        with capture_logs() as logs:
            delivery = await world.fake.refund_failed(refund["id"])
            again = await world.fake.refund_failed(refund["id"])  # Stripe's own retry
            await world.shop.runtime.system.quiet()

        assert delivery.answers == [200] and again.answers == [200]
        [warned] = [e for e in logs if e["event"] == "refund_failed_at_provider"]  # once
        assert (warned["log_level"], warned["refund_id"]) == ("warning", int(refund["id"]))
        [reopened] = await world.refunds(order["id"])
        assert reopened["status"] == "refunding"
        [waiting] = await world.shop.refunds_in_flight()
        [stripe_refund] = world.fake.stripe_refunds.values()
        said = ("expired_or_canceled_card, after it said it was done: its refund "
                f"{stripe_refund['id']}")
        assert warned["reason"] == said
        assert waiting.provider_failed == said  # the console offers it, Stripe's id beside
        history = (await world.shop.order_history(int(order["id"]))).items
        assert history[-1].operation == "refund_failed"
        assert "after it said it was done" in (history[-1].remark or "")
        [paid] = await world.shop.payments(int(order["id"]))
        assert paid.status == "succeeded"  # the money is back with the merchant
        await world.audit_ok()  # collected = refunding, not refunded

        settled = await world.shop.settle_refund(int(refund["id"]), "bank transfer 2026-12-07")
        late = await world.fake.refund_failed(refund["id"])  # a retry after it was settled
        await world.shop.runtime.system.quiet()

        assert settled.status == "refunded" and late.answers == [200]
        [after] = await world.refunds(order["id"])
        assert after["status"] == "refunded"  # not opened again
        assert [p.status for p in await world.shop.payments(int(order["id"]))] == ["refunded"]
        assert payment["id"] == str(paid.id)
        await world.audit_ok()


async def test_a_stripe_refund_failed_while_the_shop_awaits_its_outcome_is_not_taken_yet(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # warned "counted refunded: pay it back another way" while the refund was still open,
    # which its own query then offered the staff to settle: paid back twice. Not taken yet
    # (503): Stripe sends it again, by when the shop's own try has the refund's outcome
    async with provider_world("stripe", tmp_path, clock=clock) as world:
        alice, order, payment = await world.paid_order()
        world.fake.fail_refunds(1)  # its first try answered 500: it stays refunding
        status, _ = await world.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
        assert status == 200
        await world.shop.runtime.system.quiet()
        [refund] = await world.refunds(order["id"])
        assert refund["status"] == "refunding" and isinstance(world.fake, FakeStripe)
        failed = {"id": "re_1", "object": "refund", "amount": payment["amount"],
                  "currency": "usd", "status": "failed", "metadata": {"refund_id": refund["id"]},
                  "failure_reason": "expired_or_canceled_card"}
        world.fake.retries = (0.0,)  # one try: Stripe's next comes hours later

        with capture_logs() as logs:
            delivery = await world.fake.send(world.fake.event("refund.failed", failed))

        assert delivery.answers == [503]
        said = [e["event"] for e in logs if e["log_level"] == "warning"]
        assert said == ["refund_failure_early"]  # the operator knows it waits for a retry
        [still] = await world.refunds(order["id"])
        assert still["status"] == "refunding"
        assert [r.provider_failed for r in await world.shop.refunds_in_flight()] == [None]


@pytest.mark.parametrize("trouble", ["500", "timeout"])
async def test_a_refund_is_retried_until_the_provider_does_it(
    world: ProviderWorld, clock: VirtualClock, trouble: str
) -> None:
    alice, order, _ = await world.paid_order()
    if trouble == "500":
        world.fake.fail_refunds(2)
    else:
        world.fake.hang_refunds(1)
    status, _ = await world.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
    assert status == 200
    await world.shop.runtime.system.quiet()
    [refund] = await world.refunds(order["id"])
    assert refund["status"] == "refunding"
    for _ in range(3):
        await clock.advance(world.shop.config.refund_retry_max_s)
        await world.shop.runtime.system.quiet()
    [refund] = await world.refunds(order["id"])
    assert refund["status"] == "refunded"
    assert len(world.refunds_under(refund["id"])) == 1  # however often it was asked
    assert world.calls_under(refund["id"]) == (3 if trouble == "500" else 2)
    await world.audit_ok()


async def test_a_notification_that_never_comes_is_found_by_the_active_query(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    order, _ = await paid_at_provider(world)
    await clock.advance(world.shop.config.order_timeout_s)
    await world.shop.runtime.system.quiet()
    assert (await world.order(order["id"]))["status"] == "paid"
    status, history = await world.call("GET", f"/v1/orders/{order['id']}/history", world.admin)
    assert status == 200
    steps = [(entry["operation"], entry["to"]) for entry in history["items"]]
    asked = steps.index(("payment_queried", "awaiting_payment"))  # the cause, then its effect
    assert steps[asked + 1][1] == "paid"
    assert world.shop.active_queries["payment:paid"] >= 1
    await world.audit_ok()


async def timed_out_unpaid(
    world: ProviderWorld, clock: VirtualClock
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order whose payment was started and never paid, past its deadline: timed out."""
    _, order, payment = await world.payment_started()
    timed_out = await past_the_deadline(world, clock, order["id"])
    assert (timed_out["status"], timed_out["cancel_reason"]) == ("canceled", "timeout")
    return order, payment


async def test_an_unpaid_order_is_closed_at_the_provider_at_its_deadline_and_cannot_be_paid_after(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    order, payment = await timed_out_unpaid(world, clock)

    status, history = await world.call("GET", f"/v1/orders/{order['id']}/history", world.admin)
    assert status == 200
    remarks = [e["remark"] for e in history["items"]]
    assert f"payment {payment['id']}: open at the provider, closed now" in remarks
    assert world.shop.active_queries["payment:closed"] >= 1
    with pytest.raises(Unpayable):  # the customer still on the checkout page
        await world.pay(payment)
    await world.audit_ok()


async def test_a_success_after_a_timeout_whose_close_failed_is_refunded(
    world: ProviderWorld, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refusing(ref: PaymentRef) -> None:
        raise GatewayRefused("the provider refuses to close it")

    monkeypatch.setattr(world.shop.provider, "close_payment", refusing)
    order, payment = await timed_out_unpaid(world, clock)
    assert world.shop.active_queries["payment:error"] >= 1  # asked again later, to close it

    await world.pay(payment, notify=False)  # still open at the provider: paid late
    body, headers = world.notification(payment)  # signed at the shop's (advanced) now
    status, answer = await world.post(body, headers)
    assert world.acknowledged(status, answer), (status, answer)
    await world.shop.runtime.system.quiet()
    [refund] = await world.refunds(order["id"])
    assert (refund["kind"], refund["status"]) == ("late_payment", "refunded")
    await world.audit_ok()


@pytest.fixture
async def stripe(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[ProviderWorld]:
    async with provider_world("stripe", tmp_path, clock=clock) as made:
        yield made


async def placed_to_fail_its_first_start(
    stripe: ProviderWorld,
) -> tuple[dict[str, str], dict[str, Any], Any]:
    """(customer, order, the fake) of an order whose first PaymentIntent creation will fail."""
    alice = await stripe.customer()
    order = await stripe.placed(alice)
    fake: Any = stripe.fake
    fake.fail_intents(1)
    return alice, order, fake


async def test_a_payment_start_retried_after_its_order_was_canceled_makes_no_open_intent(
    stripe: ProviderWorld,
) -> None:
    # the retry of a start answered 503 ran afresh after the cancel, and handed the customer
    # a PaymentIntent of a canceled order, open at Stripe: paid, it was refunded, fees lost
    alice, order, fake = await placed_to_fail_its_first_start(stripe)
    keyed = {**alice, "Idempotency-Key": "pay-1"}
    path = f"/v1/orders/{order['id']}/payment"
    status, _ = await stripe.call("POST", path, keyed)
    assert status == 503
    status, _ = await stripe.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
    assert status == 200

    status, refused = await stripe.call("POST", path, keyed)
    await stripe.shop.runtime.system.quiet()

    assert (status, refused["code"]) == (409, "invalid_state")
    # the order is asked again before the provider is: none is made for a canceled order
    assert list(fake.intents.values()) == []
    await stripe.audit_ok()


async def failed_at_stripe(
    stripe: ProviderWorld,
) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    """An order whose payment failed, the shop told (the card declined): its PaymentIntent
    still takes another card on the same checkout page. (customer, order, payment)"""
    alice, order, payment = await stripe.payment_started()
    fake: Any = stripe.fake
    await fake.fail(stripe.key_of(payment))
    status, told = await stripe.call("GET", f"/v1/payments/{payment['id']}", alice)
    assert (status, told["status"]) == (200, "failed")
    return alice, order, payment


async def test_payment_starts_at_once_after_a_failure_make_one_payment_intent(
    stripe: ProviderWorld,
) -> None:
    # each would make one (a replayed failure is reconciled by a new intent), and only the
    # one the payment keeps would ever be closed at its deadline
    alice, order, fake = await placed_to_fail_its_first_start(stripe)

    answers = await asyncio.gather(*(
        stripe.call("POST", f"/v1/orders/{order['id']}/payment", alice) for _ in range(4)
    ))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 200, 201, 503]
    assert len(fake.intents) == 1


async def test_payment_starts_at_once_under_one_key_answer_the_first_answer(
    stripe: ProviderWorld,
) -> None:
    alice = await stripe.customer()
    order = await stripe.placed(alice)
    keyed = {**alice, "Idempotency-Key": "pay-once"}

    answers = await asyncio.gather(*(
        stripe.call("POST", f"/v1/orders/{order['id']}/payment", keyed) for _ in range(3)
    ))
    assert [status for status, _ in answers] == [201, 201, 201]
    assert len({payment["id"] for _, payment in answers}) == 1
    assert all(payment["client_secret"] for _, payment in answers)


async def test_a_deadline_query_answered_in_another_currency_times_the_order_out_at_once(
    stripe: ProviderWorld, clock: VirtualClock
) -> None:
    _, order, payment = await stripe.payment_started()
    fake: Any = stripe.fake
    fake.intents[stripe.key_of(payment)]["currency"] = "eur"  # paid, but not in dollars
    await stripe.pay(payment, notify=False)

    await clock.advance(stripe.shop.config.order_timeout_s)  # not its grace: it was answered
    await stripe.shop.runtime.system.quiet()
    timed_out = await stripe.order(order["id"])
    assert (timed_out["status"], timed_out["cancel_reason"]) == ("canceled", "timeout")
    status, history = await stripe.call("GET", f"/v1/orders/{order['id']}/history", stripe.admin)
    assert status == 200
    [said] = [e["remark"] for e in history["items"] if e["operation"] == "payment_queried"]
    assert "refused" in said and "EUR" in said


async def test_a_stripe_payment_that_failed_then_was_paid_without_news_is_found_at_the_deadline(
    stripe: ProviderWorld, clock: VirtualClock
) -> None:
    _, order, payment = await failed_at_stripe(stripe)
    await stripe.pay(payment, notify=False)  # another card, and the webhook lost

    await clock.advance(stripe.shop.config.order_timeout_s)
    await stripe.shop.runtime.system.quiet()
    assert (await stripe.order(order["id"]))["status"] == "paid"
    assert await stripe.refunds(order["id"]) == []
    await stripe.audit_ok()


async def test_a_stripe_payment_that_failed_is_closed_at_the_deadline_and_at_a_cancel(
    stripe: ProviderWorld, clock: VirtualClock
) -> None:
    _, timing_out, at_deadline = await failed_at_stripe(stripe)
    alice, canceled, at_cancel = await failed_at_stripe(stripe)
    status, _ = await stripe.call("POST", f"/v1/orders/{canceled['id']}/cancel", alice)
    assert status == 200

    await clock.advance(stripe.shop.config.order_timeout_s)
    await stripe.shop.runtime.system.quiet()
    timed_out = await stripe.order(timing_out["id"])
    assert (timed_out["status"], timed_out["cancel_reason"]) == ("canceled", "timeout")
    for payment in (at_deadline, at_cancel):  # the customer still on the checkout page
        with pytest.raises(Unpayable):
            await stripe.pay(payment)
    await stripe.audit_ok()


async def test_a_stripe_payment_that_failed_is_closed_once_another_pays_the_order(
    stripe: ProviderWorld,
) -> None:
    alice, order, declined = await failed_at_stripe(stripe)
    other = await stripe.start_payment(alice, order)
    assert other["id"] != declined["id"]

    await stripe.pay(other)
    await stripe.shop.runtime.system.quiet()

    assert (await stripe.order(order["id"]))["status"] == "paid"
    with pytest.raises(Unpayable):  # the customer still on the declined one's page
        await stripe.pay(declined)
    assert await stripe.refunds(order["id"]) == []
    await stripe.audit_ok()


@pytest.fixture
async def wechatpay(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[ProviderWorld]:
    async with provider_world("wechatpay", tmp_path, clock=clock) as made:
        yield made


@pytest.mark.parametrize("end", ["deadline", "cancel"])
async def test_a_payment_being_paid_when_its_order_ends_is_asked_about_until_it_settles(
    wechatpay: ProviderWorld, clock: VirtualClock, end: str
) -> None:
    alice, order, payment = await wechatpay.payment_started()
    fake: Any = wechatpay.fake
    fake.begin_paying(wechatpay.key_of(payment))  # which no close can end
    if end == "cancel":
        status, _ = await wechatpay.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
        assert status == 200
    assert (await past_the_deadline(wechatpay, clock, order["id"]))["status"] == "canceled"
    assert await wechatpay.refunds(order["id"]) == []

    await wechatpay.pay(payment, notify=False)  # the customer's payment goes through, unsaid
    for _ in range(3):
        await clock.advance(wechatpay.shop.config.refund_retry_max_s)
        await wechatpay.shop.runtime.system.quiet()
    [refund] = await wechatpay.refunds(order["id"])
    assert (refund["kind"], refund["status"]) == ("late_payment", "refunded")
    await wechatpay.audit_ok()


async def test_the_active_queries_show_in_the_metrics(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    await paid_at_provider(world)
    await clock.advance(world.shop.config.order_timeout_s)
    await world.shop.runtime.system.quiet()
    family = active_queries(world.shop.active_queries)
    [sample] = [s for s in family.samples if s.labels == {"what": "payment", "outcome": "paid"}]
    assert sample.value >= 1


async def test_the_sandboxs_callback_route_is_not_found_on_a_providers_shop(
    world: ProviderWorld,
) -> None:
    _, order, payment = await world.payment_started()
    await world.pay(payment, notify=False)
    body, headers = world.notification(payment)  # genuine, but sent to the sandbox's route

    async with world.session.post(
        world.url + "/v1/payments/callback", data=body, headers=headers
    ) as answer:
        assert answer.status == 404
        problem = await answer.json(content_type=None)

    assert problem["code"] == "not_found" and world.name in problem["detail"]
    assert (await world.order(order["id"]))["status"] == "awaiting_payment"
