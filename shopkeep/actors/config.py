"""The shop's business settings (SPEC sections 2 to 5), one frozen value."""

from __future__ import annotations

from dataclasses import dataclass

MAX_AMOUNT = 10**12
"""The largest amount of money (minor units) any request may carry: 10 billion."""
MAX_QUANTITY = 1_000
"""The default largest quantity of one goods in one order."""
MAX_ITEMS = 50
"""The default most distinct goods in one order."""


@dataclass(frozen=True)
class ShopConfig:
    """Rules a shop may tune. Money is in minor units (cents)."""

    free_shipping_threshold: int = 10_000
    """Shipping is free when the goods amount reaches this (100.00)."""
    shipping_fee: int = 1_000
    """The flat shipping fee otherwise (10.00)."""
    order_timeout_s: float = 1800.0
    """An order still unpaid this long after confirmation is canceled (reason timeout)."""
    max_unpaid_orders: int = 10
    """Unpaid orders a user may hold at once; one more is refused too_many_unpaid_orders."""
    points_per_unit: int = 1
    """Points earned per whole currency unit (100 minor units) of pay amount + wallet amount."""
    max_quantity: int = MAX_QUANTITY
    """The largest quantity of one goods in one order."""
    max_items: int = MAX_ITEMS
    """The most distinct goods in one order."""
    sweep_interval_s: float = 60.0
    """How often the sweep looks for overdue unpaid orders (a backup of the deadline timers)."""
    refund_retry_s: float = 1.0
    """First delay before calling the gateway again for a refund that failed (doubles)."""
    refund_retry_max_s: float = 300.0
    """Longest delay between two refund attempts."""
    currency: str = "CNY"
    """The shop's one currency (ISO 4217, SPEC 10): of its orders and payments."""
    refund_query_after_s: float = 600.0
    """A refund the provider took but has not finished is asked about again after this."""
    payment_query_grace_s: float = 30.0
    """At the deadline, an open payment is asked of the provider first (SPEC 10's active
    query); the order waits this long for the answer before it times out anyway."""
    callback_tolerance_s: float = 300.0
    """A payment callback signed more than this far from now is refused (replays)."""
    one_turn_placement: bool = True
    """Place an order in one turn and one unit of work when its user, goods and coupon can join
    the order's turn (``placement_turn.py``); off, every placement takes the saga of asks
    (``placement.py``), which is also the path whenever a participant is busy."""
