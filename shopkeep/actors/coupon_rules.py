"""The rules of the ``coupon`` kind, with no IO: who may use a coupon, and for which order.

A coupon is held by at most one order at a time (``order_id``); using it again for the same
order is the same use, and releasing it is a no-op unless that order is the one holding it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from msgspec.structs import replace

from shopkeep.actors.protocol import CouponView, CreateCoupon, ReleaseCoupon, UseCoupon
from shopkeep.refusals import COUPON_UNAVAILABLE, NOT_FOUND, VALIDATION_ERROR, Refusal


class Coupon(msgspec.Struct, frozen=True, gc=False):
    """A coupon as the actor holds it."""

    user_id: int
    value: int
    min_order_amount: int
    expires_at: float | None
    order_id: int | None

    def view(self, coupon_id: int) -> CouponView:
        """The coupon as the API shows it."""
        state = "unused" if self.order_id is None else "used"
        return CouponView(
            coupon_id,
            self.user_id,
            self.value,
            self.min_order_amount,
            self.expires_at,
            state,
            self.order_id,
        )

    def expired(self, now: float) -> bool:
        """Whether the coupon can no longer be used at ``now`` (its expiry instant included)."""
        return self.expires_at is not None and now >= self.expires_at


def create(msg: CreateCoupon) -> Coupon | Refusal:
    """A new, unused coupon."""
    if msg.value <= 0:
        return Refusal(VALIDATION_ERROR, f"a coupon's value must be positive: {msg.value}")
    if msg.min_order_amount < 0:
        return Refusal(
            VALIDATION_ERROR, f"a minimum order amount cannot be negative: {msg.min_order_amount}"
        )
    return Coupon(msg.user_id, msg.value, msg.min_order_amount, msg.expires_at, None)


def use(coupon: Coupon, coupon_id: int, msg: UseCoupon) -> tuple[Coupon, int] | Refusal:
    """Mark the coupon used by the order and answer its value, or say why it cannot be.

    The checks run in SPEC order (owner, unused, not expired, minimum met), so the refusal
    names the first reason a person would look for.
    """
    if coupon.order_id == msg.order_id:
        return coupon, coupon.value
    if coupon.user_id != msg.user_id:
        # exactly as a coupon that does not exist (SPEC 7): no oracle of others' coupons
        return Refusal(NOT_FOUND, f"coupon {coupon_id} does not exist")
    if coupon.order_id is not None:
        return Refusal(COUPON_UNAVAILABLE, f"coupon {coupon_id} is used by another order")
    if coupon.expired(msg.now):
        assert coupon.expires_at is not None
        # written as the API writes a time (RFC 3339, "Z" for UTC)
        expiry = datetime.fromtimestamp(coupon.expires_at, UTC).isoformat().replace("+00:00", "Z")
        return Refusal(COUPON_UNAVAILABLE, f"coupon {coupon_id} expired at {expiry}")
    if msg.order_amount < coupon.min_order_amount:
        return Refusal(
            COUPON_UNAVAILABLE,
            f"coupon {coupon_id} needs an order amount of {coupon.min_order_amount}, "
            f"this order is {msg.order_amount}",
        )
    return replace(coupon, order_id=msg.order_id), coupon.value


def release(coupon: Coupon, msg: ReleaseCoupon) -> Coupon | None:
    """Unused again if ``msg.order_id`` holds it; ``None`` when there is nothing to change."""
    if coupon.order_id != msg.order_id:
        return None
    return replace(coupon, order_id=None)
