"""The asset actors on a real SQLite file: stock, coupons, wallets, points, the release fan-out."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from structlog.testing import capture_logs

from shopkeep.actors.assets import given_back
from shopkeep.actors.goods import HELD_SQL, RECENT_TAKES_S
from shopkeep.actors.protocol import (
    AwardPoints,
    BeginOrder,
    CouponView,
    CreateCoupon,
    CreateGoods,
    CreateUser,
    CreditWallet,
    DebitWallet,
    GetCoupon,
    GetGoods,
    GetUser,
    GoodsView,
    OrderSettled,
    OrderTicket,
    ReleaseAssets,
    ReleaseCoupon,
    ReleaseWallet,
    ReturnStock,
    RevokePoints,
    StockTaken,
    TakeStock,
    UpdateGoods,
    UseCoupon,
    UserView,
)
from shopkeep.bootstrap import Runtime
from shopkeep.refusals import (
    COUPON_UNAVAILABLE,
    IDEMPOTENCY_CONFLICT,
    INSUFFICIENT_BALANCE,
    INSUFFICIENT_STOCK,
    INVALID_STATE,
    NOT_FOUND,
    TOO_MANY_UNPAID_ORDERS,
    Refusal,
)
from shopkeep.runtime import ActorSystem, Context, Overloaded, ShuttingDown, VirtualClock
from shopkeep.store.errors import CommitFailed
from tests.actors.asset_shop import (
    assets,
    coupon,
    goods,
    open_shop,
    record_order,
    rows,
    settled,
    user,
)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "shop.db")


@pytest.fixture
async def shop(db: str) -> AsyncIterator[Runtime]:
    async with open_shop(db) as rt:
        yield rt


def code(answer: object) -> str:
    assert isinstance(answer, Refusal), answer
    return answer.code


# -- goods ----------------------------------------------------------------------------------


async def test_stock_taken_and_returned_twice_is_given_back_once(shop: Runtime) -> None:
    ask = shop.system.ask
    await ask(goods(1), CreateGoods("tea", 450, 10))
    assert await ask(goods(1), TakeStock(order_id=7, quantity=3)) == StockTaken(450)
    await ask(goods(1), ReturnStock(7))
    await ask(goods(1), ReturnStock(7))
    assert await ask(goods(1), GetGoods()) == GoodsView(1, "tea", 450, 10)
    ledger = await rows(shop, "SELECT order_id, reason, quantity FROM stock_ledger ORDER BY id")
    assert ledger == [(7, "take", -3), (7, "release", 3)]
    assert await rows(shop, "SELECT stock FROM goods") == [(10,)]


async def test_a_take_asked_again_for_the_same_order_answers_the_same_and_takes_nothing(
    shop: Runtime,
) -> None:
    await shop.system.ask(goods(1), CreateGoods("tea", 450, 10))
    await shop.system.ask(goods(1), TakeStock(7, 3))
    await shop.system.ask(goods(1), UpdateGoods(price=500))
    assert await shop.system.ask(goods(1), TakeStock(7, 3)) == StockTaken(450)
    assert (await shop.system.ask(goods(1), GetGoods())).stock == 7


async def test_a_take_is_remembered_a_minute_and_after_that_the_ledger_refuses_a_repeat(
    shop: Runtime,
) -> None:
    ask = shop.system.ask
    await ask(goods(1), CreateGoods("tea", 450, 10))
    await ask(goods(1), TakeStock(7, 3))
    clock = shop.system.clock
    assert isinstance(clock, VirtualClock)
    await clock.advance(RECENT_TAKES_S + 1)
    await ask(goods(1), TakeStock(8, 1))  # the take of order 7 is forgotten on this one
    with pytest.raises(CommitFailed, match="UNIQUE constraint failed: stock_ledger"):
        await ask(goods(1), TakeStock(7, 3))
    assert (await ask(goods(1), GetGoods())).stock == 6
    ledger = await rows(shop, "SELECT order_id, reason, quantity FROM stock_ledger ORDER BY id")
    assert ledger == [(7, "take", -3), (8, "take", -1)]


class HeldReads:
    """Counts the goods actors' reads of what an order holds (the ledger rows a return needs
    when the take is not remembered)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        query = Context.query

        async def counted(ctx: Context, sql: str, params: Any = ()) -> Any:
            if sql == HELD_SQL:
                self.count += 1
            return await query(ctx, sql, params)

        monkeypatch.setattr(Context, "query", counted)


async def test_a_return_of_a_remembered_take_gives_it_back_without_a_read(
    shop: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ask = shop.system.ask
    await ask(goods(1), CreateGoods("tea", 450, 10))
    await ask(goods(1), TakeStock(7, 3))
    reads = HeldReads(monkeypatch)
    await ask(goods(1), ReturnStock(7))
    assert reads.count == 0
    await ask(goods(1), ReturnStock(7))  # forgotten by the first: read, and nothing is left
    assert reads.count == 1
    assert (await ask(goods(1), GetGoods())).stock == 10
    ledger = await rows(shop, "SELECT order_id, reason, quantity FROM stock_ledger ORDER BY id")
    assert ledger == [(7, "take", -3), (7, "release", 3)]


async def test_a_return_after_a_restart_reads_what_the_order_holds(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_shop(db) as rt:
        await rt.system.ask(goods(1), CreateGoods("tea", 450, 10))
        await rt.system.ask(goods(1), TakeStock(7, 3))
    reads = HeldReads(monkeypatch)
    async with open_shop(db) as rt:
        await rt.system.ask(goods(1), ReturnStock(7))
        assert reads.count == 1
        assert (await rt.system.ask(goods(1), GetGoods())).stock == 10


async def test_a_thousand_buyers_of_a_hundred_units_get_exactly_a_hundred(shop: Runtime) -> None:
    await shop.system.ask(goods(1), CreateGoods("tea", 450, 100))
    answers = await asyncio.gather(
        *(shop.system.ask(goods(1), TakeStock(order_id, 1)) for order_id in range(1, 1_001))
    )
    kinds = Counter(a.code if isinstance(a, Refusal) else type(a).__name__ for a in answers)
    assert kinds == {"StockTaken": 100, INSUFFICIENT_STOCK: 900}
    assert (await shop.system.ask(goods(1), GetGoods())).stock == 0
    ledger = await rows(shop, "SELECT count(*), sum(quantity) FROM stock_ledger")
    assert ledger == [(100, -100)]
    assert await rows(shop, "SELECT stock, initial_stock FROM goods") == [(0, 100)]


async def test_a_refused_take_says_how_many_are_left(shop: Runtime) -> None:
    await shop.system.ask(goods(123), CreateGoods("tea", 450, 2))
    refused = await shop.system.ask(goods(123), TakeStock(7, 5))
    assert refused == Refusal(INSUFFICIENT_STOCK, "goods 123: 2 left, 5 asked")


async def test_a_restock_adds_to_stock_and_restocked_and_writes_no_ledger_row(
    shop: Runtime,
) -> None:
    await shop.system.ask(goods(1), CreateGoods("tea", 450, 10))
    assert await shop.system.ask(goods(1), UpdateGoods(price=500, restock=5)) == GoodsView(
        1, "tea", 500, 15
    )
    assert await rows(shop, "SELECT price, stock, initial_stock, restocked FROM goods") == [
        (500, 15, 10, 5)
    ]
    assert await rows(shop, "SELECT count(*) FROM stock_ledger") == [(0,)]


async def test_goods_that_do_not_exist_are_not_found_and_cannot_be_created_twice(
    shop: Runtime,
) -> None:
    assert code(await shop.system.ask(goods(9), GetGoods())) == NOT_FOUND
    assert code(await shop.system.ask(goods(9), TakeStock(1, 1))) == NOT_FOUND
    await shop.system.ask(goods(9), CreateGoods("tea", 450, 1))
    assert code(await shop.system.ask(goods(9), CreateGoods("tea", 450, 1))) == INVALID_STATE


# -- coupons --------------------------------------------------------------------------------


async def test_a_coupon_is_used_by_one_order_until_that_order_releases_it(shop: Runtime) -> None:
    ask = shop.system.ask
    now = shop.system.clock.now()
    await ask(coupon(4), CreateCoupon(user_id=1, value=500))
    assert await ask(coupon(4), UseCoupon(order_id=9, user_id=1, order_amount=100, now=now)) == 500
    assert code(await ask(coupon(4), UseCoupon(10, 1, 100, now))) == COUPON_UNAVAILABLE
    await ask(coupon(4), ReleaseCoupon(10))  # not the holder: nothing happens
    assert (await ask(coupon(4), GetCoupon())).order_id == 9
    await ask(coupon(4), ReleaseCoupon(9))
    assert await ask(coupon(4), UseCoupon(10, 1, 100, now)) == 500
    assert await rows(shop, "SELECT order_id FROM coupons") == [(10,)]


async def test_an_expired_coupon_is_unavailable_and_another_users_not_found(
    shop: Runtime,
) -> None:
    now = shop.system.clock.now()
    await shop.system.ask(coupon(4), CreateCoupon(1, 500, expires_at=now + 60))
    assert code(await shop.system.ask(coupon(4), UseCoupon(9, 2, 100, now))) == NOT_FOUND
    late = UseCoupon(9, 1, 100, now + 60)
    assert code(await shop.system.ask(coupon(4), late)) == COUPON_UNAVAILABLE


# -- wallets and points ---------------------------------------------------------------------


async def test_a_wallet_is_debited_and_released_once_per_order(shop: Runtime) -> None:
    ask = shop.system.ask
    await ask(user(1), CreateUser("ann", 1_000, "hash-ann"))
    assert await ask(user(1), DebitWallet(order_id=7, amount=300)) == 700
    assert await ask(user(1), DebitWallet(7, 300)) == 700
    await ask(user(1), ReleaseWallet(7, 300))
    await ask(user(1), ReleaseWallet(7, 300))
    assert await ask(user(1), GetUser()) == UserView(1, "ann", 1_000, 0)
    ledger = await rows(shop, "SELECT order_id, reason, amount FROM wallet_ledger ORDER BY id")
    assert ledger == [(None, "opening", 1_000), (7, "order_debit", -300), (7, "order_release", 300)]


async def test_a_debit_above_the_balance_is_refused_and_changes_nothing(shop: Runtime) -> None:
    await shop.system.ask(user(1), CreateUser("ann", 100, "hash-ann"))
    assert code(await shop.system.ask(user(1), DebitWallet(7, 101))) == INSUFFICIENT_BALANCE
    assert await rows(shop, "SELECT balance FROM users") == [(100,)]


async def test_a_debit_repeated_after_a_restart_reads_the_ledger_and_changes_nothing(
    db: str,
) -> None:
    async with open_shop(db) as rt:
        await rt.system.ask(user(1), CreateUser("ann", 1_000, "hash-ann"))
        await rt.system.ask(user(1), DebitWallet(7, 300))
    async with open_shop(db) as rt:
        assert await rt.system.ask(user(1), DebitWallet(7, 300)) == 700
        assert await rows(rt, "SELECT count(*) FROM wallet_ledger") == [(2,)]


async def test_a_release_never_gives_back_more_than_the_order_took(shop: Runtime) -> None:
    await shop.system.ask(user(1), CreateUser("ann", 1_000, "hash-ann"))
    await shop.system.ask(user(1), ReleaseWallet(8, 300))  # order 8 took nothing
    await shop.system.ask(user(1), DebitWallet(7, 300))
    await shop.system.ask(user(1), ReleaseWallet(7, 500))
    assert (await shop.system.ask(user(1), GetUser())).balance == 1_000


async def test_a_credit_is_written_to_the_ledger(shop: Runtime) -> None:
    await shop.system.ask(user(1), CreateUser("ann", 0, "hash-ann"))
    assert (await shop.system.ask(user(1), CreditWallet(250))).balance == 250
    assert await rows(shop, "SELECT order_id, reason, amount FROM wallet_ledger") == [
        (None, "credit", 250)
    ]


async def test_points_are_awarded_and_revoked_once(shop: Runtime) -> None:
    ask = shop.system.ask
    await ask(user(1), CreateUser("ann", 0, "hash-ann"))
    await ask(user(1), AwardPoints(7, 12))
    await ask(user(1), AwardPoints(7, 12))
    assert (await ask(user(1), GetUser())).points == 12
    await ask(user(1), RevokePoints(7))
    await ask(user(1), RevokePoints(7))
    assert (await ask(user(1), GetUser())).points == 0
    ledger = await rows(shop, "SELECT order_id, reason, amount FROM points_ledger ORDER BY id")
    assert ledger == [(7, "award", 12), (7, "revoke", -12)]


async def test_a_user_that_does_not_exist_answers_not_found_to_everything_but_create(
    shop: Runtime,
) -> None:
    assert code(await shop.system.ask(user(1), GetUser())) == NOT_FOUND
    assert code(await shop.system.ask(user(1), DebitWallet(7, 1))) == NOT_FOUND
    await shop.system.ask(user(1), CreateUser("ann", 0, "hash-ann"))
    assert code(await shop.system.ask(user(1), CreateUser("ann", 0, "h2"))) == INVALID_STATE


# -- beginning orders -----------------------------------------------------------------------


async def test_unpaid_orders_are_capped_until_one_is_settled(shop: Runtime) -> None:
    ask = shop.system.ask
    await ask(user(1), CreateUser("ann", 0, "hash-ann"))
    assert await ask(user(1), BeginOrder(10, None, "h", max_unpaid=2)) == OrderTicket(10, False)
    assert await ask(user(1), BeginOrder(11, None, "h", max_unpaid=2)) == OrderTicket(11, False)
    refused = await ask(user(1), BeginOrder(12, None, "h", max_unpaid=2))
    assert code(refused) == TOO_MANY_UNPAID_ORDERS
    await ask(user(1), OrderSettled(10))
    assert await ask(user(1), BeginOrder(12, None, "h", max_unpaid=2)) == OrderTicket(12, False)


async def test_the_same_key_and_request_answer_the_first_order_and_another_request_conflicts(
    db: str,
) -> None:
    async with open_shop(db) as rt:
        await rt.system.ask(user(1), CreateUser("ann", 0, "hash-ann"))
        first = await rt.system.ask(user(1), BeginOrder(10, "key-1", "body-a", 10))
        assert first == OrderTicket(10, existing=False)
        again = await rt.system.ask(user(1), BeginOrder(11, "key-1", "body-a", 10))
        assert again == OrderTicket(10, existing=True)
        other = await rt.system.ask(user(1), BeginOrder(12, "key-1", "body-b", 10))
        assert code(other) == IDEMPOTENCY_CONFLICT
    async with open_shop(db) as rt:  # the key is read back from the store
        again = await rt.system.ask(user(1), BeginOrder(13, "key-1", "body-a", 10))
        assert again == OrderTicket(10, existing=True)
        other = await rt.system.ask(user(1), BeginOrder(14, "key-1", "body-b", 10))
        assert code(other) == IDEMPOTENCY_CONFLICT


async def test_unpaid_orders_are_counted_again_after_a_restart(db: str) -> None:
    async with open_shop(db) as rt:
        await rt.system.ask(user(1), CreateUser("ann", 0, "hash-ann"))
        await record_order(rt, 10, 1, "awaiting_payment", {})
        await record_order(rt, 11, 1, "pending", {})
        await record_order(rt, 12, 1, "paid", {})
    async with open_shop(db) as rt:
        refused = await rt.system.ask(user(1), BeginOrder(13, None, "h", max_unpaid=2))
        assert code(refused) == TOO_MANY_UNPAID_ORDERS


# -- the release fan-out --------------------------------------------------------------------


async def hold_assets(rt: Runtime, order_id: int = 7) -> ReleaseAssets:
    """Order ``order_id`` of user 1 holds tea and cups, coupon 4, 300 of the wallet and 12
    points; the ReleaseAssets that gives all of it back."""
    ask = rt.system.ask
    now = rt.system.clock.now()
    await ask(user(1), CreateUser("ann", 1_000, "hash-ann"))
    await ask(goods(1), CreateGoods("tea", 450, 10))
    await ask(goods(2), CreateGoods("cup", 1_200, 5))
    await ask(coupon(4), CreateCoupon(1, 500))
    await ask(goods(1), TakeStock(order_id, 3))
    await ask(goods(2), TakeStock(order_id, 1))
    await ask(coupon(4), UseCoupon(order_id, 1, 2_550, now))
    await ask(user(1), DebitWallet(order_id, 300))
    await ask(user(1), AwardPoints(order_id, 12))
    return ReleaseAssets(order_id, 1, (1, 2), 4, 300, revoke_points=True)


async def assert_all_given_back(rt: Runtime) -> None:
    ask = rt.system.ask
    assert (await ask(goods(1), GetGoods())).stock == 10
    assert (await ask(goods(2), GetGoods())).stock == 5
    assert await ask(coupon(4), GetCoupon()) == CouponView(4, 1, 500, 0, None, "unused", None)
    assert await ask(user(1), GetUser()) == UserView(1, "ann", 1_000, 0)
    assert await rows(rt, "SELECT reason, count(*) FROM stock_ledger GROUP BY reason") == [
        ("release", 2),
        ("take", 2),
    ]
    assert await rows(rt, "SELECT count(*) FROM wallet_ledger WHERE reason = 'order_release'") == [
        (1,)
    ]
    assert await rows(rt, "SELECT count(*) FROM points_ledger WHERE reason = 'revoke'") == [(1,)]


async def test_release_assets_delivered_twice_gives_everything_back_exactly_once(
    shop: Runtime,
) -> None:
    release = await hold_assets(shop)
    await shop.system.ask(assets(7), release)
    await shop.system.ask(assets(7), release)  # a second fan-out: new message ids throughout
    await settled(shop)
    await assert_all_given_back(shop)


async def test_release_assets_left_in_the_outbox_twice_is_applied_once_at_next_start(
    db: str,
) -> None:
    async with open_shop(db) as rt:
        release = await hold_assets(rt)
    payload = msgspec.msgpack.encode(release)
    with sqlite3.connect(db) as conn:  # two copies, as if sent by two cancels
        conn.executemany(
            "INSERT INTO outbox (id, kind, actor_id, payload, created_at) "
            "VALUES (?, 'assets', 7, ?, 0)",
            [(1, payload), (2, payload)],
        )
    conn.close()
    async with open_shop(db) as rt:
        await settled(rt)
        await assert_all_given_back(rt)


async def test_release_assets_sends_one_durable_message_per_asset_in_one_unit(
    shop: Runtime,
) -> None:
    release = ReleaseAssets(7, 1, (1, 2), 4, 300, revoke_points=True)
    shop.system.outbox.stop()  # keep them in the table to look at them
    await shop.system.ask(assets(7), release)
    sent = await rows(shop, "SELECT kind, actor_id FROM outbox ORDER BY id")
    assert sent == [("goods", 1), ("goods", 2), ("coupon", 4), ("user", 1), ("user", 1)]


async def test_release_assets_for_an_order_holding_nothing_sends_only_stock_returns(
    shop: Runtime,
) -> None:
    shop.system.outbox.stop()
    await shop.system.ask(assets(7), ReleaseAssets(7, 1, (1,), None, 0, revoke_points=False))
    assert await rows(shop, "SELECT kind, actor_id FROM outbox") == [("goods", 1)]


async def test_state_is_read_back_from_the_store_after_a_restart(db: str) -> None:
    async with open_shop(db) as rt:
        await hold_assets(rt)
    async with open_shop(db) as rt:
        assert (await rt.system.ask(goods(1), GetGoods())).stock == 7
        assert (await rt.system.ask(coupon(4), GetCoupon())).order_id == 7
        assert await rt.system.ask(user(1), GetUser()) == UserView(1, "ann", 700, 12)


class RefusingSystem:
    """A system whose every ask raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def ask(self, address: object, message: object) -> Any:
        raise self.error


@pytest.mark.parametrize(
    "error", [Overloaded("busy"), ShuttingDown("stopping"), CommitFailed("disk full")]
)
async def test_waiting_for_what_an_order_gave_back_ends_quietly_when_the_shop_is_busy(
    error: Exception,
) -> None:
    with capture_logs() as logs:
        await given_back(cast(ActorSystem, RefusingSystem(error)), 7)
    assert logs == []


async def test_waiting_for_what_an_order_gave_back_logs_a_fault_and_still_ends() -> None:
    with capture_logs() as logs:
        await given_back(cast(ActorSystem, RefusingSystem(TypeError("a bug"))), 7)
    assert [(e["event"], e["order_id"], e["log_level"]) for e in logs] == [
        ("given_back_wait_failed", 7, "error")
    ]
