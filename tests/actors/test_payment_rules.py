"""Payments: starting one, the callback decision table, refunds done, signatures, back-off."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.fulfilment import (
    INTERCEPTED,
    SHIPPED,
    Dispatch,
    GetShipment,
    Intercept,
    decide,
)
from shopkeep.actors.order_rules import confirm, discounted, new_order, priced
from shopkeep.actors.order_state import (
    AWAITING_PAYMENT,
    CANCELED,
    CREATED,
    DELIVERED,
    PAID,
    PENDING,
    REFUNDED,
    REFUNDING,
    RETURNED,
    ArmDeadline,
    AskProvider,
    Award,
    CancelDeadline,
    Fulfil,
    History,
    LogPayment,
    OrderState,
    RequestRefund,
    Settled,
)
from shopkeep.actors.order_state import (
    SHIPPED as ORDER_SHIPPED,
)
from shopkeep.actors.payment_rules import (
    UNANSWERED,
    CallbackAction,
    CallbackOutcome,
    ask_at_deadline,
    cancel_before_payment,
    check_callback,
    classify_callback,
    closed_once_paid,
    decide_callback,
    keep_checkout,
    payments_to_ask,
    refund_done,
    refund_stuck,
    refund_taken,
    refund_undone,
    start_payment,
)
from shopkeep.actors.refund_rules import retry_delay
from shopkeep.payments import signature
from shopkeep.payments.names import FAILED, SUCCEEDED
from shopkeep.refusals import Refusal

CONFIG = ShopConfig()
NOW = 1_000.0
A = CallbackAction


def awaiting() -> OrderState:
    state, _ = new_order(7, 3, ((1, 2),), None, 0, NOW)
    state, _ = confirm(discounted(priced(state, {1: 2_500}, CONFIG), None), NOW, CONFIG)
    return state  # pay amount 6000


def with_payment(state: OrderState, payment_id: int = 50) -> OrderState:
    started = start_payment(state, payment_id, NOW)
    assert isinstance(started, tuple)
    return started[0]


def callback(state: OrderState, status: str = "succeeded", txn: str | None = "t1",
             payment_id: int = 50, amount: int = 6_000, refund_id: int = 90) -> CallbackOutcome:
    outcome = decide_callback(state, payment_id, status, amount, txn, NOW + 10, refund_id, CONFIG)
    assert isinstance(outcome, CallbackOutcome), outcome
    return outcome


# -- starting ---------------------------------------------------------------------------------


def test_starting_a_payment_creates_one_for_the_pay_amount_and_then_answers_it_again() -> None:
    started = start_payment(awaiting(), 50, NOW)
    assert isinstance(started, tuple)
    state, _effects, payment, created = started
    assert created and (payment.id, payment.amount, payment.status) == (50, 6_000, CREATED)
    again = start_payment(state, 51, NOW)
    assert isinstance(again, tuple)
    assert again[2] == payment and again[3] is False and again[1] == []


def test_after_a_failed_payment_a_new_one_is_started() -> None:
    state = callback(with_payment(awaiting()), status="failed", txn=None).state
    started = start_payment(state, 51, NOW)
    assert isinstance(started, tuple) and started[2].id == 51 and started[3]


def test_no_payment_starts_once_the_deadline_has_passed_though_its_cancel_has_not_come() -> None:
    # after a restart the deadlines long due come at a bounded rate: an order past its own was
    # handed a payment, and paid seconds after its deadline
    state = with_payment(awaiting())
    assert state.expires_at is not None

    for started in (start_payment(state, 51, state.expires_at),
                    start_payment(state, 51, state.expires_at + 6)):  # fmt: skip
        assert isinstance(started, Refusal) and started.code == "invalid_state"
        assert "payment deadline has passed" in started.detail
    assert isinstance(start_payment(state, 51, state.expires_at - 0.001), tuple)


def test_only_an_order_awaiting_payment_can_start_one() -> None:
    state = replace(awaiting(), status=PAID)
    refusal = start_payment(state, 50, NOW)
    assert isinstance(refusal, Refusal) and refusal.code == "invalid_state"


def test_the_payments_asked_about_are_those_the_provider_may_still_collect_on() -> None:
    none_started = awaiting()
    failed_twice = callback(
        with_payment(callback(with_payment(none_started), "failed", None).state, 51),
        "failed", None, payment_id=51,
    ).state
    open_after = with_payment(failed_twice, 52)

    assert payments_to_ask(none_started, "sandbox") == []
    # a declined card: Stripe takes another on the same page
    assert [p.id for p in payments_to_ask(failed_twice, "sandbox")] == [50, 51]
    assert [p.id for p in payments_to_ask(open_after, "sandbox")] == [50, 51, 52]
    paid = callback(open_after, payment_id=52).state
    assert [p.id for p in payments_to_ask(paid, "sandbox")] == [50, 51]  # not 52, paid


def test_another_gateways_payments_are_not_asked_of_this_one() -> None:
    # a sandbox database opened on Stripe asked Stripe about the sandbox's open payments at
    # their deadline, and wrote "open" in the order's history
    sandbox_open = with_payment(awaiting())
    assert [p.id for p in payments_to_ask(sandbox_open, "sandbox")] == [50]
    assert payments_to_ask(sandbox_open, "stripe") == []


def test_at_the_deadline_every_payment_still_payable_is_asked_about_the_deadline_armed_again(
) -> None:
    state = with_payment(callback(with_payment(awaiting()), "failed", None).state, 51)
    due = state.expires_at
    assert due is not None

    asking = ask_at_deadline(state, due, "sandbox", answer_by=due + 30.0)

    assert asking == [AskProvider(50, due + 30.0), AskProvider(51, due + 30.0),
                      ArmDeadline(due + 30.0, UNANSWERED)]
    assert ask_at_deadline(state, due - 1, "sandbox", due + 29) is None  # not due yet
    assert ask_at_deadline(awaiting(), due, "sandbox", due + 30) is None  # nothing to ask
    assert ask_at_deadline(callback(state, payment_id=51).state, due, "sandbox", due + 30) is None
    assert ask_at_deadline(state, due + 30, "sandbox", due + 30) is None  # the wait is over


def test_a_cancel_before_payment_closes_the_payments_the_provider_may_still_collect_on() -> None:
    state = with_payment(awaiting())

    canceled, effects = cancel_before_payment(state, "user", NOW + 5, "sandbox")

    assert canceled.status == CANCELED and effects[-1] == AskProvider(50)
    assert cancel_before_payment(state, "user", NOW + 5, "stripe")[1][-1] != AskProvider(50)


def test_paid_by_one_payment_the_others_still_payable_are_closed_at_the_provider() -> None:
    state = with_payment(callback(with_payment(awaiting()), "failed", None).state, 51)

    paid = callback(state, payment_id=51).state

    assert closed_once_paid(state, paid, "sandbox") == [AskProvider(50)]  # the declined one
    assert closed_once_paid(paid, paid, "sandbox") == []  # paid before: closed then


def test_a_checkout_made_for_an_order_that_ended_meanwhile_is_closed_not_handed_out() -> None:
    state = with_payment(awaiting())
    handed = keep_checkout(state, 50, '{"gateway_url": "u"}', None)
    assert not isinstance(handed, Refusal) and handed[2] == (handed[0].payment(50), True)

    ended = replace(state, status=CANCELED)
    kept = keep_checkout(ended, 50, '{"gateway_url": "u"}', None)

    assert not isinstance(kept, Refusal)
    _, effects, refusal = kept
    assert isinstance(refusal, Refusal) and refusal.code == "invalid_state"
    assert effects[-1] == AskProvider(50)
    missing = keep_checkout(state, 99, "{}", None)
    assert isinstance(missing, Refusal) and missing.code == "not_found"


# -- the decision table -----------------------------------------------------------------------


def test_a_callback_in_another_currency_is_refused_saying_it_cut_and_quoted() -> None:
    state = with_payment(awaiting())

    refused = check_callback(state, 50, 6_000, "CN\nY" + "Q" * 60_000)

    assert isinstance(refused, Refusal)
    said = "CN\nY" + "Q" * 36  # forty characters, its line break written as \n
    assert refused.detail == f"payment 50 is in CNY, the callback says {said!r}"


@pytest.mark.parametrize(
    ("order", "payment", "succeeded", "counted", "paid", "action"),
    [
        (AWAITING_PAYMENT, CREATED, False, False, False, A.FAILED),
        (AWAITING_PAYMENT, FAILED, False, False, False, A.DUPLICATE),
        (PAID, SUCCEEDED, False, True, True, A.IGNORED),
        (CANCELED, REFUNDED, False, True, True, A.IGNORED),
        (PAID, SUCCEEDED, True, True, True, A.DUPLICATE),
        (CANCELED, REFUNDED, True, True, True, A.DUPLICATE),
        (PAID, SUCCEEDED, True, False, True, A.DUPLICATE_PAYMENT_REFUND),
        (CANCELED, REFUNDED, True, False, True, A.DUPLICATE_PAYMENT_REFUND),
        (AWAITING_PAYMENT, CREATED, True, False, False, A.APPLIED),
        (AWAITING_PAYMENT, FAILED, True, False, False, A.APPLIED),
        (CANCELED, CREATED, True, False, False, A.LATE_PAYMENT_REFUND),
        (PENDING, CREATED, True, False, False, A.LATE_PAYMENT_REFUND),
        # a second transaction of a payment refunded as late: late too, the order never paid
        (CANCELED, REFUNDED, True, False, False, A.LATE_PAYMENT_REFUND),
        (CANCELED, SUCCEEDED, True, False, False, A.LATE_PAYMENT_REFUND),
        (CANCELED, CREATED, True, False, True, A.DUPLICATE_PAYMENT_REFUND),
        (PAID, CREATED, True, False, True, A.DUPLICATE_PAYMENT_REFUND),
        (ORDER_SHIPPED, CREATED, True, False, True, A.DUPLICATE_PAYMENT_REFUND),
        (DELIVERED, CREATED, True, False, True, A.DUPLICATE_PAYMENT_REFUND),
        (RETURNED, CREATED, True, False, True, A.DUPLICATE_PAYMENT_REFUND),
    ],
)
def test_the_callback_decision_table(
    order: str, payment: str, succeeded: bool, counted: bool, paid: bool, action: CallbackAction
) -> None:
    assert classify_callback(order, payment, succeeded, counted, paid) is action


def test_a_success_pays_the_order_awards_points_and_hands_it_to_fulfilment() -> None:
    outcome = callback(with_payment(awaiting()))
    state = outcome.state
    assert outcome.action is A.APPLIED
    assert state.status == PAID and state.paid_at == NOW + 10 and state.paid_payment_id == 50
    assert state.payment(50) is not None and state.payment(50).status == SUCCEEDED  # type: ignore[union-attr]
    assert (50, "t1") in state.collected
    for effect in (CancelDeadline(), Settled(), Fulfil(), Award(60)):
        assert effect in outcome.effects
    assert outcome.effects[-1] == LogPayment(50, "succeeded", 6_000, "t1", "applied", False)


def test_a_duplicate_of_an_applied_success_changes_nothing() -> None:
    state = callback(with_payment(awaiting())).state
    outcome = callback(state)
    assert outcome.action is A.DUPLICATE and outcome.state == state
    assert outcome.effects == [LogPayment(50, "succeeded", 6_000, "t1", "duplicate", True)]


def test_a_success_for_a_canceled_order_is_refunded_as_a_late_payment() -> None:
    state = replace(with_payment(awaiting()), status=CANCELED, cancel_reason="timeout")
    outcome = callback(state)
    assert outcome.action is A.LATE_PAYMENT_REFUND and outcome.state.status == CANCELED
    (refund,) = outcome.state.refunds
    assert (refund.kind, refund.payment_id, refund.gateway_amount) == ("late_payment", 50, 6_000)
    assert RequestRefund(refund, "t1") in outcome.effects
    assert callback(outcome.state).action is A.DUPLICATE  # and its repeat is a no-op


def test_a_second_payment_record_for_a_paid_order_is_refunded() -> None:
    state = with_payment(awaiting())
    state = replace(state, payments=(*state.payments, replace(state.payments[0], id=51)))
    state = callback(state).state
    outcome = callback(state, payment_id=51, txn="t2")
    assert outcome.action is A.DUPLICATE_PAYMENT_REFUND and outcome.state.status == PAID
    assert outcome.state.refunds[0].kind == "duplicate_payment"
    assert outcome.state.payment(51).status == SUCCEEDED  # type: ignore[union-attr]


def test_the_same_payment_with_another_transaction_is_refunded() -> None:
    state = callback(with_payment(awaiting())).state
    outcome = callback(state, txn="t2")
    assert outcome.action is A.DUPLICATE_PAYMENT_REFUND
    (refund,) = outcome.state.refunds
    assert refund.payment_id == 50 and refund.gateway_amount == 6_000
    assert RequestRefund(refund, "t2") in outcome.effects  # the second one, not t1 that pays
    assert callback(outcome.state, txn="t2").action is A.DUPLICATE
    # refunded: the payment that pays the order stays succeeded
    done = refund_done(outcome.state, refund.id, NOW + 20)
    assert done is not None
    assert done[0].refunds[0].status == REFUNDED
    assert done[0].payment(50).status == SUCCEEDED  # type: ignore[union-attr]


def test_a_failure_leaves_the_order_awaiting_payment() -> None:
    outcome = callback(with_payment(awaiting()), status="failed", txn=None)
    assert outcome.action is A.FAILED and outcome.state.status == AWAITING_PAYMENT
    assert outcome.state.payment(50).status == FAILED  # type: ignore[union-attr]
    assert callback(outcome.state, status="failed", txn=None).action is A.DUPLICATE


def test_a_callback_for_an_unknown_payment_or_another_amount_is_refused() -> None:
    state = with_payment(awaiting())
    unknown = decide_callback(state, 999, "succeeded", 6_000, "t", NOW, 90, CONFIG)
    assert isinstance(unknown, Refusal) and unknown.code == "not_found"
    wrong = decide_callback(state, 50, "succeeded", 5_999, "t", NOW, 90, CONFIG)
    assert isinstance(wrong, Refusal) and wrong.code == "validation_error"


def test_a_late_payments_history_tells_its_amount_in_units_of_the_currency() -> None:
    # "payment 50 (t1): 6000" read as six thousand yuan in the console
    late = callback(replace(with_payment(awaiting()), status=CANCELED))

    told = [e.remark for e in late.effects if isinstance(e, History)]

    assert told == ["payment 50 (t1): 60.00 CNY"]


def test_a_late_payment_refunded_marks_its_payment_refunded_once() -> None:
    state = replace(with_payment(awaiting()), status=CANCELED)
    state = callback(state).state
    done = refund_done(state, 90, NOW + 30)
    assert done is not None
    state, _ = done
    assert state.refunds[0].status == REFUNDED and state.refunds[0].refunded_at == NOW + 30
    assert state.payment(50).status == REFUNDED  # type: ignore[union-attr]
    assert refund_done(state, 90, NOW + 40) is None
    assert refund_done(state, 12345, NOW + 40) is None


def test_a_refund_failed_after_it_was_done_is_refunding_again_and_its_payment_succeeded() -> None:
    state = callback(replace(with_payment(awaiting()), status=CANCELED)).state
    done = refund_done(state, 90, NOW + 30)
    assert done is not None

    state, effects = refund_undone(done[0], 90)

    assert (state.refunds[0].status, state.refunds[0].refunded_at) == (REFUNDING, None)
    assert state.payment(50).status == SUCCEEDED  # type: ignore[union-attr]
    [told] = [e for e in effects if isinstance(e, History)]
    assert told.operation == "refund_failed" and "after it said it was done" in told.remark
    assert refund_done(state, 90, NOW + 40) is not None  # it may be done (settled) again


def test_a_refused_refund_the_provider_took_is_said_taken_until_it_is_done() -> None:
    state = callback(replace(with_payment(awaiting()), status=CANCELED)).state

    _, said = refund_taken(state, 90)
    done = refund_done(state, 90, NOW + 30)
    assert done is not None

    [told] = [e for e in said if isinstance(e, History)]
    assert told.operation == "refund_taken" and "took it after all" in told.remark
    assert refund_taken(done[0], 90) == (done[0], [])  # done already: its own entry says more
    assert refund_taken(state, 12345) == (state, [])


def test_a_refund_failed_before_its_done_was_applied_is_said_as_any_failure() -> None:
    state = callback(replace(with_payment(awaiting()), status=CANCELED)).state

    assert refund_undone(state, 90) == refund_stuck(state, 90, retried=False)
    assert refund_undone(state, 12345) == (state, [])


def test_a_second_transactions_refund_failed_after_it_was_done_leaves_the_paying_one_be() -> None:
    state = callback(callback(with_payment(awaiting())).state, txn="t2").state
    (refund,) = state.refunds
    done = refund_done(state, refund.id, NOW + 20)
    assert done is not None

    state, _ = refund_undone(done[0], refund.id)

    assert state.refunds[0].status == REFUNDING
    assert state.payment(50).status == SUCCEEDED  # type: ignore[union-attr]


# -- signatures, back-off, the warehouse ------------------------------------------------------


def test_a_signature_verifies_and_any_change_breaks_it() -> None:
    body = b'{"payment_id":"1"}'
    header = signature.sign("s3cret", 1_000, body)
    assert header.startswith("t=1000,v1=") and len(header) == len("t=1000,v1=") + 64
    assert signature.verify("s3cret", header, body, 1_100, 300) == (True, "ok")
    assert signature.verify("other", header, body, 1_100, 300) == (False, "mismatch")
    assert signature.verify("s3cret", header, body + b" ", 1_100, 300) == (False, "mismatch")
    assert signature.verify("s3cret", header, body, 1_301, 300) == (False, "stale")
    assert signature.verify("s3cret", header, body, 699, 300) == (False, "stale")
    assert signature.verify("s3cret", None, body, 1_000, 300) == (False, "missing")
    forged = header.replace("t=1000", "t=1001")
    assert signature.verify("s3cret", forged, body, 1_000, 300) == (False, "mismatch")


@pytest.mark.parametrize(
    "header",
    ["t=1000", "v1=ab", "t=1000,v1=XYZ", "t=abc,v1=" + "0" * 64, "v1=" + "0" * 64 + ",t=1000",
     "t=1000,v1=" + "0" * 64 + ",v0=1", "t=-5,v1=" + "0" * 64, "t=1000,v1=" + "A" * 64],
)
def test_a_malformed_signature_header_is_refused(header: str) -> None:
    assert signature.verify("s", header, b"{}", 1_000, 300) == (False, "malformed")


def test_refund_retries_back_off_doubling_up_to_the_cap() -> None:
    config = ShopConfig(refund_retry_s=1.0, refund_retry_max_s=5.0)
    assert [retry_delay(n, config) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_the_warehouse_intercepts_until_it_ships_and_ships_until_intercepted() -> None:
    assert decide("awaiting", Intercept()) == INTERCEPTED
    assert decide(INTERCEPTED, Intercept()) == INTERCEPTED
    assert isinstance(decide(INTERCEPTED, Dispatch()), Refusal)
    assert decide("awaiting", Dispatch()) == SHIPPED
    assert decide(SHIPPED, Dispatch()) == SHIPPED
    assert isinstance(decide(SHIPPED, Intercept()), Refusal)
    assert decide(SHIPPED, GetShipment()) == SHIPPED
