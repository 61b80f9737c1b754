"""Idempotency-Keys are kept at least 24 hours, then pruned (SPEC 7), on the virtual clock; a
live user actor's memory of its keys agrees with the table after the sweep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shopkeep.actors.key_rules import KEY_RETENTION_S, KEY_SWEEP_S
from shopkeep.idempotency import IdempotencyKey
from shopkeep.runtime import RuntimeConfig, VirtualClock
from shopkeep.shop import Shop
from tests.shop.conftest import SECRET, settle

STEP_S = 600.0


async def let_pass(shop: Shop, clock: VirtualClock, seconds: float) -> None:
    """Move the clock ``seconds`` on, ten minutes at a time, each step's sweep done (it reads
    the table through a thread, which the clock does not wait for) before the next."""
    while seconds > 0:
        step = min(STEP_S, seconds)
        await clock.advance(step)
        await settle(shop)
        seconds -= step


@pytest.fixture
async def awake_shop(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[Shop]:
    """A shop whose actors are never passivated for idleness: a user actor keeps its memory
    across the day the test lets pass."""
    awake = RuntimeConfig(idle_timeout_s=10 * KEY_RETENTION_S)
    path = str(tmp_path / "shop.db")
    async with Shop.open(
        path, gateway="sandbox", clock=clock, gateway_secret=SECRET, runtime_config=awake
    ) as shop:
        yield shop


async def kept_keys(shop: Shop) -> list[str]:
    """The keys in the table now."""
    rows = await shop.reader.fetchall("SELECT key FROM idempotency_keys ORDER BY key")
    return [str(key) for (key,) in rows]


async def test_a_key_is_kept_24_hours_then_pruned(shop: Shop, clock: VirtualClock) -> None:
    assert KEY_RETENTION_S >= 24 * 3_600  # SPEC 7: "kept at least 24 hours"
    user = (await shop.create_user("ann")).user.id
    await shop.credit_wallet(user, 500, idempotency_key="credit-1")

    await let_pass(shop, clock, KEY_RETENTION_S - 1)
    kept = IdempotencyKey("credit-1")
    await shop.credit_wallet(user, 500, idempotency_key=kept)
    await let_pass(shop, clock, KEY_SWEEP_S + 2)
    pruned = await kept_keys(shop)
    fresh = IdempotencyKey("credit-1")
    await shop.credit_wallet(user, 500, idempotency_key=fresh)

    assert kept.replayed  # still there a second before 24 hours
    assert pruned == []  # gone within the hour after
    assert not fresh.replayed  # so the same key is a new request again
    assert (await shop.get_user(user)).balance == 1_000


async def test_a_live_user_actor_forgets_what_the_sweep_pruned(
    awake_shop: Shop, clock: VirtualClock
) -> None:
    shop = awake_shop
    tea = await shop.create_goods("tea", price=1_000, stock=10)
    user = (await shop.create_user("ann")).user.id
    first = await shop.place_order(user, [(tea.id, 1)], idempotency_key="order-1")
    await shop.cancel_order(first.id, user_id=user, idempotency_key="cancel-1")

    await let_pass(shop, clock, KEY_RETENTION_S + KEY_SWEEP_S + 1)
    pruned = await kept_keys(shop)
    # the user actor kept order-1 whole in memory all along; the table no longer has it
    other = IdempotencyKey("order-1")
    placed = await shop.place_order(user, [(tea.id, 2)], idempotency_key=other)
    again = await shop.place_order(user, [(tea.id, 3)], idempotency_key="cancel-1")

    assert pruned == []
    assert not other.replayed and placed.id != first.id  # a new request, not a conflict
    assert again.id not in (first.id, placed.id)
    assert (await shop.get_goods(tea.id)).stock == 5
    assert await kept_keys(shop) == ["cancel-1", "order-1"]


async def test_the_sweep_deletes_a_large_backlog_a_batch_at_a_time(
    shop: Shop, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shopkeep.actors.key_store.KEY_SWEEP_BATCH", 2)
    user = (await shop.create_user("ann")).user.id
    for n in range(5):
        await shop.credit_wallet(user, 1, idempotency_key=f"credit-{n}")

    await let_pass(shop, clock, KEY_RETENTION_S)  # the sweep that finds them old: one batch
    after_one = await kept_keys(shop)
    await clock.advance(1.0)  # a full batch brings the next a second later
    await settle(shop)
    after_two = await kept_keys(shop)
    await clock.advance(1.0)
    await settle(shop)

    assert (len(after_one), len(after_two)) == (3, 1)
    assert await kept_keys(shop) == []
