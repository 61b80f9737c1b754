"""Values shared by the shop's actors: views, Idempotency-Keys and the asset kinds' messages
(their refusals are :mod:`shopkeep.refusals`'s, below every layer).

Messages are frozen, tagged msgspec Structs (one union per actor kind) so that durable ones
(outbox, timers) survive a restart: ``msgspec.msgpack`` encodes them with their tag.

Idempotency, per (order id, operation): every message that changes an asset carries the order
id, and applying it twice changes nothing. Asks in the placement saga (Take*, UseCoupon,
DebitWallet) are answered from the actor's memory; durable compensations (Return*, Release*,
Revoke*) check the ledger with ``ctx.query`` (read-your-writes) before applying.

Every struct here is declared ``gc=False``: immutable data that can never refer back to what
holds it, so it cannot be part of a reference cycle, and the cycle collector need not walk it
(a server holds hundreds of thousands of them: full collections walked them all, pausing the
event loop for up to ~180 ms).
"""

from __future__ import annotations

from typing import Any

import msgspec

# -- Idempotency-Keys (see key_rules.py and key_store.py) -------------------------------------


class Keyed(msgspec.Struct, frozen=True, gc=False):
    """``message`` under an Idempotency-Key of ``principal`` (a user's id, or 0 for the admin).

    The actor that owns the effect answers :class:`Replayed` when the key was bound to the same
    request (``request_hash``) before, Refusal idempotency_conflict when to another; otherwise
    it handles ``message`` and, when the answer binds the key, records the key and the answer
    in the same unit of work as the effect. Asked, never stored.
    """

    principal: int
    key: str
    request_hash: str
    message: Any


class Replayed(msgspec.Struct, frozen=True, gc=False):
    """The answer to a :class:`Keyed` request seen before: its first answer, as recorded
    (msgpack; the asker knows its type). Nothing was done again."""

    answer: bytes


# -- user: wallet, points, unpaid orders, idempotency keys -----------------------------------


class UserView(msgspec.Struct, frozen=True, gc=False):
    """A user as the API shows it (never the token or its hash)."""

    id: int
    name: str
    balance: int
    points: int


class CreateUser(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Create this user (answer: UserView; Refusal invalid_state if it exists)."""

    name: str
    balance: int
    token_hash: str


class GetUser(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Answer: UserView, or Refusal not_found."""


class CreditWallet(msgspec.Struct, frozen=True, tag=True, gc=False):
    """An admin credit (answer: UserView). Ledger reason ``credit``."""

    amount: int


class ReplaceToken(msgspec.Struct, frozen=True, tag=True, gc=False):
    """The user's API token is now the one hashing to ``token_hash``; the old one names
    nobody from the commit on (answer: UserView, or Refusal not_found)."""

    token_hash: str


class BeginOrder(msgspec.Struct, frozen=True, tag=True, gc=False):
    """The placement asks before anything else (answer: OrderTicket or Refusal).

    With ``key``: the same key and ``request_hash`` answer the order first begun with it
    (``existing=True``); the same key with another hash is refused idempotency_conflict.
    Otherwise the unpaid-orders cap, ``max_unpaid``, is checked (too_many_unpaid_orders) and
    ``order_id`` is counted as unpaid until OrderSettled. ``max_unpaid`` None: the order pays
    nothing (its coupon and wallet cover it), goes straight to paid, and is never one more
    unpaid order, so no cap applies (known only once it is priced: ``placement_turn.py``).

    ``replaces``: the order the key was bound to, whose placement did nothing (it failed
    overloaded, unavailable or interrupted, everything given back): the key is bound afresh to
    ``order_id`` as if new (SPEC 7: such a first attempt does not bind its key).

    ``row_by_order``: the placement is decided in one turn (``placement_turn.py``), and the
    order writes the key's row itself, its answer in it, in the one unit they share: the user
    only remembers the key. (Only a key the user knows is new joins such a turn, so the row
    is always a new one.) One statement instead of an insert and then an update of the same
    row, which would also keep the writer from joining a batch's inserts into one.

    ``provisional``: a user at the cap admits the order all the same, saying so
    (``OrderTicket.capped``), and the placement refuses it too_many_unpaid_orders once priced
    unless it pays nothing: the saga (``placement.py``) asks before it prices, for an order
    whose coupon or wallet may pay it in full.

    ``key_absent``: the order read the keys' table and ``key`` is not in it: the user takes it
    for new without a read of its own, which a turn could not wait for (a user with more keys
    than memory holds; its placements under the same key run one at a time,
    ``idempotency.InFlight``, and the table's unique index is the backstop).
    """

    order_id: int
    key: str | None
    request_hash: str
    max_unpaid: int | None
    replaces: int | None = None
    row_by_order: bool = False
    provisional: bool = False
    key_absent: bool = False


class OrderTicket(msgspec.Struct, frozen=True, tag=True, gc=False):
    """The order to place (``existing``: the key was seen; do not place it again; ``capped``:
    admitted at the cap, provisionally: see BeginOrder)."""

    order_id: int
    existing: bool
    capped: bool = False


class DebitWallet(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Take ``amount`` from the balance for ``order_id`` (answer: the new balance as int, or
    Refusal insufficient_balance). Ledger reason ``order_debit``; a second debit for the same
    order answers the balance and changes nothing."""

    order_id: int
    amount: int


class ReleaseWallet(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Durable: give ``amount`` back to the wallet for ``order_id`` under ``reason``
    (``order_release`` for a canceled placement's debit, ``refund`` for a refund to wallet).
    Applied once per (order, reason)."""

    order_id: int
    amount: int
    reason: str = "order_release"


class AwardPoints(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Durable: add ``points`` for ``order_id`` (once; ledger reason ``award``); a no-op once
    the order's points were revoked (a revoke may overtake its award on redelivery)."""

    order_id: int
    points: int


class RevokePoints(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Durable: take back the points awarded for ``order_id`` (once; reason ``revoke``). When
    none were awarded, a zero ``revoke`` row is left as a tombstone for a late award. The
    balance may go below zero if they were spent."""

    order_id: int


class OrderSettled(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Durable: ``order_id`` is no longer unpaid (paid, or canceled)."""

    order_id: int


class KeySeen(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Another actor bound the user's Idempotency-Key ``key`` (an order's cancel, payment or
    return asked by the user): the user actor's memory of its keys learns of it, so that a
    placement under the same key reads it rather than believing it new. Told, not durable: a
    restarted user actor reads its keys from the table."""

    key: str


# -- goods: price and stock -------------------------------------------------------------------


class GoodsView(msgspec.Struct, frozen=True, gc=False):
    """A goods (SKU) as the API shows it."""

    id: int
    name: str
    price: int
    stock: int


class CreateGoods(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Create this goods (answer: GoodsView; Refusal invalid_state if it exists)."""

    name: str
    price: int
    stock: int


class GetGoods(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Answer: GoodsView, or Refusal not_found."""


class UpdateGoods(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Change the price and/or add stock (answer: GoodsView)."""

    price: int | None = None
    restock: int | None = None


class TakeStock(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Take ``quantity`` for ``order_id`` (answer: StockTaken, or Refusal insufficient_stock or
    not_found). Ledger reason ``take`` (negative quantity). Asked once per order and goods."""

    order_id: int
    quantity: int


class StockTaken(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Stock was taken at this unit price (the price at the time of ordering)."""

    unit_price: int


class ReturnStock(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Durable: give back all that ``order_id`` took of this goods and has not given back
    (a no-op when nothing was taken). ``reason``: ``release`` (a cancel, or a placement that
    failed) or ``return`` (an approved return)."""

    order_id: int
    reason: str = "release"


# -- coupon -----------------------------------------------------------------------------------


class CouponView(msgspec.Struct, frozen=True, gc=False):
    """A coupon as the API shows it (``state``: unused or used)."""

    id: int
    user_id: int
    value: int
    min_order_amount: int
    expires_at: float | None
    state: str
    order_id: int | None


class CreateCoupon(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Create this coupon (answer: CouponView)."""

    user_id: int
    value: int
    min_order_amount: int = 0
    expires_at: float | None = None


class GetCoupon(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Answer: CouponView, or Refusal not_found."""


class UseCoupon(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Mark the coupon used by ``order_id`` (answer: its value as int, or Refusal
    coupon_unavailable: not the user's, used by another order, expired at ``now``, or
    ``order_amount`` below its minimum). Using it again for the same order answers its value."""

    order_id: int
    user_id: int
    order_amount: int
    now: float


class ReleaseCoupon(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Durable: unused again, if ``order_id`` holds it (else a no-op)."""

    order_id: int


class Quote(msgspec.Struct, frozen=True, tag=True, gc=False):
    """What ``message`` would answer now, changing nothing (a goods' :class:`TakeStock`: its
    StockTaken at today's price; a coupon's :class:`UseCoupon`: its value; a user's
    :class:`DebitWallet`: the balance left; or the refusal): the checks a placement makes by
    asks before it takes anything (SPEC 2: a refusal changes nothing), as the one-turn
    placement makes them by joins."""

    message: TakeStock | UseCoupon | DebitWallet


UserMessage = (
    CreateUser
    | GetUser
    | CreditWallet
    | ReplaceToken
    | BeginOrder
    | DebitWallet
    | ReleaseWallet
    | AwardPoints
    | RevokePoints
    | OrderSettled
    | KeySeen
    | Quote
)
GoodsMessage = CreateGoods | GetGoods | UpdateGoods | TakeStock | ReturnStock | Quote
CouponMessage = CreateCoupon | GetCoupon | UseCoupon | ReleaseCoupon | Quote

# -- assets: the release fan-out --------------------------------------------------------------


class ReleaseAssets(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Durable, to ``assets:<order id>``: give back everything the order holds, each kind of
    asset by its own durable message: stock of every goods, the coupon, the wallet amount, and
    the points awarded (``revoke_points``). ``stock_reason`` is ``release`` or ``return``."""

    order_id: int
    user_id: int
    goods_ids: tuple[int, ...]
    coupon_id: int | None
    wallet_amount: int
    revoke_points: bool
    stock_reason: str = "release"


class ReleasesSent(msgspec.Struct, frozen=True, tag=True, gc=False):
    """To ``assets:<order id>``, asked by the shop after a cancel or a return's approval:
    answered once every ReleaseAssets queued before it is fanned out, its unit committed and
    its messages delivered into the mailboxes of the assets' actors, so that a read which
    follows queues behind them and sees what was given back."""


AssetsMessage = ReleaseAssets | ReleasesSent
