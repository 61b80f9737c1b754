"""Pages of a list: a ``limit`` (capped: more than :data:`MAX_LIMIT` is taken as the cap, SPEC
7), an opaque cursor (the last id seen), and ``next_cursor`` (None on the last page). Lists are
newest first, an order's history and refunds oldest first; each table's own module runs the
query.
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar

import msgspec

from shopkeep.requests import ID_PATTERN, refused_parameter

T = TypeVar("T")
MAX_LIMIT = 200
"""The most items a page holds: a larger ``limit`` is taken as this."""
DEFAULT_LIMIT = 50
"""The items of a page when no ``limit`` is given."""
_CURSOR = re.compile(ID_PATTERN)


class Page(msgspec.Struct, Generic[T], frozen=True):
    """One page of a list: ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None


def page_bounds(limit: int | None, cursor: str | None) -> tuple[int, int]:
    """For a list newest first: the page's size (the limit, capped) and the id to continue
    below (a cursor is the last id seen)."""
    size, last = _page(limit, cursor)
    return size, 2**63 - 1 if last is None else last


def page_after(limit: int | None, cursor: str | None) -> tuple[int, int]:
    """For a list oldest first (an order's history, its refunds): the page's size (the limit,
    capped) and the id to continue above."""
    size, last = _page(limit, cursor)
    return size, 0 if last is None else last


def _page(limit: int | None, cursor: str | None) -> tuple[int, int | None]:
    # an embedder's mistakes (HTTP passes an int and a str): refused, not a TypeError
    if limit is not None and type(limit) is not int:
        raise refused_parameter("limit", "limit must be an int")
    if cursor is not None and type(cursor) is not str:
        raise refused_parameter("cursor", "cursor must be the str a page gave")
    size = DEFAULT_LIMIT if limit is None else min(limit, MAX_LIMIT)
    if size < 1:
        raise refused_parameter("limit", "limit must be at least 1")
    if cursor is None:
        return size, None
    # written as the server writes ids (HTTP's ?cursor= has their pattern): int() would also
    # take "-5", " 5 " and "1_0", none a cursor this server gave
    if not _CURSOR.match(cursor):
        raise refused_parameter("cursor", "cursor is not one this server gave")
    # an id beyond 64 bits is past every id: the list goes on from the end it starts at
    return size, min(int(cursor), 2**63 - 1)


def paged(items: list[T], ids: list[int], size: int) -> Page[T]:
    """A page of ``items`` (fetched with one extra, so as to know whether more follow)."""
    more = len(items) > size
    items, ids = items[:size], ids[:size]
    return Page(items, str(ids[-1]) if more and ids else None)
