"""A placement that did nothing never binds its Idempotency-Key, and a 503 never hides an order
that goes on (SPEC 7).

With ``mailbox_size=1``: a placement refused overloaded by a busy goods must not keep its key
bound to its failed order (every retry with the key would answer the same 503 for ever), and a
placement running past the ask timeout must not answer 503 "try again" while it goes on (a
retry without a key would place a second order).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.goods import GoodsActor
from shopkeep.actors.protocol import GetGoods
from shopkeep.errors import ShopError
from shopkeep.idempotency import IdempotencyKey
from shopkeep.runtime import Address, Context, RuntimeConfig, VirtualClock
from shopkeep.shop import Shop
from tests.shop.conftest import SECRET, assert_audit_ok, mail_queued, settle


class BusyGoods:
    """Every goods actor holds a GetGoods until :meth:`release`: while it does, the goods is
    busy, and a placement waits for its turn, queued behind in its mailbox."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate = asyncio.Event()
        handle = GoodsActor.receive

        async def receive(actor: GoodsActor, ctx: Context, message: Any) -> Any:
            if isinstance(message, GetGoods):
                await self.gate.wait()
            return await handle(actor, ctx, message)

        monkeypatch.setattr(GoodsActor, "receive", receive)
        self.held: list[asyncio.Task[Any]] = []

    def hold(self, shop: Shop, goods_id: int, asks: int = 1) -> None:
        """Keep the goods busy with ``asks`` GetGoods (the first runs, the others queue)."""
        self.held += [asyncio.create_task(shop.get_goods(goods_id)) for _ in range(asks)]

    async def release(self) -> None:
        """Let the held asks finish (those the clock moved past time out)."""
        self.gate.set()
        await asyncio.gather(*self.held, return_exceptions=True)


@pytest.fixture(params=["one_turn", "saga"])
async def tiny_shop(
    request: pytest.FixtureRequest, tmp_path: Path, clock: VirtualClock
) -> AsyncIterator[Shop]:
    """A shop whose every mailbox holds one message (the issue's reproduction), placing in one
    turn (the busy goods refuses the order's wait for its turn: nothing is recorded) or by the
    saga (its ask is refused: the order is recorded, and failed)."""
    tiny = RuntimeConfig(mailbox_size=1)
    config = ShopConfig(one_turn_placement=request.param == "one_turn")
    path = str(tmp_path / "tiny.db")
    async with Shop.open(
        path, gateway="sandbox", clock=clock, gateway_secret=SECRET, runtime_config=tiny,
        config=config,
    ) as shop:  # fmt: skip
        yield shop


def took_the_saga(shop: Shop) -> bool:
    """Whether ``shop`` places by the saga of asks."""
    return not shop.config.one_turn_placement


async def test_a_placement_refused_overloaded_leaves_its_key_free_for_the_retry(
    tiny_shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = tiny_shop
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = (await shop.create_user("ann")).user.id
    busy = BusyGoods(monkeypatch)
    busy.hold(shop, tea.id, asks=2)  # one handled, one queued: the mailbox is full
    await asyncio.sleep(0)

    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, [(tea.id, 1)], idempotency_key="k-1")
    await busy.release()
    await settle(shop)
    retry = IdempotencyKey("k-1")
    placed = await shop.place_order(user, [(tea.id, 1)], idempotency_key=retry)
    again = await shop.place_order(user, [(tea.id, 1)], idempotency_key="k-1")

    recorded = refused.value.order_id is not None
    assert (refused.value.code, recorded) == ("overloaded", took_the_saga(shop))
    assert placed.status == "awaiting_payment" and not retry.replayed
    assert placed.id != refused.value.order_id
    assert again.id == placed.id  # now the key is bound: to the order that was placed
    assert (await shop.get_goods(tea.id)).stock == 4
    await assert_audit_ok(shop)


async def test_many_placements_refused_overloaded_all_place_when_retried_with_their_keys(
    tiny_shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = tiny_shop
    tea = await shop.create_goods("tea", price=1_000, stock=100)
    users = [(await shop.create_user(f"user-{n}")).user.id for n in range(12)]
    busy = BusyGoods(monkeypatch)
    busy.hold(shop, tea.id, asks=2)
    await asyncio.sleep(0)

    async def place(n: int, user: int) -> str:
        try:
            await shop.place_order(user, [(tea.id, 1)], idempotency_key=f"k-{n}")
        except ShopError as error:
            return error.code
        return "placed"

    first = await asyncio.gather(*(place(n, user) for n, user in enumerate(users)))
    await busy.release()
    await settle(shop)
    retried = [await place(n, user) for n, user in enumerate(users)]

    assert first == ["overloaded"] * 12
    assert retried == ["placed"] * 12
    assert (await shop.get_goods(tea.id)).stock == 88
    await assert_audit_ok(shop)


async def test_a_placement_past_the_ask_timeout_answers_its_order_pending_and_goes_on(
    shop: Shop, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = (await shop.create_user("ann")).user.id
    busy = BusyGoods(monkeypatch)
    busy.hold(shop, tea.id)
    await asyncio.sleep(0)

    placing = asyncio.create_task(shop.place_order(user, [(tea.id, 1)], idempotency_key="k-1"))
    await mail_queued(shop, Address("goods", tea.id))  # the order waits for its turn
    # Half-way the order stops waiting for the busy goods' turn and takes the saga, which
    # records it pending and asks the goods (queued behind); at the ask timeout the shop
    # stops waiting and answers the order as it stands.
    await clock.advance(shop.runtime.system.config.ask_timeout_s)
    pending = await placing
    assert pending.status == "pending"
    await busy.release()
    await settle(shop)
    # it went on: once the goods was free, the order took its stock and was placed
    placed = await shop.get_order(pending.id)
    assert placed.status == "awaiting_payment"
    retry = IdempotencyKey("k-1")
    again = await shop.place_order(user, [(tea.id, 1)], idempotency_key=retry)
    assert again.id == pending.id and retry.replayed
    assert (await shop.get_goods(tea.id)).stock == 4
    await assert_audit_ok(shop)


async def test_a_retry_while_the_first_placement_runs_waits_and_answers_its_order(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = (await shop.create_user("ann")).user.id
    busy = BusyGoods(monkeypatch)
    busy.hold(shop, tea.id)
    await asyncio.sleep(0)

    first = asyncio.create_task(shop.place_order(user, [(tea.id, 1)], idempotency_key="k-1"))
    retry = IdempotencyKey("k-1")
    second = asyncio.create_task(shop.place_order(user, [(tea.id, 1)], idempotency_key=retry))
    await asyncio.sleep(0)
    await busy.release()
    placed, again = await asyncio.gather(first, second)

    assert again == placed and retry.replayed
    assert (await shop.get_goods(tea.id)).stock == 4


@pytest.mark.parametrize(
    "kept", ["no answer", "the order accepted"], ids=["cut-before-any-answer", "cut-after-202"]
)
async def test_a_placement_a_crash_cut_leaves_its_key_free_for_the_retry(
    tmp_path: Path, clock: VirtualClock, kept: str
) -> None:
    path = tmp_path / "shop.db"
    async with Shop.open(str(path), gateway="sandbox", clock=clock, gateway_secret=SECRET) as shop:
        tea = await shop.create_goods("tea", price=1_000, stock=5)
        user = (await shop.create_user("ann")).user.id
        cut = await shop.place_order(user, [(tea.id, 1)], idempotency_key="k-1", wait=False)
        await settle(shop)
    with closing(sqlite3.connect(path)) as conn, conn:
        # what a kill in the middle of its placement leaves: the order pending, and with the
        # key no answer (a placement that waits) or the order accepted, answered 202 pending
        conn.execute(
            "UPDATE orders SET status = 'pending', confirmed_at = NULL, expires_at = NULL "
            "WHERE id = ?",
            (cut.id,),
        )
        if kept == "no answer":
            conn.execute("UPDATE idempotency_keys SET answer = NULL")
        conn.execute("DELETE FROM timers WHERE kind = 'order'")

    async with Shop.open(str(path), gateway="sandbox", clock=clock, gateway_secret=SECRET) as shop:
        await settle(shop)  # the start undoes the cut placement: interrupted
        undone = await shop.get_order(cut.id)
        retry = IdempotencyKey("k-1")
        placed = await shop.place_order(user, [(tea.id, 1)], idempotency_key=retry, wait=False)
        await settle(shop)

        assert (undone.status, undone.cancel_reason) == ("canceled", "placement_failed")
        assert placed.id != cut.id and not retry.replayed
        assert (await shop.get_order(placed.id)).status == "awaiting_payment"
        assert (await shop.get_goods(tea.id)).stock == 4


async def test_an_accepted_placement_refused_422_once_priced_leaves_its_key_free(
    shop: Shop,
) -> None:
    # SPEC 7: a 422 binds nothing; accepted (?wait=false) and refused so once priced (past the
    # largest amount), its key was bound for a day to the canceled order, each retry a 202
    ann = (await shop.create_user("ann")).user.id
    gold = await shop.create_goods("gold", price=10**12, stock=10)
    accepted = await shop.place_order(ann, [(gold.id, 2)], idempotency_key="k", wait=False)
    await settle(shop)
    failed = await shop.get_order(accepted.id)
    assert (failed.status, failed.cancel_reason) == ("canceled", "placement_failed")
    await shop.update_goods(gold.id, price=1_000)

    key = IdempotencyKey("k")
    again = await shop.place_order(ann, [(gold.id, 2)], idempotency_key=key)

    assert again.id != accepted.id and again.status == "awaiting_payment"
    assert key.replayed is False
    await assert_audit_ok(shop)
