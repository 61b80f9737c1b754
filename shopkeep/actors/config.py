"""The shop's business settings (SPEC sections 2 to 5), one frozen value."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

from shopkeep.payments.money import CURRENCIES
from shopkeep.payments.names import DEFAULT_CURRENCY
from shopkeep.requests import MAX_AMOUNT

MAX_HELD: Final = 2**53 - 1
"""The most units a goods is ever supplied (its first stock and every restock) and the most a
wallet's balance may hold: the largest integer a JavaScript reader of the JSON holds exactly
(``Number.MAX_SAFE_INTEGER``), far below the store's 64-bit limit. A restock or a credit past
it is refused. A goods' stock never passes it (what orders give back was supplied first); a
wallet may, by the wallet amounts of orders canceled or returned after a credit filled it (the
user does not hold what its orders took). No shop reaches it (90 trillion yuan); without it,
restocks and credits of the largest amount would take a goods and a wallet where a browser
shows another number than the database holds."""
MAX_POINTS: Final = MAX_HELD
"""The most a points balance may hold, as a wallet: what a JavaScript reader of the JSON holds
exactly. An award is cut to it, and the audit then finds the order's ledger short of the points
it earned. No shop reaches it: a points rate of 1,000 on orders of the largest amount reaches
it in about 900 orders of 10 billion yuan each."""
MAX_QUANTITY: Final = 1_000
"""The default largest quantity of one goods in one order (``ShopConfig.max_quantity``)."""
MAX_ITEMS: Final = 50
"""The default most distinct goods in one order (``ShopConfig.max_items``)."""
MAX_DURATION_S: Final = 366 * 86_400.0
"""The longest duration a setting (or a flag) takes, a year and a day: no wait of shopkeep's is
longer, and a time much further ahead is none an order's deadline could be written as
(``--order-timeout 1e12`` would place orders whose times no answer could write)."""
LEAST_S: Final = {
    "order_timeout_s": 1.0, "refund_query_after_s": 1.0,
    "refund_retry_s": 0.01, "refund_retry_max_s": 0.01, "sweep_interval_s": 0.1,
}
"""Durations with a floor of their own: a payment deadline shorter than a second cancels every
order before anyone could pay it (1e-9 cancels them as they are born), a refund asked about
again, or tried again, sooner asks the provider in a loop (1e-9: a thousand times in a second
and a half), and a deadline sweep sooner reads the database in a loop (1e-9: four fifths of a
core, the shop idle)."""
WHOLE_BOUNDS: Final[dict[str, tuple[int, int | None]]] = {
    "free_shipping_threshold": (0, MAX_AMOUNT),
    "shipping_fee": (0, MAX_AMOUNT),
    "max_unpaid_orders": (1, None),
    "points_per_unit": (0, 1_000),
    "max_quantity": (1, MAX_HELD),  # a goods never holds more: a larger one, never sold
    "max_items": (1, None),
}
"""The whole-number settings' bounds (None: none above), which ``serve``'s flags take too."""


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
    """The largest quantity of one goods in one order (the HTTP API's too: its document says
    the shop's)."""
    max_items: int = MAX_ITEMS
    """The most distinct goods in one order (the HTTP API's too)."""
    sweep_interval_s: float = 60.0
    """How often the sweep looks for overdue unpaid orders (a backup of the deadline timers)."""
    refund_retry_s: float = 1.0
    """First delay before calling the gateway again for a refund that failed (doubles)."""
    refund_retry_max_s: float = 300.0
    """Longest delay between two refund attempts."""
    currency: str = DEFAULT_CURRENCY
    """The shop's one currency (ISO 4217, SPEC 10): of its orders and payments."""
    refund_query_after_s: float = 60.0
    """A refund the provider took but has not finished is asked about after this; while it is
    still processing, again after 5, 10, 20, then every 30 minutes (never sooner than this:
    ``refund_rules.query_delay``)."""
    payment_query_grace_s: float = 30.0
    """At the deadline, an open payment is asked of the provider first (SPEC 10's active
    query); the order waits this long for the answer before it times out anyway."""
    one_turn_placement: bool = True
    """Place an order in one turn and one unit of work when its user, goods and coupon can join
    the order's turn (``placement_turn.py``); off, every placement takes the saga of asks
    (``placement.py``), which is also the path whenever a participant is busy."""

    def __post_init__(self) -> None:
        """Refuse a setting no shop can run by (ValueError naming it): a negative fee would
        have the customer paid to buy, a timeout of 0 cancel every order as it is born."""
        for name, (low, high) in WHOLE_BOUNDS.items():
            value = getattr(self, name)
            if type(value) is not int or value < low or (high is not None and value > high):
                within = f"{low} to {high}" if high is not None else f"{low} or more"
                raise ValueError(f"ShopConfig.{name} must be a whole number, {within}: {value!r}")
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type in (bool, "bool") and type(value) is not bool:
                # "no" is true, and 0 no bool: refused, not guessed
                raise ValueError(f"ShopConfig.{field.name} must be True or False: {value!r}")
            if field.name.endswith("_s") and (
                type(value) not in (int, float) or not 0 < value <= MAX_DURATION_S
            ):
                raise ValueError(
                    f"ShopConfig.{field.name} must be a number of seconds above 0, at most a "
                    f"year and a day: {value!r}"
                )
            least = LEAST_S.get(field.name)
            if least is not None and value < least:
                raise ValueError(f"ShopConfig.{field.name} must be {least:g} s or more: {value!r}")
        if self.currency not in CURRENCIES:
            raise ValueError(f"ShopConfig.currency must be an ISO 4217 code: {self.currency!r}")
