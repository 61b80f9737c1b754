"""The back office's reads and the dead letters' handling (``shopkeep.back_office``), which the
admin console is built on."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from shopkeep.actors.protocol import GetUser
from shopkeep.errors import ShopError
from shopkeep.runtime import VirtualClock
from shopkeep.runtime.dead_letters import DEAD_LETTER_SQL
from shopkeep.shop import Shop
from shopkeep.store import UnitOfWork


async def paid(shop: Shop, user_id: int, goods_id: int, quantity: int = 1) -> int:
    """An order placed and paid through the sandbox gateway: its id."""
    order = await shop.place_order(user_id, [(goods_id, quantity)])
    payment = (await shop.start_payment(order.id)).payment
    assert shop.gateway is not None
    assert await shop.gateway.complete(payment.id, order.id, payment.amount, "succeeded")
    return order.id


async def test_users_are_listed_newest_first_a_page_at_a_time(shop: Shop) -> None:
    made = [(await shop.create_user(f"user {i}", balance=i * 100)).user for i in range(5)]
    first = await shop.list_users(limit=3)
    assert [u.id for u in first.items] == [u.id for u in made[::-1][:3]]
    rest = await shop.list_users(limit=3, cursor=first.next_cursor)
    assert [u.id for u in rest.items] == [made[1].id, made[0].id]
    assert rest.next_cursor is None
    assert rest.items[0].balance == 100


async def test_the_stock_ledger_shows_what_each_order_took_and_gave_back(shop: Shop) -> None:
    ann = (await shop.create_user("ann")).user
    tea = await shop.create_goods("tea", price=500, stock=10)
    kept = await shop.place_order(ann.id, [(tea.id, 2)])
    dropped = await shop.place_order(ann.id, [(tea.id, 3)])
    await shop.cancel_order(dropped.id, user_id=ann.id)
    await shop.system.quiet()
    ledger = (await shop.stock_ledger(tea.id)).items
    moves = [(entry.order_id, entry.quantity) for entry in ledger]
    assert moves == [(dropped.id, 3), (dropped.id, -3), (kept.id, -2)]


async def test_orders_are_found_between_two_times(shop: Shop, clock: VirtualClock) -> None:
    ann = (await shop.create_user("ann", balance=100_000)).user
    tea = await shop.create_goods("tea", price=100, stock=100)
    placed = []
    for _ in range(4):
        placed.append(await shop.place_order(ann.id, [(tea.id, 1)], use_balance=100_000))
        await clock.advance(60)
    second, third = placed[1], placed[2]
    found = await shop.find_orders(since=second.created_at, until=third.created_at)
    assert [o.id for o in found.items] == [third.id, second.id]
    assert found.next_cursor is None
    one_a_page = await shop.find_orders(since=second.created_at, limit=1)
    assert [o.id for o in one_a_page.items] == [placed[3].id]
    pages = [one_a_page]
    while pages[-1].next_cursor is not None and len(pages) <= len(placed):  # a page an order
        pages.append(
            await shop.find_orders(since=second.created_at, limit=1, cursor=pages[-1].next_cursor)
        )
    assert [o.id for page in pages for o in page.items] == [o.id for o in placed[:0:-1]]
    assert (await shop.find_orders(until=placed[0].created_at - 1)).items == []


async def test_orders_until_a_time_are_all_reached_a_page_at_a_time(
    shop: Shop, clock: VirtualClock
) -> None:
    ann = (await shop.create_user("ann", balance=100_000)).user
    tea = await shop.create_goods("tea", price=100, stock=100)
    await clock.advance(0.0005)  # halfway through a millisecond: an id's is before its time
    placed = []
    for _ in range(4):
        placed.append(await shop.place_order(ann.id, [(tea.id, 1)], use_balance=100_000))
        await clock.advance(60)
    # the newest order's id is of the millisecond ``until`` is in, its time after ``until``
    until = placed[-1].created_at - 0.0002
    pages = [await shop.find_orders(until=until, limit=1)]
    while pages[-1].next_cursor is not None and len(pages) <= len(placed):
        pages.append(await shop.find_orders(until=until, limit=1, cursor=pages[-1].next_cursor))
    assert [o.id for page in pages for o in page.items] == [o.id for o in placed[-2::-1]]
    assert [len(page.items) for page in pages] == [1, 1, 1]


async def test_the_minute_figures_count_orders_and_money_paid(
    shop: Shop, clock: VirtualClock
) -> None:
    ann = (await shop.create_user("ann")).user
    tea = await shop.create_goods("tea", price=1_000, stock=10)
    await paid(shop, ann.id, tea.id)
    await clock.advance(120)
    await shop.place_order(ann.id, [(tea.id, 1)])
    await paid(shop, ann.id, tea.id, 2)
    figures = await shop.minute_figures(60)
    assert len(figures.orders) == 60
    assert figures.orders[-1] == 2 and figures.orders[-3] == 1 and sum(figures.orders) == 3
    fee = shop.config.shipping_fee
    assert figures.paid[-1] == 2_000 + fee and figures.paid[-3] == 1_000 + fee


async def test_waiting_returns_and_refunds_in_flight_are_listed(shop: Shop) -> None:
    assert shop.gateway is not None
    ann = (await shop.create_user("ann")).user
    tea = await shop.create_goods("tea", price=1_000, stock=10)
    order_id = await paid(shop, ann.id, tea.id)
    await shop.ship(order_id)
    await shop.deliver(order_id)
    asked = await shop.request_return(order_id, "too big", user_id=ann.id)
    assert [(r.id, r.reason) for r in await shop.returns_waiting()] == [(asked.id, "too big")]
    assert [r.status for r in await shop.order_returns(order_id)] == ["requested"]
    shop.gateway.fail_refunds_until(shop.system.clock.now() + 3600)
    await shop.approve_return(asked.id)
    await shop.system.quiet()
    assert await shop.returns_waiting() == []
    flying = await shop.refunds_in_flight()
    assert [(r.order_id, r.kind, r.status) for r in flying] == [(order_id, "return", "refunding")]


async def park(shop: Shop, payload: bytes | None) -> int:
    """A dead letter to the user actor of ann, as the runtime parks one: its id."""
    ann = (await shop.create_user("ann")).user
    unit = UnitOfWork()
    unit.execute(
        DEAD_LETTER_SQL,
        ("user", ann.id, "GetUser()", payload, "RuntimeError: boom", "Traceback ...", 3, 0.0),
    )
    await shop.runtime.store.writer.submit(unit)
    return (await shop.dead_letters()).items[0].id


async def test_a_dead_letter_sent_again_is_delivered_and_leaves_the_list(shop: Shop) -> None:
    letter_id = await park(shop, msgspec.msgpack.encode(GetUser()))
    letter = await shop.dead_letter(letter_id)
    assert (letter.kind, letter.traceback, letter.retryable) == ("user", "Traceback ...", True)
    assert await shop.dead_letter_count() == 1
    await shop.retry_dead_letter(letter_id)
    await shop.system.quiet()
    assert await shop.dead_letter_count() == 0
    assert await shop.reader.fetchall("SELECT id FROM outbox") == []  # delivered, applied
    with pytest.raises(ShopError) as gone:
        await shop.retry_dead_letter(letter_id)
    assert gone.value.code == "not_found"


@pytest.mark.parametrize("second", ["retry", "discard"])
async def test_a_dead_letter_sent_again_and_acted_on_at_once_is_sent_once(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, second: str
) -> None:
    letter_id = await park(shop, msgspec.msgpack.encode(GetUser()))
    sent: list[int] = []
    committed = shop.system.outbox.committed

    def counted(message_id: int, *rest: Any) -> None:
        sent.append(message_id)
        committed(message_id, *rest)

    monkeypatch.setattr(shop.system.outbox, "committed", counted)
    other = shop.retry_dead_letter if second == "retry" else shop.discard_dead_letter

    first, then = await asyncio.gather(
        shop.retry_dead_letter(letter_id), other(letter_id), return_exceptions=True
    )

    assert first is None
    assert isinstance(then, ShopError) and then.code == "not_found"  # it was gone: nothing done
    assert len(sent) == 1


async def test_a_dead_letter_whose_message_was_not_kept_can_only_be_discarded(
    shop: Shop,
) -> None:
    letter_id = await park(shop, None)
    with pytest.raises(ShopError) as refused:
        await shop.retry_dead_letter(letter_id)
    assert refused.value.code == "invalid_state"
    await shop.discard_dead_letter(letter_id)
    assert await shop.dead_letter_count() == 0
    with pytest.raises(ShopError):
        await shop.discard_dead_letter(letter_id)


async def test_money_paid_within_the_hour_counts_for_an_order_placed_before_it(
    shop: Shop, clock: VirtualClock
) -> None:
    ann = (await shop.create_user("ann")).user
    tea = await shop.create_goods("tea", price=1_000, stock=10)
    order = await shop.place_order(ann.id, [(tea.id, 1)])
    await clock.advance(20 * 60)  # paid near its deadline
    payment = (await shop.start_payment(order.id)).payment
    assert shop.gateway is not None
    assert await shop.gateway.complete(payment.id, order.id, payment.amount, "succeeded")
    await clock.advance(50 * 60)  # placed 70 minutes ago, paid 50
    figures = await shop.minute_figures(60)
    assert sum(figures.orders) == 0
    assert sum(figures.paid) == payment.amount
