"""The rules of the ``goods`` kind, with no IO: price, stock on hand, and its ledger.

Stock moves that an order causes are written to ``stock_ledger`` (a take is negative, a release
or a return positive), so that for every goods, at any time,
``stock = initial_stock + restocked + sum(stock_ledger.quantity)``. Restocks are not order
movements: they go to ``restocked`` and never to the ledger, whose rows always name an order.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from msgspec.structs import replace

from shopkeep.actors.config import MAX_HELD
from shopkeep.actors.protocol import (
    CreateGoods,
    GoodsView,
    ReturnStock,
    StockTaken,
    TakeStock,
    UpdateGoods,
)
from shopkeep.refusals import INSUFFICIENT_STOCK, VALIDATION_ERROR, Refusal

TAKE = "take"
"""The stock ledger's reason for what an order took."""
RETURN_REASONS = frozenset({"release", "return"})
"""The ledger reasons a ReturnStock may carry."""


class Goods(msgspec.Struct, frozen=True, gc=False):
    """A goods as the actor holds it."""

    name: str
    price: int
    stock: int
    initial_stock: int
    restocked: int

    def view(self, goods_id: int) -> GoodsView:
        """The goods as the API shows it."""
        return GoodsView(goods_id, self.name, self.price, self.stock)


class StockMove(msgspec.Struct, frozen=True, gc=False):
    """One ``stock_ledger`` row: ``quantity`` is signed (a take is negative)."""

    order_id: int
    reason: str
    quantity: int


def create(msg: CreateGoods) -> Goods | Refusal:
    """A new goods; what it starts with is its ``initial_stock``."""
    if not msg.name:
        return Refusal(VALIDATION_ERROR, "goods need a name")
    if msg.price < 0 or msg.stock < 0:
        return Refusal(
            VALIDATION_ERROR, f"price and stock cannot be negative: {msg.price}, {msg.stock}"
        )
    return Goods(msg.name, msg.price, msg.stock, msg.stock, 0)


def update(goods: Goods, msg: UpdateGoods) -> Goods | Refusal:
    """A new price and/or a restock (added to the stock on hand and to ``restocked``, up to
    :data:`MAX_HELD` units supplied in all)."""
    if msg.price is not None and msg.price < 0:
        return Refusal(VALIDATION_ERROR, f"a price cannot be negative: {msg.price}")
    if msg.restock is not None and msg.restock < 0:
        return Refusal(VALIDATION_ERROR, f"a restock cannot be negative: {msg.restock}")
    restock = msg.restock or 0
    supplied = goods.initial_stock + goods.restocked + restock
    if restock and supplied > MAX_HELD:
        # what was supplied, not what is on hand: units orders hold come back on hand later
        return Refusal(
            VALIDATION_ERROR,
            f"a restock of {restock} would make the units supplied in all (the first stock "
            f"and every restock) {supplied}, above the most a goods holds ({MAX_HELD})",
            pointer="/restock",
        )
    return replace(
        goods,
        price=goods.price if msg.price is None else msg.price,
        stock=goods.stock + restock,
        restocked=goods.restocked + restock,
    )


def take(
    goods: Goods, goods_id: int, msg: TakeStock
) -> tuple[Goods, StockMove, StockTaken] | Refusal:
    """Take ``msg.quantity`` for the order at today's price, or refuse: never below zero."""
    if msg.quantity <= 0:
        return Refusal(VALIDATION_ERROR, f"a quantity must be positive: {msg.quantity}")
    if msg.quantity > goods.stock:
        return Refusal(
            INSUFFICIENT_STOCK, f"goods {goods_id}: {goods.stock} left, {msg.quantity} asked"
        )
    return (
        replace(goods, stock=goods.stock - msg.quantity),
        StockMove(msg.order_id, TAKE, -msg.quantity),
        StockTaken(goods.price),
    )


def give_back(
    goods: Goods, msg: ReturnStock, ledger: Mapping[str, int]
) -> tuple[Goods, StockMove | None]:
    """Give back all the order holds of this goods (``ledger``: reason -> quantity of its rows).

    What the order holds is the net of its rows, so a second ReturnStock finds nothing left to
    give and changes nothing, whatever message id it came with.
    """
    if msg.reason not in RETURN_REASONS:
        # a sender's bug, not a business case: raising parks the message as a dead letter
        raise ValueError(f"ReturnStock reason must be one of {sorted(RETURN_REASONS)}")
    held = -sum(ledger.values())
    if held <= 0 or msg.reason in ledger:
        return goods, None
    return replace(goods, stock=goods.stock + held), StockMove(msg.order_id, msg.reason, held)
