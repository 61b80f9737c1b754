"""The active query (SPEC 10): the ``payment_query`` kind, one actor per payment id.

At its deadline an order with a payment still open does not time out at once: it sends a
durable :class:`QueryPayment` here (and re-arms its deadline a grace period later); an order
canceled unpaid, or paid by another of its payments, sends one too, and does not wait for it.
This actor asks the provider, outside the order's turn. A payment the provider still has open
is closed there (``close_payment``; asked about again when the close does not say where it
stands): a customer still on the checkout page cannot pay an order that timed out (only to
be refunded, the provider's fees lost), and one who paid in the meantime is found. Then it
tells the order what it learned:

- paid: a :class:`~shopkeep.actors.order_messages.PaymentCallback` (``via="query"``), applied
  exactly as the success notification would be: the order is paid, or, when it timed out
  meanwhile, the money is refunded as a late payment;
- paid, in an answer the shop refuses as it refuses the notification saying the same
  (:class:`~shopkeep.payments.provider.PaymentPaidRefused`: an amount that is no amount of the
  currency): a ``callback_refused`` warning, and the order times out as below, its history
  saying so; it is not asked again (it would answer the same);
- closed (by the shop just now, or before), open (a provider that closes nothing: the
  sandbox), or no answer: :class:`~shopkeep.actors.order_messages.DeadlineReached` with
  ``queried`` set: the order times out as it would have, its history saying what was asked.
  A payment the provider does not know yet (Alipay's trade, made when the cashier opens) is
  asked about once more a grace after its deadline: the provider's clock may let a customer
  on the cashier page pay it seconds after the shop's, and its notification may be lost.

No answer (the provider down, or refusing, the query or the close) does not end it: the
payment may have been collected, and its notification lost, or it may still be payable. The
deadline's own question is asked again within the order's wait for it (after 1, 2, 4, 8 s,
the last a second before the wait ends: a provider's blip does not cancel an order its
customer paid); past that, the order times out. Nor
does a close the provider turns down while the payment stays open (the customer is paying it
this moment: WeChat Pay's USERPAYING, a Stripe intent processing). A durable timer asks again
after a back-off (the refunds' ``refund_retry_s``, doubling up to ``refund_retry_max_s``)
until the provider says where it stands: paid, the order (timed out by then) refunds it as a
late payment; open, it is closed; closed, or unknown to the provider (never opened, and past
its deadline no longer can be), nothing more is done.

Outcomes are counted by kind (``/metrics``: ``shopkeep_active_queries_total``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar, Final

import msgspec
import structlog

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_messages import DeadlineReached, PaymentCallback
from shopkeep.actors.order_stats import OrderStats
from shopkeep.actors.refund_rules import retry_delay
from shopkeep.payments.provider import (
    PaymentClosed,
    PaymentOpen,
    PaymentPaid,
    PaymentPaidRefused,
    PaymentProvider,
    PaymentRef,
)
from shopkeep.runtime import Actor, Address, Context

log = structlog.get_logger("shopkeep.payment_query")


ANSWER_TIME_S: Final = 1.0
"""What a question asked again at the deadline leaves its answer before the order stops
waiting for it."""


class QueryPayment(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Ask the provider where payment ``payment_id`` of order ``order_id`` stands."""

    order_id: int
    payment_id: int
    amount: int
    currency: str
    provider_ref: str | None = None
    attempt: int = 0
    """0: one of the deadline's queries, whose answers the order waits for (every payment the
    provider may still collect on); from 1, one the order does not wait for: again after one
    the provider did not answer (the order timed out meanwhile), or after the order was
    canceled unpaid, or paid by another of its payments. Then only a payment found collected
    is told to the order; one still open is closed."""
    payable_until: float | None = None
    """The payment's deadline, as the provider was told it (the order's): one the provider
    does not have yet (never opened) may still be opened and paid until then, by the
    provider's clock, so a question answered so before a grace after it (the deadline's own
    included) is asked again then."""
    answer_by: float | None = None
    """Attempt 0: when the order stops waiting for the answer (its deadline re-armed a grace
    later). A question the provider did not answer is asked again until then: one blip (a
    timeout, a 429, a garbled answer) must not time out an order its customer paid."""
    asked_again: int = 0
    """How many times the deadline's own question was asked again within ``answer_by``."""


class PaymentQueryActor(Actor):
    """Asks the provider about one payment. Bound by ``kinds.order_kinds``."""

    __slots__ = ()
    kind = "payment_query"
    messages = QueryPayment
    config: ClassVar[ShopConfig] = ShopConfig()
    provider: ClassVar[PaymentProvider]
    outcomes: ClassVar[Counter[str]] = Counter()
    stats: ClassVar[OrderStats] = OrderStats()
    """The orders' counts: a paid answer refused is counted with the callbacks refused."""

    async def receive(self, ctx: Context, message: Any) -> Any:
        """Ask, and tell the order the answer (see the module's docstring)."""
        if not isinstance(message, QueryPayment):
            raise TypeError(f"unexpected message {message!r}")
        order = Address("order", message.order_id)
        ref = PaymentRef(
            payment_id=message.payment_id, order_id=message.order_id, amount=message.amount,
            currency=message.currency, provider_ref=message.provider_ref,
        )
        closed_now = False
        try:
            state = await self.provider.query_payment(ref)
            if isinstance(state, PaymentOpen):
                closed = await self.provider.close_payment(ref)
                closed_now = isinstance(closed, PaymentClosed)
                state = await self.provider.query_payment(ref) if closed is None else closed
                if closed is None and isinstance(state, PaymentOpen) and state.exists:
                    # the close refused, and payable still: the customer is paying it this
                    # moment (WeChat Pay's USERPAYING, a Stripe intent processing)
                    self.outcomes["payment:open"] += 1
                    said = "open, and the provider would not close it now"
                    return self._again(ctx, message, order, "payment_still_open", said)
        except Exception as exc:  # down or refusing: the order times out, and is asked about
            self.outcomes["payment:error"] += 1  # again until the provider answers
            # what it said is the operator's (its URLs, its merchant id, its raw answer), in
            # the log; the order's history, which the customer reads, says no more than this
            error = f"{type(exc).__name__}: {exc}"
            return self._again(
                ctx, message, order, "payment_query_failed", "the provider did not answer",
                error=error,
            )
        if isinstance(state, PaymentPaid):
            self.outcomes["payment:paid"] += 1
            ctx.send(order, PaymentCallback(
                message.payment_id, "succeeded", state.amount, state.gateway_txn_id,
                state.currency, "query", message.answer_by,
            ))
            return None
        if isinstance(state, PaymentPaidRefused):
            return self._refused(ctx, message, order, state)
        word = "closed" if isinstance(state, PaymentClosed) else "open"
        self.outcomes[f"payment:{word}"] += 1
        until = message.payable_until
        if until is not None and isinstance(state, PaymentOpen) and not state.exists:
            # never opened, yet payable until its deadline by the provider's clock, which may
            # be seconds from the shop's (an Alipay cashier page still open when its order was
            # canceled, or at the deadline's own question): asked again a grace after it, once,
            # and found paid, refunded
            again_at = until + self.config.payment_query_grace_s
            if ctx.now() < again_at:
                again = msgspec.structs.replace(message, attempt=message.attempt + 1)
                ctx.arm_timer("again", again_at, again)
        if message.attempt == 0:  # else the order timed out when the first went unanswered
            # the provider's word, beside the shop's own: a payment failed here may be open there
            # (closed now: the state is the close's answer)
            word = "open at the provider, closed now" if closed_now else f"{word} at the provider"
            said = f"payment {message.payment_id}: {word}"
            ctx.send(order, DeadlineReached(True, said, message.payment_id, message.answer_by))
        return None

    def _refused(
        self, ctx: Context, message: QueryPayment, order: Address, state: PaymentPaidRefused
    ) -> None:
        """Paid, says the provider, in words the shop refuses (an amount that is no amount of
        the currency): refused as the notification saying it is, a warning, since the money
        may be at the provider. No order could take it, so none is told it was paid; asking
        again would hear the same, so the deadline's own query lets the order time out now,
        its history saying why, as a paid answer of another amount does."""
        self.outcomes["payment:paid"] += 1  # what it learned; refusing it is the shop's part
        self.stats.callbacks_rejected[state.reason] += 1  # as its notification would be
        log.warning("callback_refused", reason=state.reason, provider=self.provider.name,
                    via="query", order_id=str(message.order_id),
                    payment_id=str(message.payment_id), detail=state.detail)
        if message.attempt == 0:
            said = f"payment {message.payment_id}: succeeded, refused: {state.detail}"
            ctx.send(order, DeadlineReached(True, said, message.payment_id, message.answer_by))

    def _again(
        self,
        ctx: Context,
        message: QueryPayment,
        order: Address,
        event: str,
        said: str,
        error: str | None = None,
    ) -> None:
        """Where the payment stands is not settled yet: ask again after a back-off. The
        deadline's own query asks again while its order still waits for the answer (a
        provider's blip); past that it lets the order time out, its history saying why
        (``said``; the provider's ``error``, if any, in the log only)."""
        now = ctx.now()
        if message.attempt == 0 and message.answer_by is not None:
            # the last question asked while there is still time for its answer to be had
            left = message.answer_by - ANSWER_TIME_S - now
            soon = min(retry_delay(message.asked_again + 1, self.config), left)
            if soon > 0:
                log.info(event, payment_id=message.payment_id, said=said, again_in_s=soon,
                         error=error)
                sooner = msgspec.structs.replace(message, asked_again=message.asked_again + 1)
                ctx.arm_timer("again", now + soon, sooner)
                return
        delay = retry_delay(message.attempt + 1, self.config)
        log.info(event, payment_id=message.payment_id, said=said, again_in_s=delay, error=error)
        if message.attempt == 0:
            said = f"payment {message.payment_id}: {said}"
            ctx.send(order, DeadlineReached(True, said, message.payment_id, message.answer_by))
        again = msgspec.structs.replace(message, attempt=message.attempt + 1)
        ctx.arm_timer("again", now + delay, again)
