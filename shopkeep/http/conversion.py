"""The one place where the shop's values become the wire's, and the wire's become the shop's.

The shop's views carry ids as ints and times as Unix seconds (floats); SPEC 7's wire carries
ids as decimal strings and times as RFC 3339 UTC strings. The ``*_out`` functions build the
response types of ``schemas.py`` from the views; :func:`ref_in` and :func:`time_in` read ids and
times from requests: an id no int64 can be names nothing (404, as any id that names nothing),
and a time beyond what RFC 3339 can write in UTC is taken as the nearest one it can.

The types given to ``cast`` are strings where they are unions: ``cast`` is a no-op at run time,
but its first argument is evaluated, and ``X | None`` builds (and hashes) a new union at every
call, which cost an order's conversion as much as the rest of it together.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import cast

from shopkeep.actors.order_messages import OrderView, PaymentView, RefundView, ReturnView
from shopkeep.actors.order_store import HistoryEntry
from shopkeep.actors.protocol import CouponView, GoodsView, UserView
from shopkeep.errors import FieldError, ShopError
from shopkeep.http.schemas import (
    CouponOut,
    CouponState,
    CreatedUserOut,
    Gateway,
    GoodsOut,
    HistoryOut,
    OrderItemOut,
    OrderOut,
    OrderStatus,
    PaymentOut,
    PaymentStatus,
    RefundKind,
    RefundOut,
    RefundStatus,
    ReturnOut,
    ReturnStatus,
    UserOut,
)
from shopkeep.refusals import NOT_FOUND
from shopkeep.requests import OUTSIDE_YEARS, id_in_text, moment_in_the_years


def id_out(value: int) -> str:
    """An id as it travels."""
    return str(value)


_utc = datetime.fromtimestamp


@functools.lru_cache(maxsize=8)
def _whole_seconds(seconds: float) -> timedelta:
    """``seconds`` (whole) as a timedelta, kept for the few an order's deadline is ahead.

    ``created + timedelta(seconds=b - a)`` is the very datetime ``fromtimestamp(b)`` makes when
    ``b - a`` is whole: the difference of two such timestamps is exact, so ``b`` is ``a`` plus
    whole seconds, with the same fraction of a second, rounded the same to microseconds.
    """
    return timedelta(seconds=seconds)


def time_out(seconds: float) -> datetime:
    """Unix seconds as an aware UTC datetime (msgspec writes it as RFC 3339 with ``Z``)."""
    return datetime.fromtimestamp(seconds, UTC)


def maybe_id(value: int | None) -> str | None:
    """An optional id."""
    return None if value is None else str(value)


def maybe_time(seconds: float | None) -> datetime | None:
    """An optional time."""
    return None if seconds is None else time_out(seconds)


def ref_in(value: str, what: str) -> int:
    """The id of a ``what`` (``"order"``, ``"goods"``...) from the wire (a path, or a body's
    reference), or ShopError not_found: what is not decimal digits fitting in 64 bits names
    nothing, exactly as an id that names no ``what`` (no such order can exist); nor does an id
    with leading zeros (``0042``): one thing has one URL, as the server writes its id."""
    number = id_in_text(value)
    if number is None:
        raise ShopError(NOT_FOUND, f"{what} {value[:40]} does not exist")
    return number


def time_in(value: datetime, pointer: str) -> float:
    """An aware datetime from the wire (the body's ``pointer``) as Unix seconds. RFC 3339
    writes years 1 to 9999 with any offset, so a time may fall a few hours outside them in
    UTC, where no answer could write it back: refused, not moved to another time."""
    seconds = moment_in_the_years(value)
    if seconds is None:
        raise ShopError.invalid([FieldError(OUTSIDE_YEARS, pointer=pointer)])
    return seconds


def user_out(view: UserView) -> UserOut:
    """A user."""
    return UserOut(id_out(view.id), view.name, view.balance, view.points)


def created_user_out(view: UserView, token: str) -> CreatedUserOut:
    """A new user and their token."""
    return CreatedUserOut(id_out(view.id), view.name, view.balance, view.points, token)


def goods_out(view: GoodsView) -> GoodsOut:
    """A goods."""
    return GoodsOut(id_out(view.id), view.name, view.price, view.stock)


def coupon_out(view: CouponView) -> CouponOut:
    """A coupon."""
    return CouponOut(
        id_out(view.id),
        id_out(view.user_id),
        view.value,
        view.min_order_amount,
        maybe_time(view.expires_at),
        cast(CouponState, view.state),
        maybe_id(view.order_id),
    )


def order_out(view: OrderView) -> OrderOut:
    """An order.

    Written out field by field, positionally and without the small helpers above: it is on
    the path of every placement, and their calls cost as much as the conversion itself. An
    order confirmed in the turn that created it has one time for both: one datetime is made;
    and its deadline, whole seconds later, is that datetime plus those seconds (a third of
    the cost of making one).
    """
    created_at = view.created_at
    created = _utc(created_at, UTC)
    confirmed_at = view.confirmed_at
    if confirmed_at is None:
        confirmed = None
    else:
        confirmed = created if confirmed_at == created_at else _utc(confirmed_at, UTC)
    expires_at = view.expires_at
    if expires_at is None:
        expires = None
    else:
        ahead = expires_at - created_at
        expires = (
            created + _whole_seconds(ahead) if ahead % 1 == 0 else _utc(expires_at, UTC)
        )
    return OrderOut(
        str(view.id),
        str(view.user_id),
        view.status,  # type: ignore[arg-type]  # one of OrderStatus; cast() would be a call
        [OrderItemOut(str(item.goods_id), item.quantity, item.unit_price) for item in view.items],
        None if view.coupon_id is None else str(view.coupon_id),
        view.goods_amount,
        view.shipping_fee,
        view.order_amount,
        view.coupon_discount,
        view.wallet_amount,
        view.pay_amount,
        view.cancel_reason,  # type: ignore[arg-type]  # a CancelReason or None, as above
        created,
        confirmed,
        None if view.paid_at is None else _utc(view.paid_at, UTC),
        None if view.canceled_at is None else _utc(view.canceled_at, UTC),
        expires,
        view.currency,
    )


def history_out(entry: HistoryEntry) -> HistoryOut:
    """One status change."""
    return HistoryOut(
        cast("OrderStatus | None", entry.from_status),
        cast(OrderStatus, entry.to_status),
        entry.operation,
        entry.remark,
        time_out(entry.at),
    )


def payment_out(view: PaymentView) -> PaymentOut:
    """A payment."""
    return PaymentOut(
        id_out(view.id),
        id_out(view.order_id),
        view.amount,
        cast(PaymentStatus, view.status),
        cast(Gateway, view.gateway),
        view.currency,
        view.gateway_url,
        view.qr_code,
        view.code_url,
        view.client_secret,
    )


def return_out(view: ReturnView) -> ReturnOut:
    """A return request."""
    return ReturnOut(id_out(view.id), id_out(view.order_id), cast(ReturnStatus, view.status))


def refund_out(view: RefundView) -> RefundOut:
    """An after-sale record."""
    return RefundOut(
        id_out(view.id),
        id_out(view.order_id),
        cast(RefundKind, view.kind),
        view.wallet_amount,
        view.gateway_amount,
        cast(RefundStatus, view.status),
        time_out(view.created_at),
    )
