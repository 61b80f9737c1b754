"""A user actor keeps only its most recent Idempotency-Keys in memory, and still honours all.

Seen while looking for where the api-abuse proof's long floods spend memory: a user placing
orders without pause is never passivated, and its actor kept every key it ever saw.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shopkeep.actors import user
from shopkeep.actors.config import ShopConfig
from shopkeep.actors.user import UserActor
from shopkeep.errors import ShopError
from shopkeep.runtime import Address, VirtualClock
from shopkeep.shop import Shop
from tests.shop.conftest import SECRET


async def test_keys_beyond_the_kept_ones_are_forgotten_in_memory_and_honoured_from_the_table(
    tmp_path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(user, "KEYS_KEPT", 2)
    config = ShopConfig(max_unpaid_orders=100)
    path = str(tmp_path / "shop.db")
    async with Shop.open(
        path, gateway="sandbox", clock=clock, gateway_secret=SECRET, config=config
    ) as shop:
        tea = await shop.create_goods("tea", price=100, stock=100)
        ann = (await shop.create_user("ann")).user.id
        placed = [
            await shop.place_order(ann, [(tea.id, 1)], idempotency_key=f"k{n}") for n in range(5)
        ]
        cell = shop.runtime.system._registry.get(Address("user", ann))

        again = await shop.place_order(ann, [(tea.id, 1)], idempotency_key="k0")
        with pytest.raises(ShopError) as refused:
            await shop.place_order(ann, [(tea.id, 2)], idempotency_key="k1")

        assert cell is not None and isinstance(cell.actor, UserActor)
        assert len(cell.actor.keys) <= 2
        assert again.id == placed[0].id
        assert refused.value.code == "idempotency_conflict"
        assert (await shop.get_goods(tea.id)).stock == 95


async def test_a_refusal_kept_with_its_key_is_answered_again_after_a_restart_at_the_same_time(
    tmp_path: Path,
) -> None:
    # a placement refused in one turn binds its key to the order id it reserved, which no
    # order has: a restart whose clock has not moved on handed that id out again, and the
    # retry, finding its key bound to its own new order, was placed again
    path, clock = str(tmp_path / "k.db"), VirtualClock()
    async with Shop.open(path, gateway="sandbox", clock=clock, gateway_secret=SECRET) as shop:
        user_id = (await shop.create_user("ann", 10_000)).user.id
        tea = await shop.create_goods("tea", price=1_500, stock=10)
        coupon = await shop.create_coupon(user_id, 500)
        await shop.place_order(user_id, [(tea.id, 1)], coupon_id=coupon.id)
        with pytest.raises(ShopError) as first:
            await shop.place_order(user_id, [(tea.id, 1)], coupon_id=coupon.id,
                                   idempotency_key="k")
    async with Shop.open(path, gateway="sandbox", clock=clock, gateway_secret=SECRET) as shop:
        with pytest.raises(ShopError) as again:
            await shop.place_order(user_id, [(tea.id, 1)], coupon_id=coupon.id,
                                   idempotency_key="k")
        orders = (await shop.list_orders(user_id=user_id)).items
    assert (first.value.code, first.value.order_id) == ("coupon_unavailable", None)
    assert (again.value.code, again.value.order_id) == ("coupon_unavailable", None)
    assert len(orders) == 1  # the first, with the coupon; nothing placed by the retry
