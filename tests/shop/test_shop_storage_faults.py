"""A storage fault in the middle of a placement takes nothing for good (found by the
deterministic simulation, ``python -m shopkeep.proof simulation --seed 3``); a unit whose commit
outcome is unknown does not leave what it committed waiting for a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop
from shopkeep.store.batch_commit import FaultHook
from shopkeep.store.errors import CommitFailed
from shopkeep.store.unit import UnitOfWork
from shopkeep.store.writer_process import WriterProcessDied
from tests.shop.conftest import assert_audit_ok, settle


def fail_the_order_row() -> FaultHook:
    """A writer fault hook that fails the next batch's first statement, the pending order's
    row, and that row again when the batch is retried unit by unit."""
    left = [2]

    def hook(operation: str) -> None:
        if operation == "statement" and left[0] > 0:
            left[0] -= 1
            raise OSError("disk I/O error")

    return hook


async def test_a_placement_whose_pending_order_fails_to_commit_keeps_no_coupon_or_stock(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    async with Shop.open(
        str(tmp_path / "shop.db"), gateway="sandbox", clock=clock, inline=True
    ) as shop:
        alice = (await shop.create_user("alice", balance=5_000)).user.id
        tea = await shop.create_goods("tea", price=1_500, stock=5)
        coupon = await shop.create_coupon(alice, 1_000)

        shop.runtime.store.writer.fault = fail_the_order_row()
        with pytest.raises(CommitFailed):
            await shop.place_order(alice, [(tea.id, 2)], coupon_id=coupon.id)
        shop.runtime.store.writer.fault = None
        await settle(shop)

        assert (await shop.get_coupon(coupon.id)).state == "unused"
        assert (await shop.get_goods(tea.id)).stock == 5
        assert (await shop.list_orders(user_id=alice)).items == []
        await assert_audit_ok(shop)


async def test_a_cancel_whose_commit_outcome_is_unknown_gives_the_stock_back_without_a_restart(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = (await shop.create_user("alice")).user.id
    tea = await shop.create_goods("tea", price=1_500, stock=5)
    order = await shop.place_order(alice, [(tea.id, 2)])
    committer = shop.runtime.store.writer._committer
    really_commit = committer.commit

    def committed_then_lost(units: list[UnitOfWork]) -> list[BaseException | None] | None:
        # the writer process died after its COMMIT: on disk, and reported failed
        monkeypatch.setattr(committer, "commit", really_commit)
        assert really_commit(units) is None
        return [WriterProcessDied("the writer process is gone")] * len(units)

    monkeypatch.setattr(committer, "commit", committed_then_lost)
    with pytest.raises(Exception, match="writer process is gone"):
        await shop.cancel_order(order.id, user_id=alice)
    await settle(shop)

    assert (await shop.get_order(order.id)).status == "canceled"
    assert (await shop.get_goods(tea.id)).stock == 5  # the durable ReleaseAssets was delivered
    await assert_audit_ok(shop)
