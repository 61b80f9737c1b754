"""Refunds through the provider: the ``refunder`` kind, one actor per refund id (SPEC 5, 10).

The order writes the refund record (status refunding) and, in the same unit, a durable
``RefundAttempt`` (:mod:`shopkeep.actors.refund_rules`) to ``refunder:<refund id>``. The
refunder calls the provider's refund with the refund id as idempotency key, only after that
unit is committed (durable messages go out after their commit), so no money leaves before its
record exists. Then, by the provider's
answer (decided by the pure rules of :mod:`shopkeep.actors.refund_rules`, which this actor
applies):

- done: a durable :class:`~shopkeep.actors.order_messages.RefundDone` to the order, which
  marks the record refunded;
- processing (taken, not finished): a durable timer asks the provider again
  (``RefundQuery``) after ``refund_query_after_s``; the query's answer is applied the
  same way: done -> RefundDone; processing -> ask again later; missing (the provider never
  got it) -> send the refund again; failed -> a refund_log row and a warning: the record stays
  refunding, for someone to act on (the provider said no: sending it again would not help);
- closed (the provider closed it without paying it out: WeChat Pay's CLOSED, Stripe's
  canceled), from the refund call or a query -> a refund_log row, and the refund sent again
  under the next key (``RefundRequest.issue``), since the closed one's key names it for good;
- failed as the refund call answers it: as when a query finds it failed;
- failed after it was done (Stripe's ``refund.failed``, asked of this actor by the shop as
  :class:`~shopkeep.actors.refund_rules.FailedAfterDone`): the provider's words on the row, a
  refund_log row, a warning, and a durable ``RefundStuck(after_done=True)`` to the order,
  which counts it refunding again, for the staff to settle; refused ``unavailable`` while the
  refund is still open here (the provider sends it again);
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

import structlog
from msgspec import UNSET

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_messages import SettleRefund
from shopkeep.actors.order_state import REFUNDING
from shopkeep.actors.protocol import Keyed
from shopkeep.actors.refund_rules import (
    RETRY,
    FailedAfterDone,
    RefundAttempt,
    RefunderMessage,
    RefundQuery,
    Step,
    answered,
    failed,
    failed_after_done,
    learned,
    refused,
    settle_refusal,
)
from shopkeep.actors.refund_store import (
    ATTEMPTS_SQL,
    PROVIDER_FAILED_SQL,
    REFUND_LOG_SQL,
    refund_standing,
)
from shopkeep.payments.provider import GatewayRefused, PaymentProvider, RequestRefused
from shopkeep.refusals import Refusal
from shopkeep.runtime import Actor, Address, Context

log = structlog.get_logger("shopkeep.refund")


class RefunderActor(Actor):
    """Calls the provider until the refund is done; what each answer leads to is
    :mod:`shopkeep.actors.refund_rules`'. Bound by ``kinds.order_kinds``."""

    __slots__ = ()
    kind = "refunder"
    messages = RefunderMessage
    config: ClassVar[ShopConfig] = ShopConfig()
    provider: ClassVar[PaymentProvider]
    outcomes: ClassVar[Counter[str]] = Counter()
    """Refund queries by what they learned (``/metrics``)."""

    async def receive(self, ctx: Context, message: Any) -> Any:
        """Try the refund (or ask where it stands), and act on what the provider answers. Or
        settle it by hand, between two tries."""
        if isinstance(message, RefundQuery):
            return await self._query(ctx, message.attempt)
        if isinstance(message, SettleRefund | Keyed):
            return await self._settle(ctx, message)
        if isinstance(message, FailedAfterDone):
            return await self._failed_after_done(ctx, message)
        if not isinstance(message, RefundAttempt):
            raise TypeError(f"unexpected message {message!r}")
        if message.refused and await self._settled_by_hand(ctx, message):
            return False
        try:
            state = await self.provider.refund(message.request())
        except RequestRefused as exc:  # says nothing of this refund: as an outage would
            return self._take(ctx, message, failed(message, exc, self.config))
        except GatewayRefused as exc:
            return self._take(ctx, message, refused(message, exc, self.config))
        except Exception as exc:  # an outage: retried, never dropped
            return self._take(ctx, message, failed(message, exc, self.config))
        return self._take(ctx, message, answered(message, state, self.config))

    async def _query(self, ctx: Context, message: RefundAttempt) -> bool:
        try:
            state = await self.provider.query_refund(message.request())
        except Exception as exc:
            return self._take(ctx, message, failed(message, exc, self.config, query=True))
        return self._take(ctx, message, learned(message, state, self.config, queried=True))

    async def _failed_after_done(self, ctx: Context, message: FailedAfterDone) -> bool | Refusal:
        """The provider failed the refund after it said it was done: True when this is news
        (the order is told, durably, in this unit), False when it is not, a refusal while the
        refund is still open here (``refund_rules.failed_after_done``)."""
        standing = await refund_standing(ctx.query, message.refund_id)
        step = failed_after_done(message, standing)
        if step is None or isinstance(step, Refusal):
            return step or False
        assert standing is not None
        self._apply(ctx, message.refund_id, standing.order_id, step)
        return True

    def _take(self, ctx: Context, message: RefundAttempt, step: Step) -> bool:
        """Apply ``step``, decided for ``message``: True once the refund is done."""
        return self._apply(ctx, message.refund_id, message.order_id, step)

    def _apply(self, ctx: Context, refund_id: int, order_id: int, step: Step) -> bool:
        """Apply ``step``, decided for refund ``refund_id`` of order ``order_id``: True once
        the refund is done."""
        if step.outcome is not None:
            self.outcomes[step.outcome] += 1
        if step.warning is not None:
            log.warning(step.warning, refund_id=refund_id, order_id=order_id,
                        reason=step.reason)
        if step.failed:
            log.info("refund_failed", refund_id=refund_id, detail=step.detail)
        if step.log_event is not None:
            ctx.execute(REFUND_LOG_SQL, (refund_id, step.log_event, step.detail, ctx.now()))
        if step.provider_failed is not UNSET:
            ctx.execute(PROVIDER_FAILED_SQL, (step.provider_failed, refund_id))
        if step.attempts is not None:
            ctx.execute(ATTEMPTS_SQL, (step.attempts, refund_id))
        if step.tell_order is not None:
            ctx.send(Address("order", order_id), step.tell_order)
        if step.again is not None:
            ctx.send(self.address, step.again)
        if step.later is not None:
            ctx.arm_timer(step.later.timer, ctx.now() + step.later.after_s, step.later.message)
        return step.done

    async def _settled_by_hand(self, ctx: Context, message: RefundAttempt) -> bool:
        """Whether the staff settled the refund the provider refused (it is not refunding)."""
        standing = await refund_standing(ctx.query, message.refund_id)
        if standing is not None and standing.status == REFUNDING:
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
        refusal = settle_refusal(settle.refund_id, standing)
        if refusal is not None:
            return refusal
        assert standing is not None
        answer = await ctx.ask(Address("order", standing.order_id), message)
        if not isinstance(answer, Refusal):
            ctx.cancel_timer(RETRY)  # settled: never sent to the provider again
        return answer
