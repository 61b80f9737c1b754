"""Refunds through the gateway: the ``refunder`` kind, one actor per refund id (SPEC 5).

The order writes the refund record (status refunding) and, in the same unit, a durable
:class:`RefundAttempt` to ``refunder:<refund id>``. The refunder calls the gateway's refund with
the refund id as idempotency key, only after that unit is committed (durable messages go out
after their commit), so no money leaves before its record exists. Then:

- success: a durable :class:`~shopkeep.actors.order_messages.RefundDone` to the order, which
  marks the record refunded;
- failure: a refund_log row, and a durable timer that tries again after a back-off
  (``refund_retry_s`` doubling up to ``refund_retry_max_s``). A gateway outage never rolls the
  refund record back: it stays refunding, visible, until the gateway does it.

A crash between the gateway's refund and the commit that records it redelivers the attempt;
the idempotency key makes the second call refund nothing more.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
import structlog

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.gateway import Gateway
from shopkeep.actors.order_messages import RefundDone
from shopkeep.runtime import Actor, Address, Context

log = structlog.get_logger("shopkeep.refund")

REFUND_LOG_SQL = "INSERT INTO refund_log (refund_id, event, detail, at) VALUES (?, ?, ?, ?)"
ATTEMPTS_SQL = "UPDATE refunds SET attempts = ? WHERE id = ?"


class RefundAttempt(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Refund ``amount`` of ``payment_id`` through the gateway (try number ``attempt``)."""

    refund_id: int
    order_id: int
    payment_id: int | None
    amount: int
    attempt: int = 1


RefunderMessage = RefundAttempt


def retry_delay(attempt: int, config: ShopConfig) -> float:
    """The pause after failed try number ``attempt``: doubling, capped."""
    return float(min(config.refund_retry_max_s, config.refund_retry_s * 2 ** (attempt - 1)))


class RefunderActor(Actor):
    """Calls the gateway until the refund is done. Bound to a gateway by ``kinds.order_kinds``."""

    __slots__ = ()
    kind = "refunder"
    messages = RefunderMessage
    config: ClassVar[ShopConfig] = ShopConfig()
    gateway: ClassVar[Gateway]

    async def receive(self, ctx: Context, message: Any) -> Any:
        """Try the refund; on failure arm the retry timer."""
        if not isinstance(message, RefundAttempt):
            raise TypeError(f"unexpected message {message!r}")
        now = ctx.now()
        try:
            await self.gateway.refund(message.refund_id, message.payment_id, message.amount)
        except Exception as exc:  # an outage or a refusal: both are retried, never dropped
            delay = retry_delay(message.attempt, self.config)
            detail = f"try {message.attempt}: {type(exc).__name__}: {exc}; again in {delay:g} s"
            log.info("refund_failed", refund_id=message.refund_id, detail=detail)
            ctx.execute(REFUND_LOG_SQL, (message.refund_id, "gateway_failed", detail, now))
            ctx.execute(ATTEMPTS_SQL, (message.attempt, message.refund_id))
            again = msgspec.structs.replace(message, attempt=message.attempt + 1)
            ctx.arm_timer("retry", now + delay, again)
            return False
        ctx.execute(ATTEMPTS_SQL, (message.attempt, message.refund_id))
        ctx.send(Address("order", message.order_id), RefundDone(message.refund_id))
        return True
