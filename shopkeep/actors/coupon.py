"""The ``coupon`` kind: one actor per coupon, holding its owner, terms and the order using it.

The shell around :mod:`shopkeep.actors.coupon_rules`. A coupon's whole state is one row, and
``coupons.order_id`` is the single place that says which order holds it, so both UseCoupon and
ReleaseCoupon are idempotent by their rules alone (use by the holder again answers its value;
a release by anyone but the holder is a no-op) and need no ledger.
"""

from __future__ import annotations

from typing import Any

from shopkeep.actors.coupon_rules import Coupon, create, release, use
from shopkeep.actors.key_store import run_keyed
from shopkeep.actors.protocol import (
    CouponMessage,
    CouponView,
    CreateCoupon,
    GetCoupon,
    Keyed,
    Quote,
    ReleaseCoupon,
    UseCoupon,
)
from shopkeep.paging import Page, page_bounds, paged
from shopkeep.refusals import INVALID_STATE, NOT_FOUND, Refusal
from shopkeep.runtime import Actor, Context
from shopkeep.runtime.actor import ActivationContext
from shopkeep.runtime.join import NotJoinable
from shopkeep.store.reader import Reader

LOAD_SQL = (
    "SELECT id, user_id, value, min_order_amount, expires_at, order_id FROM coupons "
    "WHERE id IN (SELECT value FROM json_each(?))"
)
"""The coupons of a turn's activations, loaded together (``KeyedLoads``)."""
INSERT_SQL = (
    "INSERT INTO coupons (id, user_id, value, min_order_amount, expires_at, order_id, created_at) "
    "VALUES (?, ?, ?, ?, ?, NULL, ?)"
)
HOLD_SQL = "UPDATE coupons SET order_id = ? WHERE id = ?"


class CouponActor(Actor):
    """One coupon: owner, value, minimum, expiry, and the order holding it."""

    __slots__ = ("coupon",)

    kind = "coupon"
    messages = CouponMessage

    coupon: Coupon | None

    async def on_activate(self, ctx: ActivationContext) -> None:
        """Load the coupons row (absent: not created yet), off the loop and with the other
        coupons loaded in the same turn: a coupon is loaded once, for the order that uses it,
        so its row is seldom in the page cache, and concurrent placements load many."""
        row = await ctx.keyed_loads.load(LOAD_SQL, self.address.id)
        if row is None:
            self.coupon = None
            return
        user_id, value, minimum, expires_at, order_id = row
        self.coupon = Coupon(
            int(user_id),
            int(value),
            int(minimum),
            None if expires_at is None else float(expires_at),
            None if order_id is None else int(order_id),
        )

    @property
    def absent(self) -> bool:
        """Nothing by this id (the runtime drops the activation once it is idle)."""
        return self.coupon is None

    async def receive(self, ctx: Context, message: Any) -> Any:
        """Handle one CouponMessage; see :mod:`shopkeep.actors.protocol` for each answer."""
        coupon_id = self.address.id
        coupon = self.coupon
        if coupon is None:
            if isinstance(message, CreateCoupon):
                return self._create(ctx, message)
            if isinstance(message, Keyed) and isinstance(message.message, CreateCoupon):
                # the admin's create under an Idempotency-Key: its replay makes no second coupon
                return await run_keyed(ctx, message, self.receive)
            return Refusal(NOT_FOUND, f"coupon {coupon_id} does not exist")
        match message:
            case GetCoupon():
                return coupon.view(coupon_id)
            case Quote(asked):
                return self.check(asked)
            case CreateCoupon():
                return Refusal(INVALID_STATE, f"coupon {coupon_id} already exists")
            case UseCoupon():
                decision = use(coupon, coupon_id, message)
                if isinstance(decision, Refusal):
                    return decision
                updated, value = decision
                if updated != coupon:
                    self._hold(ctx, updated)
                return value
            case ReleaseCoupon():
                released = release(coupon, message)
                if released is not None:
                    self._hold(ctx, released)
                return None
        raise TypeError(f"coupon actors do not handle {type(message).__name__}")

    def check(self, message: Any) -> Any:
        """What UseCoupon would answer now (the coupon's value, or the refusal)."""
        coupon = self.coupon
        if not isinstance(message, UseCoupon):
            raise NotJoinable(f"coupon actors answer no check of {type(message).__name__}")
        if coupon is None:
            return Refusal(NOT_FOUND, f"coupon {self.address.id} does not exist")
        decision = use(coupon, self.address.id, message)
        return decision if isinstance(decision, Refusal) else decision[1]

    def _create(self, ctx: Context, msg: CreateCoupon) -> Any:
        coupon = create(msg)
        if isinstance(coupon, Refusal):
            return coupon
        ctx.execute(
            INSERT_SQL,
            (
                self.address.id,
                coupon.user_id,
                coupon.value,
                coupon.min_order_amount,
                coupon.expires_at,
                ctx.now(),
            ),
        )
        self.coupon = coupon
        return coupon.view(self.address.id)

    def _hold(self, ctx: Context, coupon: Coupon) -> None:
        self.coupon = coupon
        ctx.execute(HOLD_SQL, (coupon.order_id, self.address.id))


async def list_coupons(
    reader: Reader, user_id: int, limit: int | None, cursor: str | None
) -> Page[CouponView]:
    """A user's coupons, newest first."""
    size, below = page_bounds(limit, cursor)
    rows = await reader.fetchall(
        "SELECT id, user_id, value, min_order_amount, expires_at, order_id FROM coupons "
        "WHERE user_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
        (user_id, below, size + 1),
    )
    views = [
        CouponView(r[0], r[1], r[2], r[3], r[4], "used" if r[5] is not None else "unused", r[5])
        for r in rows
    ]
    return paged(views, [row[0] for row in rows], size)
