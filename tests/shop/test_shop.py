"""The embedded API end to end: placements, payments, deadlines, cancels and refunds."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import shopkeep.actors.recovery as recovery
import shopkeep.actors.user as user_actor
from shopkeep.actors.order_messages import DeadlineReached, OrderView, PaymentView
from shopkeep.actors.protocol import CouponView, GoodsView
from shopkeep.actors.recovery import DeadlineSweep
from shopkeep.errors import CallbackRejected, ShopError
from shopkeep.payments.provider import Checkout, GatewayError, PaymentRef, PaymentRequest
from shopkeep.runtime import Address, ShuttingDown, VirtualClock
from shopkeep.shop import Shop
from tests.shop.conftest import assert_audit_ok, sandbox, settle


async def customer(shop: Shop, balance: int = 0) -> int:
    return (await shop.create_user("customer", balance=balance)).user.id


async def payment_started(shop: Shop) -> tuple[OrderView, PaymentView]:
    """A customer's new order of one tea (20.00), and the payment started for it."""
    tea = await shop.create_goods("tea", price=2_000, stock=10)
    user = await customer(shop)
    order = await shop.place_order(user, [(tea.id, 1)])
    return order, (await shop.start_payment(order.id)).payment


async def test_a_thousand_customers_racing_for_a_hundred_units_get_exactly_a_hundred(
    shop: Shop,
) -> None:
    tea = await shop.create_goods("tea", price=500, stock=100)
    users = [await customer(shop) for _ in range(1000)]

    async def order(user: int) -> str:
        try:
            await shop.place_order(user, [(tea.id, 1)])
        except ShopError as refused:
            return refused.code
        return "placed"

    outcomes = Counter(await asyncio.gather(*(order(user) for user in users)))
    assert outcomes == {"placed": 100, "insufficient_stock": 900}
    assert (await shop.get_goods(tea.id)).stock == 0
    await assert_audit_ok(shop)


async def test_an_order_is_confirmed_with_its_amounts_and_deadline(
    shop: Shop, clock: VirtualClock
) -> None:
    tea = await shop.create_goods("tea", price=3_000, stock=10)
    user = await customer(shop, balance=1_000)
    order = await shop.place_order(user, [(tea.id, 2)], use_balance=500)
    assert order.status == "awaiting_payment"
    assert (order.goods_amount, order.shipping_fee, order.order_amount) == (6_000, 1_000, 7_000)
    assert (order.wallet_amount, order.pay_amount) == (500, 6_500)
    assert order.expires_at == pytest.approx(clock.now() + 1800)
    assert (await shop.get_user(user)).balance == 500
    await assert_audit_ok(shop)


async def test_a_success_callback_pays_the_order_and_awards_points(shop: Shop) -> None:
    tea = await shop.create_goods("tea", price=12_000, stock=10)
    user = await customer(shop)
    order = await shop.place_order(user, [(tea.id, 1)])
    started = await shop.start_payment(order.id)
    assert started.created and started.payment.amount == 12_000
    assert not (await shop.start_payment(order.id)).created  # the same open payment
    assert await sandbox(shop).complete(started.payment.id, order.id, 12_000, "succeeded")
    assert (await shop.get_order(order.id)).status == "paid"
    assert (await shop.get_user(user)).points == 120
    assert await sandbox(shop).resend(started.payment.id)  # a duplicate is acknowledged
    assert (await shop.get_user(user)).points == 120
    await assert_audit_ok(shop)


async def test_a_completion_the_shop_refuses_raises_at_once_and_collects_nothing(
    shop: Shop,
) -> None:
    tea = await shop.create_goods("tea", price=12_000, stock=10)
    order = await shop.place_order(await customer(shop), [(tea.id, 1)])
    payment = (await shop.start_payment(order.id)).payment
    gateway = sandbox(shop)

    with pytest.raises(CallbackRejected):  # the wrong amount: refused again on every try
        await gateway.complete(payment.id, order.id, 1, "succeeded")
    with pytest.raises(CallbackRejected):
        await gateway.complete(999, order.id, payment.amount, "succeeded")
    with pytest.raises(ShopError, match="succeeded"):  # validation_error, as the route's 422
        await gateway.complete(payment.id, order.id, payment.amount, "bogus")
    assert gateway.total_collected == 0
    assert (await shop.get_order(order.id)).status == "awaiting_payment"
    await assert_audit_ok(shop)


async def test_a_callback_signature_given_as_a_str_of_its_own_kind_is_taken(shop: Shop) -> None:
    class Header(str):
        """What a web framework may hand over: a str, of a class of its own."""

    order, payment = await payment_started(shop)
    body = sandbox(shop).callback(payment.id, order.id, payment.amount, "succeeded", "txn-1")
    handled = await shop.handle_callback(body, Header(sandbox(shop).signature(body)))
    assert handled.action == "applied"


@pytest.mark.parametrize("first", ["callback", "deadline"])
async def test_a_success_callback_and_the_deadline_at_the_same_instant_agree(
    shop: Shop, clock: VirtualClock, first: str
) -> None:
    order, payment = await payment_started(shop)
    await clock.advance(1800 - 0.001)
    body = sandbox(shop).callback(payment.id, order.id, payment.amount, "succeeded", "txn-1")
    signature = sandbox(shop).signature(body)
    if first == "callback":
        await shop.handle_callback(body, signature)
        await clock.advance(0.001)
    else:
        # at the deadline the open payment is asked of the provider first (SPEC 10), which
        # has not collected it: the order times out once the answer is in
        await clock.advance(0.001)
        await settle(shop)
        await shop.handle_callback(body, signature)
    final = await shop.get_order(order.id)
    refunds = (await shop.refunds(order.id)).items
    if first == "callback":
        assert final.status == "paid" and refunds == []
    else:
        assert final.status == "canceled" and final.cancel_reason == "timeout"
        assert [(r.kind, r.gateway_amount) for r in refunds] == [("late_payment", payment.amount)]
    await clock.advance(10)
    await assert_audit_ok(shop)


async def test_an_unpaid_order_times_out_and_gives_everything_back(
    shop: Shop, clock: VirtualClock
) -> None:
    tea = await shop.create_goods("tea", price=2_000, stock=5)
    user = await customer(shop, balance=700)
    coupon = await shop.create_coupon(user, 300)
    order = await shop.place_order(user, [(tea.id, 2)], coupon_id=coupon.id, use_balance=700)
    await clock.advance(1800)
    final = await shop.get_order(order.id)
    assert (final.status, final.cancel_reason) == ("canceled", "timeout")
    # no settling: a read that shows the order canceled comes once everything is back (a
    # poll saw it canceled, and the next order for its last unit or coupon was refused)
    [listed] = (await shop.list_coupons(user)).items
    assert (listed.state, (await shop.get_goods(tea.id)).stock) == ("unused", 5)
    assert (await shop.get_user(user)).balance == 700
    await assert_audit_ok(shop)


async def test_a_paid_order_canceled_while_the_gateway_refuses_refunds_is_refunded_later(
    shop: Shop, clock: VirtualClock
) -> None:
    tea = await shop.create_goods("tea", price=5_000, stock=5)
    user = await customer(shop)
    order = await shop.place_order(user, [(tea.id, 1)])
    payment = (await shop.start_payment(order.id)).payment
    await sandbox(shop).complete(payment.id, order.id, payment.amount, "succeeded")
    sandbox(shop).fail_refunds_until(clock.now() + 120)
    canceled = await shop.cancel_order(order.id, user_id=user)
    assert canceled.status == "canceled"
    [refund] = (await shop.refunds(order.id, user_id=user)).items
    assert (refund.kind, refund.status, refund.gateway_amount) == (
        "cancel",
        "refunding",
        payment.amount,
    )
    await clock.advance(60)
    assert ((await shop.refunds(order.id)).items)[0].status == "refunding"
    # the shop is not quiet while a refund is unpaid (the load harness passed a run whose
    # every refund the provider refused: "quiet", ok)
    waiting = {check.name: check.detail for check in (await shop.audit()).checks}
    assert waiting["refunds"].endswith("; 1 in flight")
    await clock.advance(600)
    await settle(shop)
    assert ((await shop.refunds(order.id)).items)[0].status == "refunded"
    assert sandbox(shop).total_refunded == payment.amount
    await assert_audit_ok(shop)
    done = {check.name: check.detail for check in (await shop.audit()).checks}
    assert "in flight" not in done["refunds"]


async def test_a_shipped_order_cannot_be_canceled_and_canceling_twice_is_harmless(
    shop: Shop,
) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = await customer(shop)
    first = await shop.place_order(user, [(tea.id, 1)])
    assert (await shop.cancel_order(first.id)).status == "canceled"
    assert (await shop.cancel_order(first.id)).status == "canceled"
    second = await shop.place_order(user, [(tea.id, 1)])
    payment = (await shop.start_payment(second.id)).payment
    await sandbox(shop).complete(payment.id, second.id, payment.amount, "succeeded")
    await shop.ship(second.id)
    with pytest.raises(ShopError) as refused:
        await shop.cancel_order(second.id)
    assert refused.value.code == "invalid_state"
    assert (await shop.get_order(second.id)).status == "shipped"
    await assert_audit_ok(shop)


async def test_a_cancel_of_an_order_as_it_was_seen_is_refused_once_it_moved_on(shop: Shop) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = await customer(shop)
    order = await shop.place_order(user, [(tea.id, 1)])
    payment = (await shop.start_payment(order.id)).payment
    await sandbox(shop).complete(payment.id, order.id, payment.amount, "succeeded")

    with pytest.raises(ShopError) as refused:
        await shop.cancel_order(order.id, if_status="awaiting_payment")

    assert refused.value.code == "invalid_state"
    assert (await shop.get_order(order.id)).status == "paid"
    assert (await shop.cancel_order(order.id, if_status="paid")).status == "canceled"
    # canceled already: answered as it is, whatever was seen
    assert (await shop.cancel_order(order.id, if_status="paid")).status == "canceled"
    with pytest.raises(ShopError) as unknown:
        await shop.cancel_order(order.id, if_status="bogus")
    assert unknown.value.code == "validation_error"


async def test_a_returned_order_is_refunded_and_its_stock_comes_back(
    shop: Shop, clock: VirtualClock
) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = await customer(shop)
    order = await shop.place_order(user, [(tea.id, 2)])
    payment = (await shop.start_payment(order.id)).payment
    await sandbox(shop).complete(payment.id, order.id, payment.amount, "succeeded")
    await shop.ship(order.id)
    await shop.deliver(order.id)
    request = await shop.request_return(order.id, "too strong", user_id=user)
    approved = await shop.approve_return(request.id)
    assert approved.status == "approved"
    await settle(shop)
    assert (await shop.get_order(order.id)).status == "returned"
    assert (await shop.get_goods(tea.id)).stock == 5
    assert [r.status for r in (await shop.refunds(order.id)).items] == ["refunded"]
    await assert_audit_ok(shop)


async def test_an_order_paid_by_the_wallet_alone_canceled_has_its_refund_in_its_history(
    shop: Shop,
) -> None:
    # its refund is all wallet, refunded at once: the history said nothing of it
    tea = await shop.create_goods("tea", price=20_000, stock=5)
    user = await customer(shop, balance=30_000)
    order = await shop.place_order(user, [(tea.id, 1)], use_balance=20_000)
    assert order.status == "paid"

    await shop.cancel_order(order.id, user_id=user)
    await settle(shop)

    [refund] = (await shop.refunds(order.id)).items
    history = (await shop.order_history(order.id)).items
    assert (refund.wallet_amount, refund.gateway_amount, refund.status) == (20_000, 0, "refunded")
    assert [(e.operation, e.remark) for e in history[-2:]] == [
        ("canceled_by_user", history[-2].remark),
        ("refunded", f"refund {refund.id} (cancel): 200.00 CNY to the wallet"),
    ]
    assert (await shop.get_user(user)).balance == 30_000


async def test_the_same_idempotency_key_answers_the_same_order_and_refuses_another_body(
    shop: Shop,
) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = await customer(shop)
    first = await shop.place_order(user, [(tea.id, 1)], idempotency_key="k1")
    again = await shop.place_order(user, [(tea.id, 1)], idempotency_key="k1")
    assert again.id == first.id
    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, [(tea.id, 2)], idempotency_key="k1")
    assert refused.value.code == "idempotency_conflict"
    assert (await shop.get_goods(tea.id)).stock == 4


async def test_the_unpaid_orders_cap_refuses_one_more(shop: Shop) -> None:
    tea = await shop.create_goods("tea", price=100, stock=100)
    user = await customer(shop)
    for _ in range(10):
        await shop.place_order(user, [(tea.id, 1)])
    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, [(tea.id, 1)])
    assert refused.value.code == "too_many_unpaid_orders"
    assert (await shop.get_goods(tea.id)).stock == 90


async def test_an_order_paid_in_full_by_coupon_or_wallet_is_placed_at_the_cap(
    shop: Shop,
) -> None:
    # it goes straight to paid: never one more unpaid order (SPEC 2)
    tea = await shop.create_goods("tea", price=1_000, stock=100)
    user = await customer(shop, balance=10_000)
    for _ in range(10):
        await shop.place_order(user, [(tea.id, 1)])
    coupon = await shop.create_coupon(user, 5_000)
    by_wallet = await shop.place_order(user, [(tea.id, 1)], use_balance=2_000)
    by_coupon = await shop.place_order(user, [(tea.id, 1)], coupon_id=coupon.id)
    assert (by_wallet.status, by_wallet.pay_amount) == ("paid", 0)
    assert (by_coupon.status, by_coupon.pay_amount) == ("paid", 0)
    short = await shop.create_coupon(user, 500)
    leaves: tuple[dict[str, Any], ...] = (
        {"use_balance": 1_999},
        {"coupon_id": short.id},
        {"use_balance": 2_000, "expected_total": 1},  # refused otherwise too: the cap says
    )
    for leaves_to_pay in leaves:
        with pytest.raises(ShopError) as refused:
            await shop.place_order(user, [(tea.id, 1)], **leaves_to_pay)
        assert refused.value.code == "too_many_unpaid_orders"
    with pytest.raises(ShopError) as refused:  # the cap is the first check that fails
        await shop.place_order(user, [(tea.id, 1_000)], use_balance=2_000)
    assert refused.value.code == "too_many_unpaid_orders"
    assert (await shop.get_goods(tea.id)).stock == 88
    assert (await shop.get_user(user)).balance == 8_000
    assert (await shop.get_coupon(short.id)).state == "unused"
    await assert_audit_ok(shop)


async def test_orders_paid_in_full_placed_at_the_same_time_leave_the_cap_to_unpaid_ones(
    shop: Shop,
) -> None:
    # each paid-in-full order counted as unpaid until its commit settled it: placed beside
    # them, the user's ten unpaid orders were refused "already has 18 unpaid orders"
    tea = await shop.create_goods("tea", price=2_000, stock=100)
    user = await customer(shop, balance=60_000)
    paid_in_full = [shop.place_order(user, [(tea.id, 1)], use_balance=3_000) for _ in range(20)]
    unpaid = [shop.place_order(user, [(tea.id, 1)]) for _ in range(10)]

    placed = await asyncio.gather(*paid_in_full, *unpaid)

    assert [order.status for order in placed] == ["paid"] * 20 + ["awaiting_payment"] * 10
    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, [(tea.id, 1)])
    assert refused.value.code == "too_many_unpaid_orders"
    assert refused.value.detail.startswith(f"user {user} already has 10 orders unpaid")


@pytest.mark.parametrize("wait", [True, False])
async def test_the_saga_places_an_order_paid_in_full_at_the_cap_and_undoes_one_that_is_not(
    saga_shop: Shop, wait: bool
) -> None:
    # the saga asks the user before pricing: admitted at the cap provisionally (SPEC 2)
    shop = saga_shop
    tea = await shop.create_goods("tea", price=1_000, stock=100)
    user = await customer(shop, balance=10_000)
    for _ in range(10):
        await shop.place_order(user, [(tea.id, 1)])
    coupon, short = await shop.create_coupon(user, 5_000), await shop.create_coupon(user, 500)

    by_coupon = await shop.place_order(user, [(tea.id, 1)], coupon_id=coupon.id, wait=wait)
    try:
        leaves_to_pay = (
            await shop.place_order(user, [(tea.id, 1)], coupon_id=short.id, wait=wait)
        ).id
    except ShopError as refused:  # waited for: the refusal, naming the order it recorded
        assert refused.code == "too_many_unpaid_orders" and refused.order_id is not None
        leaves_to_pay = refused.order_id
    await settle(shop)

    assert (await shop.get_order(by_coupon.id)).status == "paid"
    undone = await shop.get_order(leaves_to_pay)
    assert (undone.status, undone.cancel_reason) == ("canceled", "placement_failed")
    assert (await shop.get_coupon(short.id)).state == "unused"
    assert (await shop.get_goods(tea.id)).stock == 89
    await assert_audit_ok(shop)


@pytest.mark.parametrize("wait", [True, False])
@pytest.mark.parametrize(
    "refused_by", ["expired coupon", "coupon minimum", "price_changed", "balance"]
)
async def test_the_saga_checks_before_it_takes_the_stock_so_a_refusal_holds_no_unit(
    saga_shop: Shop, clock: VirtualClock, wait: bool, refused_by: str
) -> None:
    # it took the stock first: while this refusal was on its way, the last unit was held from
    # another customer, refused insufficient_stock
    shop = saga_shop
    last = await shop.create_goods("last one", price=5_000, stock=1)
    ann, bob = await customer(shop), await customer(shop)
    expiry = clock.now() - 1 if refused_by == "expired coupon" else None
    minimum = 9_999 if refused_by == "coupon minimum" else 0
    coupon = await shop.create_coupon(ann, 100, min_order_amount=minimum, expires_at=expiry)
    expected = 1 if refused_by == "price_changed" else None
    wallet = 100 if refused_by == "balance" else 0  # ann's balance is 0

    with contextlib.suppress(ShopError):  # waited for: refused; else refused as it is polled
        await shop.place_order(
            ann, [(last.id, 1)], coupon_id=coupon.id, expected_total=expected,
            use_balance=wallet, wait=wait,
        )
    await settle(shop)

    assert (await shop.place_order(bob, [(last.id, 1)])).status == "awaiting_payment"
    assert [entry.order_id for entry in (await shop.stock_ledger(last.id)).items] == [
        (await shop.list_orders(user_id=bob)).items[0].id
    ]  # the refused order took nothing, so gave nothing back
    await assert_audit_ok(shop)


async def test_what_a_cancel_gives_back_is_seen_by_the_next_read(shop: Shop) -> None:
    # no settling in between: the answer comes once the releases are in their actors' hands
    tea = await shop.create_goods("tea", price=1_000, stock=10)
    user = await customer(shop, balance=5_000)
    coupon = await shop.create_coupon(user, 100)
    order = await shop.place_order(user, [(tea.id, 1)], use_balance=500, coupon_id=coupon.id)
    await shop.cancel_order(order.id, user_id=user)
    assert (await shop.get_goods(tea.id)).stock == 10
    assert (await shop.get_coupon(coupon.id)).state == "unused"
    assert (await shop.get_user(user)).balance == 5_000


async def test_what_a_cancel_gives_back_is_seen_by_the_lists_read_next(shop: Shop) -> None:
    # the lists read the database, not the actors: the releases must be committed too
    tea = await shop.create_goods("tea", price=1_000, stock=10)
    user = await customer(shop, balance=5_000)
    coupon = await shop.create_coupon(user, 100)
    order = await shop.place_order(user, [(tea.id, 1)], coupon_id=coupon.id)
    await shop.cancel_order(order.id, user_id=user)
    [listed_coupon] = (await shop.list_coupons(user)).items
    [listed_tea] = (await shop.list_goods()).items
    assert (listed_coupon.state, listed_tea.stock) == ("unused", 10)


async def test_what_an_approved_return_gives_back_is_seen_by_the_next_read(
    shop: Shop,
) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=10)
    user = await customer(shop, balance=5_000)
    order = await shop.place_order(user, [(tea.id, 2)], use_balance=3_000)
    assert order.status == "paid"
    await shop.ship(order.id)
    await shop.deliver(order.id)
    asked = await shop.request_return(order.id, user_id=user)
    await shop.approve_return(asked.id)
    assert (await shop.get_goods(tea.id)).stock == 10
    assert (await shop.get_user(user)).balance == 5_000


async def failed_in_the_saga(
    shop: Shop, stock: int
) -> tuple[GoodsView, int, CouponView, ShopError]:
    """A tea of ``stock`` units, a user with 1.00, their coupon of 2.00, and the refusal of
    the saga's placement of one tea with the coupon and 5.00 of the wallet: insufficient
    balance, found after the stock and the coupon were taken (its order recorded)."""
    tea = await shop.create_goods("tea", price=1_000, stock=stock)
    user = await customer(shop, balance=100)
    coupon = await shop.create_coupon(user, 200)
    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, [(tea.id, 1)], coupon_id=coupon.id, use_balance=500)
    assert (refused.value.code, refused.value.order_id is not None) == (
        "insufficient_balance", True
    )
    return tea, user, coupon, refused.value


async def test_what_a_failed_saga_placement_took_is_back_when_it_is_refused(
    saga_shop: Shop,
) -> None:
    # no settling in between: the next order for the last unit, with the same coupon, was
    # refused insufficient_stock or coupon_unavailable while the releases were on their way
    shop = saga_shop
    tea, user, coupon, _ = await failed_in_the_saga(shop, stock=1)
    [listed_coupon] = (await shop.list_coupons(user)).items
    assert (listed_coupon.state, (await shop.get_goods(tea.id)).stock) == ("unused", 1)

    placed = await shop.place_order(user, [(tea.id, 1)], coupon_id=coupon.id)

    assert placed.status == "awaiting_payment"


async def test_two_starts_of_a_payment_racing_a_cancel_are_both_refused_as_the_order_ended(
    shop: Shop,
) -> None:
    # a double click on Pay while the admin cancels: the second start, having waited for the
    # first's checkout, was handed the payment of the canceled order (a customer charged,
    # then refunded), the first refused
    alice = (await shop.create_user("alice", balance=0)).user
    tea = await shop.create_goods("tea", price=1_000, stock=10)
    order = await shop.place_order(alice.id, [(tea.id, 1)])

    first, second, canceled = await asyncio.gather(
        shop.start_payment(order.id, user_id=alice.id),
        shop.start_payment(order.id, user_id=alice.id),
        shop.cancel_order(order.id), return_exceptions=True,
    )

    assert isinstance(canceled, OrderView) and canceled.status == "canceled"
    for start in (first, second):
        assert isinstance(start, ShopError) and start.code == "invalid_state", start
    await assert_audit_ok(shop)


async def test_a_provider_with_one_channel_is_asked_once_for_starts_naming_both(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the starts waited for each other by channel, though the sandbox (as WeChat Pay and
    # Stripe) has one: two asked it at once, WeChat Pay for a second native order
    alice = (await shop.create_user("alice", balance=0)).user
    tea = await shop.create_goods("tea", price=1_000, stock=10)
    order = await shop.place_order(alice.id, [(tea.id, 1)])
    asked: list[str] = []
    start = shop.provider.start_payment

    async def counted(request: PaymentRequest) -> Checkout:
        asked.append(request.channel)
        for _ in range(20):  # a provider that takes a while (loop turns) to answer
            await asyncio.sleep(0)
        return await start(request)

    monkeypatch.setattr(shop.provider, "start_payment", counted)
    page, qr = await asyncio.gather(
        shop.start_payment(order.id, channel="page"), shop.start_payment(order.id, channel="qr")
    )

    assert asked == ["page"]
    assert (page.created, qr.created) == (True, False) and page.payment == qr.payment


async def test_a_cancel_sent_during_an_asynchronous_placement_is_applied_after_it(
    shop: Shop,
) -> None:
    tea = await shop.create_goods("tea", price=100, stock=3)
    user = await customer(shop)
    pending = await shop.place_order(user, [(tea.id, 1)], wait=False)
    assert pending.status == "pending"
    canceled = await shop.cancel_order(pending.id, user_id=user)
    assert (canceled.status, canceled.cancel_reason) == ("canceled", "user")
    history = [h.operation for h in (await shop.order_history(pending.id)).items]
    assert history[0] == "placed" and "confirmed" in history
    await settle(shop)
    assert (await shop.get_goods(tea.id)).stock == 3
    await assert_audit_ok(shop)


async def test_a_refused_placement_in_one_turn_changes_nothing_and_records_no_order(
    shop: Shop,
) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = await customer(shop, balance=100)
    coupon = await shop.create_coupon(user, 200)
    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, [(tea.id, 1)], coupon_id=coupon.id, use_balance=500)
    assert refused.value.code == "insufficient_balance"
    assert refused.value.order_id is None
    assert (await shop.list_orders(user_id=user)).items == []
    assert (await shop.get_goods(tea.id)).stock == 5
    assert (await shop.get_coupon(coupon.id)).state == "unused"
    assert (await shop.get_user(user)).balance == 100
    await assert_audit_ok(shop)


async def test_a_failed_saga_placement_undoes_every_step_and_names_its_order(
    saga_shop: Shop,
) -> None:
    shop = saga_shop
    tea, user, coupon, refused = await failed_in_the_saga(shop, stock=5)
    assert refused.order_id is not None
    failed = await shop.get_order(refused.order_id)
    assert (failed.status, failed.cancel_reason) == ("canceled", "placement_failed")
    await settle(shop)
    assert (await shop.get_goods(tea.id)).stock == 5
    assert (await shop.get_coupon(coupon.id)).state == "unused"
    assert (await shop.get_user(user)).balance == 100
    await assert_audit_ok(shop)


async def test_asking_for_ids_that_exist_nowhere_leaves_no_actor_in_memory(shop: Shop) -> None:
    live = shop.runtime.system.live_actors
    for missing in range(10**15, 10**15 + 20):
        with pytest.raises(ShopError) as refused:
            await shop.get_order(missing)
        assert refused.value.code == "not_found"
        with pytest.raises(ShopError):
            await shop.get_goods(missing)
    assert shop.runtime.system.live_actors == live


async def test_another_users_order_is_not_found(shop: Shop) -> None:
    tea = await shop.create_goods("tea", price=100, stock=3)
    alice, bob = await customer(shop), await customer(shop)
    order = await shop.place_order(alice, [(tea.id, 1)])
    for call in (shop.get_order, shop.cancel_order, shop.order_history, shop.refunds):
        with pytest.raises(ShopError) as refused:
            await call(order.id, user_id=bob)
        assert refused.value.code == "not_found"


@pytest.mark.parametrize(
    ("items", "options"),
    [
        ([], {}),
        ([(1, 0)], {}),
        ([(1, 1001)], {}),
        ([(1, 1), (1, 2)], {}),
        ([(1, 1)], {"use_balance": -1}),
        ([(1, True)], {}),
    ],
)
async def test_bad_requests_are_refused_with_validation_error_and_change_nothing(
    shop: Shop, items: list[tuple[int, int]], options: dict[str, int]
) -> None:
    user = await customer(shop)
    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, items, **options)  # type: ignore[arg-type]
    assert refused.value.code == "validation_error"
    assert (await shop.list_orders()).items == []


async def test_a_validation_error_lists_every_problem_as_the_http_api_does(shop: Shop) -> None:
    user = await customer(shop)
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    loose: Any = shop  # a caller the signatures' types do not hold
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "create_goods": lambda: shop.create_goods("", -1, -1),
        "update_goods": lambda: shop.update_goods(
            tea.id, price=-1, restock=0, idempotency_key=""
        ),
        "place_order": lambda: shop.place_order(user, [(tea.id, 0)], use_balance=-1),
        "create_coupon": lambda: loose.create_coupon(
            user, 0, min_order_amount=-1, expires_at="x"
        ),
        "credit_wallet": lambda: shop.credit_wallet(user, 0, idempotency_key=""),
        "create_user": lambda: shop.create_user("", balance=-1),
    }
    found = {}
    for name, call in calls.items():
        with pytest.raises(ShopError) as refused:
            await call()
        assert refused.value.code == "validation_error"
        found[name] = [error.pointer or error.parameter for error in refused.value.errors]
    assert found == {
        "create_goods": ["/name", "/price", "/stock"],
        "update_goods": ["/price", "/restock", "idempotency_key"],
        "place_order": ["/use_balance", "/items/0/quantity"],
        "create_coupon": ["/value", "/min_order_amount", "/expires_at"],
        "credit_wallet": ["/amount", "idempotency_key"],
        "create_user": ["/name", "/balance"],
    }
    assert (await shop.get_goods(tea.id)) == tea
    assert (await shop.get_user(user)).balance == 0


async def test_a_line_past_the_most_is_listed_beside_another_lines_wrong_goods(
    shop: Shop,
) -> None:
    user = await customer(shop)
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    loose: Any = shop  # a caller the signatures' types do not hold

    with pytest.raises(ShopError) as refused:
        await loose.place_order(user, [(tea.id, 5_000), ("x", 1)])

    found = [error.pointer for error in refused.value.errors]
    assert found == ["/items/1/goods_id", "/items/0/quantity"]


async def test_an_id_passed_as_text_or_a_bad_key_is_listed_beside_the_other_problems(
    shop: Shop,
) -> None:
    user = await customer(shop)
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    loose: Any = shop  # a caller the signatures' types do not hold
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "place_order": lambda: shop.place_order(
            user, [(tea.id, 0)], use_balance=-1, idempotency_key="\n"
        ),
        "update_goods": lambda: loose.update_goods("x", price=-5),
        "credit_wallet": lambda: loose.credit_wallet("u", -5),
        "create_coupon": lambda: loose.create_coupon("u", -5),
    }
    found = {}
    for name, call in calls.items():
        with pytest.raises(ShopError) as refused:
            await call()
        found[name] = [error.pointer or error.parameter for error in refused.value.errors]
    assert found == {
        "place_order": ["/use_balance", "/items/0/quantity", "idempotency_key"],
        "update_goods": ["/goods_id", "/price"],
        "credit_wallet": ["/user_id", "/amount"],
        "create_coupon": ["/user_id", "/value"],
    }


async def test_an_id_passed_as_text_is_refused_and_reaches_no_actor(shop: Shop) -> None:
    # "42" would name another actor than 42, with a balance of its own to spend again
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = await customer(shop, balance=5_000)
    coupon = await shop.create_coupon(user, 500)
    order = await shop.place_order(user, [(tea.id, 1)], use_balance=2_000)
    live = shop.runtime.system.live_actors
    loose: Any = shop  # a caller the signatures' types do not hold
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: loose.place_order(str(user), [(tea.id, 1)], use_balance=5_000),
        lambda: loose.place_order(user, [(str(tea.id), 1)]),
        lambda: loose.place_order(user, [(tea.id, 1)], coupon_id=str(coupon.id)),
        lambda: loose.place_order(user, [(float(tea.id), 1)]),
        lambda: loose.get_user(str(user)),
        lambda: loose.credit_wallet(str(user), 100),
        lambda: loose.get_goods(str(tea.id)),
        lambda: loose.update_goods(str(tea.id), restock=1),
        lambda: loose.get_coupon(str(coupon.id)),
        lambda: loose.list_coupons(str(user)),
        lambda: loose.get_order(str(order.id)),
        lambda: loose.cancel_order(str(order.id)),
        lambda: loose.start_payment(True),
        lambda: loose.get_payment(str(order.id)),
        lambda: loose.get_return(str(order.id)),
        lambda: loose.approve_return(str(order.id)),
    ]
    for call in calls:
        with pytest.raises(ShopError) as refused:
            await call()
        assert refused.value.code == "validation_error"
        assert "must be an integer id" in refused.value.errors[0].detail
    assert shop.runtime.system.live_actors == live
    assert (await shop.get_user(user)).balance == 3_000
    assert (await shop.get_goods(tea.id)).stock == 4
    assert (await shop.get_order(order.id)).status == "paid"
    assert (await shop.audit()).ok


async def test_forged_altered_and_stale_callbacks_change_nothing(
    shop: Shop, clock: VirtualClock
) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=3)
    user = await customer(shop)
    order = await shop.place_order(user, [(tea.id, 1)])
    payment = (await shop.start_payment(order.id)).payment
    gateway = sandbox(shop)
    body = gateway.callback(payment.id, order.id, payment.amount, "succeeded", "t1")
    forged = [
        (body, None),
        (body, "t=1,v1=" + "0" * 64),
        (body.replace(b'"amount":%d' % payment.amount, b'"amount":1'), gateway.signature(body)),
        (body, gateway.signature(body, int(clock.now()) - 301)),
        (b"{not json", gateway.signature(b"{not json")),
    ]
    wrong_amount = gateway.callback(payment.id, order.id, payment.amount - 1, "succeeded", "t1")
    assert b'"amount":%d' % payment.amount in body
    unknown = gateway.callback(payment.id + 1, order.id, payment.amount, "succeeded", "t1")
    forged += [
        (wrong_amount, gateway.signature(wrong_amount)),
        (unknown, gateway.signature(unknown)),
    ]
    for raw, signature in forged:
        with pytest.raises(CallbackRejected):
            await shop.handle_callback(raw, signature)
    assert (await shop.get_order(order.id)).status == "awaiting_payment"
    await assert_audit_ok(shop)


async def test_repeating_a_failed_placement_with_its_key_repeats_the_refusal(shop: Shop) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=1)
    user = await customer(shop)
    with pytest.raises(ShopError) as first:
        await shop.place_order(user, [(tea.id, 2)], idempotency_key="k")
    with pytest.raises(ShopError) as again:
        await shop.place_order(user, [(tea.id, 2)], idempotency_key="k")
    assert (again.value.code, again.value.order_id) == (first.value.code, first.value.order_id)
    assert first.value.code == "insufficient_stock"


async def test_a_signed_callback_with_ids_out_of_range_is_rejected(shop: Shop) -> None:
    gateway = sandbox(shop)
    raw = gateway.callback(10**20, 10**20, 100, "succeeded", "t")
    with pytest.raises(CallbackRejected):
        await shop.handle_callback(raw, gateway.signature(raw))


async def test_a_payment_whose_notification_never_came_is_found_by_the_query_at_the_deadline(
    shop: Shop, clock: VirtualClock
) -> None:
    order, payment = await payment_started(shop)
    sandbox(shop).collect(payment.id, "txn-lost", payment.amount)  # paid; no callback
    await clock.advance(1800)
    await settle(shop)
    final = await shop.get_order(order.id)
    assert final.status == "paid"
    operations = [entry.operation for entry in (await shop.order_history(order.id)).items]
    assert "payment_queried" in operations
    assert shop.active_queries["payment:paid"] == 1
    assert shop.order_stats.callbacks == {}  # what a query found was no callback
    await assert_audit_ok(shop)


def provider_down_for(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, queries: int
) -> None:
    """The provider answers none of the next ``queries`` payment queries."""
    provider = shop.provider
    query, outage = provider.query_payment, [queries]

    async def down_a_while(ref: PaymentRef) -> Any:
        if outage[0]:
            outage[0] -= 1
            raise GatewayError("the provider is down")
        return await query(ref)

    monkeypatch.setattr(provider, "query_payment", down_a_while)


async def paid_unsaid_past_its_deadline(
    shop: Shop, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch, unanswered: int
) -> tuple[OrderView, PaymentView]:
    """An order paid at the provider whose notification never came, past its deadline and
    the order's wait for the provider's answer, the provider answering none of the first
    ``unanswered`` queries: (order, payment)."""
    order, payment = await payment_started(shop)
    sandbox(shop).collect(payment.id, "txn-lost", payment.amount)  # paid; no callback
    provider_down_for(shop, monkeypatch, queries=unanswered)
    await clock.advance(1800)
    await settle(shop)
    for _ in range(int(shop.config.payment_query_grace_s)):  # a second at a time
        await clock.advance(1)
        await settle(shop)
    return order, payment


async def test_a_query_unanswered_once_at_the_deadline_is_asked_again_before_the_order_times_out(
    shop: Shop, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one blip of the provider's (a timeout, a 429) must not cancel an order its customer paid
    order, _ = await paid_unsaid_past_its_deadline(shop, clock, monkeypatch, unanswered=2)
    final = await shop.get_order(order.id)
    assert final.status == "paid"
    assert shop.active_queries["payment:error"] == 2
    assert (await shop.refunds(order.id)).items == []
    await assert_audit_ok(shop)


async def test_the_deadlines_question_is_asked_a_last_time_just_before_the_order_stops_waiting(
    shop: Shop, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # unanswered at the deadline and 1, 3, 7 and 15 s after: asked again 29 s after, within
    # the order's 30 s wait, not given up on at 15
    order, _ = await paid_unsaid_past_its_deadline(shop, clock, monkeypatch, unanswered=5)
    assert (await shop.get_order(order.id)).status == "paid"
    assert shop.active_queries["payment:error"] == 5


async def test_a_query_the_provider_did_not_answer_is_asked_again_and_a_found_payment_refunded(
    shop: Shop, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SPEC 10: a callback that never arrives loses nothing, even with the provider down at
    # the deadline and through the order's wait for the answer: the order times out, and the
    # payment found later is refunded
    order, payment = await paid_unsaid_past_its_deadline(shop, clock, monkeypatch, unanswered=12)
    timed_out = await shop.get_order(order.id)
    assert (timed_out.status, timed_out.cancel_reason) == ("canceled", "timeout")
    assert shop.active_queries["payment:error"] < 12
    for _ in range(12):  # each asks again after a longer pause, until one is answered
        await clock.advance(shop.config.refund_retry_max_s)
        await settle(shop)
    assert shop.active_queries["payment:error"] == 12
    assert shop.active_queries["payment:paid"] == 1
    [refund] = (await shop.refunds(order.id)).items
    assert (refund.kind, refund.gateway_amount) == ("late_payment", payment.amount)
    await assert_audit_ok(shop)


async def test_an_overdue_order_swept_again_while_its_query_is_out_is_asked_about_once(
    shop: Shop, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, payment = await payment_started(shop)
    answer, questioned, asked = asyncio.Event(), asyncio.Event(), []
    provider = shop.provider
    query = provider.query_payment

    async def slow_query(ref: PaymentRef) -> Any:
        asked.append(ref.payment_id)
        questioned.set()
        await answer.wait()  # a provider slow to answer: the order waits for it
        return await query(ref)

    monkeypatch.setattr(provider, "query_payment", slow_query)
    await clock.advance(1800)  # the deadline: the order asks the provider
    sweep = DeadlineSweep(shop.runtime.system, shop.config)
    await asyncio.wait_for(questioned.wait(), timeout=30)  # asked: its deadline armed again
    await shop.runtime.store.writer.flush()
    assert await sweep.sweep() == 0  # overdue, but its deadline waits for the answer
    shop.runtime.system.tell(Address("order", order.id), DeadlineReached())  # told all the same
    await clock.advance(1)
    answer.set()
    await settle(shop)

    assert asked == [payment.id]
    final = await shop.get_order(order.id)
    assert (final.status, final.cancel_reason) == ("canceled", "timeout")
    await assert_audit_ok(shop)


async def test_a_sweep_under_way_when_the_shop_closes_is_dropped_not_left_to_fail(
    shop: Shop, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    reading = asyncio.Event()

    async def read_held(*args: object) -> list[int]:
        reading.set()
        await asyncio.get_running_loop().create_future()  # until the sweep is cancelled
        return []

    monkeypatch.setattr(recovery, "overdue_orders", read_held)
    sweep = DeadlineSweep(shop.runtime.system, shop.config)
    sweep.start()
    await clock.advance(shop.config.sweep_interval_s)
    await reading.wait()
    running = sweep._task
    assert running is not None and not running.done()
    sweep.cancel()  # what closing the shop does, before its store closes under the read
    await asyncio.wait([running], timeout=5)
    assert running.cancelled()
    await clock.advance(shop.config.sweep_interval_s)
    assert sweep.sweeps == 0


@pytest.mark.parametrize("text", ["a\x00b", "\x1b]0;title\x07", "line\nbreak", "eve\n"])
async def test_free_text_with_a_control_character_is_refused_and_changes_nothing(
    shop: Shop, text: str
) -> None:
    with pytest.raises(ShopError, match="control character"):
        await shop.create_user(text)
    with pytest.raises(ShopError, match="control character"):
        await shop.create_goods(text, price=1, stock=1)
    with pytest.raises(ShopError, match="control character"):
        await shop.request_return(1, text)
    with pytest.raises(ShopError, match="control character"):
        await shop.settle_refund(1, text)
    assert (await shop.list_users()).items == []


@pytest.mark.parametrize(
    "items", [[{"goods_id": 1, "quantity": 1}], "ab", [1, 2], [(1, 2, 3)], None]
)
async def test_items_that_are_not_pairs_are_refused_saying_what_they_must_be(
    shop: Shop, items: Any
) -> None:
    user = await shop.create_user("ann")
    with pytest.raises(ShopError, match=r"items must be \(goods id, quantity\) pairs") as refused:
        await shop.place_order(user.user.id, items)
    assert refused.value.code == "validation_error"


async def test_items_given_as_a_generator_are_read_once_and_refused_for_what_they_say(
    shop: Shop,
) -> None:
    # the first checks read the generator up, and the second pass refused "no item"
    user = (await shop.create_user("ann")).user.id
    tea = (await shop.create_goods("tea", price=1500, stock=5)).id

    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, ((goods, 0) for goods in [tea]))
    placed = await shop.place_order(user, ((goods, 2) for goods in [tea]))

    assert [error.pointer for error in refused.value.errors] == ["/items/0/quantity"]
    assert [(item.goods_id, item.quantity) for item in placed.items] == [(tea, 2)]


async def test_a_shop_kept_past_its_block_answers_every_call_shutting_down(
    tmp_path: Path,
) -> None:
    async with Shop.open(str(tmp_path / "shop.db"), gateway="sandbox") as shop:
        made = await shop.create_user("ann")

    for call in (
        shop.get_user(made.user.id), shop.list_users(), shop.audit(), shop.create_user("bo"),
        shop.dead_letters(), shop.dead_letter_count(), shop.discard_dead_letter(1),
        sandbox(shop).complete(1, 2, 100, "succeeded"),  # its callback, to a closed shop
        shop.handle_callback(b"{}", "t=1,v1=bad"),  # closed, before it is judged
    ):
        with pytest.raises(ShuttingDown, match=r"^the shop is closed: open it again"):
            await call  # each in the same words, reads and writes alike


async def test_the_shop_knows_the_outcomes_it_applied_and_no_other(shop: Shop) -> None:
    order, payment = await payment_started(shop)
    assert not await shop.knows_outcome(payment.id, "failed", None)
    assert not await shop.knows_outcome(order.id, "succeeded", "txn-1")  # no such payment

    await sandbox(shop).complete(payment.id, order.id, payment.amount, "failed")
    assert await shop.knows_outcome(payment.id, "failed", None)
    assert not await shop.knows_outcome(payment.id, "succeeded", "txn-1")  # failed, yet payable
    await sandbox(shop).complete(payment.id, order.id, payment.amount, "succeeded", "txn-1")

    assert await shop.knows_outcome(payment.id, "succeeded", "txn-1")
    assert not await shop.knows_outcome(payment.id, "succeeded", "txn-2")  # collected twice


class TickingClock(VirtualClock):
    """A virtual clock a microsecond later at every reading, as a real one is."""

    def now(self) -> float:
        self._now += 1e-6
        return self._now


async def test_the_history_says_each_move_at_the_time_the_order_keeps_of_it(
    tmp_path: Path,
) -> None:
    # read twice, the clock gave the history rows times a few microseconds after the order's
    async with Shop.open(
        str(tmp_path / "ticking.db"), gateway="sandbox", clock=TickingClock(),
        gateway_secret="ticking-secret",
    ) as shop:
        tea = await shop.create_goods("tea", price=1_000, stock=5)
        user = await customer(shop, balance=100_000)
        unpaid = await shop.place_order(user, [(tea.id, 1)])
        canceled = await shop.cancel_order(unpaid.id)
        paid = await shop.place_order(user, [(tea.id, 1)], use_balance=100_000)

        at = {(order.id, entry.to_status): entry.at for order in (canceled, paid)
              for entry in (await shop.order_history(order.id)).items}
        assert at[unpaid.id, "pending"] == unpaid.created_at
        assert at[unpaid.id, "awaiting_payment"] == unpaid.confirmed_at
        assert at[unpaid.id, "canceled"] == canceled.canceled_at
        assert at[paid.id, "paid"] == paid.paid_at


async def test_a_failed_saga_placement_replayed_under_its_key_says_why_in_the_same_words(
    saga_shop: Shop,
) -> None:
    # rebuilt from the failed order, the replay said only "the placement failed"
    shop = saga_shop
    tea = await shop.create_goods("tea", price=1_000, stock=1)
    user = await customer(shop)
    answers = []
    for _ in range(2):
        with pytest.raises(ShopError) as refused:
            await shop.place_order(user, [(tea.id, 2)], idempotency_key="scarce-1")
        answers.append((refused.value.code, refused.value.detail, refused.value.order_id))

    assert answers[0] == answers[1]
    assert answers[0][0] == "insufficient_stock" and "1 left, 2 asked" in answers[0][1]


async def test_the_history_of_an_order_timed_out_after_its_query_goes_forward_in_time(
    tmp_path: Path,
) -> None:
    # the query's answer, written above the cancel, was stamped after it
    clock = TickingClock()
    async with Shop.open(
        str(tmp_path / "ticking.db"), gateway="sandbox", clock=clock,
        gateway_secret="ticking-secret",
    ) as shop:
        order, _ = await payment_started(shop)
        await clock.advance(shop.config.order_timeout_s + 1)
        await settle(shop)

        history = (await shop.order_history(order.id)).items
        assert [h.operation for h in history][-2:] == ["payment_queried", "canceled_by_timeout"]
        times = [h.at for h in history]
        assert times == sorted(times)
        assert history[-1].at == (await shop.get_order(order.id)).canceled_at


async def test_a_polled_order_that_failed_its_placement_reads_canceled_once_all_is_back(
    saga_shop: Shop,
) -> None:
    # the poll saw placement_failed before the releases landed: the last unit and the coupon
    # were refused to the next order
    shop = saga_shop
    tea = await shop.create_goods("tea", price=1_000, stock=1)
    user = await customer(shop, balance=100)
    coupon = await shop.create_coupon(user, 200)
    accepted = await shop.place_order(
        user, [(tea.id, 1)], coupon_id=coupon.id, use_balance=500, wait=False
    )
    for _ in range(100):  # bounded: the placement runs on the loop meanwhile
        polled = await shop.get_order(accepted.id)
        if polled.status != "pending":
            break
    assert (polled.status, polled.cancel_reason) == ("canceled", "placement_failed")

    placed = await shop.place_order(user, [(tea.id, 1)], coupon_id=coupon.id)

    assert placed.status == "awaiting_payment"


async def test_a_user_with_more_keys_than_memory_holds_is_refused_by_a_check_with_no_order(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every keyed placement of such a user took the saga, which records the order before any
    # check: a missing coupon left a canceled order behind, and replays said less
    monkeypatch.setattr(user_actor, "KEYS_KNOWN", 2)
    monkeypatch.setattr(user_actor, "KEYS_KEPT", 1)
    tea = await shop.create_goods("tea", price=1_000, stock=100)
    user = await customer(shop)
    first = await shop.place_order(user, [(tea.id, 1)], idempotency_key="k-0")
    for n in range(1, 5):
        await shop.place_order(user, [(tea.id, 1)], idempotency_key=f"k-{n}")

    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, [(tea.id, 1)], coupon_id=4242, idempotency_key="k-new")

    assert (refused.value.code, refused.value.order_id) == ("not_found", None)
    assert len((await shop.list_orders(user_id=user)).items) == 5
    again = await shop.place_order(user, [(tea.id, 1)], idempotency_key="k-0")
    assert again.id == first.id
    with pytest.raises(ShopError) as conflict:
        await shop.place_order(user, [(tea.id, 2)], idempotency_key="k-0")
    assert conflict.value.code == "idempotency_conflict"
    placed = await shop.place_order(user, [(tea.id, 1)], idempotency_key="k-5")
    assert placed.status == "awaiting_payment"
    await assert_audit_ok(shop)


@pytest.mark.parametrize("read", ["list", "history"])
async def test_a_list_or_a_history_that_shows_an_order_timed_out_shows_all_it_gave_back(
    shop: Shop, clock: VirtualClock, read: str
) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=1)
    user = await customer(shop, balance=5_000)
    coupon = await shop.create_coupon(user, 200)
    unpaid = await shop.place_order(user, [(tea.id, 1)], coupon_id=coupon.id, use_balance=100)
    await clock.advance(shop.config.order_timeout_s + 1)

    for _ in range(1_000):  # polled as a client would, until the cancel is committed
        if read == "list":
            [listed] = (await shop.list_orders(user_id=user)).items
            shown = listed.status
        else:
            shown = (await shop.order_history(unpaid.id, user_id=user)).items[-1].to_status
        if shown == "canceled":
            break
    assert shown == "canceled"

    [listed_coupon] = (await shop.list_coupons(user)).items
    assert (listed_coupon.state, (await shop.get_goods(tea.id)).stock) == ("unused", 1)
    assert (await shop.get_user(user)).balance == 5_000
