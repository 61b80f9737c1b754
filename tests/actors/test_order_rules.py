"""The order's pure rules: amounts, transitions, placement, cancels, deadline, returns."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order import order_view
from shopkeep.actors.order_rules import (
    CancelPlan,
    approve_return,
    can_move,
    cancel_paid,
    cancel_unpaid,
    check_totals,
    confirm,
    coupon_discount,
    deadline_reached,
    deliver,
    discounted,
    fail_placement,
    new_order,
    placement_outcome,
    plan_cancel,
    points_for,
    priced,
    request_problems,
    request_return,
    ship,
    shipping_fee,
    validate_request,
    wallet_amount,
)
from shopkeep.actors.order_state import (
    AWAITING_PAYMENT,
    CANCELED,
    DELIVERED,
    PAID,
    PENDING,
    RETURNED,
    SHIPPED,
    STATUSES,
    ArmDeadline,
    Award,
    CancelDeadline,
    Fulfil,
    History,
    Line,
    OrderState,
    Release,
    RequestRefund,
    SaveLines,
    SaveRefund,
    SaveReturn,
    Settled,
)
from shopkeep.refusals import Refusal
from shopkeep.requests import MAX_AMOUNT

CONFIG = ShopConfig()
NOW = 1_000.0


def placed(items: tuple[tuple[int, int], ...] = ((1, 2),), coupon_id: int | None = None,
           use_balance: int = 0) -> OrderState:
    state, _ = new_order(7, 3, items, coupon_id, use_balance, NOW)
    return state


def awaiting(price: int = 2_500, coupon_value: int | None = None, use_balance: int = 0,
             coupon_id: int | None = None) -> OrderState:
    state = priced(placed(coupon_id=coupon_id, use_balance=use_balance), {1: price}, CONFIG)
    state, _ = confirm(discounted(state, coupon_value), NOW, CONFIG)
    return state


def paid(**kwargs: int) -> OrderState:
    state = replace(awaiting(**kwargs), status=PAID, paid_at=NOW, paid_payment_id=55)
    return state


# -- transitions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_status", "to_status"),
    [
        (PENDING, AWAITING_PAYMENT),
        (PENDING, CANCELED),
        (AWAITING_PAYMENT, PAID),
        (AWAITING_PAYMENT, CANCELED),
        (PAID, SHIPPED),
        (PAID, CANCELED),
        (SHIPPED, DELIVERED),
        (DELIVERED, RETURNED),
    ],
)
def test_the_state_machine_allows_the_spec_transitions(from_status: str, to_status: str) -> None:
    assert can_move(from_status, to_status)


def test_the_state_machine_allows_nothing_else() -> None:
    allowed = {
        (PENDING, AWAITING_PAYMENT), (PENDING, CANCELED), (AWAITING_PAYMENT, PAID),
        (AWAITING_PAYMENT, CANCELED), (PAID, SHIPPED), (PAID, CANCELED), (SHIPPED, DELIVERED),
        (DELIVERED, RETURNED),
    }
    for a in STATUSES:
        for b in STATUSES:
            assert can_move(a, b) == ((a, b) in allowed), (a, b)


# -- amounts ----------------------------------------------------------------------------------


def test_shipping_is_free_from_the_threshold_on() -> None:
    assert shipping_fee(9_999, CONFIG) == 1_000
    assert shipping_fee(10_000, CONFIG) == 0
    assert shipping_fee(500, ShopConfig(free_shipping_threshold=400, shipping_fee=77)) == 0
    assert shipping_fee(300, ShopConfig(free_shipping_threshold=400, shipping_fee=77)) == 77


def test_a_coupon_never_takes_off_more_than_the_order_amount() -> None:
    assert coupon_discount(500, 3_000) == 500
    assert coupon_discount(5_000, 3_000) == 3_000
    assert coupon_discount(None, 3_000) == 0


def test_the_wallet_pays_at_most_what_remains() -> None:
    assert wallet_amount(1_000, 3_000) == 1_000
    assert wallet_amount(9_000, 3_000) == 3_000
    assert wallet_amount(0, 3_000) == 0


def test_points_count_whole_currency_units_of_pay_and_wallet_amounts() -> None:
    assert points_for(1_999, 0, CONFIG) == 19
    assert points_for(1_950, 50, CONFIG) == 20
    assert points_for(99, 0, CONFIG) == 0
    assert points_for(1_000, 0, ShopConfig(points_per_unit=3)) == 30
    # a yen has no minor unit, a dinar a thousand
    assert points_for(3_234, 0, ShopConfig(currency="JPY")) == 3_234
    assert points_for(3_234, 0, ShopConfig(currency="KWD")) == 3


def test_an_order_is_priced_from_the_unit_prices_of_its_stock_takes() -> None:
    state = priced(placed(((1, 2), (2, 1))), {1: 2_500, 2: 1_000}, CONFIG)
    assert [line.unit_price for line in state.lines] == [2_500, 1_000]
    assert (state.goods_amount, state.shipping_fee, state.order_amount) == (6_000, 1_000, 7_000)


def test_coupon_then_wallet_then_the_gateway_pay_the_order_amount() -> None:
    state = priced(placed(use_balance=2_000), {1: 2_500}, CONFIG)  # 5000 + 1000 shipping
    state = discounted(state, 500)
    assert (state.coupon_discount, state.wallet_amount, state.pay_amount) == (500, 2_000, 3_500)
    everything = discounted(replace(state, use_balance=1_000_000), 500)
    assert (everything.wallet_amount, everything.pay_amount) == (5_500, 0)


def test_an_expected_total_that_differs_is_price_changed() -> None:
    state = discounted(priced(placed(), {1: 2_500}, CONFIG), None)
    assert check_totals(state, None) is None
    assert check_totals(state, 6_000) is None
    refusal = check_totals(state, 5_000)
    assert isinstance(refusal, Refusal) and refusal.code == "price_changed"
    assert refusal.order_id == 7


def test_the_expected_total_is_what_the_customer_pays_from_the_wallet_and_the_provider(
) -> None:
    state = discounted(priced(placed(use_balance=2_000), {1: 2_500}, CONFIG), None)
    assert (state.wallet_amount, state.pay_amount) == (2_000, 4_000)
    assert check_totals(state, 6_000) is None
    refusal = check_totals(state, 4_000)  # the provider's part alone: ambiguous, refused
    assert isinstance(refusal, Refusal) and refusal.code == "price_changed"
    # a rise of the wallet's amount would have made the new pay amount the old total
    risen = discounted(priced(placed(use_balance=2_000), {1: 3_500}, CONFIG), None)
    assert risen.pay_amount == 6_000 and check_totals(risen, 6_000) is not None


def test_a_price_rise_the_wallet_would_absorb_is_price_changed() -> None:
    # the wallet offered more than the order: the pay amount is 0 whatever the price
    was = discounted(priced(placed(use_balance=100_000), {1: 2_500}, CONFIG), None)
    assert (was.wallet_amount, was.pay_amount) == (6_000, 0)
    assert check_totals(was, 6_000) is None

    now = discounted(priced(placed(use_balance=100_000), {1: 4_000}, CONFIG), None)
    refusal = check_totals(now, 6_000)
    assert isinstance(refusal, Refusal) and refusal.code == "price_changed"
    assert "the total to pay is 9000 (9000 from the wallet, 0 through the provider)" in str(
        check_totals(now, 0)
    )


def test_an_order_amounting_to_more_than_any_amount_the_shop_takes_is_refused() -> None:
    at_most = discounted(priced(placed(), {1: MAX_AMOUNT // 2}, CONFIG), None)
    assert at_most.order_amount == MAX_AMOUNT  # two of them, shipped free
    assert check_totals(at_most, None) is None
    beyond = discounted(priced(placed(), {1: MAX_AMOUNT}, CONFIG), None)
    refusal = check_totals(beyond, beyond.pay_amount)
    assert isinstance(refusal, Refusal) and refusal.code == "validation_error"
    assert str(MAX_AMOUNT) in refusal.detail


# -- placement --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "use_balance", "expected_total", "fragment"),
    [
        ((), 0, None, "at least one"),
        (((1, 0),), 0, None, "quantity"),
        (((1, 1_001),), 0, None, "quantity"),
        (((1, 1), (1, 2)), 0, None, "again"),
        (((1, 1),), -1, None, "use_balance"),
        (((1, 1),), 0, -5, "expected_total"),
        (tuple((g, 1) for g in range(51)), 0, None, "at most 50 items per order"),
        (((1, 1),) * 51, 0, None, "at most 50 items per order (one per goods), not 51"),
    ],
)
def test_a_malformed_request_is_a_validation_error(
    items: tuple[tuple[int, int], ...], use_balance: int, expected_total: int | None,
    fragment: str,
) -> None:
    refusal = validate_request(items, use_balance, expected_total, CONFIG)
    assert isinstance(refusal, Refusal)
    assert refusal.code == "validation_error" and fragment in refusal.detail


def test_one_goods_listed_too_often_is_said_to_be_listed_again_each_time() -> None:
    problems = request_problems(((1, 1),) * 51, 0, None, CONFIG)
    assert problems[0] == ("/items", "at most 50 items per order (one per goods), not 51")
    assert [where for where, _ in problems[1:]] == [f"/items/{n}/goods_id" for n in range(1, 51)]


def test_a_sane_request_passes_validation() -> None:
    assert validate_request(((1, 1), (2, 1_000)), 0, 0, CONFIG) is None


def test_a_new_order_is_pending_and_its_history_says_placed() -> None:
    state, effects = new_order(7, 3, ((1, 2),), None, 0, NOW)
    assert state.status == PENDING and state.created_at == NOW
    assert effects == [History(None, PENDING, "placed")]


def test_a_pending_order_shows_no_prices_as_it_has_no_amounts_yet() -> None:
    # the store's row of a placement under way had its lines priced and its amounts 0: a list
    # showed it so, contradicting itself and the 202 answer
    lines = (Line(1, 2, 2_500),)
    view = order_view(replace(placed(), lines=lines))
    assert [(i.goods_id, i.quantity, i.unit_price) for i in view.items] == [(1, 2, None)]
    confirmed, _ = confirm(discounted(priced(placed(), {1: 2_500}, CONFIG), None), NOW, CONFIG)
    assert [i.unit_price for i in order_view(confirmed).items] == [2_500]


def test_a_confirmed_order_awaits_payment_until_its_deadline() -> None:
    state = discounted(priced(placed(), {1: 2_500}, CONFIG), None)
    state, effects = confirm(state, NOW, CONFIG)
    assert state.status == AWAITING_PAYMENT
    assert state.confirmed_at == NOW and state.expires_at == NOW + 1_800
    assert effects == [
        SaveLines(), History(PENDING, AWAITING_PAYMENT, "confirmed"), ArmDeadline(NOW + 1_800)
    ]


def test_an_order_with_nothing_to_pay_is_paid_at_once() -> None:
    state = discounted(priced(placed(use_balance=10_000), {1: 2_500}, CONFIG), 500)
    state, effects = confirm(state, NOW, CONFIG)
    assert state.status == PAID and state.paid_at == NOW and state.expires_at is None
    assert state.points == 55  # 5500 of wallet amount
    assert [e for e in effects if isinstance(e, History)] == [
        History(PENDING, AWAITING_PAYMENT, "confirmed"),
        History(AWAITING_PAYMENT, PAID, "paid", "nothing left to pay"),
    ]
    assert Settled() in effects and Fulfil() in effects and Award(55) in effects
    assert not any(isinstance(e, ArmDeadline) for e in effects)


def test_a_failed_placement_releases_what_was_asked_and_settles_the_user() -> None:
    state = placed(coupon_id=9)
    state, effects = fail_placement(
        state, "insufficient_stock", "2 left", NOW, coupon_asked=False, wallet_debited=0
    )
    assert state.status == CANCELED and state.cancel_reason == "placement_failed"
    assert state.failure_code == "insufficient_stock" and state.canceled_at == NOW
    assert Release("release", False, 0, revoke_points=False) in effects
    assert Settled() in effects
    assert placement_outcome(state) == Refusal("insufficient_stock", "the placement failed", 7)

    _, with_coupon = fail_placement(
        placed(coupon_id=9), "insufficient_balance", "", NOW, coupon_asked=True,
        wallet_debited=300,
    )
    assert Release("release", True, 300, revoke_points=False) in with_coupon


def test_a_failed_placement_shows_what_it_would_have_cost_with_nothing_applied() -> None:
    asked = discounted(priced(placed(coupon_id=9, use_balance=700), {1: 500}, CONFIG), 200)
    assert (asked.coupon_discount, asked.wallet_amount, asked.pay_amount) == (200, 700, 1_100)
    failed, _ = fail_placement(
        asked, "price_changed", "", NOW, coupon_asked=True, wallet_debited=0
    )
    assert (failed.order_amount, failed.coupon_discount, failed.wallet_amount) == (2_000, 0, 0)
    assert failed.pay_amount == failed.order_amount


# -- cancels and the deadline -----------------------------------------------------------------


def test_which_cancel_applies_depends_on_the_status() -> None:
    assert plan_cancel(awaiting()) is CancelPlan.UNPAID
    assert plan_cancel(paid()) is CancelPlan.INTERCEPT
    assert plan_cancel(replace(awaiting(), status=CANCELED)) is CancelPlan.UNCHANGED
    for status in (PENDING, SHIPPED, DELIVERED, RETURNED):
        refusal = plan_cancel(replace(paid(), status=status))
        assert isinstance(refusal, Refusal) and refusal.code == "invalid_state"


def test_canceling_an_unpaid_order_releases_stock_coupon_and_wallet() -> None:
    state = awaiting(coupon_value=500, use_balance=1_000, coupon_id=9)
    state, effects = cancel_unpaid(state, "user", NOW + 5)
    assert state.status == CANCELED and state.cancel_reason == "user"
    assert state.canceled_at == NOW + 5
    assert effects == [
        History(AWAITING_PAYMENT, CANCELED, "canceled_by_user"),
        CancelDeadline(),
        Release("release", True, 1_000, revoke_points=False),
        Settled(),
    ]


def test_canceling_a_paid_order_records_a_refund_first_and_asks_the_refunder() -> None:
    state = paid(use_balance=1_000)
    state, effects = cancel_paid(state, "admin", NOW + 5, refund_id=99)
    assert state.status == CANCELED and state.cancel_reason == "admin"
    (refund,) = state.refunds
    assert (refund.kind, refund.status, refund.payment_id) == ("cancel", "refunding", 55)
    assert (refund.wallet_amount, refund.gateway_amount) == (1_000, 5_000)
    assert Release("release", False, 1_000, revoke_points=True) in effects
    assert SaveRefund(refund, "created") in effects and RequestRefund(refund) in effects
    assert Settled() not in effects  # it was settled when it was paid


def test_a_refund_with_nothing_for_the_gateway_is_refunded_at_once() -> None:
    state = replace(paid(use_balance=100_000), pay_amount=0)
    state, effects = cancel_paid(state, "user", NOW, refund_id=99)
    assert state.refunds[0].status == "refunded"
    assert not any(isinstance(e, RequestRefund) for e in effects)


def test_a_refunds_history_says_where_each_part_of_its_money_went() -> None:
    state, _ = cancel_paid(paid(use_balance=1_000), "user", NOW, refund_id=99)
    assert state.refunds[0].told("CNY") == (
        "refund 99 (cancel): 10.00 CNY to the wallet, 50.00 CNY through the provider"
    )
    state, effects = cancel_paid(replace(paid(use_balance=100_000), pay_amount=0), "user", NOW,
                                 refund_id=98)
    told = "refund 98 (cancel): 60.00 CNY to the wallet"
    assert History(CANCELED, CANCELED, "refunded", told) in effects
    unpaid_wallet, _ = cancel_paid(paid(), "user", NOW, refund_id=97)
    told = unpaid_wallet.refunds[0].told("JPY")
    assert told == "refund 97 (cancel): 6000 JPY through the provider"  # a yen has no fraction
    assert unpaid_wallet.refunds[0].told("CNY", "paid back outside the provider") == (
        "refund 97 (cancel): 60.00 CNY paid back outside the provider"
    )  # settled by hand: not through the provider too
    nothing, _ = cancel_paid(replace(paid(), pay_amount=0), "user", NOW, refund_id=96)
    assert nothing.refunds[0].told("CNY") == "refund 96 (cancel): nothing to pay back"  # a coupon's


def test_the_deadline_cancels_only_an_unpaid_order_that_is_due() -> None:
    state = awaiting()
    assert deadline_reached(state, NOW + 1_799) is None
    decision = deadline_reached(state, NOW + 1_800)
    assert decision is not None
    canceled, effects = decision
    assert canceled.cancel_reason == "timeout"
    assert History(AWAITING_PAYMENT, CANCELED, "canceled_by_timeout") in effects
    assert deadline_reached(paid(), NOW + 9_999) is None
    assert deadline_reached(canceled, NOW + 9_999) is None


# -- fulfilment and returns -------------------------------------------------------------------


def test_ship_and_deliver_follow_the_state_machine() -> None:
    decision = ship(paid(), NOW)
    assert isinstance(decision, tuple)
    shipped, effects = decision
    assert shipped.status == SHIPPED and effects == [History(PAID, SHIPPED, "shipped")]
    assert ship(shipped, NOW) is None
    assert isinstance(ship(awaiting(), NOW), Refusal)
    delivered = deliver(shipped, NOW)
    assert isinstance(delivered, tuple) and delivered[0].status == DELIVERED
    assert isinstance(deliver(paid(), NOW), Refusal)


def test_a_return_is_for_delivered_orders_and_approval_refunds_and_restocks() -> None:
    assert isinstance(request_return(paid(), 1, "", NOW), Refusal)
    delivered = replace(paid(use_balance=1_000, coupon_id=9, coupon_value=300), status=DELIVERED)
    asked = request_return(delivered, 40, "broken", NOW)
    assert isinstance(asked, tuple)
    state, effects, request = asked
    assert request.status == "requested" and SaveReturn(request) in effects
    again = request_return(state, 41, "again", NOW)
    assert isinstance(again, tuple) and again[2] == request and again[1] == []

    approved = approve_return(state, 40, NOW + 1, refund_id=99)
    assert isinstance(approved, tuple)
    state, effects, request = approved
    assert state.status == RETURNED and request.status == "approved"
    assert Release("return", True, 1_000, revoke_points=True) in effects
    (refund,) = state.refunds
    assert (refund.kind, refund.gateway_amount, refund.wallet_amount) == ("return", 5_700 - 1_000,
                                                                          1_000)
    twice = approve_return(state, 40, NOW + 2, refund_id=100)
    assert isinstance(twice, tuple) and twice[1] == [] and len(twice[0].refunds) == 1
    unknown = approve_return(state, 12345, NOW, refund_id=101)
    assert isinstance(unknown, Refusal) and unknown.code == "not_found"
