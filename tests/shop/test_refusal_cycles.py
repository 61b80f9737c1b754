"""A refused request leaves no reference cycle behind. ``shopkeep serve`` freezes what survives
each generation-1 collection (runtime/collector.py), and a frozen cycle is never reclaimed: a
refusal whose exception held its own raising frame (which held the exception), caught in flight
by such a collection, kept its whole request, about 6 KB, for the life of the process."""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable
from typing import Any

from shopkeep.errors import ShopError
from shopkeep.shop import Shop


async def refused(call: Callable[[], Awaitable[Any]]) -> str:
    """The code of the refusal ``call`` raises (caught so, the exception is dropped)."""
    try:
        await call()
    except ShopError as error:
        return error.code
    raise AssertionError("not refused")


async def test_refused_placements_and_cancels_leave_no_cycle_to_collect(
    shop: Shop, saved_garbage: list[Any]
) -> None:
    tea = await shop.create_goods("tea", price=100, stock=1)
    user = (await shop.create_user("ann")).user.id
    order = await shop.place_order(user, [(tea.id, 1)])  # awaiting payment

    codes = [
        await refused(lambda: shop.place_order(user, [(tea.id, 5)])),
        await refused(lambda: shop.place_order(user, [(tea.id + 1, 1)])),
        await refused(lambda: shop.deliver(order.id)),
        await refused(lambda: shop.get_order(order.id, user_id=user + 1)),
    ]
    gc.collect()

    assert codes == ["insufficient_stock", "not_found", "invalid_state", "not_found"]
    left = [type(o).__name__ for o in saved_garbage if isinstance(o, BaseException)]
    assert left == []
