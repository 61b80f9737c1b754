"""The wire format of SPEC 7: the msgspec types of every request and response body.

Request types forbid unknown fields and bound every value, so a body with a field the server
owns (``status``, an amount, an owner, an ``id``) is refused 422 validation_error rather than
ignored: mass assignment has nowhere to land. Ids travel as decimal strings (JavaScript loses
precision above 2**53) and times as RFC 3339 UTC strings; ``conversion.py`` is the one place
that turns the shop's int ids and Unix seconds into them. The OpenAPI document is generated
from these same types (``openapi.py``), so it cannot drift from what the handlers decode.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from shopkeep.actors.audit import AuditReport
from shopkeep.actors.config import MAX_HELD, ShopConfig
from shopkeep.actors.order_rules import line_problems
from shopkeep.errors import FieldError
from shopkeep.requests import (
    ID_PATTERN,
    MAX_AMOUNT,
    MAX_NAME,
    MAX_REASON,
    NAME_PATTERN,
    OUTSIDE_YEARS,
    TEXT_PATTERN,
    moment_in_the_years,
)

Id = Annotated[
    str, Meta(pattern=ID_PATTERN, description="A 64-bit id as a decimal string (no leading zeros).")
]
Amount = Annotated[int, Meta(ge=0, le=MAX_AMOUNT, description="Money, in minor units (cents).")]
PositiveAmount = Annotated[int, Meta(ge=1, le=MAX_AMOUNT, description="Money, in minor units.")]
Stock = Annotated[int, Meta(ge=0, le=MAX_AMOUNT, description="Units on hand.")]
Restock = Annotated[
    int,
    Meta(ge=1, le=MAX_AMOUNT, description=f"Units to add; refused 422 `validation_error` when "
                                          f"the units supplied in all (the first stock and "
                                          f"every restock) would pass {MAX_HELD}."),
]
Quantity = Annotated[int, Meta(ge=1)]
"""At most the shop's ``max_quantity``: the rules check it (``order_rules.validate_request``),
and the OpenAPI document says the shop's, not a bound of the type's that a shop may lower."""
Name = Annotated[
    str,
    Meta(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN,
         description="Not blank; no control character."),
]
Time = Annotated[
    datetime,
    Meta(
        tz=True,
        description="An RFC 3339 time with its offset. One that falls before the year 1 or "
        "after 9999 in UTC (only an offset can make it so) is refused, as a leap second "
        "(`:60`) is: give the second after it. A space in place of the `T`, which RFC 3339 "
        "lets an application take for readability (section 5.6), is taken too.",
    ),
]
Timestamp = Annotated[datetime, Meta(tz=True, description="An RFC 3339 time, in UTC.")]

OrderStatus = Literal[
    "pending", "awaiting_payment", "paid", "shipped", "delivered", "returned", "canceled"
]
CancelReason = Literal["placement_failed", "user", "timeout", "admin"]
PaymentStatus = Literal["created", "succeeded", "failed", "refunded"]
Gateway = Literal["sandbox", "alipay", "wechatpay", "stripe"]
RefundKind = Literal["cancel", "return", "late_payment", "duplicate_payment"]
RefundStatus = Literal["refunding", "refunded"]
ReturnStatus = Literal["requested", "approved"]
CouponState = Literal["unused", "used"]


class RequestBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of request bodies: unknown fields are refused, never ignored. An optional field
    also takes ``null``, meaning what its absence means (a client serialising its own "none"
    writes ``null``); a required one never does."""


# -- requests ---------------------------------------------------------------------------------


class CreateUserRequest(RequestBody, frozen=True):
    """POST /v1/users."""

    name: Name
    balance: Annotated[
        Amount | None, Meta(description="The wallet's first balance; absent or null: 0.")
    ] = None


class CreditRequest(RequestBody, frozen=True):
    """POST /v1/users/{user_id}/wallet/credit."""

    amount: Annotated[
        int,
        Meta(ge=1, le=MAX_AMOUNT, description=f"Money to add, in minor units; refused 422 "
                                              f"`validation_error` when the balance would pass "
                                              f"{MAX_HELD} (what orders give back to the "
                                              f"wallet, on a cancel or a return, is never "
                                              f"refused, and may take it past)."),
    ]


class CreateGoodsRequest(RequestBody, frozen=True):
    """POST /v1/goods."""

    name: Name
    price: Amount
    stock: Stock


class UpdateGoodsRequest(RequestBody, frozen=True):
    """PATCH /v1/goods/{goods_id}: a new price, units to add, or both."""

    price: Amount | None = None
    restock: Restock | None = None


class CreateCouponRequest(RequestBody, frozen=True):
    """POST /v1/coupons."""

    user_id: Id
    value: PositiveAmount
    min_order_amount: Annotated[
        Amount | None,
        Meta(description="The order amount (goods and shipping) the coupon needs; absent or "
                         "null: 0."),
    ] = None
    expires_at: Time | None = None

    @staticmethod
    def written_problems(written: Any, config: ShopConfig) -> list[FieldError]:
        """An expiry an offset takes outside the years 1 to 9999 in UTC, which the types take
        (:func:`shopkeep.http.conversion.time_in` refuses it), listed beside the types'
        problems: every problem at once (SPEC 7)."""
        text = written.get("expires_at") if isinstance(written, dict) else None
        try:
            moment = msgspec.convert(text, datetime) if isinstance(text, str) else None
        except msgspec.ValidationError:  # no time: the types said so already
            return []
        if moment is None or moment.tzinfo is None or moment_in_the_years(moment) is not None:
            return []
        return [FieldError(OUTSIDE_YEARS, pointer="/expires_at")]


class OrderItemRequest(RequestBody, frozen=True):
    """One line of an order: each goods at most once."""

    goods_id: Id
    quantity: Quantity


def _line_as_written(item: Any) -> tuple[str | None, int | None]:
    """An order's line as its body wrote it: its goods id and its quantity, each None where
    it is none (the types refuse that part already, and it breaks no rule of the lines)."""
    if not isinstance(item, dict):
        return None, None
    goods_id, quantity = item.get("goods_id"), item.get("quantity")
    return (
        goods_id if isinstance(goods_id, str) and _ID.search(goods_id) else None,
        quantity if type(quantity) is int else None,
    )


_ID: Final = re.compile(ID_PATTERN)


class PlaceOrderRequest(RequestBody, frozen=True):
    """POST /v1/orders."""

    items: Annotated[
        list[OrderItemRequest],
        Meta(
            min_length=1,  # at most the shop's max_items, as a quantity (see Quantity)
            description="One line per goods: a goods listed twice is refused 422, and so is "
                        "an order whose order amount (goods and shipping) would exceed "
                        f"{MAX_AMOUNT}, the most any payment carries (with `?wait=false`, "
                        "found once the goods are priced: the order, answered 202, ends "
                        "canceled `placement_failed`, unpriced, its history saying why).",
        ),
    ]
    coupon_id: Id | None = None
    use_balance: Annotated[
        Amount | None,
        Meta(description="The most of the wallet's balance to use, in minor units (absent or "
                         "null: 0): the order uses that much, or what is left to pay after "
                         "the coupon if less (`wallet_amount`), refused 409 "
                         "`insufficient_balance` when that is more than the balance."),
    ] = None
    expected_total: Annotated[
        Amount | None,
        Meta(description="What the customer expects to pay, in minor units, from the wallet "
                         "and through the provider: `pay_amount` + `wallet_amount` (after the "
                         "coupon). Another is refused 409 `price_changed`, a price rise the "
                         "wallet would pay for included."),
    ] = None

    @staticmethod
    def written_problems(written: Any, config: ShopConfig) -> list[FieldError]:
        """What the shop's rules for an order's lines find in a body its types refused (a
        goods listed twice, a quantity past the shop's most, more lines than it takes), to be
        listed beside the types' problems: every problem at once (SPEC 7)."""
        items = written.get("items") if isinstance(written, dict) else None
        if not isinstance(items, list):
            return []
        lines = [_line_as_written(item) for item in items]
        return [FieldError(detail, pointer=where) for where, detail in line_problems(lines, config)]


class ReturnRequest(RequestBody, frozen=True):
    """POST /v1/orders/{order_id}/returns (the body may be omitted)."""

    reason: Annotated[
        Annotated[str, Meta(max_length=MAX_REASON, pattern=TEXT_PATTERN)] | None,
        Meta(description="No control character; absent or null: none given."),
    ] = None


class EmptyRequest(RequestBody, frozen=True):
    """The body of an operation that takes none: absent, or ``{}``."""


class CallbackRequest(RequestBody, frozen=True):
    """POST /v1/payments/callback, as the gateway sends it. The handler passes the raw bytes
    to the shop, which verifies the ``Shopkeep-Signature`` over them before decoding."""

    payment_id: Id
    order_id: Id
    amount: Annotated[
        Amount,
        Meta(description="Written as an integer (`2500`), as the gateway writes it: a callback "
                         "is read as it was signed, so `2500.0` is no callback (400)."),
    ]
    status: Literal["succeeded", "failed"]
    gateway_txn_id: Annotated[
        str | None,
        Meta(description="The gateway's transaction id: required when `status` is "
                         "`succeeded` (else 400), which a refund then names."),
    ]
    currency: Annotated[
        str | None,
        Meta(description="Optional (the sandbox sends none); when named, it must be the "
                         "payment's currency, else the callback is refused 400."),
    ] = None


class SandboxCompleteRequest(RequestBody, frozen=True):
    """POST /sandbox/payments/{payment_id}/complete (sandbox mode only)."""

    result: Literal["succeeded", "failed"]


# -- responses --------------------------------------------------------------------------------


class UserOut(msgspec.Struct, frozen=True):
    """A user."""

    id: Id
    name: str
    balance: int
    points: int


class CreatedUserOut(msgspec.Struct, frozen=True):
    """A new user and their token (shown this once: only its hash is kept)."""

    id: Id
    name: str
    balance: int
    points: int
    token: str


class TokenOut(msgspec.Struct, frozen=True):
    """A user's new token (shown this once); the one it replaced names nobody any more."""

    token: str


class GoodsOut(msgspec.Struct, frozen=True):
    """A goods (SKU)."""

    id: Id
    name: str
    price: int
    stock: int


class CouponOut(msgspec.Struct, frozen=True):
    """A coupon; ``order_id`` is the order that used it."""

    id: Id
    user_id: Id
    value: int
    min_order_amount: int
    expires_at: Timestamp | None
    state: CouponState
    order_id: Id | None


class OrderItemOut(msgspec.Struct, frozen=True):
    """One line of an order (``unit_price`` is null while the order is pending, and stays
    null on an order whose placement failed before its goods were priced)."""

    goods_id: Id
    quantity: int
    unit_price: int | None


class OrderOut(msgspec.Struct, frozen=True):
    """An order (SPEC 7). Its amounts are known once it is priced: while it is `pending` (its
    placement still running) they are 0 and each item's `unit_price` is null, not "nothing
    to pay" (read `status` first), and an order canceled `placement_failed` before it was
    priced keeps them so."""

    id: Id
    user_id: Id
    status: OrderStatus
    items: list[OrderItemOut]
    coupon_id: Id | None
    goods_amount: int
    shipping_fee: int
    order_amount: int
    coupon_discount: int
    wallet_amount: int
    pay_amount: int
    cancel_reason: CancelReason | None
    created_at: Timestamp
    confirmed_at: Timestamp | None
    paid_at: Timestamp | None
    canceled_at: Timestamp | None
    expires_at: Timestamp | None
    currency: str
    """ISO 4217 (SPEC 10): the currency of every amount of the order."""


class HistoryOut(msgspec.Struct, frozen=True):
    """One status change of an order."""

    from_: OrderStatus | None = msgspec.field(name="from")
    to: OrderStatus
    operation: str
    remark: str
    at: Timestamp


class PaymentOut(msgspec.Struct, frozen=True, omit_defaults=True):
    """A payment: its provider (``gateway``) and ``currency``, and what the customer needs to
    pay it, whichever the provider gives (SPEC 10): ``gateway_url`` (the sandbox, Alipay's
    page pay), ``qr_code`` (Alipay with ``?channel=qr``; beside ``gateway_url`` once asked for
    both), ``code_url`` (WeChat Pay Native) or ``client_secret`` (Stripe's PaymentIntent). The
    others are absent."""

    id: Id
    order_id: Id
    amount: int
    status: PaymentStatus
    gateway: Gateway
    currency: str
    gateway_url: str | None = None
    qr_code: str | None = None
    code_url: str | None = None
    client_secret: str | None = None


class ReturnOut(msgspec.Struct, frozen=True):
    """A return request."""

    id: Id
    order_id: Id
    status: ReturnStatus


class RefundOut(msgspec.Struct, frozen=True):
    """An after-sale record."""

    id: Id
    order_id: Id
    kind: RefundKind
    wallet_amount: int
    gateway_amount: int
    status: RefundStatus
    created_at: Timestamp


class GoodsPage(msgspec.Struct, frozen=True):
    """A page of goods, newest first; pass ``next_cursor`` back as ``?cursor=``."""

    items: list[GoodsOut]
    next_cursor: str | None


class CouponPage(msgspec.Struct, frozen=True):
    """A page of coupons, newest first."""

    items: list[CouponOut]
    next_cursor: str | None


class OrderPage(msgspec.Struct, frozen=True):
    """A page of orders, newest first."""

    items: list[OrderOut]
    next_cursor: str | None


class HistoryList(msgspec.Struct, frozen=True):
    """A page of an order's history, oldest first (``next_cursor``: null on the last page)."""

    items: list[HistoryOut]
    next_cursor: str | None


class RefundList(msgspec.Struct, frozen=True):
    """A page of an order's refunds, oldest first (``next_cursor``: null on the last page)."""

    items: list[RefundOut]
    next_cursor: str | None


class CallbackReceived(msgspec.Struct, frozen=True):
    """The callback was handled (duplicates and late ones included)."""

    received: bool


class Health(msgspec.Struct, frozen=True):
    """Liveness."""

    status: str


AuditOut = AuditReport
"""The audit's answer: ``{"ok", "checks": [{"name", "ok", "detail"}]}``."""
