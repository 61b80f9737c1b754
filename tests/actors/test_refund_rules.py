"""The refunder's rules: what each answer of the provider, or each failed call, leads to."""

from __future__ import annotations

import msgspec
from msgspec import UNSET
from msgspec.structs import replace

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_messages import RefundDone, RefundStuck, RefundTaken
from shopkeep.actors.order_state import Payment, Refund
from shopkeep.actors.refund_rules import (
    QUERY,
    RETRY,
    FailedAfterDone,
    Later,
    RefundAttempt,
    RefundQuery,
    Step,
    answered,
    failed,
    failed_after_done,
    first_attempt,
    learned,
    refused,
    retry_delay,
)
from shopkeep.actors.refund_store import RefundStanding
from shopkeep.payments.provider import (
    GatewayRefused,
    RefundClosed,
    RefundFailed,
    RefundMissing,
    RefundProcessing,
)
from shopkeep.payments.provider import RefundDone as ProviderRefundDone
from shopkeep.refusals import Refusal

CONFIG = ShopConfig(refund_retry_s=2.0, refund_retry_max_s=60.0, refund_query_after_s=30.0)
TRY = RefundAttempt(refund_id=5, order_id=9, payment_id=3, amount=1_500, attempt=2)


def test_a_refunds_first_try_is_of_its_payment_or_of_the_second_transaction_named() -> None:
    paid = Payment(3, 4_000, "succeeded", "txn-1", 0.0, "stripe", "USD", None, "pi_1")
    refund = Refund(5, "cancel", 3, 500, 1_500, "refunding", 0.0)

    own = first_attempt(refund, 9, paid, None)
    duplicate = first_attempt(refund, 9, paid, "txn-2")

    assert own == RefundAttempt(5, 9, 3, 1_500, currency="USD", payment_amount=4_000,
                                gateway_txn_id="txn-1", provider_ref="pi_1")
    assert duplicate.gateway_txn_id == "txn-2" and duplicate.provider_ref == "pi_1"


def test_a_refund_the_call_says_done_tells_the_order_and_writes_no_log_row() -> None:
    step = answered(TRY, ProviderRefundDone(), CONFIG)
    assert step.done and step.tell_order == RefundDone(5)
    assert step.log_event is None and step.outcome is None
    assert step.attempts == 2 and step.provider_failed is UNSET


def test_a_refund_a_query_finds_done_is_logged_and_counted() -> None:
    step = learned(TRY, ProviderRefundDone(), CONFIG, queried=True)
    assert (step.log_event, step.detail, step.outcome) == ("refund_queried", "done",
                                                           "refund:refunded")
    assert step.done and step.tell_order == RefundDone(5)


def test_a_refund_still_processing_is_asked_about_again_after_the_configured_pause() -> None:
    step = answered(TRY, RefundProcessing(), CONFIG)
    assert step.later == Later(QUERY, 30.0, RefundQuery(TRY))
    assert step.log_event == "provider_processing"
    assert step.detail == "the provider is processing it: asked again in 30 s"
    assert not step.done and step.tell_order is None


def pauses_while_processing(config: ShopConfig, questions: int) -> list[float]:
    """The pauses before each question about a refund the provider keeps processing: the
    first after the call, then one after each question that found it still processing."""
    step = answered(TRY, RefundProcessing(), config)
    pauses = []
    for _ in range(questions):
        assert step.later is not None and isinstance(step.later.message, RefundQuery)
        pauses.append(step.later.after_s)
        step = learned(step.later.message.attempt, RefundProcessing(), config, queried=True)
    return pauses


def test_a_refund_still_processing_is_asked_about_less_and_less_often() -> None:
    # providers.md: a minute after the refund, then 5, 10, 20, 30 minutes...
    assert pauses_while_processing(ShopConfig(), 7) == [60, 300, 600, 1200, 1800, 1800, 1800]


def test_a_longer_first_pause_is_the_shortest_pause() -> None:
    hourly = ShopConfig(refund_query_after_s=3600.0)
    assert pauses_while_processing(hourly, 4) == [3600, 3600, 3600, 3600]


def test_a_query_stored_before_queries_were_counted_reads_as_the_first() -> None:
    stored = msgspec.msgpack.encode({"type": "RefundQuery", "attempt": {
        "type": "RefundAttempt", "refund_id": 5, "order_id": 9, "payment_id": 3,
        "amount": 1_500}})
    read = msgspec.msgpack.decode(stored, type=RefundQuery)
    assert read.attempt.queries == 0


def test_a_refund_the_provider_never_got_is_sent_again_at_once_as_the_next_try() -> None:
    step = learned(TRY, RefundMissing(), CONFIG, queried=True)
    assert step.again == replace(TRY, attempt=3)
    assert step.outcome == "refund:missing" and step.later is None


def test_a_refund_closed_unpaid_is_sent_again_under_its_next_key_with_a_warning() -> None:
    step = answered(TRY, RefundClosed("CLOSED"), CONFIG)
    assert step.again == replace(TRY, attempt=3, issue=1)
    assert step.again.request().key in step.detail
    assert (step.warning, step.reason) == ("refund_closed_at_provider", "CLOSED")
    assert step.outcome is None  # counted only when a query learned it


def test_a_refund_the_provider_failed_stays_refunding_and_the_order_is_told() -> None:
    step = learned(TRY, RefundFailed("ABNORMAL"), CONFIG, queried=True)
    assert step.provider_failed == "ABNORMAL"
    assert step.tell_order == RefundStuck(5, "ABNORMAL")
    assert step.log_event == "provider_failed" and step.outcome == "refund:failed"
    assert step.again is None and step.later is None and not step.done


def test_a_refused_refund_the_provider_takes_is_no_longer_the_staffs_to_settle() -> None:
    step = answered(replace(TRY, refused=True), RefundProcessing(), CONFIG)
    assert step.provider_failed is None
    assert step.later is not None
    assert step.later.message == RefundQuery(TRY)  # the next query no longer looks first
    # the history said the refusal to the customer: it says the provider took it
    assert step.tell_order == RefundTaken(5)
    assert answered(TRY, RefundProcessing(), CONFIG).tell_order is None  # none was said


def test_a_refused_refund_then_failed_keeps_the_providers_last_words() -> None:
    step = answered(replace(TRY, refused=True), RefundFailed("NO_FUNDS"), CONFIG)
    assert step.provider_failed == "NO_FUNDS"


def test_an_outage_is_tried_again_after_a_doubling_pause_and_never_dropped() -> None:
    step = failed(TRY, TimeoutError("no answer"), CONFIG)
    delay = retry_delay(2, CONFIG)
    assert step.later == Later(RETRY, delay, replace(TRY, attempt=3))
    assert step.detail == f"try 2: TimeoutError: no answer; again in {delay:g} s"
    assert step.log_event == "gateway_failed" and step.failed and step.attempts == 2
    assert step.provider_failed is UNSET and step.outcome is None


def test_a_failed_query_is_asked_again_as_a_query_and_counted() -> None:
    step = failed(TRY, ConnectionError("down"), CONFIG, query=True)
    assert step.later is not None
    assert step.later.message == RefundQuery(replace(TRY, attempt=3))
    assert step.outcome == "refund:error" and step.detail.startswith("query 2:")


def test_a_lost_answer_to_a_refused_refund_takes_it_from_the_staff() -> None:
    """The provider may have taken the try whose answer was lost: settled by hand now, it
    would be paid back twice."""
    step = failed(replace(TRY, refused=True), TimeoutError("lost"), CONFIG)
    assert step.provider_failed is None


def test_the_first_refusal_warns_the_staff_tells_the_order_and_is_tried_again() -> None:
    step = refused(TRY, GatewayRefused("balance too low"), CONFIG)
    assert step.provider_failed == "balance too low"
    assert step.tell_order == RefundStuck(5, "balance too low", retried=True)
    assert step.warning == "refund_refused_by_provider"
    assert step.later is not None
    assert step.later.message == replace(TRY, attempt=3, refused=True)


def test_a_refusal_again_keeps_the_words_without_telling_anyone_twice() -> None:
    step = refused(replace(TRY, refused=True), GatewayRefused("still too low"), CONFIG)
    assert step.provider_failed == "still too low"
    assert step.tell_order is None and step.warning is None
    assert step.later is not None and step.later.timer == RETRY


def test_a_refund_failed_after_it_was_done_keeps_the_providers_words_and_tells_the_order() -> None:
    done = RefundStanding(order_id=9, status="refunded", provider_failed=None)

    step = failed_after_done(FailedAfterDone(5, "expired_or_canceled_card"), done)

    assert isinstance(step, Step)
    assert step.provider_failed == "expired_or_canceled_card"
    assert step.tell_order == RefundStuck(5, "expired_or_canceled_card", after_done=True)
    assert step.warning == "refund_failed_at_provider" and not step.done


def test_a_refund_failure_known_already_or_of_no_refund_changes_nothing() -> None:
    settled = RefundStanding(order_id=9, status="refunded", provider_failed="card closed")
    stuck = RefundStanding(order_id=9, status="refunding", provider_failed="card closed")
    failure = FailedAfterDone(5, "card closed")

    assert failed_after_done(failure, settled) is None  # settled by hand since: not reopened
    assert failed_after_done(failure, stuck) is None
    assert failed_after_done(failure, None) is None


def test_a_refund_failure_before_the_shop_has_the_refunds_outcome_is_not_taken_yet() -> None:
    open_here = RefundStanding(order_id=9, status="refunding", provider_failed=None)

    refused_now = failed_after_done(FailedAfterDone(5, "card closed"), open_here)

    assert isinstance(refused_now, Refusal) and refused_now.code == "unavailable"
