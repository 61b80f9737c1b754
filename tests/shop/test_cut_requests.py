"""A keyed request whose caller stops waiting (its task canceled) goes on in the shop, and its
retry under the same key replays it (docs/embedding.md; SPEC 7).

The key is held until the first has settled (``Held.keep_until``): let go with the canceled
caller, a retry sent at once, beside the first still committing, would meet the first's key
row (UNIQUE) and answer CommitFailed.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from shopkeep.idempotency import IdempotencyKey
from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop
from tests.shop.conftest import assert_audit_ok

CUT_AFTER_TURNS = range(0, 9)
"""Loop turns the first request runs before its caller is canceled: from before it began to
after it was handled, its commit under way or done."""

Call = Callable[[Shop, dict[str, int], IdempotencyKey], Coroutine[Any, Any, Any]]


async def place(shop: Shop, ids: dict[str, int], key: IdempotencyKey) -> Any:
    return await shop.place_order(ids["user"], [(ids["goods"], 1)], idempotency_key=key)


async def create_user(shop: Shop, ids: dict[str, int], key: IdempotencyKey) -> Any:
    return (await shop.create_user("bob", balance=100, idempotency_key=key)).user


async def create_goods(shop: Shop, ids: dict[str, int], key: IdempotencyKey) -> Any:
    return await shop.create_goods("tea", price=100, stock=3, idempotency_key=key)


async def create_coupon(shop: Shop, ids: dict[str, int], key: IdempotencyKey) -> Any:
    return await shop.create_coupon(ids["user"], 50, idempotency_key=key)


async def made(shop: Shop) -> tuple[int, int, int, int]:
    """How many orders, users, goods and coupons there are."""
    counts = []
    for table in ("orders", "users", "goods", "coupons"):
        row = await shop.reader.fetchone(f"SELECT count(*) FROM {table}")
        assert row is not None
        counts.append(int(row[0]))
    return counts[0], counts[1], counts[2], counts[3]


@pytest.mark.parametrize("call", [place, create_user, create_goods, create_coupon])
async def test_a_keyed_request_cut_short_is_replayed_by_its_retry(shop: Shop, call: Call) -> None:
    ann = (await shop.create_user("ann", balance=10_000)).user.id
    ids = {"user": ann, "goods": (await shop.create_goods("rice", price=100, stock=99)).id}
    before = await made(shop)
    for turns in CUT_AFTER_TURNS:
        cut = asyncio.create_task(call(shop, ids, IdempotencyKey(f"cut-{turns}")))
        for _ in range(turns):
            await asyncio.sleep(0)  # a loop turn, no time: how far the first one got
        cut.cancel()
        retry = IdempotencyKey(f"cut-{turns}")

        answered = await call(shop, ids, retry)

        again = IdempotencyKey(f"cut-{turns}")
        assert await call(shop, ids, again) == answered and again.replayed
        if not cut.cancelled():  # it ended before the cancel came: the retry is its replay
            assert retry.replayed and cut.result() == answered
    # one of each a key: the retries made nothing more
    after = await made(shop)
    grew = [b - a for a, b in zip(before, after, strict=True)]
    calls: list[Call] = [place, create_user, create_goods, create_coupon]  # made()'s order
    wanted = calls.index(call)
    assert grew == [len(CUT_AFTER_TURNS) if i == wanted else 0 for i in range(4)]
    await assert_audit_ok(shop)


async def test_a_keyed_saga_placement_cut_short_is_replayed_by_its_retry(saga_shop: Shop) -> None:
    ann = (await saga_shop.create_user("ann", balance=10_000)).user.id
    ids = {"user": ann, "goods": (await saga_shop.create_goods("rice", price=100, stock=99)).id}
    for turns in range(0, 9):
        cut = asyncio.create_task(place(saga_shop, ids, IdempotencyKey(f"saga-{turns}")))
        for _ in range(turns):
            await asyncio.sleep(0)
        cut.cancel()

        answered = await place(saga_shop, ids, IdempotencyKey(f"saga-{turns}"))

        again = IdempotencyKey(f"saga-{turns}")
        assert await place(saga_shop, ids, again) == answered and again.replayed
    assert (await made(saga_shop))[0] == 9
    await assert_audit_ok(saga_shop)


async def test_a_keyed_payment_start_cut_short_then_the_shop_closed_leaves_no_error_behind(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # the start, going on without its caller, met the closed shop (ShuttingDown), and asyncio
    # logged "Task exception was never retrieved" with its traceback
    loop = asyncio.get_running_loop()
    unretrieved: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))
    try:
        for turns in range(0, 8):
            path = str(tmp_path / f"{turns}.db")
            async with Shop.open(path, gateway="sandbox", clock=clock) as shop:
                ann = (await shop.create_user("ann")).user.id
                tea = await shop.create_goods("tea", price=100, stock=3)
                order = await shop.place_order(ann, [(tea.id, 1)])
                cut = asyncio.create_task(shop.start_payment(order.id, idempotency_key="k"))
                for _ in range(turns):
                    await asyncio.sleep(0)
                cut.cancel()
            gc.collect()
    finally:
        loop.set_exception_handler(None)

    assert unretrieved == []
