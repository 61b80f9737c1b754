"""An order's state and the effects its rules ask for: plain values, no IO.

:class:`OrderState` is immutable; a rule returns a new one with the effects the shell must
write (history rows, timers, durable messages...). The shell turns each effect into SQL or a
message in the same unit of work as the state change (``order_store.py``).

Every struct here is declared ``gc=False``: immutable data that can never refer back to what
holds it, so it cannot be part of a reference cycle, and the cycle collector need not walk it
(a server holds hundreds of thousands of them: full collections walked them all, pausing the
event loop for up to ~180 ms).
"""

from __future__ import annotations

import msgspec

from shopkeep.payments.money import with_currency
from shopkeep.payments.names import DEFAULT_CURRENCY, FAILED, SUCCEEDED

# -- statuses, reasons, kinds -----------------------------------------------------------------

PENDING = "pending"
AWAITING_PAYMENT = "awaiting_payment"
PAID = "paid"
SHIPPED = "shipped"
DELIVERED = "delivered"
RETURNED = "returned"
CANCELED = "canceled"

STATUSES = (PENDING, AWAITING_PAYMENT, PAID, SHIPPED, DELIVERED, RETURNED, CANCELED)

TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({AWAITING_PAYMENT, CANCELED}),
    AWAITING_PAYMENT: frozenset({PAID, CANCELED}),
    PAID: frozenset({SHIPPED, CANCELED}),
    SHIPPED: frozenset({DELIVERED}),
    DELIVERED: frozenset({RETURNED}),
    RETURNED: frozenset(),
    CANCELED: frozenset(),
}
"""SPEC 7's state machine: from each status, where it may go. ``canceled`` and ``returned``
are terminal."""

UNPAID = frozenset({PENDING, AWAITING_PAYMENT})
"""Statuses that count against the user's unpaid-orders cap."""

PLACEMENT_FAILED = "placement_failed"
BY_USER = "user"
BY_TIMEOUT = "timeout"
BY_ADMIN = "admin"
CANCEL_REASONS = (PLACEMENT_FAILED, BY_USER, BY_TIMEOUT, BY_ADMIN)

INTERRUPTED = "interrupted"
"""The failure code of a placement cut by a crash (or a lost message) and undone."""

# payments
CREATED = "created"
REFUNDED = "refunded"
PAYMENT_STATUSES = (CREATED, SUCCEEDED, FAILED, REFUNDED)

# refunds
CANCEL_REFUND = "cancel"
RETURN_REFUND = "return"
LATE_PAYMENT = "late_payment"
DUPLICATE_PAYMENT = "duplicate_payment"
REFUND_KINDS = (CANCEL_REFUND, RETURN_REFUND, LATE_PAYMENT, DUPLICATE_PAYMENT)
REFUNDING = "refunding"

# returns
REQUESTED = "requested"
APPROVED = "approved"


# -- the state --------------------------------------------------------------------------------


class Line(msgspec.Struct, frozen=True, gc=False):
    """One item of an order; ``unit_price`` is known once its stock is taken."""

    goods_id: int
    quantity: int
    unit_price: int | None = None


class Payment(msgspec.Struct, frozen=True, gc=False):
    """A payment of the order (status created, succeeded, failed, refunded).

    ``gateway`` is the provider it goes through (SPEC 10), ``currency`` ISO 4217;
    ``checkout`` what the customer was given to pay it (the provider's
    :class:`~shopkeep.payments.provider.Checkout` as JSON; None until the provider answered)
    and ``provider_ref`` the provider's own id of it, where it has one (Stripe's PaymentIntent).
    """

    id: int
    amount: int
    status: str
    txn_id: str | None
    created_at: float
    gateway: str = "sandbox"
    currency: str = DEFAULT_CURRENCY
    checkout: str | None = None
    provider_ref: str | None = None


class Refund(msgspec.Struct, frozen=True, gc=False):
    """An after-sale record: what goes back to the wallet and through the gateway."""

    id: int
    kind: str
    payment_id: int | None
    wallet_amount: int
    gateway_amount: int
    status: str
    created_at: float
    refunded_at: float | None = None

    def told(self, currency: str, provider_part: str = "through the provider") -> str:
        """The refund as the order's history tells it: which, why, and where its money went,
        in units of ``currency`` as a person reads them (``3.57 CNY``; the API's amounts are in
        minor units, a sentence's are not), the provider's part said as ``provider_part`` (one
        the staff paid back another way, say)."""
        parts = []
        if self.wallet_amount:
            parts.append(f"{with_currency(self.wallet_amount, currency)} to the wallet")
        if self.gateway_amount:
            parts.append(f"{with_currency(self.gateway_amount, currency)} {provider_part}")
        return f"refund {self.id} ({self.kind}): {', '.join(parts) or 'nothing to pay back'}"


class ReturnRequest(msgspec.Struct, frozen=True, gc=False):
    """A return asked for after delivery (status requested, approved)."""

    id: int
    reason: str
    status: str
    created_at: float
    approved_at: float | None = None


class OrderFields(msgspec.Struct, frozen=True, gc=False):
    """An order's own fields, as SPEC 7's Order shows them (its items apart): declared here
    once. :class:`OrderState` (the actor's memory, and the ``orders`` row) and
    ``order_messages.OrderView`` (the view every API answers with) both extend it, and the row's
    columns are its fields (``ROW_FIELDS``). The HTTP layer's wire shape
    (``http.schemas.OrderOut``) is declared apart, since its types differ (ids as strings,
    times as RFC 3339, statuses as the OpenAPI document's enums), and a test holds it to exactly
    these fields and the items. Money is in minor units, times in Unix seconds."""

    id: int
    user_id: int
    status: str
    coupon_id: int | None
    created_at: float
    goods_amount: int = 0
    shipping_fee: int = 0
    order_amount: int = 0
    coupon_discount: int = 0
    wallet_amount: int = 0
    pay_amount: int = 0
    cancel_reason: str | None = None
    confirmed_at: float | None = None
    paid_at: float | None = None
    canceled_at: float | None = None
    expires_at: float | None = None
    currency: str = DEFAULT_CURRENCY
    """ISO 4217: the shop's currency when the order was placed (SPEC 10)."""


class OrderState(OrderFields, frozen=True, gc=False, kw_only=True):
    """Everything one order actor knows: the order's fields and what only the shop sees.

    ``collected`` holds every (payment id, gateway transaction id) whose money the shop has
    accounted for (applied, or being refunded), so a repeated callback is recognised;
    ``paid_payment_id`` is the payment that paid the order.
    """

    lines: tuple[Line, ...]
    use_balance: int
    points: int = 0
    failure_code: str | None = None
    shipped_at: float | None = None
    delivered_at: float | None = None
    payments: tuple[Payment, ...] = ()
    refunds: tuple[Refund, ...] = ()
    returns: tuple[ReturnRequest, ...] = ()
    collected: frozenset[tuple[int, str | None]] = frozenset()
    paid_payment_id: int | None = None

    @property
    def goods_ids(self) -> tuple[int, ...]:
        """Every goods of the order."""
        return tuple(line.goods_id for line in self.lines)

    def payment(self, payment_id: int) -> Payment | None:
        """The payment ``payment_id`` of this order, if it has one."""
        return next((p for p in self.payments if p.id == payment_id), None)

    def refund(self, refund_id: int) -> Refund | None:
        """The refund ``refund_id`` of this order, if it has one."""
        return next((r for r in self.refunds if r.id == refund_id), None)

    def return_request(self, return_id: int) -> ReturnRequest | None:
        """The return ``return_id`` of this order, if it has one."""
        return next((r for r in self.returns if r.id == return_id), None)


NOT_IN_ROW = frozenset({"id", "lines", "payments", "refunds", "returns", "collected",
                        "paid_payment_id"})
"""OrderState's fields the ``orders`` row does not hold: the id is its key; the rest are rows
of their own tables (items, payments, refunds, returns) or read from the payment log."""
ROW_FIELDS = tuple(name for name in OrderState.__struct_fields__ if name not in NOT_IN_ROW)
"""The ``orders`` table's columns besides ``id``: one per field of OrderState, in its order."""
VIEW_FIELDS = OrderFields.__struct_fields__
"""The order's own fields, in their order (what a view copies from the state, positionally:
the fields that extend them are keyword-only)."""


# -- effects ----------------------------------------------------------------------------------


class History(msgspec.Struct, frozen=True, gc=False):
    """Append an order_history row (``from_status`` None for the first)."""

    from_status: str | None
    to_status: str
    operation: str
    remark: str = ""


class SaveLines(msgspec.Struct, frozen=True, gc=False):
    """Write the unit prices of the order's items."""


class ArmDeadline(msgspec.Struct, frozen=True, gc=False):
    """Arm the durable payment deadline at ``due_at``; ``unanswered``: the deadline armed
    again to wait for the provider's answers, and what the history says if they never come."""

    due_at: float
    unanswered: str | None = None


class CancelDeadline(msgspec.Struct, frozen=True, gc=False):
    """Cancel the payment deadline."""


class Settled(msgspec.Struct, frozen=True, gc=False):
    """Tell the user, durably, that the order is no longer unpaid."""


class Award(msgspec.Struct, frozen=True, gc=False):
    """Award ``points`` to the user, durably."""

    points: int


class Release(msgspec.Struct, frozen=True, gc=False):
    """Give back, durably, what the order holds: stock of every goods (``stock_reason``), the
    coupon if ``coupon``, ``wallet_amount``, and the points if ``revoke_points``."""

    stock_reason: str
    coupon: bool
    wallet_amount: int
    revoke_points: bool


class Fulfil(msgspec.Struct, frozen=True, gc=False):
    """Hand the order to the warehouse (a shipment awaiting)."""


class AskProvider(msgspec.Struct, frozen=True, gc=False):
    """Ask the provider, durably, where payment ``payment_id`` stands, and have it closed there
    unless paid (SPEC 10's active query): one of the deadline's questions, whose answer the
    order waits for until ``answer_by``; or (``answer_by`` None) one the order does not wait
    for, once it takes the payment no more (canceled unpaid, paid by another payment, ended
    while its checkout was made), a payment collected meanwhile then found and refunded."""

    payment_id: int
    answer_by: float | None = None


class SavePayment(msgspec.Struct, frozen=True, gc=False):
    """Insert or update a payments row."""

    payment: Payment


class LogPayment(msgspec.Struct, frozen=True, gc=False):
    """Append a payment_log row: what a verified callback said and what it led to."""

    payment_id: int
    status: str
    amount: int
    txn_id: str | None
    action: str
    duplicate: bool


class SaveRefund(msgspec.Struct, frozen=True, gc=False):
    """Insert or update a refunds row and append a refund_log row ``event``."""

    refund: Refund
    event: str
    detail: str = ""


class RequestRefund(msgspec.Struct, frozen=True, gc=False):
    """Ask the refunder, durably, to refund the gateway part of ``refund``: the transaction
    ``txn_id`` when given (a second one of the payment, refunded as a duplicate), else the
    payment's own."""

    refund: Refund
    txn_id: str | None = None


class SaveReturn(msgspec.Struct, frozen=True, gc=False):
    """Insert or update a returns row."""

    request: ReturnRequest


Effect = (
    History
    | SaveLines
    | ArmDeadline
    | CancelDeadline
    | Settled
    | Award
    | Release
    | Fulfil
    | AskProvider
    | SavePayment
    | LogPayment
    | SaveRefund
    | RequestRefund
    | SaveReturn
)

Decision = tuple[OrderState, list[Effect]]
"""A rule's result: the new state and what to write or send with it."""
