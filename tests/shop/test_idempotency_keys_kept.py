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
