"""Refunds through the provider: the ``refunder`` kind, one actor per refund id (SPEC 5, 10).

The order writes the refund record (status refunding) and, in the same unit, a durable
:class:`RefundAttempt` to ``refunder:<refund id>``. The refunder calls the provider's refund
with the refund id as idempotency key, only after that unit is committed (durable messages go
out after their commit), so no money leaves before its record exists. Then, by the provider's
answer:

- done: a durable :class:`~shopkeep.actors.order_messages.RefundDone` to the order, which
  marks the record refunded;
- processing (taken, not finished): a durable timer asks the provider again
  (:class:`RefundQuery`) after ``refund_query_after_s``; the query's answer is applied the
  same way: done -> RefundDone; processing -> ask again later; missing (the provider never
  got it) -> send the refund again; failed -> a refund_log row and a warning: the record stays
  refunding, for someone to act on (the provider said no: sending it again would not help);
- closed (the provider closed it without paying it out: WeChat Pay's CLOSED, Stripe's
  canceled), from the refund call or a query -> a refund_log row, and the refund sent again
  under the next key (``RefundRequest.issue``), since the closed one's key names it for good;
- failed as the refund call answers it: as when a query finds it failed;
- an error (down, a timeout, a 5xx): a refund_log row, and a durable timer that tries again
  after a back-off (``refund_retry_s`` doubling up to ``refund_retry_max_s``). An outage never
  rolls the refund record back: it stays refunding, visible, until it is done;
- a refusal (a 4xx, a business error: a refund larger than what is left to refund, a merchant
  balance too low): tried again as an error is, since some pass once the merchant acts (a
  balance topped up), but said where the staff look, at the first: a warning, a row in the
  order's history, the provider's words on the refund's row. Such a refund may be settled by
  hand (the money went back another way, a refund made in the provider's dashboard).

Settling by hand (:class:`~shopkeep.actors.order_messages.SettleRefund`, from
``Shop.settle_refund``) comes through this mailbox too, so that it never overlaps a try: a
try under way is answered first. Then the refund's row, as this actor's own last unit left it,
decides: taken by the provider since (done or processing: ``provider_failed`` cleared), or
its last try's answer lost (a timeout, a 5xx: cleared too, since the provider may have taken
it; set again by the next refusal), it is refused invalid_state; still failed or refused, the
settlement is asked of the order, which marks it refunded, and the retry timer is canceled (a
try already due, or redelivered after a crash, finds it settled and stops).

A crash between the provider's refund and the commit that records it redelivers the attempt;
the idempotency key makes the second call refund nothing more.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import msgspec
import structlog

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_messages import RefundDone, RefundStuck, SettleRefund
from shopkeep.actors.protocol import INVALID_STATE, NOT_FOUND, Keyed, Refusal
from shopkeep.actors.refund_store import (
    ATTEMPTS_SQL,
    PROVIDER_FAILED_SQL,
    REFUND_LOG_SQL,
    RefundStanding,
    refund_standing,
)
from shopkeep.payments.names import DEFAULT_CURRENCY
from shopkeep.payments.provider import (
    GatewayRefused,
    PaymentProvider,
    RefundClosed,
    RefundFailed,
    RefundMissing,
    RefundProcessing,
    RefundRequest,
    RefundState,
)
from shopkeep.payments.provider import RefundDone as ProviderRefundDone
from shopkeep.runtime import Actor, Address, Context
from shopkeep.runtime.backoff import doubling_delay

log = structlog.get_logger("shopkeep.refund")


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

    def request(self) -> RefundRequest:
        """What the provider is asked, the refund id (and issue) as idempotency key."""
        return RefundRequest(
            refund_id=self.refund_id, payment_id=self.payment_id, amount=self.amount,
            currency=self.currency, payment_amount=self.payment_amount or self.amount,
            gateway_txn_id=self.gateway_txn_id, provider_ref=self.provider_ref,
            issue=self.issue,
        )


class RefundQuery(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Ask the provider where the refund of ``attempt`` stands (its timer fired)."""

    attempt: RefundAttempt


RefunderMessage = RefundAttempt | RefundQuery
"""What the refunder stores (timers, durable messages). It is also asked
:class:`~shopkeep.actors.order_messages.SettleRefund`, bare or :class:`Keyed`, never stored."""


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


def retry_delay(attempt: int, config: ShopConfig) -> float:
    """The pause after failed try number ``attempt``: doubling, capped."""
    return doubling_delay(attempt, config.refund_retry_s, config.refund_retry_max_s)


class RefunderActor(Actor):
    """Calls the provider until the refund is done. Bound by ``kinds.order_kinds``."""

    __slots__ = ()
    kind = "refunder"
    messages = RefunderMessage
    config: ClassVar[ShopConfig] = ShopConfig()
    provider: ClassVar[PaymentProvider]
    outcomes: ClassVar[Counter[str]] = Counter()
    """Refund queries by what they learned (``/metrics``)."""

    async def receive(self, ctx: Context, message: Any) -> Any:
        """Try the refund (or ask where it stands); on failure arm the retry timer. Or settle
        it by hand, between two tries."""
        if isinstance(message, RefundQuery):
            return await self._query(ctx, message.attempt)
        if isinstance(message, SettleRefund | Keyed):
            return await self._settle(ctx, message)
        if not isinstance(message, RefundAttempt):
            raise TypeError(f"unexpected message {message!r}")
        if message.refused and await self._settled_by_hand(ctx, message):
            return False
        try:
            state = await self.provider.refund(message.request())
        except GatewayRefused as exc:
            self._refused(ctx, message, exc)
            return False
        except Exception as exc:  # an outage: retried, never dropped
            self._retry(ctx, message, exc)
            return False
        if message.refused:  # taken now: no longer the staff's to settle
            ctx.execute(PROVIDER_FAILED_SQL, (None, message.refund_id))
            message = msgspec.structs.replace(message, refused=False)
        ctx.execute(ATTEMPTS_SQL, (message.attempt, message.refund_id))
        return self._learned(ctx, message, state)

    async def _settled_by_hand(self, ctx: Context, message: RefundAttempt) -> bool:
        """Whether the staff settled the refund the provider refused (it is not refunding)."""
        standing = await refund_standing(ctx.query, message.refund_id)
        if standing is not None and standing.status == "refunding":
            return False
        log.info("refund_settled_by_hand", refund_id=message.refund_id,
                 order_id=message.order_id, detail="not sent to the provider again")
        return True

    async def _settle(self, ctx: Context, message: SettleRefund | Keyed) -> Any:
        """The staff's settlement, handled here between two tries (see the module's
        docstring); under an Idempotency-Key (``Keyed``), the order keeps the key."""
        settle = message.message if isinstance(message, Keyed) else message
        assert isinstance(settle, SettleRefund), settle
        # read once this actor's last unit is committed: a try just answered has cleared
        # provider_failed if the provider took it (every write of that column is this actor's)
        standing = await refund_standing(ctx.query, settle.refund_id)
        refused = settle_refusal(settle.refund_id, standing)
        if refused is not None:
            return refused
        assert standing is not None
        answer = await ctx.ask(Address("order", standing.order_id), message)
        if not isinstance(answer, Refusal):
            ctx.cancel_timer("retry")  # settled: never sent to the provider again
        return answer

    def _refused(self, ctx: Context, message: RefundAttempt, exc: GatewayRefused) -> None:
        """The provider said no: tried again after the back-off (some refusals pass once the
        merchant acts), said at the first where the staff look (see the module's docstring)."""
        reason = str(exc)
        # on the refund's row at every refusal: a try whose answer was lost took it away
        ctx.execute(PROVIDER_FAILED_SQL, (reason, message.refund_id))
        if not message.refused:
            log.warning("refund_refused_by_provider", refund_id=message.refund_id,
                        order_id=message.order_id, reason=reason)
            ctx.send(Address("order", message.order_id),
                     RefundStuck(message.refund_id, reason, retried=True))
        self._retry(ctx, msgspec.structs.replace(message, refused=True), exc)

    async def _query(self, ctx: Context, message: RefundAttempt) -> bool:
        try:
            state = await self.provider.query_refund(message.request())
        except Exception as exc:
            self.outcomes["refund:error"] += 1
            self._retry(ctx, message, exc, query=True)
            return False
        return self._learned(ctx, message, state, queried=True)

    def _learned(
        self, ctx: Context, message: RefundAttempt, state: RefundState, *, queried: bool = False
    ) -> bool:
        """Act on where the refund stands, as the refund call or a query (``queried``, which
        ``/metrics`` counts by outcome) found it: True once it is done."""
        now = ctx.now()
        match state:
            case ProviderRefundDone():
                if queried:
                    self.outcomes["refund:refunded"] += 1
                    ctx.execute(REFUND_LOG_SQL, (message.refund_id, "refund_queried", "done", now))
                ctx.send(Address("order", message.order_id), RefundDone(message.refund_id))
                return True
            case RefundProcessing():
                if queried:
                    self.outcomes["refund:processing"] += 1
                why = "still processing" if queried else "the provider is processing it"
                self._query_later(ctx, message, why)
            case RefundMissing():
                self.outcomes["refund:missing"] += 1
                ctx.execute(REFUND_LOG_SQL, (message.refund_id, "refund_queried",
                                             "the provider has no such refund: sent again", now))
                again = msgspec.structs.replace(message, attempt=message.attempt + 1)
                ctx.send(self.address, again)  # durable: a crash now must not drop it
            case RefundClosed(reason):
                if queried:
                    self.outcomes["refund:closed"] += 1
                self._issue_again(ctx, message, reason)
            case RefundFailed(reason):
                if queried:
                    self.outcomes["refund:failed"] += 1
                detail = f"the provider failed it ({reason}): left refunding for manual action"
                log.warning("refund_failed_at_provider", refund_id=message.refund_id,
                            order_id=message.order_id, reason=reason)
                ctx.execute(REFUND_LOG_SQL, (message.refund_id, "provider_failed", detail, now))
                ctx.execute(PROVIDER_FAILED_SQL, (reason, message.refund_id))
                ctx.send(Address("order", message.order_id),
                         RefundStuck(message.refund_id, reason))
        return False

    def _issue_again(self, ctx: Context, message: RefundAttempt, reason: str) -> None:
        """The provider closed the refund unpaid: send it again under its next key."""
        again = msgspec.structs.replace(
            message, attempt=message.attempt + 1, issue=message.issue + 1
        )
        detail = (f"the provider closed it unpaid ({reason}): sent again as "
                  f"{again.request().key}")
        log.warning("refund_closed_at_provider", refund_id=message.refund_id,
                    order_id=message.order_id, reason=reason)
        ctx.execute(REFUND_LOG_SQL, (message.refund_id, "provider_closed", detail, ctx.now()))
        ctx.send(self.address, again)  # durable: a crash now must not drop it

    def _query_later(self, ctx: Context, message: RefundAttempt, why: str) -> None:
        now = ctx.now()
        after = self.config.refund_query_after_s
        detail = f"{why}: asked again in {after:g} s"
        ctx.execute(REFUND_LOG_SQL, (message.refund_id, "provider_processing", detail, now))
        ctx.arm_timer("query", now + after, RefundQuery(message))

    def _retry(
        self, ctx: Context, message: RefundAttempt, exc: Exception, *, query: bool = False
    ) -> None:
        """Log the failure and try again (the refund, or the query) after a back-off."""
        now = ctx.now()
        if message.refused and not query and not isinstance(exc, GatewayRefused):
            # a try of a refund the provider refused, its answer lost (a timeout, a 5xx): the
            # provider may have taken it, so it is not the staff's to settle until a try is
            # refused again (settled now and taken, it would be paid back twice)
            ctx.execute(PROVIDER_FAILED_SQL, (None, message.refund_id))
        number = message.attempt
        delay = retry_delay(number, self.config)
        what = "query" if query else "try"
        detail = f"{what} {number}: {type(exc).__name__}: {exc}; again in {delay:g} s"
        log.info("refund_failed", refund_id=message.refund_id, detail=detail)
        ctx.execute(REFUND_LOG_SQL, (message.refund_id, "gateway_failed", detail, now))
        ctx.execute(ATTEMPTS_SQL, (number, message.refund_id))
        later = msgspec.structs.replace(message, attempt=number + 1)
        ctx.arm_timer("retry", now + delay, RefundQuery(later) if query else later)
