"""The common placement is one turn and one unit of work; it waits for a busy participant's
turn, and takes the saga only when one stays busy or cannot answer from memory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import pytest

from shopkeep.actors import key_store
from shopkeep.actors.order_messages import OrderView
from shopkeep.actors.order_store import HISTORY_SQL, INSERT_ITEM_SQL, INSERT_ORDER_SQL
from shopkeep.actors.placement_turn import JOIN_ATTEMPTS
from shopkeep.actors.protocol import GetGoods, GoodsView
from shopkeep.errors import ShopError
from shopkeep.idempotency import IdempotencyKey
from shopkeep.runtime import Address, Context, VirtualClock
from shopkeep.shop import Shop
from shopkeep.store import UnitOfWork
from tests.shop.conftest import assert_audit_ok, settle


class Units:
    """Counts the units of work the shop submits meanwhile, and collects their statements (as
    the units wrote them, before the writer's batch plan groups them)."""

    def __init__(self, shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writer = shop.runtime.store.writer
        self.units: list[UnitOfWork] = []
        submit = self.writer.submit

        def recording(unit: UnitOfWork) -> asyncio.Future[None]:
            self.units.append(unit)
            return submit(unit)

        monkeypatch.setattr(self.writer, "submit", recording)

    async def counted(self) -> int:
        await self.writer.flush()
        return len(self.units)

    @property
    def statements(self) -> list[tuple[str, Any, bool]]:
        return [statement for unit in self.units for statement in unit.statements]

    def rows(self, sql: str) -> int:
        return sum(len(params) if many else 1 for text, params, many in self.statements
                   if text == sql)


class Activations:
    """Counts the placements' waits for their participants (``Context.activate``), running
    ``then`` after each."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, then: Callable[[], None] | None = None
    ) -> None:
        self.count = 0
        activate = Context.activate

        async def counted(ctx: Context, addresses: Iterable[Address]) -> None:
            await activate(ctx, addresses)
            self.count += 1
            if then is not None:
                then()

        monkeypatch.setattr(Context, "activate", counted)


async def live_goods_and_user(shop: Shop) -> tuple[GoodsView, int]:
    """A tea (1,500 a unit, 10 in stock) and a user's id, both actors live and idle: what a
    placement joins in one turn."""
    tea = await shop.create_goods("tea", price=1_500, stock=10)
    user = (await shop.create_user("ann")).user.id
    await shop.get_goods(tea.id)
    await shop.get_user(user)
    return tea, user


async def test_a_plain_placement_is_one_unit_with_the_order_born_confirmed(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    tea, user = await live_goods_and_user(shop)
    watch = Units(shop, monkeypatch)
    order = await shop.place_order(user, [(tea.id, 2)])
    assert await watch.counted() == 1
    assert order.status == "awaiting_payment"
    assert watch.rows(INSERT_ORDER_SQL) == 1
    assert watch.rows(INSERT_ITEM_SQL) == 1
    assert watch.rows(HISTORY_SQL) == 2  # placed, confirmed
    # with the goods' stock, its ledger row, the deadline: within the six statements a plain
    # placement's commit may take (performance.md), which more would spend
    assert len(watch.statements) <= 6
    assert not any(sql.startswith("UPDATE orders") for sql, _, _ in watch.statements)
    history = (await shop.order_history(order.id)).items
    assert [(h.from_status, h.to_status, h.operation) for h in history] == [
        (None, "pending", "placed"), ("pending", "awaiting_payment", "confirmed"),
    ]
    assert (await shop.get_goods(tea.id)).stock == 8
    await assert_audit_ok(shop)


async def test_a_placement_with_coupon_wallet_and_key_is_one_unit(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    tea = await shop.create_goods("tea", price=1_500, stock=10)
    user = (await shop.create_user("ann", balance=1_000)).user.id
    coupon = await shop.create_coupon(user, 300)
    await shop.get_goods(tea.id)
    await shop.get_user(user)
    await shop.get_coupon(coupon.id)
    watch = Units(shop, monkeypatch)
    order = await shop.place_order(
        user, [(tea.id, 1)], coupon_id=coupon.id, use_balance=500, idempotency_key="k-1"
    )
    assert await watch.counted() == 1
    assert (order.coupon_discount, order.wallet_amount, order.pay_amount) == (300, 500, 1_700)
    again = await shop.place_order(
        user, [(tea.id, 1)], coupon_id=coupon.id, use_balance=500, idempotency_key="k-1"
    )
    assert again.id == order.id
    assert (await shop.get_user(user)).balance == 500
    assert (await shop.get_coupon(coupon.id)).state == "used"
    await assert_audit_ok(shop)


async def test_a_keyed_placement_writes_its_keys_row_once_with_the_answer_in_it(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    tea, user = await live_goods_and_user(shop)
    watch = Units(shop, monkeypatch)
    key = IdempotencyKey("k-1")

    order = await shop.place_order(user, [(tea.id, 1)], idempotency_key=key)

    assert await watch.counted() == 1
    assert watch.rows(key_store.INSERT_SQL) == 1
    assert watch.rows(key_store.ANSWER_SQL) == 0  # no second write of the same row
    assert len(watch.statements) <= 7  # a plain placement's six at most, and the key's row
    kept = await key_store.placement_answer(shop.runtime.store.reader, user, "k-1", order.id)
    assert kept is not None and msgspec.msgpack.decode(kept, type=OrderView) == order
    again = IdempotencyKey("k-1")
    assert await shop.place_order(user, [(tea.id, 1)], idempotency_key=again) == order
    assert again.replayed and not key.replayed


async def test_participants_that_are_not_live_are_loaded_and_join(
    shop: Shop, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    tea = await shop.create_goods("tea", price=1_500, stock=10)
    user = (await shop.create_user("ann")).user.id
    await settle(shop)
    await clock.advance(shop.runtime.system.config.idle_timeout_s + 1)
    shop.runtime.system.passivate_idle()
    assert not shop.runtime.system.is_live(Address("goods", tea.id))
    watch = Units(shop, monkeypatch)
    await shop.place_order(user, [(tea.id, 1)])
    assert await watch.counted() == 1


async def test_a_participant_with_mail_queued_is_waited_for_and_the_placement_is_one_unit(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    tea, user = await live_goods_and_user(shop)
    watch = Units(shop, monkeypatch)
    # queued, not yet handled: the goods cannot join a turn before it has handled it, so the
    # order waits for the goods' turn in its mailbox, then places in one turn
    shop.runtime.system.tell(Address("goods", tea.id), GetGoods())
    order = await shop.place_order(user, [(tea.id, 3)])
    assert await watch.counted() == 1
    assert order.status == "awaiting_payment"
    assert (await shop.get_goods(tea.id)).stock == 7
    await assert_audit_ok(shop)


async def test_a_participant_busy_again_at_every_turn_sends_the_placement_down_the_saga(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    tea = await shop.create_goods("tea", price=1_500, stock=10)
    user = (await shop.create_user("ann")).user.id
    goods = Address("goods", tea.id)
    # mail arrives after each wait: the goods is busy again before the turn runs
    waits = Activations(monkeypatch, then=lambda: shop.runtime.system.tell(goods, GetGoods()))
    watch = Units(shop, monkeypatch)
    order = await shop.place_order(user, [(tea.id, 3)])
    assert waits.count == JOIN_ATTEMPTS
    assert await watch.counted() > 1  # the saga's units
    assert order.status == "awaiting_payment"
    assert (await shop.get_goods(tea.id)).stock == 7
    await assert_audit_ok(shop)


async def test_a_key_the_user_must_look_up_sends_the_placement_down_the_saga_at_once(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    tea = await shop.create_goods("tea", price=1_500, stock=10)
    user = (await shop.create_user("ann")).user.id
    first = await shop.place_order(user, [(tea.id, 1)], idempotency_key="k-1")
    await settle(shop)
    waits = Activations(monkeypatch)
    again = await shop.place_order(user, [(tea.id, 1)], idempotency_key="k-1")
    assert again.id == first.id
    assert waits.count == 1


@pytest.mark.parametrize("missing", ["goods", "coupon"])
async def test_goods_or_a_coupon_that_do_not_exist_are_refused_with_nothing_recorded(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    # SPEC 2: "every goods exists", "the coupon exists" are checks: a failure changes nothing
    tea = await shop.create_goods("tea", price=1_500, stock=10)
    user = (await shop.create_user("ann")).user.id
    waits, watch = Activations(monkeypatch), Units(shop, monkeypatch)
    items, coupon = ([(424242, 1)], None) if missing == "goods" else ([(tea.id, 1)], 434343)
    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, items, coupon_id=coupon)
    assert (refused.value.code, refused.value.order_id) == ("not_found", None)
    assert waits.count == 1  # looked for once, and its own check said it names nothing
    assert await watch.counted() == 0
    assert (await shop.list_orders(user_id=user)).items == []
    assert not shop.runtime.system.is_live(Address(missing, 424242 if coupon is None else coupon))


async def test_a_refusal_in_one_turn_leaves_every_participant_as_it_was(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    tea = await shop.create_goods("tea", price=1_500, stock=10)
    scarce = await shop.create_goods("saffron", price=9_000, stock=1)
    user = (await shop.create_user("ann", balance=2_000)).user.id
    watch = Units(shop, monkeypatch)
    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, [(tea.id, 2), (scarce.id, 2)], use_balance=2_000)
    assert refused.value.code == "insufficient_stock"
    assert await watch.counted() == 0
    assert (await shop.get_goods(tea.id)).stock == 10
    assert (await shop.get_user(user)).balance == 2_000
    order = await shop.place_order(user, [(tea.id, 2)], use_balance=2_000)
    assert order.wallet_amount == 2_000
    await assert_audit_ok(shop)


async def test_a_keyed_refusal_in_one_turn_writes_only_its_keys_row_and_is_replayed(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    scarce = await shop.create_goods("saffron", price=9_000, stock=1)
    user = (await shop.create_user("ann")).user.id
    await shop.get_goods(scarce.id)  # every participant live: one turn
    watch = Units(shop, monkeypatch)
    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, [(scarce.id, 2)], idempotency_key="k-1")
    assert await watch.counted() == 1
    assert [text for text, _, _ in watch.statements] == [key_store.INSERT_SQL]
    await shop.update_goods(scarce.id, restock=5)  # the obstacle is gone; the key keeps it

    retry = IdempotencyKey("k-1")
    with pytest.raises(ShopError) as again:
        await shop.place_order(user, [(scarce.id, 2)], idempotency_key=retry)

    assert refused.value.code == again.value.code == "insufficient_stock"
    assert again.value.replayed and retry.replayed and refused.value.order_id is None
    assert (await shop.list_orders(user_id=user)).items == []
    assert (await shop.get_goods(scarce.id)).stock == 6
    await assert_audit_ok(shop)


async def test_a_keyed_placement_the_user_refuses_in_the_saga_keeps_the_refusal(
    saga_shop: Shop,
) -> None:
    shop = saga_shop
    tea = await shop.create_goods("tea", price=1_000, stock=50)
    user = (await shop.create_user("ann")).user.id
    unpaid = [await shop.place_order(user, [(tea.id, 1)]) for _ in range(10)]
    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, [(tea.id, 1)], idempotency_key="eleventh")
    await shop.cancel_order(unpaid[0].id, user_id=user)  # room for one more now

    with pytest.raises(ShopError) as again:
        await shop.place_order(user, [(tea.id, 1)], idempotency_key="eleventh")
    with pytest.raises(ShopError) as other:
        await shop.place_order(user, [(tea.id, 2)], idempotency_key="eleventh")

    assert refused.value.code == again.value.code == "too_many_unpaid_orders"
    assert again.value.replayed and not refused.value.replayed
    assert other.value.code == "idempotency_conflict"
    assert (await shop.place_order(user, [(tea.id, 1)], idempotency_key="new")).status == (
        "awaiting_payment"
    )
