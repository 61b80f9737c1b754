"""The read side of the embedded API: lists and lookups straight from the read connection.

Reads never go through the actors (they would queue behind writes for no gain): they see the
last committed state, which includes every write whose answer was already given.
Lists are newest first (an order's history and refunds oldest first), ``limit`` capped, with
an opaque ``next_cursor`` (the last id).
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from shopkeep.actors.protocol import CouponView, GoodsView
from shopkeep.errors import FieldError, ShopError
from shopkeep.store.reader import Reader

T = TypeVar("T")
MAX_LIMIT = 200


class Page(msgspec.Struct, Generic[T], frozen=True):
    """One page of a list: ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None


class HistoryEntry(msgspec.Struct, frozen=True):
    """One status change of an order."""

    from_status: str | None
    to_status: str
    operation: str
    remark: str
    at: float


def page_bounds(limit: int | None, cursor: str | None) -> tuple[int, int]:
    """For a list newest first: the checked limit and the id to continue below (a cursor is
    the last id seen)."""
    size, last = _page(limit, cursor)
    return size, 2**63 - 1 if last is None else last


def page_after(limit: int | None, cursor: str | None) -> tuple[int, int]:
    """For a list oldest first (an order's history, its refunds): the checked limit and the
    id to continue above."""
    size, last = _page(limit, cursor)
    return size, 0 if last is None else last


def _page(limit: int | None, cursor: str | None) -> tuple[int, int | None]:
    size = 50 if limit is None else limit
    if not 1 <= size <= MAX_LIMIT:
        detail = f"limit must be between 1 and {MAX_LIMIT}"
        raise ShopError.invalid([FieldError(detail, parameter="limit")])
    if cursor is None:
        return size, None
    try:
        last = int(cursor)
    except ValueError:
        detail = "cursor is not one this server gave"
        raise ShopError.invalid([FieldError(detail, parameter="cursor")]) from None
    # an id beyond 64 bits is past every id: the list goes on from the end it starts at
    return size, min(max(last, 0), 2**63 - 1)


def paged(items: list[T], ids: list[int], size: int) -> Page[T]:
    """A page of ``items`` (fetched with one extra, so as to know whether more follow)."""
    more = len(items) > size
    items, ids = items[:size], ids[:size]
    return Page(items, str(ids[-1]) if more and ids else None)


async def list_goods(reader: Reader, limit: int | None, cursor: str | None) -> Page[GoodsView]:
    """Goods, newest first."""
    size, below = page_bounds(limit, cursor)
    rows = await reader.fetchall(
        "SELECT id, name, price, stock FROM goods WHERE id < ? ORDER BY id DESC LIMIT ?",
        (below, size + 1),
    )
    return paged([GoodsView(*row) for row in rows], [row[0] for row in rows], size)


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


async def user_for_token(reader: Reader, token_hash: str) -> int | None:
    """The user whose token hashes to ``token_hash``."""
    row = await reader.fetchone("SELECT id FROM users WHERE token_hash = ?", (token_hash,))
    return int(row[0]) if row else None


async def return_order(reader: Reader, return_id: int) -> int | None:
    """The order a return was asked for, or None when there is no such return."""
    row = await reader.fetchone("SELECT order_id FROM returns WHERE id = ?", (return_id,))
    return int(row[0]) if row else None


class Owned(msgspec.Struct, frozen=True):
    """A payment's or a return's row, with the user whose order it is."""

    id: int
    order_id: int
    status: str
    user_id: int
    amount: int = 0


async def payment(reader: Reader, payment_id: int) -> Owned | None:
    """A payment as committed, with its order's user; None when there is no such payment."""
    row = await reader.fetchone(
        "SELECT p.id, p.order_id, p.status, o.user_id, p.amount FROM payments AS p "
        "JOIN orders AS o ON o.id = p.order_id WHERE p.id = ?",
        (payment_id,),
    )
    return None if row is None else Owned(*row)


async def return_request(reader: Reader, return_id: int) -> Owned | None:
    """A return as committed, with its order's user; None when there is no such return."""
    row = await reader.fetchone(
        "SELECT r.id, r.order_id, r.status, o.user_id FROM returns AS r "
        "JOIN orders AS o ON o.id = r.order_id WHERE r.id = ?",
        (return_id,),
    )
    return None if row is None else Owned(*row)


async def order_history(
    reader: Reader, order_id: int, limit: int | None, cursor: str | None
) -> Page[HistoryEntry]:
    """An order's status changes, oldest first, a page at a time."""
    size, after = page_after(limit, cursor)
    rows = await reader.fetchall(
        "SELECT id, from_status, to_status, operation, remark, at FROM order_history "
        "WHERE order_id = ? AND id > ? ORDER BY id LIMIT ?",
        (order_id, after, size + 1),
    )
    return paged([HistoryEntry(*row[1:]) for row in rows], [row[0] for row in rows], size)
