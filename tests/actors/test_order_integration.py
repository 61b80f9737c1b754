"""The order kind with the real asset kinds, on a SQLite file and a virtual clock: placement,
payment callbacks and the deadline."""

from __future__ import annotations

import asyncio
from typing import Any, Final

import pytest

from shopkeep.actors.order import OrderActor
from shopkeep.actors.order_messages import (
    Accept,
    Cancel,
    GetPayments,
    GetRefunds,
    OrderView,
    PaymentCallback,
    PaymentView,
    RefundView,
)
from shopkeep.payments.provider import PaymentRef
from shopkeep.payments.sandbox import SandboxProvider
from shopkeep.refusals import Refusal
from shopkeep.requests import MAX_AMOUNT
from shopkeep.runtime import Address, VirtualClock
from tests.actors.order_shop import Shop

HALF_HOUR = 30 * 60




# -- placement --------------------------------------------------------------------------------


async def test_a_placement_takes_stock_coupon_and_wallet_and_awaits_payment(shop: Shop) -> None:
    alice = await shop.user(balance=5_000)
    tea = await shop.goods(price=2_500, stock=10)
    cup = await shop.goods(price=1_000, stock=5)
    coupon = await shop.coupon(alice, value=500)

    order = await shop.placed(alice, [(tea, 2), (cup, 1)], coupon_id=coupon, use_balance=1_000,
                              expected_total=6_500)

    assert order.status == "awaiting_payment"
    assert (order.goods_amount, order.shipping_fee, order.order_amount) == (6_000, 1_000, 7_000)
    assert (order.coupon_discount, order.wallet_amount, order.pay_amount) == (500, 1_000, 5_500)
    assert {(i.goods_id, i.quantity, i.unit_price) for i in order.items} == {
        (tea, 2, 2_500), (cup, 1, 1_000)
    }
    assert order.expires_at == order.confirmed_at + HALF_HOUR  # type: ignore[operator]
    assert (await shop.stock(tea), await shop.stock(cup)) == (8, 4)
    assert await shop.coupon_holder(coupon) == order.id
    assert await shop.wallet(alice) == (4_000, 0)
    assert await shop.history(order.id) == ["placed", "confirmed"]
    await shop.audit_ok()


REFUSED_AT: Final = {"stock": "insufficient_stock", "coupon": "coupon_unavailable",
                     "price": "price_changed", "wallet": "insufficient_balance"}
"""A placement's steps, and the code each refuses with."""


@pytest.mark.parametrize("saga", [False, True], ids=["in_one_turn", "down_the_saga"])
@pytest.mark.parametrize("step", list(REFUSED_AT))
async def test_a_refusal_at_any_step_leaves_nothing_taken(
    shop: Shop, step: str, saga: bool
) -> None:
    # in one turn, checks come first: the refusal records no order and writes nothing it
    # would have to undo; down the saga, the order recorded is canceled placement_failed and
    # every step before the refusing one undone
    alice = await shop.user(balance=5_000)
    tea = await shop.goods(price=2_500, stock=10)
    cup = await shop.goods(price=1_000, stock=1 if step != "stock" else 0)
    # the coupon step: its minimum (100.00) is not met
    coupon = await shop.coupon(alice, value=500, min_order_amount=10_000 if step == "coupon" else 0)
    orders_before = await shop.rows("SELECT count(*) FROM orders")

    refusal = await shop.place(alice, [(tea, 2), (cup, 1)], coupon_id=coupon,
                               use_balance=1_000 if step != "wallet" else 6_000,
                               expected_total=999 if step == "price" else None, saga=saga)

    assert isinstance(refusal, Refusal) and refusal.code == REFUSED_AT[step]
    await shop.quiet()
    if saga:
        assert refusal.order_id is not None
        order = await shop.order(refusal.order_id)
        assert (order.status, order.cancel_reason) == ("canceled", "placement_failed")
        assert await shop.history(order.id) == ["placed", "placement_failed"]
        failure = await shop.rows("SELECT failure_code FROM orders WHERE id = ?", (order.id,))
        assert failure == [(REFUSED_AT[step],)]
    else:
        assert refusal.order_id is None
        assert await shop.rows("SELECT count(*) FROM orders") == orders_before
    assert (await shop.stock(tea), await shop.stock(cup)) == (10, 1 if step != "stock" else 0)
    assert await shop.coupon_holder(coupon) is None
    assert await shop.wallet(alice) == (5_000, 0)
    await shop.audit_ok()


async def test_an_order_amounting_to_more_than_the_shop_takes_fails_with_nothing_applied(
    shop: Shop,
) -> None:
    alice = await shop.user(balance=5_000)
    gold = await shop.goods(price=MAX_AMOUNT, stock=3)
    coupon = await shop.coupon(alice, value=500)

    in_one_turn = await shop.place(alice, [(gold, 2)], coupon_id=coupon, use_balance=1_000)
    refusal = await shop.place(alice, [(gold, 2)], coupon_id=coupon, use_balance=1_000, saga=True)

    assert isinstance(in_one_turn, Refusal) and in_one_turn.code == "validation_error"
    assert in_one_turn.order_id is None  # refused before anything was written

    assert isinstance(refusal, Refusal) and refusal.code == "validation_error"
    assert refusal.order_id is not None
    assert in_one_turn.pointer == refusal.pointer == "/items"  # their prices and quantities
    await shop.quiet()
    order = await shop.order(refusal.order_id)
    assert (order.status, order.cancel_reason) == ("canceled", "placement_failed")
    # priced beyond any amount: shown unpriced, as before pricing, its history saying why
    assert (order.goods_amount, order.order_amount, order.pay_amount) == (0, 0, 0)
    assert (order.coupon_discount, order.wallet_amount) == (0, 0)
    assert [item.unit_price for item in order.items] == [None]
    assert await shop.stock(gold) == 3
    assert await shop.coupon_holder(coupon) is None
    assert await shop.wallet(alice) == (5_000, 0)
    await shop.audit_ok()


@pytest.mark.parametrize("refused_by", ["expected_total", "coupon_minimum"])
async def test_an_order_refused_after_its_goods_were_priced_keeps_their_prices(
    shop: Shop, refused_by: str
) -> None:
    alice = await shop.user(balance=5_000)
    tea = await shop.goods(price=2_000, stock=3)
    if refused_by == "expected_total":
        refusal = await shop.place(alice, [(tea, 2)], expected_total=1, saga=True)
    else:
        coupon = await shop.coupon(alice, value=500, min_order_amount=999_999)
        refusal = await shop.place(alice, [(tea, 2)], coupon_id=coupon, saga=True)

    assert isinstance(refusal, Refusal) and refusal.order_id is not None
    await shop.quiet()
    order = await shop.order(refusal.order_id)
    assert (order.status, order.cancel_reason) == ("canceled", "placement_failed")
    assert [item.unit_price for item in order.items] == [2_000]  # what it would have cost
    # 40.00 of goods, below free shipping (100.00): 10.00 of shipping
    assert (order.goods_amount, order.order_amount, order.pay_amount) == (4_000, 5_000, 5_000)
    assert (order.coupon_discount, order.wallet_amount) == (0, 0)
    assert await shop.stock(tea) == 3
    await shop.audit_ok()


async def test_an_unknown_goods_fails_the_placement_and_releases_the_rest(shop: Shop) -> None:
    alice = await shop.user()
    tea = await shop.goods(price=100, stock=3)
    refusal = await shop.place(alice, [(tea, 1), (shop.new_id(), 1)])
    assert isinstance(refusal, Refusal) and refusal.code == "not_found"
    await shop.quiet()
    assert await shop.stock(tea) == 3
    await shop.audit_ok()


async def test_a_malformed_order_is_refused_without_recording_anything(shop: Shop) -> None:
    alice = await shop.user()
    tea = await shop.goods(price=100, stock=3)
    refusal = await shop.place(alice, [(tea, 0)])
    assert isinstance(refusal, Refusal) and refusal.code == "validation_error"
    assert refusal.order_id is None
    assert await shop.rows("SELECT count(*) FROM orders") == [(0,)]


async def test_an_order_with_nothing_left_to_pay_goes_straight_to_paid(shop: Shop) -> None:
    alice = await shop.user(balance=20_000)
    tea = await shop.goods(price=2_500, stock=10)
    coupon = await shop.coupon(alice, value=1_000)

    order = await shop.placed(alice, [(tea, 4)], coupon_id=coupon, use_balance=20_000)

    assert (order.status, order.pay_amount, order.wallet_amount) == ("paid", 0, 9_000)
    assert order.paid_at == order.confirmed_at and order.expires_at is None
    await shop.quiet()
    assert await shop.wallet(alice) == (11_000, 90)
    assert await shop.history(order.id) == ["placed", "confirmed", "paid"]
    assert await shop.rows("SELECT status FROM shipments WHERE order_id = ?", (order.id,)) == [
        ("awaiting",)
    ]
    assert await shop.rows("SELECT count(*) FROM timers WHERE kind = 'order'") == [(0,)]
    await shop.audit_ok()


async def test_an_accepted_order_is_pending_at_once_and_a_cancel_waits_its_turn(
    shop: Shop,
) -> None:
    alice = await shop.user()
    tea = await shop.goods(price=2_500, stock=10)
    order_id = shop.new_id()
    await shop.begin(alice, order_id)

    accepted = await shop.ask("order", order_id, Accept(alice, ((tea, 1),)))
    canceled = await shop.ask("order", order_id, Cancel("user"))

    assert isinstance(accepted, OrderView) and accepted.status == "pending"
    assert isinstance(canceled, OrderView)
    assert (canceled.status, canceled.cancel_reason) == ("canceled", "user")
    assert await shop.history(order_id) == ["placed", "confirmed", "canceled_by_user"]
    await shop.quiet()
    assert await shop.stock(tea) == 10
    await shop.audit_ok()


# -- payment ----------------------------------------------------------------------------------


async def test_starting_a_payment_twice_answers_the_same_open_payment(shop: Shop) -> None:
    alice = await shop.user()
    tea = await shop.goods(price=2_500, stock=10)
    order = await shop.placed(alice, [(tea, 1)])
    first = await shop.start_payment(order.id)
    again = await shop.start_payment(order.id)
    assert first.created and not again.created
    assert first.payment == again.payment
    assert (first.payment.amount, first.payment.status) == (3_500, "created")
    assert (first.payment.gateway_url or "").endswith(str(first.payment.id))


async def test_a_success_callback_pays_the_order(shop: Shop) -> None:
    alice = await shop.user(balance=1_000)
    tea = await shop.goods(price=2_500, stock=10)
    order = await shop.placed(alice, [(tea, 2)], use_balance=1_000)

    await shop.pay(order.id)

    paid = await shop.order(order.id)
    assert paid.status == "paid" and paid.paid_at is not None
    await shop.quiet()
    assert await shop.wallet(alice) == (0, 60)  # 5000 paid + 1000 of wallet
    assert await shop.history(order.id) == ["placed", "confirmed", "paid"]
    assert await shop.rows("SELECT count(*) FROM timers WHERE kind = 'order'") == [(0,)]
    assert await shop.rows("SELECT action, verified, duplicate FROM payment_log") == [
        ("applied", 1, 0)
    ]
    assert shop.gateway.total_collected == 5_000
    await shop.audit_ok()


async def test_a_duplicate_callback_is_acknowledged_and_changes_nothing(shop: Shop) -> None:
    alice = await shop.user()
    tea = await shop.goods(price=2_500, stock=10)
    order = await shop.placed(alice, [(tea, 2)])
    started = await shop.pay(order.id)
    before = await shop.order(order.id)

    assert await shop.gateway.resend(started.payment.id)

    assert await shop.order(order.id) == before
    _, answer = shop.callbacks[-1]
    assert (answer.action, answer.duplicate) == ("duplicate", True)
    assert await shop.ask("order", order.id, GetRefunds()) == ()
    await shop.audit_ok()


async def test_a_failed_payment_leaves_the_order_awaiting_and_a_new_one_can_start(
    shop: Shop,
) -> None:
    alice = await shop.user()
    tea = await shop.goods(price=2_500, stock=10)
    order = await shop.placed(alice, [(tea, 2)])
    failed = await shop.pay(order.id, status="failed")

    assert (await shop.order(order.id)).status == "awaiting_payment"
    retry = await shop.pay(order.id)
    assert retry.created and retry.payment.id != failed.payment.id
    payments = await shop.ask("order", order.id, GetPayments())
    assert [p.status for p in payments] == ["failed", "succeeded"]
    assert (await shop.order(order.id)).status == "paid"
    await shop.audit_ok()


async def paying(shop: Shop) -> tuple[int, OrderView, PaymentView]:
    """Alice's order of two teas of 25.00 (60.00 with shipping), its payment started: the
    tea's id, the order, the payment."""
    alice = await shop.user()
    tea = await shop.goods(price=2_500, stock=10)
    order = await shop.placed(alice, [(tea, 2)])
    return tea, order, (await shop.start_payment(order.id)).payment


async def test_a_callback_with_an_unknown_payment_or_amount_changes_nothing(shop: Shop) -> None:
    _, order, payment = await paying(shop)

    wrong = await shop.ask("order", order.id, PaymentCallback(payment.id, "succeeded", 1, "t"))
    unknown = await shop.ask("order", order.id,
                             PaymentCallback(shop.new_id(), "succeeded", 6_000, "t"))

    assert isinstance(wrong, Refusal) and isinstance(unknown, Refusal)
    assert (await shop.order(order.id)).status == "awaiting_payment"
    assert await shop.rows("SELECT action, verified FROM payment_log ORDER BY id") == [
        ("rejected_amount", 0), ("rejected_unknown_payment", 0)
    ]


# -- the deadline -----------------------------------------------------------------------------


async def test_an_unpaid_order_is_canceled_at_its_deadline_and_its_assets_come_back(
    shop: Shop, clock: VirtualClock
) -> None:
    alice = await shop.user(balance=3_000)
    tea = await shop.goods(price=2_500, stock=10)
    coupon = await shop.coupon(alice, value=500)
    order = await shop.placed(alice, [(tea, 2)], coupon_id=coupon, use_balance=3_000)

    await clock.advance(HALF_HOUR - 1)
    assert (await shop.order(order.id)).status == "awaiting_payment"
    await clock.advance(1)

    timed_out = await shop.order(order.id)
    assert (timed_out.status, timed_out.cancel_reason) == ("canceled", "timeout")
    assert timed_out.canceled_at == order.expires_at
    await shop.quiet()
    assert await shop.stock(tea) == 10
    assert await shop.coupon_holder(coupon) is None
    assert await shop.wallet(alice) == (3_000, 0)
    assert await shop.history(order.id) == ["placed", "confirmed", "canceled_by_timeout"]
    await shop.audit_ok()


async def test_a_success_and_the_deadline_at_the_same_instant_success_first(
    shop: Shop, clock: VirtualClock
) -> None:
    alice = await shop.user()
    tea = await shop.goods(price=2_500, stock=10)
    deadline = clock.now() + HALF_HOUR
    paying: list[asyncio.Future[bool]] = []
    payment: list[int] = []

    def success() -> None:
        paying.append(shop.gateway.complete_soon(payment[0], order.id, 6_000, "succeeded"))

    clock.call_at(deadline, success)  # queued at the deadline's instant, ahead of its timer
    order = await shop.placed(alice, [(tea, 2)])
    payment.append((await shop.start_payment(order.id)).payment.id)
    assert order.expires_at == deadline

    await clock.advance(HALF_HOUR)

    assert await paying[0]
    final = await shop.order(order.id)
    assert final.status == "paid" and final.paid_at == deadline
    assert await shop.ask("order", order.id, GetRefunds()) == ()
    await shop.audit_ok()


async def failed_then_another(shop: Shop) -> tuple[OrderView, PaymentView, PaymentView]:
    """An order of 60.00 awaiting payment, its first payment failed (notified), a second
    started: both payments the provider may still collect on."""
    alice = await shop.user()
    tea = await shop.goods(price=2_500, stock=10)
    order = await shop.placed(alice, [(tea, 2)])
    first = (await shop.start_payment(order.id)).payment
    assert await shop.gateway.complete(first.id, order.id, 6_000, "failed")
    second = (await shop.start_payment(order.id)).payment
    assert second.id != first.id
    return order, first, second


async def queried(shop: Shop, order_id: int) -> str:
    """What the order's history says its active queries found, every row together."""
    remarks = await shop.rows(
        "SELECT remark FROM order_history WHERE order_id = ? AND operation = 'payment_queried'",
        (order_id,),
    )
    return " ".join(str(remark) for (remark,) in remarks)


async def test_a_failed_payment_collected_after_all_pays_the_order_at_its_deadline(
    shop: Shop, clock: VirtualClock
) -> None:
    # the customer paid the first payment on its page after its failure was notified (a
    # Stripe PaymentIntent takes another card), its notification lost, while the second
    # payment stays open: the deadline asks about both and waits for both answers
    order, first, second = await failed_then_another(shop)
    assert shop.gateway.collect(first.id, "txn-after-the-failure", 6_000)

    await clock.advance(HALF_HOUR)
    await shop.quiet()

    final = await shop.order(order.id)
    assert final.status == "paid" and final.paid_at == order.expires_at
    assert await shop.ask("order", order.id, GetRefunds()) == ()
    payments = await shop.ask("order", order.id, GetPayments())
    assert {p.id: p.status for p in payments} == {first.id: "succeeded", second.id: "created"}
    assert "canceled_by_timeout" not in await shop.history(order.id)
    # both answers in the history, the one found paid and the other's, whichever came first
    answered = await queried(shop, order.id)
    assert f"payment {first.id}: succeeded" in answered
    assert f"payment {second.id}: open" in answered
    await shop.audit_ok()


async def test_the_history_of_an_order_paid_at_its_deadline_has_every_answer(
    shop: Shop, clock: VirtualClock
) -> None:
    order, first, second = await failed_then_another(shop)
    assert shop.gateway.collect(second.id, "txn-its-notification-lost", 6_000)

    await clock.advance(HALF_HOUR)
    await shop.quiet()

    assert (await shop.order(order.id)).status == "paid"
    answered = await queried(shop, order.id)
    assert f"payment {first.id}: open" in answered
    assert f"payment {second.id}: succeeded" in answered


async def test_an_answer_to_an_earlier_activations_question_has_them_all_asked_again(
    shop: Shop, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the shop restarted while the deadline's questions were out: the last answer comes to an
    # activation that asked nothing, and knows nothing of the others (one of them paid since)
    order, first, second = await failed_then_another(shop)
    second_answers = asyncio.Event()
    query = SandboxProvider.query_payment

    async def second_answers_when_let(provider: SandboxProvider, ref: PaymentRef) -> Any:
        if ref.payment_id == second.id:
            await second_answers.wait()
        return await query(provider, ref)

    monkeypatch.setattr(SandboxProvider, "query_payment", second_answers_when_let)
    await clock.advance(HALF_HOUR)  # both asked; the first answered open, the second not yet
    cell = shop.system.registry.get(Address("order", order.id))
    assert cell is not None and isinstance(cell.actor, OrderActor)
    cell.actor.querying = None  # a new activation's: what the old one knew went with it
    assert shop.gateway.collect(first.id, "txn-after-the-failure", 6_000)

    second_answers.set()
    await shop.quiet()

    final = await shop.order(order.id)
    assert final.status == "paid" and final.paid_at is not None
    assert await shop.ask("order", order.id, GetRefunds()) == ()
    await shop.audit_ok()


async def test_a_deadline_answer_given_before_the_callback_paid_is_not_in_the_history(
    shop: Shop, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the provider answered "open" just before the customer paid; its answer reached the order
    # after the callback had paid it: the history said "payment P: open" below "paid"
    _, order, payment = await paying(shop)
    answer_arrives = asyncio.Event()
    query = SandboxProvider.query_payment

    async def answered_before_paid(provider: SandboxProvider, ref: PaymentRef) -> Any:
        said = await query(provider, ref)
        await answer_arrives.wait()
        return said

    monkeypatch.setattr(SandboxProvider, "query_payment", answered_before_paid)
    await clock.advance(HALF_HOUR)  # asked; the answer, open, on its way
    assert await shop.gateway.complete(payment.id, order.id, 6_000, "succeeded")
    answer_arrives.set()
    await shop.quiet()

    assert (await shop.order(order.id)).status == "paid"
    assert f"payment {payment.id}: open" not in await queried(shop, order.id)
    assert await shop.ask("order", order.id, GetRefunds()) == ()
    await shop.audit_ok()


async def test_a_success_and_the_deadline_at_the_same_instant_deadline_first(
    shop: Shop, clock: VirtualClock
) -> None:
    tea, order, payment = await paying(shop)

    await clock.advance(HALF_HOUR)
    assert await shop.gateway.complete(payment.id, order.id, 6_000, "succeeded")

    final = await shop.order(order.id)
    assert (final.status, final.cancel_reason) == ("canceled", "timeout")
    await shop.quiet()
    (refund,) = await shop.ask("order", order.id, GetRefunds())
    assert isinstance(refund, RefundView)
    assert (refund.kind, refund.gateway_amount, refund.status) == ("late_payment", 6_000,
                                                                   "refunded")
    assert shop.gateway.total_collected == shop.gateway.total_refunded == 6_000
    payments = await shop.ask("order", order.id, GetPayments())
    assert [p.status for p in payments] == ["refunded"]
    assert await shop.stock(tea) == 10
    await shop.audit_ok()


async def test_a_second_late_transaction_of_an_order_never_paid_is_refunded_as_late_too(
    shop: Shop, clock: VirtualClock
) -> None:
    # it was refunded as a duplicate payment, which SPEC 3.4 keeps for an order paid already
    _, order, payment = await paying(shop)
    await clock.advance(HALF_HOUR)  # timed out, unpaid

    assert await shop.gateway.complete(payment.id, order.id, 6_000, "succeeded")
    assert await shop.gateway.complete(payment.id, order.id, 6_000, "succeeded")
    await shop.quiet()

    refunds = await shop.ask("order", order.id, GetRefunds())
    assert [(r.kind, r.gateway_amount, r.status) for r in refunds] == [
        ("late_payment", 6_000, "refunded"), ("late_payment", 6_000, "refunded"),
    ]
    assert shop.gateway.total_collected == shop.gateway.total_refunded == 12_000
    await shop.audit_ok()
