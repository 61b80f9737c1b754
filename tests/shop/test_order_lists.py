"""A page of orders is read in a few batched queries, whatever its size, and says what each
order's own load says (items, payments, refunds, returns included); lists do not wait for an
audit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import shopkeep.shop as shop_module
from shopkeep.actors.audit import AuditReport, audit
from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_store import load_order, load_page
from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop
from shopkeep.shop_accounts import hash_token
from shopkeep.store.reader import Reader, Row, ThreadedReader
from tests.shop.conftest import SECRET, sandbox, settle

HOLD_BOUND_S = 10.0
"""How long the audit's connection is held at most, should the list wait for it."""


class CountingReader:
    """A reader that counts the queries it is asked (a page must not ask one per order)."""

    def __init__(self, inner: Reader) -> None:
        self.inner = inner
        self.queries = 0

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self.queries += 1
        return await self.inner.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self.queries += 1
        return await self.inner.fetchone(sql, params)

    async def close(self) -> None:
        await self.inner.close()


async def test_a_page_of_orders_costs_the_same_few_queries_whatever_its_size(
    tmp_path: Path,
) -> None:
    config = ShopConfig(max_unpaid_orders=1_000)
    path = str(tmp_path / "shop.db")
    async with Shop.open(
        path, gateway="sandbox", clock=VirtualClock(), gateway_secret=SECRET, config=config
    ) as shop:
        tea = await shop.create_goods("tea", price=1_000, stock=10_000)
        alice = (await shop.create_user("alice")).user.id
        for _ in range(210):
            await shop.place_order(alice, [(tea.id, 1)])
        counting = CountingReader(shop.reader)
        shop.reader = counting
        asked = {}
        for size in (1, 20, 200):
            counting.queries = 0
            page = await shop.list_orders(limit=size)
            assert len(page.items) == size and page.next_cursor is not None
            asked[size] = counting.queries
        mine = await shop.list_orders(user_id=alice, status="awaiting_payment", limit=200)
    assert len(mine.items) == 200
    assert asked[1] == asked[20] == asked[200] <= 6, asked


async def test_a_page_says_of_each_order_what_the_order_itself_says(shop: Shop) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=50)
    cake = await shop.create_goods("cake", price=2_500, stock=50)
    alice = (await shop.create_user("alice", balance=5_000)).user.id
    unpaid = await shop.place_order(alice, [(tea.id, 2), (cake.id, 1)])
    paid = await shop.place_order(alice, [(cake.id, 3)], use_balance=1_000)
    started = (await shop.start_payment(paid.id)).payment
    await sandbox(shop).complete(started.id, paid.id, started.amount, "succeeded", "txn-1")
    await shop.cancel_order(paid.id)
    returned = await shop.place_order(alice, [(tea.id, 1)])
    started = (await shop.start_payment(returned.id)).payment
    await sandbox(shop).complete(started.id, returned.id, started.amount, "succeeded", "txn-2")
    await shop.ship(returned.id)
    await shop.deliver(returned.id)
    await shop.request_return(returned.id, "too sweet")
    await settle(shop)

    page = await shop.list_orders()

    assert [order.id for order in page.items] == [returned.id, paid.id, unpaid.id]
    for listed in page.items:
        assert listed == await shop.get_order(listed.id)
    states = await load_page(shop.reader, 2**63 - 1, 10, user_id=alice, status=None)
    assert states == [await load_order(shop.reader, state.id) for state in states]
    assert states[0].returns and states[1].refunds and states[1].payments
    assert [(line.goods_id, line.quantity) for line in page.items[2].items] == sorted(
        [(tea.id, 2), (cake.id, 1)]
    )


async def test_lists_and_logins_are_answered_while_an_audit_reads(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the audit reads every order: seconds on a shop of a few hundred thousand, during which
    # the lists and the logins (on the shop's one read connection) must not wait for it
    loop = asyncio.get_running_loop()
    holding, release = asyncio.Event(), threading.Event()

    def hold() -> int:  # on the thread of the audit's connection
        loop.call_soon_threadsafe(holding.set)
        return int(release.wait(HOLD_BOUND_S))

    async def audit_held_open(reader: Reader) -> AuditReport:
        assert isinstance(reader, ThreadedReader)
        await reader.connection.create_function("hold", 0, hold)
        [(released,)] = await reader.fetchall("SELECT hold()")
        assert released, "the list waited for the audit's connection"
        return await audit(reader)

    monkeypatch.setattr(shop_module, "audit", audit_held_open)
    auditing = asyncio.create_task(shop.audit())
    await holding.wait()
    page = await shop.list_orders()
    stranger = await shop.user_for_token_hash(hash_token("not a token of anyone's"))
    release.set()
    report = await auditing
    assert (page.items, stranger, report.ok) == ([], None, True)


async def test_the_audit_answers_while_orders_keep_coming(shop: Shop) -> None:
    # it waited until the writer had nothing unsettled: a shop placing orders without a pause
    # never had, and the audit (GET /v1/audit, the console's) answered only once the load ended
    tea = await shop.create_goods("tea", price=100, stock=1_000_000)
    audited, placing = asyncio.Event(), asyncio.Event()
    placed = 0

    async def customer(n: int) -> None:
        nonlocal placed
        user = (await shop.create_user(f"customer {n}", balance=0)).user.id
        while not audited.is_set() and placed < 200_000:  # bounded, should the audit hang
            order = await shop.place_order(user, [(tea.id, 1)])
            await shop.cancel_order(order.id)  # under the cap of unpaid orders
            placed += 1
            placing.set()

    customers = [asyncio.create_task(customer(n)) for n in range(32)]
    await placing.wait()
    try:
        report = await asyncio.wait_for(shop.audit(), HOLD_BOUND_S)
        placed_while_audited = placed
    finally:
        audited.set()
        await asyncio.gather(*customers)
    assert report.ok, report
    assert placed > placed_while_audited  # the load went on after the audit answered
