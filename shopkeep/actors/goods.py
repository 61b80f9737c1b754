"""The ``goods`` kind: one actor per SKU, holding its price and stock on hand.

The shell around :mod:`shopkeep.actors.goods_rules`. One mailbox per goods is the whole
concurrency story: a thousand buyers of the last hundred units are handled one after another,
so exactly a hundred are served and the stock never goes below zero, with no lock anywhere.

TakeStock is on the placement's hot path and touches no disk for reads. It is asked once per
order and goods; the takes of the last minute (a few thousand at most) are remembered so that
an ask repeated within an activation answers the same StockTaken instead of taking twice
(beyond that memory, the unique index on the ledger refuses a second take's commit).
ReturnStock is a durable compensation: it gives back what the order holds of this goods, known
from memory when the take is one of those remembered (no return can have followed it unseen:
a return forgets the take), else read from the order's ledger rows (read-your-writes). Cancels
and timeouts of recent orders so leave the actor without a wait, free to join the next
placement's turn.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec

from shopkeep.actors.goods_rules import (
    TAKE,
    Goods,
    StockMove,
    create,
    give_back,
    take,
    update,
)
from shopkeep.actors.key_store import run_keyed
from shopkeep.actors.protocol import (
    CreateGoods,
    GetGoods,
    GoodsMessage,
    GoodsView,
    Keyed,
    Quote,
    ReturnStock,
    StockTaken,
    TakeStock,
    UpdateGoods,
)
from shopkeep.paging import Page, page_bounds, paged
from shopkeep.refusals import INVALID_STATE, NOT_FOUND, Refusal
from shopkeep.runtime import Actor, Context
from shopkeep.runtime.actor import ActivationContext
from shopkeep.runtime.join import NotJoinable
from shopkeep.store.reader import Reader

LOAD_SQL = "SELECT name, price, stock, initial_stock, restocked FROM goods WHERE id = ?"
HELD_SQL = "SELECT reason, quantity FROM stock_ledger WHERE goods_id = ? AND order_id = ?"
INSERT_SQL = (
    "INSERT INTO goods (id, name, price, stock, initial_stock, restocked, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_SQL = "UPDATE goods SET price = ?, stock = ?, restocked = ? WHERE id = ?"
LEDGER_SQL = (
    "INSERT INTO stock_ledger (goods_id, order_id, reason, quantity, at) VALUES (?, ?, ?, ?, ?)"
)

RECENT_TAKES = 4096
"""Takes remembered per activation at most (order id -> answer), oldest forgotten first."""
RECENT_TAKES_S = 60.0
"""How long a take is remembered: twice the default ask timeout, longer than an order waits
before it asks again. Without it a busy goods actor (never passivated) filled its memory to
:data:`RECENT_TAKES` at its own pace: at seven orders a second, the soak's goods grew the
server for ten minutes (about 130 bytes a take)."""


class GoodsActor(Actor):
    """One goods (SKU): price and stock on hand, with a stock ledger."""

    __slots__ = ("goods", "taken")

    kind = "goods"
    messages = GoodsMessage

    goods: Goods | None
    taken: OrderedDict[int, tuple[float, StockTaken, int]]
    """Order id -> (when, the answer, the quantity taken), oldest first."""

    async def on_activate(self, ctx: ActivationContext) -> None:
        """Load the goods row (absent: not created yet)."""
        self.taken = OrderedDict()
        row = await ctx.reader.fetchone(LOAD_SQL, (self.address.id,))
        if row is None:
            self.goods = None
            return
        name, price, stock, initial_stock, restocked = row
        self.goods = Goods(str(name), int(price), int(stock), int(initial_stock), int(restocked))

    @property
    def absent(self) -> bool:
        """Nothing by this id (the runtime drops the activation once it is idle)."""
        return self.goods is None

    async def receive(self, ctx: Context, message: Any) -> Any:
        """Handle one GoodsMessage; see :mod:`shopkeep.actors.protocol` for each answer."""
        goods_id = self.address.id
        goods = self.goods
        if goods is None:
            if isinstance(message, CreateGoods):
                return self._create(ctx, message)
            if isinstance(message, Keyed) and isinstance(message.message, CreateGoods):
                # the admin's create under an Idempotency-Key: its replay makes no second goods
                return await run_keyed(ctx, message, self.receive)
            return Refusal(NOT_FOUND, f"goods {goods_id} does not exist")
        match message:
            case GetGoods():
                return goods.view(goods_id)
            case CreateGoods():
                return Refusal(INVALID_STATE, f"goods {goods_id} already exists")
            case UpdateGoods():
                updated = update(goods, message)
                if isinstance(updated, Refusal):
                    return updated
                if updated != goods:
                    self._write(ctx, updated, None)
                return updated.view(goods_id)
            case Quote(asked):
                return self.check(asked)
            case TakeStock(order_id):
                earlier = self.taken.get(order_id)
                if earlier is not None:
                    return earlier[1]
                decision = take(goods, goods_id, message)
                if isinstance(decision, Refusal):
                    return decision
                updated, move, answer = decision
                self._write(ctx, updated, move)
                self._remember(order_id, answer, message.quantity, ctx.now())
                return answer
            case ReturnStock(order_id):
                remembered = self.taken.get(order_id)
                if remembered is not None:
                    _, _, quantity = remembered
                    ledger = {TAKE: -quantity}
                else:
                    rows = await ctx.query(HELD_SQL, (goods_id, order_id))
                    ledger = {str(r): int(q) for r, q in rows}
                updated, back = give_back(goods, message, ledger)
                if back is not None:
                    self._write(ctx, updated, back)
                self.taken.pop(order_id, None)
                return None
            case Keyed():
                # the admin's PATCH under an Idempotency-Key: a restock is done once
                return await run_keyed(ctx, message, self.receive)
        raise TypeError(f"goods actors do not handle {type(message).__name__}")

    def check(self, message: Any) -> Any:
        """What TakeStock would answer now (StockTaken at today's price, or the refusal)."""
        goods = self.goods
        if not isinstance(message, TakeStock):
            raise NotJoinable(f"goods actors answer no check of {type(message).__name__}")
        if goods is None:
            return Refusal(NOT_FOUND, f"goods {self.address.id} does not exist")
        earlier = self.taken.get(message.order_id)
        if earlier is not None:
            return earlier[1]
        decision = take(goods, self.address.id, message)
        return decision if isinstance(decision, Refusal) else decision[2]

    def _create(self, ctx: Context, msg: CreateGoods) -> Any:
        goods = create(msg)
        if isinstance(goods, Refusal):
            return goods
        ctx.execute(
            INSERT_SQL,
            (
                self.address.id,
                goods.name,
                goods.price,
                goods.stock,
                goods.initial_stock,
                goods.restocked,
                ctx.now(),
            ),
        )
        self.goods = goods
        return goods.view(self.address.id)

    def _write(self, ctx: Context, goods: Goods, move: StockMove | None) -> None:
        """The goods row and its ledger row, in this message's unit."""
        self.goods = goods
        ctx.execute(UPDATE_SQL, (goods.price, goods.stock, goods.restocked, self.address.id))
        if move is not None:
            ctx.execute(
                LEDGER_SQL, (self.address.id, move.order_id, move.reason, move.quantity, ctx.now())
            )

    def _remember(self, order_id: int, answer: StockTaken, quantity: int, now: float) -> None:
        """Remember a take, forgetting those older than :data:`RECENT_TAKES_S` and the oldest
        beyond :data:`RECENT_TAKES`. An OrderedDict, not a dict: finding a plain dict's first
        entry walks past every slot deleted before it (microseconds a take, once thousands
        were forgotten), where ``popitem(last=False)`` does not."""
        taken = self.taken
        forget_before = now - RECENT_TAKES_S
        while taken:
            when, _, _ = next(iter(taken.values()))
            if len(taken) < RECENT_TAKES and when >= forget_before:
                break
            taken.popitem(last=False)
        taken[order_id] = (now, answer, quantity)


async def list_goods(reader: Reader, limit: int | None, cursor: str | None) -> Page[GoodsView]:
    """Goods, newest first."""
    size, below = page_bounds(limit, cursor)
    rows = await reader.fetchall(
        "SELECT id, name, price, stock FROM goods WHERE id < ? ORDER BY id DESC LIMIT ?",
        (below, size + 1),
    )
    return paged([GoodsView(*row) for row in rows], [row[0] for row in rows], size)


# -- reading for the back office (the admin console) ------------------------------------------

STOCK_LEDGER_SQL = (
    "SELECT id, order_id, reason, quantity, at FROM stock_ledger "
    "WHERE goods_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
)


class StockEntry(msgspec.Struct, frozen=True, gc=False):
    """One movement of a goods' stock caused by an order (take: negative; release, return:
    positive). Restocks are not in the ledger: they are the goods row's ``restocked``."""

    id: int
    order_id: int
    reason: str
    quantity: int
    at: float


async def stock_ledger(reader: Reader, goods_id: int, below: int, count: int) -> list[StockEntry]:
    """Up to ``count`` of the goods' ledger rows with an id below ``below``, newest first."""
    rows = await reader.fetchall(STOCK_LEDGER_SQL, (goods_id, below, count))
    return [StockEntry(*row) for row in rows]
