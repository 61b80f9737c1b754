"""What the outbox still carries: the releases and refunds that are in flight, not violations.

SPEC section 6: a compensation waiting in the outbox counts on the side of the order that will
receive it. The audit reads the outbox in the same statement (the same snapshot) as the tables it
checks, and this module says, for each kind of asset, which orders have something on its way.

Every row is decoded with the message union of its kind's actor, as the runtime will decode it
to deliver it. A pending ReleaseAssets is expanded exactly as the ``assets`` actor will expand
it (:func:`release_messages`). A message for the order's own flow (the order, its refunder,
warehouse and payment query) counts for the order named by its ``order_id`` field, or by its
address when it is sent to an ``order`` actor, and the audit then excuses every check of that
order, since anything may follow from it. A row of a kind no actor has, or that its kind's
union does not decode, is undecodable: it excuses nothing (the runtime cannot deliver it
either), and the audit's ``outbox`` check fails on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from shopkeep.actors.assets import Release, release_messages
from shopkeep.actors.fulfilment import WarehouseActor
from shopkeep.actors.key_sweep import KeySweepActor
from shopkeep.actors.order_messages import OrderMessage
from shopkeep.actors.payment_query import PaymentQueryActor
from shopkeep.actors.protocol import (
    AssetsMessage,
    AwardPoints,
    CouponMessage,
    GoodsMessage,
    ReleaseAssets,
    ReleaseCoupon,
    ReleaseWallet,
    ReturnStock,
    RevokePoints,
    UserMessage,
)
from shopkeep.actors.refund import RefunderActor
from shopkeep.runtime import Address

_ORDER_DECODER: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(OrderMessage)
_DECODERS: dict[str, msgspec.msgpack.Decoder[Any]] = {
    "assets": msgspec.msgpack.Decoder(AssetsMessage),
    "goods": msgspec.msgpack.Decoder(GoodsMessage),
    "coupon": msgspec.msgpack.Decoder(CouponMessage),
    "user": msgspec.msgpack.Decoder(UserMessage),
}
_OTHER_KINDS: dict[str, msgspec.msgpack.Decoder[Any]] = {
    kind.kind: msgspec.msgpack.Decoder(kind.messages)
    for kind in (RefunderActor, WarehouseActor, PaymentQueryActor, KeySweepActor)
}
"""The other kinds that keep durable messages: the order's refunder, warehouse and payment
query, whose messages move an order's money or status (never an asset's ledger directly), and
the key sweep, whose messages name no order."""


@dataclass
class InFlight:
    """The compensations waiting in the outbox, by the asset they will move."""

    messages: int = 0
    """Rows in the outbox."""
    undecodable: int = 0
    """Rows that could not be decoded (counted, never guessed at)."""
    stock: set[tuple[int, int]] = field(default_factory=set)
    """(order id, goods id) of every ReturnStock on its way."""
    coupons: set[tuple[int, int]] = field(default_factory=set)
    """(coupon id, order id) of every ReleaseCoupon on its way."""
    wallet: set[int] = field(default_factory=set)
    """Orders with a ReleaseWallet on its way."""
    points: set[int] = field(default_factory=set)
    """Orders with an AwardPoints or RevokePoints on its way."""
    orders: set[int] = field(default_factory=set)
    """Orders named by a durable message of another kind (order, payment, refund...)."""
    released: set[int] = field(default_factory=set)
    """Orders giving something back (stock, a coupon, wallet money, points): each such
    message is written in the unit that cancels or returns its order, or fails its placement,
    so none is for an order that holds its assets."""

    def stock_moving(self, order_id: int, goods_id: int) -> bool:
        """Whether stock of ``goods_id`` held by ``order_id`` may still be given back."""
        return (order_id, goods_id) in self.stock or order_id in self.orders

    def coupon_moving(self, coupon_id: int, order_id: int) -> bool:
        """Whether ``order_id`` may still release ``coupon_id``."""
        return (coupon_id, order_id) in self.coupons or order_id in self.orders

    def wallet_moving(self, order_id: int) -> bool:
        """Whether money of ``order_id`` may still move in its user's wallet."""
        return order_id in self.wallet or order_id in self.orders

    def points_moving(self, order_id: int) -> bool:
        """Whether points of ``order_id`` may still be awarded or revoked."""
        return order_id in self.points or order_id in self.orders

    def order_moving(self, order_id: int) -> bool:
        """Whether a durable message of the order's own flow (refunds, payments) is pending."""
        return order_id in self.orders


def read_outbox(rows: Iterable[tuple[Any, ...]]) -> InFlight:
    """Sort the outbox rows ``(id, kind, actor_id, payload)`` into what they will move."""
    flight = InFlight()
    for _, kind, actor_id, payload in rows:
        flight.messages += 1
        decoder = _DECODERS.get(kind)
        try:
            if kind == "order":
                _ORDER_DECODER.decode(bytes(payload))  # the order's own, or undecodable
                flight.orders.add(actor_id)
            elif decoder is not None:
                _note(flight, Address(kind, actor_id), decoder.decode(bytes(payload)))
            elif kind in _OTHER_KINDS:
                order_id = getattr(_OTHER_KINDS[kind].decode(bytes(payload)), "order_id", None)
                if isinstance(order_id, int):
                    flight.orders.add(order_id)
            else:  # no actor of that kind: nothing will ever deliver it
                flight.undecodable += 1
        except (msgspec.DecodeError, msgspec.ValidationError):
            flight.undecodable += 1
    return flight


def _note(flight: InFlight, to: Address, message: Any) -> None:
    match message:
        case ReleaseAssets():
            releases: list[Release] = release_messages(message)
            for release_to, release in releases:
                _note(flight, release_to, release)
        case ReturnStock(order_id):
            flight.stock.add((order_id, to.id))
            flight.released.add(order_id)
        case ReleaseCoupon(order_id):
            flight.coupons.add((to.id, order_id))
            flight.released.add(order_id)
        case ReleaseWallet(order_id):
            flight.wallet.add(order_id)
            flight.released.add(order_id)
        case RevokePoints(order_id):
            flight.points.add(order_id)
            flight.released.add(order_id)
        case AwardPoints(order_id):
            flight.points.add(order_id)
        case _:
            pass  # not a compensation (OrderSettled, a create...): moves nothing audited

