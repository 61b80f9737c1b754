"""The order's payment rules (SPEC 3): starting a payment, the callback decision table, and a
refund's completion. Pure functions, no IO.

The callback decision table (``classify_callback``), for a callback already verified (signature,
timestamp) whose payment belongs to the order and whose amount matches:

================================================  ============================  ==============
callback / what the order knows                   action                        effect
================================================  ============================  ==============
failed, payment created                           ``failed``                    payment failed
failed, payment failed already                    ``duplicate``                 none
failed, payment succeeded or refunded             ``ignored`` (stale)           none
succeeded, this (payment, txn) already counted    ``duplicate``                 none
succeeded, order canceled (or pending), never     ``late_payment_refund``       refund it
paid
succeeded, payment succeeded with another txn     ``duplicate_payment_refund``  refund it
succeeded, order awaiting_payment                 ``applied``                   order paid
succeeded, order paid, shipped, delivered, ...    ``duplicate_payment_refund``  refund it
(or canceled once paid)
================================================  ============================  ==============

A payment is late for an order that was never paid, however many of its transactions come
(a second one, after the first was refunded as late, is late too: SPEC 3.4's duplicate is a
second payment "for an already-paid order").

Every row is acknowledged (the gateway stops retrying) and logged in payment_log.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec
from msgspec.structs import replace

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_rules import cancel_unpaid, invalid_state, mark_paid, open_refund
from shopkeep.actors.order_state import (
    AWAITING_PAYMENT,
    CANCEL_REFUND,
    CANCELED,
    CREATED,
    DUPLICATE_PAYMENT,
    LATE_PAYMENT,
    PAID,
    PENDING,
    REFUNDED,
    REFUNDING,
    RETURN_REFUND,
    ArmDeadline,
    AskProvider,
    Decision,
    Effect,
    History,
    LogPayment,
    OrderState,
    Payment,
    Refund,
    SavePayment,
    SaveRefund,
)
from shopkeep.payments.money import with_currency
from shopkeep.payments.names import DEFAULT_CURRENCY, FAILED, SUCCEEDED
from shopkeep.refusals import INVALID_STATE, NOT_FOUND, VALIDATION_ERROR, Refusal


class CallbackAction(StrEnum):
    """What a verified callback led to (the payment_log's ``action``)."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    LATE_PAYMENT_REFUND = "late_payment_refund"
    DUPLICATE_PAYMENT_REFUND = "duplicate_payment_refund"
    FAILED = "failed"
    IGNORED = "ignored"


# -- starting a payment -----------------------------------------------------------------------


def start_payment(
    state: OrderState, payment_id: int, now: float, gateway: str = "sandbox",
    currency: str = DEFAULT_CURRENCY,
) -> tuple[OrderState, list[Effect], Payment, bool] | Refusal:
    """A payment of the pay amount for an order awaiting payment, through ``gateway`` in
    ``currency``; the open one if there is one (of the same gateway: one started before the
    shop changed providers cannot be paid any more, so a new one is made). Returns the
    state, effects, the payment and whether it is new."""
    if state.status != AWAITING_PAYMENT:
        return invalid_state(state, "start a payment")
    if state.expires_at is not None and now >= state.expires_at:
        # its deadline passed and its cancel is on the way (after a restart, deadlines long
        # due are let out at a bounded rate): a payment started or handed out now would be
        # collected after the deadline, of an order about to be canceled
        return Refusal(
            INVALID_STATE, f"order {state.id}'s payment deadline has passed: it cannot be paid",
            state.id,
        )
    for payment in state.payments:
        if payment.status == CREATED and payment.gateway == gateway:
            return state, [], payment, False
    payment = Payment(payment_id, state.pay_amount, CREATED, None, now, gateway, currency)
    state = replace(state, payments=(*state.payments, payment))
    return state, [SavePayment(payment)], payment, True


STILL_PAYABLE = (CREATED, FAILED)
"""The payment states a provider may still collect on: open, and failed (a Stripe
PaymentIntent whose card was declined takes another card, on the same checkout page)."""


def collected_since(state: OrderState, payment_id: int) -> bool:
    """Whether payment ``payment_id`` is one the order knows collected (succeeded, or
    refunded since): a provider's answer about it that says otherwise was given before."""
    return any(
        payment.id == payment_id and payment.status not in STILL_PAYABLE
        for payment in state.payments
    )


def knows_outcome(state: OrderState, payment_id: int, status: str, txn_id: str | None) -> bool:
    """Whether ``state`` has applied what a callback of ``payment_id`` says: a success of
    ``txn_id`` it accounted for (paid by it, or refunded as late or duplicate), or a failure of
    a payment it holds as failed or collected since."""
    if status == SUCCEEDED:
        return (payment_id, txn_id) in state.collected
    return any(p.id == payment_id and p.status != CREATED for p in state.payments)


def payments_to_ask(state: OrderState, gateway: str) -> list[Payment]:
    """The order's payments the provider ``gateway`` may still collect on (open, or failed yet
    payable: ``STILL_PAYABLE``), oldest first: closed there and asked about (SPEC 10) at the
    deadline, which waits for every answer, or at a cancel before payment, which waits for
    none. Another gateway's are not its to answer (the sandbox's, open when a database of it
    was opened on a real provider: they died with the sandbox's books; ``shopkeep.opening``
    lets no other kind be)."""
    return [
        payment
        for payment in state.payments
        if payment.status in STILL_PAYABLE and payment.gateway == gateway
    ]


UNANSWERED = "the provider did not answer"
"""What the history says of the deadline's questions when their answers never came."""


def close_at_provider(state: OrderState, gateway: str) -> list[Effect]:
    """Every payment of the order the provider ``gateway`` may still collect on, closed there
    (asked first: :class:`AskProvider`), once the order takes them no more: a customer still
    on its checkout page cannot pay it again (only to be refunded, the provider's fees lost),
    and one collected meanwhile is found by the question and refunded as a late or duplicate
    payment. The order waits for none of the answers."""
    return [AskProvider(payment.id) for payment in payments_to_ask(state, gateway)]


def cancel_before_payment(state: OrderState, by: str, now: float, gateway: str) -> Decision:
    """Confirmed, unpaid, canceled ``by`` the user or the admin: stock, coupon and wallet amount
    go back (``order_rules.cancel_unpaid``), and its payments closed at the provider."""
    canceled, effects = cancel_unpaid(state, by, now)
    return canceled, [*effects, *close_at_provider(state, gateway)]


def closed_once_paid(before: OrderState, after: OrderState, gateway: str) -> list[Effect]:
    """A callback that paid the order awaiting payment: its other payments still payable
    closed at the provider (a declined Stripe intent would take another card, and be refunded
    as a duplicate payment, its fees lost)."""
    if before.status == AWAITING_PAYMENT and after.status == PAID:
        return close_at_provider(after, gateway)
    return []


def ask_at_deadline(
    state: OrderState, now: float, gateway: str, answer_by: float
) -> list[Effect] | None:
    """At the deadline, every payment the provider may still collect on (``STILL_PAYABLE``) is
    closed there and asked about before the order times out (SPEC 10: a notification that
    never came loses nothing, whichever payment it was of), and the deadline armed again at
    ``answer_by``, in case some answer never comes. None: nothing to ask (the order awaits
    no payment, is not due yet, has no payment the provider may collect on, or the wait for
    the answers is over): it times out now, if it still awaits payment."""
    if state.status != AWAITING_PAYMENT or state.expires_at is None or state.expires_at > now:
        return None
    asked = payments_to_ask(state, gateway)
    if not asked or answer_by <= now:
        return None
    return [*(AskProvider(payment.id, answer_by) for payment in asked),
            ArmDeadline(answer_by, UNANSWERED)]


def keep_checkout(
    state: OrderState, payment_id: int, checkout: str, provider_ref: str | None
) -> tuple[OrderState, list[Effect], tuple[Payment, bool] | Refusal] | Refusal:
    """Keep what the provider answered for ``payment_id`` (a JSON Checkout); what was kept
    first stays (the provider answers the same payment the same), and a field it lacks is
    added (the QR code of a payment first started as a page). Returns the state, effects, and
    the payment with whether this is its first checkout, or, when the order ended while the
    provider was asked (canceled, or a retry of a start answered 503 came after the cancel),
    the refusal to hand it out, the payment closed at the provider (not handed to a customer
    who would pay a canceled order); a Refusal alone: no such payment."""
    payment = state.payment(payment_id)
    if payment is None:
        return Refusal(NOT_FOUND, f"order {state.id} has no payment {payment_id}")
    first = changed = payment.checkout is None
    effects: list[Effect] = []
    if payment.checkout is not None:
        kept = msgspec.json.decode(payment.checkout)
        merged = {**msgspec.json.decode(checkout), **kept}
        changed = merged != kept
        checkout, provider_ref = msgspec.json.encode(merged).decode(), payment.provider_ref
    if changed:
        payment = replace(payment, checkout=checkout, provider_ref=provider_ref)
        state, effects = _with_payment(state, payment)
    if state.status != AWAITING_PAYMENT and payment.status in STILL_PAYABLE:
        refusal = Refusal(INVALID_STATE, f"order {state.id} is {state.status}: its payment is "
                                         "not handed out, and the provider is asked to close it")
        return state, [*effects, AskProvider(payment.id)], refusal
    # the customer is given the payment with its first checkout: its creation, to them (a
    # start the provider failed was answered 503, nothing made)
    return state, effects, (payment, first)


# -- callbacks --------------------------------------------------------------------------------


def classify_callback(
    order_status: str,
    payment_status: str,
    succeeded: bool,
    already_counted: bool,
    ever_paid: bool,
) -> CallbackAction:
    """The decision table of the module docstring (``ever_paid``: a payment paid the order)."""
    if not succeeded:
        if payment_status == CREATED:
            return CallbackAction.FAILED
        if payment_status == FAILED:
            return CallbackAction.DUPLICATE
        return CallbackAction.IGNORED
    if already_counted:
        return CallbackAction.DUPLICATE
    if order_status in (CANCELED, PENDING) and not ever_paid:
        return CallbackAction.LATE_PAYMENT_REFUND
    if payment_status in (SUCCEEDED, REFUNDED):
        return CallbackAction.DUPLICATE_PAYMENT_REFUND
    if order_status == AWAITING_PAYMENT:
        return CallbackAction.APPLIED
    return CallbackAction.DUPLICATE_PAYMENT_REFUND


class CallbackOutcome:
    """The result of a verified callback: new state, effects, and what was done."""

    __slots__ = ("action", "effects", "state")

    def __init__(self, state: OrderState, effects: list[Effect], action: CallbackAction):
        self.state = state
        self.effects = effects
        self.action = action


WRONG_CURRENCY = "wrong_currency"
"""The code of a refusal for a callback in another currency than the payment's."""


def check_callback(
    state: OrderState, payment_id: int, amount: int, currency: str | None = None
) -> Payment | Refusal:
    """The payment must be this order's, and the amount (and the currency, when the
    provider names one) must be the payment's."""
    payment = state.payment(payment_id)
    if payment is None:
        return Refusal(NOT_FOUND, f"order {state.id} has no payment {payment_id}", state.id)
    if amount != payment.amount:
        return Refusal(
            VALIDATION_ERROR,
            f"payment {payment_id} is for {payment.amount}, the callback says {amount}",
            state.id,
        )
    if currency is not None and currency != payment.currency:
        return Refusal(
            WRONG_CURRENCY,
            # as said, cut and quoted: a provider's text, up to a whole body of it, into a
            # warning line and the 400's detail
            f"payment {payment_id} is in {payment.currency}, the callback says {currency[:40]!r}",
            state.id,
        )
    return payment


def decide_callback(
    state: OrderState,
    payment_id: int,
    status: str,
    amount: int,
    txn_id: str | None,
    now: float,
    refund_id: int,
    config: ShopConfig,
    currency: str | None = None,
) -> CallbackOutcome | Refusal:
    """Apply a verified callback (``refund_id`` is used if it leads to a refund)."""
    checked = check_callback(state, payment_id, amount, currency)
    if isinstance(checked, Refusal):
        return checked
    payment = checked
    succeeded = status == SUCCEEDED
    key = (payment_id, txn_id)
    action = classify_callback(
        state.status, payment.status, succeeded, key in state.collected,
        state.paid_payment_id is not None,
    )
    effects: list[Effect] = []
    if action is CallbackAction.FAILED:
        state, effects = _with_payment(state, replace(payment, status=FAILED, txn_id=txn_id))
    elif action in (CallbackAction.DUPLICATE, CallbackAction.IGNORED):
        pass
    else:
        state = replace(state, collected=state.collected | {key})
        if payment.status not in (SUCCEEDED, REFUNDED):
            succeeded_payment = replace(payment, status=SUCCEEDED, txn_id=txn_id)
            state, effects = _with_payment(state, succeeded_payment)
        if action is CallbackAction.APPLIED:
            state, paid = mark_paid(state, payment_id, now, config, f"payment {payment_id}")
            effects += paid
        else:
            kind = LATE_PAYMENT if action is CallbackAction.LATE_PAYMENT_REFUND else (
                DUPLICATE_PAYMENT
            )
            refund = Refund(refund_id, kind, payment_id, 0, amount, REFUNDING, now)
            # this callback's transaction: a duplicate may be a second one of the payment
            state, refund_effects = open_refund(state, refund, now, txn_id)
            effects += refund_effects
            effects.append(
                History(state.status, state.status, f"{kind}_refund",
                        f"payment {payment_id} ({txn_id}): "
                        f"{with_currency(amount, state.currency)}")
            )
    duplicate = action is CallbackAction.DUPLICATE
    effects.append(LogPayment(payment_id, status, amount, txn_id, action.value, duplicate))
    return CallbackOutcome(state, effects, action)


def _with_payment(state: OrderState, payment: Payment) -> tuple[OrderState, list[Effect]]:
    payments = tuple(payment if p.id == payment.id else p for p in state.payments)
    return replace(state, payments=payments), [SavePayment(payment)]


def _with_refund(state: OrderState, refund: Refund) -> OrderState:
    """``state`` with ``refund`` in the place of its refund of the same id (its effect is
    the caller's: a refund's row is saved with the event that changed it)."""
    return replace(state, refunds=tuple(refund if r.id == refund.id else r for r in state.refunds))


# -- refunds done -----------------------------------------------------------------------------


def refund_stuck(state: OrderState, refund_id: int, retried: bool) -> Decision:
    """The provider refused the refund (``retried``: it is sent again) or failed it: the
    history says so without the provider's words, which are the staff's (the refund's row,
    the log), not for the customer reading the history (a merchant's balance, its account's
    state)."""
    said = (
        "refused it; it is sent again, more and more seldom, until the provider "
        "takes it or it is settled by hand" if retried else
        "failed it; it stays refunding until someone acts on it"
    )
    status = state.status
    told = f"refund {refund_id}: the provider {said}"
    return state, [History(status, status, "refund_failed", told)]


def refund_taken(state: OrderState, refund_id: int) -> Decision:
    """The provider took ``refund_id`` after it refused it (it is processing it): the history,
    which told the customer and the staff of the refusal, says so (nothing when the refund is
    done, or settled, already: its own entry said more)."""
    refund = state.refund(refund_id)
    if refund is None or refund.status != REFUNDING:
        return state, []
    status = state.status
    told = f"refund {refund_id}: the provider took it after all; it is paid back once it is done"
    return state, [History(status, status, "refund_taken", told)]


def refund_undone(state: OrderState, refund_id: int) -> Decision:
    """The provider failed ``refund_id`` after it said it was done: a refund counted
    refunded is refunding again (the money is back in the merchant's balance, the customer
    not paid back), and the payment it marked refunded is succeeded again, until the staff
    pay it back another way and settle it (:func:`settle_by_hand`). One still refunding (its
    failure came before its "done" was applied, or instead of it) stays refunding, said as
    any failure is (:func:`refund_stuck`)."""
    refund = state.refund(refund_id)
    if refund is None:
        return state, []
    if refund.status != REFUNDED:
        return refund_stuck(state, refund_id, retried=False)
    reopened = replace(refund, status=REFUNDING, refunded_at=None)
    state = _with_refund(state, reopened)
    status = state.status
    told = (f"refund {refund_id}: the provider failed it after it said it was done; it is "
            "refunding again until someone acts on it")
    effects: list[Effect] = [SaveRefund(reopened, "reopened"),
                             History(status, status, "refund_failed", told)]
    payment = _payment_marked_by(state, refund)
    still_marked = {  # by another refund of it, refunded (no kind of refund makes two now)
        marked.id for other in state.refunds
        if other.status == REFUNDED and (marked := _payment_marked_by(state, other))
    }
    if payment is not None and payment.status == REFUNDED and payment.id not in still_marked:
        state, saved = _with_payment(state, replace(payment, status=SUCCEEDED))
        effects += saved
    return state, effects


def _payment_marked_by(state: OrderState, refund: Refund) -> Payment | None:
    """The payment ``refund`` marks refunded once it is done (:func:`refund_done`): a
    cancel's, a return's or a late payment's, and a second payment's, but not a second
    transaction of the payment that pays the order (that payment still pays it)."""
    if refund.payment_id is None:
        return None
    whole_payment = refund.kind in (CANCEL_REFUND, RETURN_REFUND, LATE_PAYMENT) or (
        refund.payment_id != state.paid_payment_id
    )
    return state.payment(refund.payment_id) if whole_payment else None


def rejection_reason(code: str) -> str:
    """Why an authentic callback :func:`decide_callback` refused (its code) was rejected, as
    the rejected callbacks' log and metrics name it."""
    return {NOT_FOUND: "unknown_payment", WRONG_CURRENCY: "currency"}.get(code, "amount")


def refund_done(
    state: OrderState, refund_id: int, now: float, *, settled_by_hand: str | None = None
) -> Decision | None:
    """The gateway refunded ``refund_id``: mark it refunded (None if it is already, or unknown).
    With ``settled_by_hand`` (the staff's note), the provider failed it and the shop's staff
    paid it back another way: refunded all the same, and the history says how.

    The payment refunded is marked refunded too, except when the refund was for a second
    transaction of the payment that paid the order (that payment still pays it).
    """
    refund = state.refund(refund_id)
    if refund is None or refund.status == REFUNDED:
        return None
    refund = replace(refund, status=REFUNDED, refunded_at=now)
    state = _with_refund(state, refund)
    status = state.status
    effects: list[Effect]
    if settled_by_hand is None:
        effects = [SaveRefund(refund, "refunded"),
                   History(status, status, "refunded", refund.told(state.currency))]
    else:
        outside = refund.told(state.currency, "paid back outside the provider")
        effects = [
            SaveRefund(refund, "settled_by_hand", settled_by_hand),
            History(status, status, "refund_settled", f"{outside}: {settled_by_hand}"),
        ]
    payment = _payment_marked_by(state, refund)
    if payment is not None and payment.status == SUCCEEDED:
        state, saved = _with_payment(state, replace(payment, status=REFUNDED))
        effects += saved
    return state, effects


def settle_by_hand(state: OrderState, refund_id: int, note: str, now: float) -> Decision | Refusal:
    """The shop's staff paid ``refund_id`` back another way (``note`` says how): refunded, as
    :func:`refund_done` with ``settled_by_hand``. Only a refund still refunding; whether the
    provider failed or refused it (so that it will not pay it out too) is the refunder's check
    (``refund.settle_refusal``), made between its tries, before it asks."""
    refund = state.refund(refund_id)
    if refund is None:
        return Refusal(NOT_FOUND, f"order {state.id} has no refund {refund_id}", state.id)
    if refund.status == REFUNDED:
        return Refusal(INVALID_STATE, f"refund {refund_id} is refunded already", state.id)
    settled = refund_done(state, refund_id, now, settled_by_hand=note)
    assert settled is not None  # refunding, so not done yet
    return settled
