"""The refunder's rules, with no IO: what a refund's try leads to (SPEC 5, 10).

The refunder (:mod:`shopkeep.actors.refund`) calls the provider; what it then does is decided
here from the provider's answer, or from the call's failure, as a :class:`Step`: the row it
adds to the refund's log, the provider's words it keeps on the refund's row, what it tells the
order, the try it sends again at once or after a pause, and what it warns the staff of. The
actor applies a step in the unit of work of the message that took it.
"""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import UNSET, UnsetType
from msgspec.structs import replace

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_messages import RefundDone, RefundStuck, RefundTaken
from shopkeep.actors.order_state import REFUNDED, Payment, Refund
from shopkeep.actors.refund_store import TRIED_AGAIN, RefundStanding
from shopkeep.payments.names import DEFAULT_CURRENCY
from shopkeep.payments.provider import (
    GatewayRefused,
    RefundClosed,
    RefundFailed,
    RefundMissing,
    RefundProcessing,
    RefundRequest,
    RefundState,
)
from shopkeep.payments.provider import RefundDone as ProviderRefundDone
from shopkeep.refusals import INVALID_STATE, NOT_FOUND, UNAVAILABLE, Refusal
from shopkeep.runtime.backoff import doubling_delay

FAILED_AT_PROVIDER: Final = "refund_failed_at_provider"
"""The warning of a refund the provider failed: said as the refunder learns it, or by the
shop of one the provider failed after it said it was done (``Payments.handle_callback``)."""

RETRY: Final = "retry"
"""The timer of a try (or query) that failed, sent again after a back-off."""
QUERY: Final = "query"
"""The timer of a query of a refund the provider is processing."""
QUERY_BACKOFF_S: Final = 300.0
QUERY_BACKOFF_MAX_S: Final = 1_800.0
"""After the first question (``ShopConfig.refund_query_after_s``), a refund still processing is
asked about after 5, 10, 20, then every 30 minutes: WeChat Pay's advice (providers.md: a refund
to a balance lands within 5 minutes, to a bank card in 1 - 3 working days)."""


def query_delay(queries: int, config: ShopConfig) -> float:
    """The pause before asking where a refund stands when ``queries`` questions found it still
    processing: ``refund_query_after_s`` for the first, then growing (never shorter)."""
    if queries == 0:
        return config.refund_query_after_s
    grown = doubling_delay(queries, QUERY_BACKOFF_S, QUERY_BACKOFF_MAX_S)
    return max(config.refund_query_after_s, grown)


class RefundAttempt(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Refund ``amount`` of ``payment_id`` through the provider (try number ``attempt``), in
    ``currency``, of a payment of ``payment_amount`` paid in ``gateway_txn_id`` (the provider's
    ``provider_ref``). The defaults read attempts stored before providers existed."""

    refund_id: int
    order_id: int
    payment_id: int | None
    amount: int
    attempt: int = 1
    currency: str = DEFAULT_CURRENCY
    payment_amount: int = 0
    gateway_txn_id: str | None = None
    provider_ref: str | None = None
    issue: int = 0
    """How many times the provider closed this refund unpaid (``RefundRequest.issue``)."""
    refused: bool = False
    """The provider refused the try before (its words are on the refund's row, which lets the
    staff settle it by hand): this one first looks whether they have."""
    queries: int = 0
    """How many times the provider was asked where this refund stands and found it still
    processing: the pause before the next question grows with it (:func:`query_delay`)."""

    def request(self) -> RefundRequest:
        """What the provider is asked, the refund id (and issue) as idempotency key."""
        return RefundRequest(
            refund_id=self.refund_id, payment_id=self.payment_id, amount=self.amount,
            currency=self.currency, payment_amount=self.payment_amount or self.amount,
            gateway_txn_id=self.gateway_txn_id, provider_ref=self.provider_ref,
            issue=self.issue,
        )

    def next_try(self) -> RefundAttempt:
        """The same refund, one try later."""
        return replace(self, attempt=self.attempt + 1)


def first_attempt(
    refund: Refund, order_id: int, paid: Payment | None, txn_id: str | None
) -> RefundAttempt:
    """The first try of ``refund`` of order ``order_id``: of its payment ``paid`` (in its
    currency, of its amount, its transaction), or of the transaction ``txn_id`` when given (a
    second one of the payment, refunded as a duplicate)."""
    return RefundAttempt(
        refund.id, order_id, refund.payment_id, refund.gateway_amount,
        currency=paid.currency if paid else DEFAULT_CURRENCY,
        payment_amount=paid.amount if paid else refund.gateway_amount,
        gateway_txn_id=txn_id or (paid.txn_id if paid else None),
        provider_ref=paid.provider_ref if paid else None,
    )


class RefundQuery(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Ask the provider where the refund of ``attempt`` stands (its timer fired)."""

    attempt: RefundAttempt


class FailedAfterDone(msgspec.Struct, frozen=True, tag=True, gc=False):
    """From the shop: the provider failed ``refund_id`` after it said it was done (Stripe's
    ``refund.failed``: the customer's card closed meanwhile, the money back in the merchant's
    balance), in its words ``reason``; ``provider_refund``, its own id of the refund (what
    the staff look up in its dashboard)."""

    refund_id: int
    reason: str
    provider_refund: str = ""


RefunderMessage = RefundAttempt | RefundQuery
"""What the refunder stores (timers, durable messages). It is also asked
:class:`~shopkeep.actors.order_messages.SettleRefund`, bare or keyed, and
:class:`FailedAfterDone`, never stored."""


class Later(msgspec.Struct, frozen=True, gc=False):
    """``message`` to the refunder itself on its timer ``timer``, ``after_s`` from now."""

    timer: str
    after_s: float
    message: RefunderMessage


class Step(msgspec.Struct, frozen=True, gc=False):
    """What the refunder does after a try or a query, all in one unit of work."""

    log_event: str | None = None
    """The refund's log row (``refund_log``): its event, and :attr:`detail`."""
    detail: str = ""
    provider_failed: str | UnsetType | None = UNSET
    """The provider's words kept on the refund's row (the staff may settle it by hand), None
    to clear them (the provider may pay it out), UNSET to leave them."""
    attempts: int | None = None
    """The number of tries, for the refund's row."""
    tell_order: RefundDone | RefundStuck | RefundTaken | None = None
    again: RefundAttempt | None = None
    """Sent to the refunder at once, durably (a crash must not drop it)."""
    later: Later | None = None
    warning: str | None = None
    """A warning for the staff: its event, logged with :attr:`reason`."""
    reason: str = ""
    failed: bool = False
    """The call failed (an outage, a refusal): logged as ``refund_failed`` with the detail."""
    outcome: str | None = None
    """What a query learned, counted for ``/metrics``."""
    done: bool = False


def retry_delay(attempt: int, config: ShopConfig) -> float:
    """The pause after failed try number ``attempt``: doubling, capped."""
    return doubling_delay(attempt, config.refund_retry_s, config.refund_retry_max_s)


def answered(message: RefundAttempt, state: RefundState, config: ShopConfig) -> Step:
    """The provider answered the refund call ``message`` with ``state``. A refund it had
    refused before is no longer the staff's to settle: it took this try (and, processing it,
    the order's history says so, as it said the refusal)."""
    step = learned(replace(message, refused=False), state, config, queried=False)
    if message.refused and step.provider_failed is UNSET:
        step = replace(step, provider_failed=None)
        if isinstance(state, RefundProcessing):
            step = replace(step, tell_order=RefundTaken(message.refund_id))
    return replace(step, attempts=message.attempt)


def learned(
    message: RefundAttempt, state: RefundState, config: ShopConfig, *, queried: bool
) -> Step:
    """Where the refund stands, as the refund call or a query (``queried``) found it."""
    counted = queried or isinstance(state, RefundMissing)
    outcome = f"refund:{_OUTCOMES[type(state)]}" if counted else None
    match state:
        case ProviderRefundDone():
            return Step(
                log_event="refund_queried" if queried else None, detail="done",
                tell_order=RefundDone(message.refund_id), outcome=outcome, done=True,
            )
        case RefundProcessing():
            why = "still processing" if queried else "the provider is processing it"
            queries = message.queries + 1 if queried else 0
            after = query_delay(queries, config)
            return Step(
                log_event="provider_processing", detail=f"{why}: asked again in {after:g} s",
                later=Later(QUERY, after, RefundQuery(replace(message, queries=queries))),
                outcome=outcome,
            )
        case RefundMissing():
            return Step(
                log_event="refund_queried",
                detail="the provider has no such refund: sent again",
                again=message.next_try(), outcome=outcome,
            )
        case RefundClosed(reason):
            again = replace(message.next_try(), issue=message.issue + 1)
            return Step(
                log_event="provider_closed",
                detail=f"the provider closed it unpaid ({reason}): sent again as "
                f"{again.request().key}",
                again=again, warning="refund_closed_at_provider", reason=reason,
                outcome=outcome,
            )
        case RefundFailed(reason):
            return Step(
                log_event="provider_failed",
                detail=f"the provider failed it ({reason}): left refunding for manual action",
                provider_failed=reason, tell_order=RefundStuck(message.refund_id, reason),
                warning=FAILED_AT_PROVIDER, reason=reason, outcome=outcome,
            )
    raise TypeError(f"unexpected refund state {state!r}")


_OUTCOMES: Final = {
    ProviderRefundDone: "refunded", RefundProcessing: "processing", RefundMissing: "missing",
    RefundClosed: "closed", RefundFailed: "failed",
}


def failed(
    message: RefundAttempt, error: Exception, config: ShopConfig, *, query: bool = False
) -> Step:
    """The refund call (or its ``query``) failed with ``error``: an outage, retried after a
    back-off and never dropped, or the provider's refusal (:func:`refused`)."""
    number = message.attempt
    delay = retry_delay(number, config)
    what = "query" if query else "try"
    later = message.next_try()
    # a try of a refund the provider refused, its answer lost (a timeout, a 5xx): the
    # provider may have taken it, so it is not the staff's to settle until a try is refused
    # again (settled now and taken, it would be paid back twice)
    lost = message.refused and not query and not isinstance(error, GatewayRefused)
    return Step(
        log_event=TRIED_AGAIN,
        detail=f"{what} {number}: {type(error).__name__}: {error}; again in {delay:g} s",
        provider_failed=None if lost else UNSET, attempts=number,
        later=Later(RETRY, delay, RefundQuery(later) if query else later), failed=True,
        outcome="refund:error" if query else None,
    )


def refused(message: RefundAttempt, error: GatewayRefused, config: ShopConfig) -> Step:
    """The provider said no to the refund call: its words go on the refund's row at every
    refusal (a try whose answer was lost took them away); the first refusal is told to the
    order and the staff; it is tried again as an outage is (some pass once the merchant
    acts: a balance topped up)."""
    reason = str(error)
    retried = failed(replace(message, refused=True), error, config)
    if message.refused:
        return replace(retried, provider_failed=reason)
    return replace(
        retried, provider_failed=reason, warning="refund_refused_by_provider", reason=reason,
        tell_order=RefundStuck(message.refund_id, reason, retried=True),
    )


def failed_after_done(
    message: FailedAfterDone, standing: RefundStanding | None
) -> Step | Refusal | None:
    """The provider failed a refund after it said it was done, its row ``standing``: its
    words go on the row and the order counts it refunding again, for the staff to pay it back
    another way and settle it. None when there is nothing to do: no such refund, or one whose
    failure is known already (a notification sent again, a refund settled by hand since: its
    row keeps the words it was failed or refused with). A refusal, ``unavailable``, while the
    shop still has the refund open with the provider: its "done" on the way to its order, or
    its own query or try still to find it failed (settled by hand meanwhile, it could be paid
    back twice); the provider sends the notification again later."""
    if standing is None or standing.provider_failed is not None:
        return None
    if standing.status != REFUNDED:
        return Refusal(
            UNAVAILABLE,
            f"refund {message.refund_id} is still open with the provider as the shop sees it: "
            "its failure is taken once the shop's own try or query has its answer; send it "
            "again later",
            standing.order_id,
        )
    reason = message.reason
    if message.provider_refund:  # beside the reason, where the staff read it (the console)
        reason = f"{reason}, after it said it was done: its refund {message.provider_refund}"
    return Step(
        log_event="provider_failed_after_done",
        detail=f"the provider failed it after it said it was done ({reason}): refunding "
        "again, left for manual action",
        provider_failed=reason,
        tell_order=RefundStuck(message.refund_id, reason, after_done=True),
        warning=FAILED_AT_PROVIDER, reason=reason,
    )


def settle_refusal(refund_id: int, standing: RefundStanding | None) -> Refusal | None:
    """Why the staff may not settle ``refund_id`` by hand, as its row ``standing`` says, or
    None: the order decides the rest (refunded already, an Idempotency-Key's replay)."""
    if standing is None:
        return Refusal(NOT_FOUND, f"refund {refund_id} does not exist")
    if standing.status == "refunding" and standing.provider_failed is None:
        return Refusal(
            INVALID_STATE,
            f"refund {refund_id} is with the provider, which has not failed or refused it, "
            "took it after all, or did not answer its last try: it may pay it out, so it is "
            "not settled by hand",
            standing.order_id,
        )
    return None
