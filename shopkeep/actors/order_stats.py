"""What the order actors decided since the process started, counted as it happens: the
business figures of ``/metrics`` (``shopkeep.http.metrics.BusinessCollector``).

Counting here costs a few dictionary increments per decision and nothing per scrape: the
alternative, counting rows of the tables at each scrape, reads more the bigger the shop. A
figure is counted when the order decides it (its unit of work submitted), so a commit that
fails and is decided again after the restart counts twice: these are rates to watch, the
database is the record. They start from zero with the process, as Prometheus counters may.
"""

from __future__ import annotations

from collections import Counter

from shopkeep.actors.order_state import (
    AWAITING_PAYMENT,
    CANCELED,
    PAID,
    PENDING,
    PLACEMENT_FAILED,
    REFUNDED,
    REFUNDING,
    Effect,
    OrderState,
    SaveRefund,
)

_PLACED = frozenset({AWAITING_PAYMENT, PAID})
"""Where a placement that succeeded leaves an order (PAID when nothing was left to pay)."""


class OrderStats:
    """Counts by outcome: orders placed, refused (by code) and canceled (by reason); verified
    callbacks by what they led to, and the ones an order refused by reason; refunds by kind
    and each status they reach (``refunding``, then ``refunded``)."""

    __slots__ = ("callbacks", "callbacks_rejected", "canceled", "placed", "refunds", "refused")

    def __init__(self) -> None:
        self.placed = 0
        self.refused: Counter[str] = Counter()
        """Placements refused, by the refusal's code (the order's failure code when one was
        recorded, as ``insufficient_stock``; ``interrupted`` for one a crash cut short)."""
        self.canceled: Counter[str] = Counter()
        """Orders canceled, by reason: placement_failed, user, timeout, admin."""
        self.callbacks: Counter[str] = Counter()
        """Verified callbacks, by the payment log's action (applied, duplicate, failed,
        late_payment_refund, duplicate_payment_refund, ignored); ``ignored`` also counts the
        authentic notifications the provider found about no payment's result (a refund's),
        which the shop counts here, no order hearing of them. What the deadline's active query
        found is no callback: ``payment_query`` counts it by outcome."""
        self.callbacks_rejected: Counter[str] = Counter()
        """Signed callbacks an order refused: ``unknown_payment``, ``amount``, ``currency``."""
        self.refunds: Counter[tuple[str, str]] = Counter()
        """Refunds by (kind, status), each counted once in each status it reaches."""

    def decided(self, before: OrderState | None, after: OrderState, effects: list[Effect]) -> None:
        """Count what one decision of an order did (``before`` None: the order is new)."""
        status = after.status
        if before is None or before.status != status:
            if status in _PLACED and (before is None or before.status == PENDING):
                self.placed += 1
            elif status == CANCELED:
                reason = after.cancel_reason or ""
                self.canceled[reason] += 1
                if reason == PLACEMENT_FAILED:
                    self.refused[after.failure_code or ""] += 1
        for effect in effects:
            if type(effect) is SaveRefund:
                refund = effect.refund
                new = before is None or before.refund(refund.id) is None
                if refund.status == REFUNDED and new:
                    # begun and paid back at once (nothing through the gateway): begun too, or
                    # "paid back" outnumbers "begun"
                    self.refunds[refund.kind, REFUNDING] += 1
                self.refunds[refund.kind, refund.status] += 1
