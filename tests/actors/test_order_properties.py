"""Property tests of the order's rules: amounts, and money under any order of callbacks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_rules import (
    CancelPlan,
    can_move,
    cancel_paid,
    cancel_unpaid,
    confirm,
    deadline_reached,
    discounted,
    new_order,
    plan_cancel,
    points_for,
    priced,
)
from shopkeep.actors.order_state import DELIVERED, PAID, SHIPPED, OrderState
from shopkeep.actors.payment_rules import (
    CallbackOutcome,
    decide_callback,
    refund_done,
    start_payment,
)

CONFIG = ShopConfig()

money = st.integers(min_value=0, max_value=1_000_000)


@given(price=money, quantity=st.integers(1, 1_000), coupon=st.none() | st.integers(1, 10**6),
       use_balance=money)
def test_the_amounts_always_add_up(price: int, quantity: int, coupon: int | None,
                                   use_balance: int) -> None:
    state, _ = new_order(1, 2, ((3, quantity),), None, use_balance, 0.0)
    state = discounted(priced(state, {3: price}, CONFIG), coupon)
    assert state.goods_amount == price * quantity
    assert state.order_amount == state.goods_amount + state.shipping_fee
    assert 0 <= state.coupon_discount <= state.order_amount
    assert 0 <= state.wallet_amount <= use_balance
    assert state.pay_amount == state.order_amount - state.coupon_discount - state.wallet_amount
    assert state.pay_amount >= 0
    assert points_for(state.pay_amount, state.wallet_amount, CONFIG) >= 0


Event = tuple[str, int, int]
events = st.lists(
    st.tuples(
        st.sampled_from(["start", "success", "failure", "deadline", "cancel", "refund_done"]),
        st.integers(0, 3),
        st.integers(0, 2),
    ),
    max_size=25,
)


@given(events)
def test_money_collected_is_kept_or_refunded_whatever_the_order_of_events(
    script: list[Event],
) -> None:
    state, _ = new_order(1, 2, ((3, 2),), None, 0, 0.0)
    state, _ = confirm(discounted(priced(state, {3: 2_500}, CONFIG), None), 0.0, CONFIG)
    next_id = iter(range(100, 10_000))
    collected: set[tuple[int, str]] = set()
    now = 0.0
    for kind, which, txn in script:
        now += 100.0
        before = state.status
        payment = state.payments[which % len(state.payments)] if state.payments else None
        match kind:
            case "start":
                started = start_payment(state, next(next_id), now)
                if isinstance(started, tuple):
                    state = started[0]
            case "success" | "failure" if payment is not None:
                txn_id = f"t{txn}" if kind == "success" else None
                status = "succeeded" if kind == "success" else "failed"
                outcome = decide_callback(state, payment.id, status, payment.amount, txn_id, now,
                                          next(next_id), CONFIG)
                assert isinstance(outcome, CallbackOutcome)
                state = outcome.state
                if kind == "success":
                    collected.add((payment.id, f"t{txn}"))
            case "deadline":
                decision = deadline_reached(state, now + CONFIG.order_timeout_s)
                if decision is not None:
                    state = decision[0]
            case "cancel":
                plan = plan_cancel(state)
                if plan is CancelPlan.UNPAID:
                    state = cancel_unpaid(state, "user", now)[0]
                elif plan is CancelPlan.INTERCEPT:
                    state = cancel_paid(state, "user", now, next(next_id))[0]
            case "refund_done" if state.refunds:
                done = refund_done(state, state.refunds[which % len(state.refunds)].id, now)
                if done is not None:
                    state = done[0]
        assert before == state.status or can_move(before, state.status)
        assert_money_adds_up(state, collected)


def assert_money_adds_up(state: OrderState, collected: set[tuple[int, str]]) -> None:
    amounts = {p.id: p.amount for p in state.payments}
    gateway_in = sum(amounts[payment_id] for payment_id, _ in collected)
    kept = state.pay_amount if state.status in (PAID, SHIPPED, DELIVERED) else 0
    refunded = sum(r.gateway_amount for r in state.refunds)
    assert gateway_in == kept + refunded, (state.status, collected, state.refunds)
    assert state.collected == frozenset(collected)
