"""The ``assets`` kind: one ReleaseAssets fanned out to one durable message per kind of asset.

The supervisor of an order's compensations. Whatever ends what an order holds (a failed
placement, a cancel, a timeout, an approved return: the order's own unit) says *what* the
order holds in one :class:`~shopkeep.actors.protocol.ReleaseAssets`, sent durably to
``assets:<order id>``. This actor turns it into the messages each asset's own actor
understands, all sent with ``ctx.send`` in the one unit of work that also consumes the
ReleaseAssets: either every one of them is in the outbox, or none is and the ReleaseAssets is
delivered again.

Each kind of asset is one entry of :data:`ASSET_KINDS`. Adding a kind of asset (gift cards,
say) is one more function there: ReleaseAssets -> the (address, message) pairs that give that
kind back, and one more field on ReleaseAssets. The cancel code does not change.

Every message sent is idempotent at its receiver (ReturnStock gives back the net still held,
ReleaseCoupon only frees a coupon held by that order, ReleaseWallet and RevokePoints apply once
per order and reason), so a ReleaseAssets delivered twice, even under two message ids, gives
everything back exactly once.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import structlog

from shopkeep.actors.order_messages import GetOrder, OrderView
from shopkeep.actors.protocol import (
    AssetsMessage,
    CouponMessage,
    GetCoupon,
    GetGoods,
    GetUser,
    GoodsMessage,
    ReleaseAssets,
    ReleaseCoupon,
    ReleasesSent,
    ReleaseWallet,
    ReturnStock,
    RevokePoints,
    UserMessage,
)
from shopkeep.runtime import Actor, ActorSystem, ActorSystemError, Address, Context
from shopkeep.store.errors import StoreError

log = structlog.get_logger("shopkeep.assets")

Release = tuple[Address, GoodsMessage | CouponMessage | UserMessage]
"""One durable message giving back one asset: to whom, and what."""

AssetKind = Callable[[ReleaseAssets], list[Release]]
"""How one kind of asset is given back: the messages for it (none if the order holds none)."""


def stock_back(msg: ReleaseAssets) -> list[Release]:
    """Every goods the order took gets its stock back (``release`` or ``return``)."""
    back = ReturnStock(msg.order_id, msg.stock_reason)
    return [(Address("goods", goods_id), back) for goods_id in dict.fromkeys(msg.goods_ids)]


def coupon_back(msg: ReleaseAssets) -> list[Release]:
    """The coupon, if the order used one, is unused again."""
    if msg.coupon_id is None:
        return []
    return [(Address("coupon", msg.coupon_id), ReleaseCoupon(msg.order_id))]


def wallet_back(msg: ReleaseAssets) -> list[Release]:
    """The wallet amount goes back to the user (capped at the order's debit by the user)."""
    if msg.wallet_amount <= 0:
        return []
    return [(Address("user", msg.user_id), ReleaseWallet(msg.order_id, msg.wallet_amount))]


def points_back(msg: ReleaseAssets) -> list[Release]:
    """The points the order earned are taken back."""
    if not msg.revoke_points:
        return []
    return [(Address("user", msg.user_id), RevokePoints(msg.order_id))]


ASSET_KINDS: tuple[AssetKind, ...] = (stock_back, coupon_back, wallet_back, points_back)
"""Every kind of asset an order can hold. A new kind of asset is one more entry here."""


def release_messages(
    msg: ReleaseAssets, kinds: tuple[AssetKind, ...] = ASSET_KINDS
) -> list[Release]:
    """The durable messages that give back everything ``msg`` names (the audit reads the
    outbox through this too, so it counts a pending ReleaseAssets exactly as it will fan out)."""
    return [release for kind in kinds for release in kind(msg)]


class AssetsActor(Actor):
    """The release fan-out of one order (``assets:<order id>``). Stateless."""

    __slots__ = ()

    kind = "assets"
    messages = AssetsMessage

    async def receive(self, ctx: Context, message: Any) -> Any:
        """Send one durable message per asset the order holds, all in this message's unit."""
        match message:
            case ReleaseAssets(order_id) if order_id == self.address.id:
                for to, release in release_messages(message):
                    ctx.send(to, release)
                return None
            case ReleaseAssets(order_id):
                # a sender's bug: raising parks it as a dead letter for a person to look at
                raise ValueError(
                    f"ReleaseAssets of order {order_id} sent to assets:{self.address.id}"
                )
            case ReleasesSent():
                # Writes nothing, so it is answered after the unit of the ReleaseAssets before
                # it commits, and after that commit's messages are delivered (they go out in
                # the commit's callbacks, which run before this answer's)
                return None
        raise TypeError(f"assets actors do not handle {type(message).__name__}")


GIVEN_BACK_WAIT_S = 1.0
"""How long a caller's answer waits at most for what an order gave back (:func:`given_back`)."""
RECENTLY_CANCELED_S = 10.0
"""How long after its cancel a read of an order waits for what it gave back
(``Shop.get_order``): an order a deadline or a failed placement canceled, which a client
polls, then orders the same unit or coupon again."""


async def given_back(system: ActorSystem, order_id: int, order: OrderView | None = None) -> None:
    """Wait until what order ``order_id`` gave back (a cancel's, a return's, a failed
    placement's) is committed by its assets' actors, so that the caller's next read sees it
    back, of one actor (the goods) or of the database (the goods and coupon lists): an answer
    and then the old stock, coupon or balance would look like a lost release, and an order
    placed next would be refused for a unit or a coupon nothing holds.

    ``ReleasesSent`` answers once the releases are in the actors' mailboxes; a read of each
    actor then queues behind them, and its answer waits for their commit (an answer is never
    seen before the writes it follows). Not waited for past :data:`GIVEN_BACK_WAIT_S`, and
    never an error of the caller's: what was asked is done, and the releases are durable and
    land anyway (a fan-out whose commit failed is delivered again; a shop too busy or
    stopping answers without waiting). ``order``: the order as the caller read it already.
    Anything else that ends the wait (a fault, not a busy shop) is logged."""
    try:
        async with asyncio.timeout(GIVEN_BACK_WAIT_S):
            if order is None:
                order = await system.ask(Address("order", order_id), GetOrder())
            if not isinstance(order, OrderView):
                return
            await system.ask(Address("assets", order_id), ReleasesSent())
            # asked only now: behind the releases in each mailbox
            reads = [system.ask(Address("goods", item.goods_id), GetGoods())
                     for item in order.items]
            if order.coupon_id is not None:
                reads.append(system.ask(Address("coupon", order.coupon_id), GetCoupon()))
            reads.append(system.ask(Address("user", order.user_id), GetUser()))
            await asyncio.gather(*reads)
    except (TimeoutError, ActorSystemError, StoreError, sqlite3.Error):
        return  # too long, too busy, stopping, or the store refusing: the releases land anyway
    except Exception:
        log.exception("given_back_wait_failed", order_id=order_id)
