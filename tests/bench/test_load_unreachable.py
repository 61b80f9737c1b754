"""A server the bench cannot reach, or that says to slow down (429): its workers pause between
journeys instead of hammering it."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from shopkeep.bench.load.embedded_target import EmbeddedTarget
from shopkeep.bench.load.mix import DEFAULT_MIX
from shopkeep.bench.load.run import (
    FIRST_PAUSE_S,
    LONGEST_PAUSE_S,
    BenchOptions,
    drive,
    next_pause,
)
from shopkeep.bench.load.target import Customer, Order, Refused
from shopkeep.shop import Shop

SECRET = "unreachable-gateway-secret-0123456789"


class Unreachable(EmbeddedTarget):
    """A shop set up as usual whose placements never arrive, as when its server is down (every
    journey begins with one); or, with ``code`` rate_limited, are all refused 429."""

    code = "connection_error"

    async def place_order(
        self,
        customer: Customer,
        items: list[tuple[str, int]],
        *,
        coupon_id: str | None,
        use_balance: int,
        key: str,
        wait: bool,
    ) -> Order:
        raise Refused(self.code, "POST /v1/orders: refused")


def test_the_pause_doubles_from_the_first_to_the_longest() -> None:
    pauses = [next_pause(0.0)]
    for _ in range(64):  # doubling from the first reaches the longest in far fewer
        if pauses[-1] >= LONGEST_PAUSE_S:
            break
        pauses.append(next_pause(pauses[-1]))

    assert pauses[0] == FIRST_PAUSE_S
    assert all(later == min(2 * earlier, LONGEST_PAUSE_S)
               for earlier, later in itertools.pairwise(pauses))  # fmt: skip
    assert next_pause(LONGEST_PAUSE_S) == LONGEST_PAUSE_S


@pytest.mark.parametrize("code", ["connection_error", "rate_limited"])
async def test_workers_pause_between_journeys_that_cannot_reach_the_server_or_are_throttled(
    tmp_path: Path, code: str
) -> None:
    # throttled, a 429 a request, four workers sent 2,000 requests a second
    options = BenchOptions(
        duration_s=2.0, concurrency=4, mix=dict(DEFAULT_MIX), seed=7, settle_s=0.0
    )
    async with Shop.open(
        str(tmp_path / "shop.db"), gateway="sandbox", gateway_secret=SECRET
    ) as shop:
        target = Unreachable(shop, SECRET)
        target.code = code
        outcome = await drive(target, options)

    # each worker tries at 0, 0.05, 0.15, 0.35, 0.75 and 1.55 s: six in two seconds (without
    # the pause, tens of thousands)
    assert 4 <= outcome.recorder.errors <= 4 * 7
    assert {code for operation in outcome.recorder.operations.values()
            for code in operation.errors} == {code}  # fmt: skip


async def test_the_embedded_target_names_what_a_failed_async_placement_was_refused_with(
    tmp_path: Path,
) -> None:
    async with Shop.open(
        str(tmp_path / "shop.db"), gateway="sandbox", gateway_secret=SECRET
    ) as shop:
        target = EmbeddedTarget(shop, SECRET)
        ann = await target.create_user("ann", 0)
        tea = await target.create_goods("tea", 100, 1)
        pending = await target.place_order(
            ann, [(tea, 2)], coupon_id=None, use_balance=0, key="k1", wait=False
        )
        await shop.runtime.system.quiet()

        failed = await target.get_order(ann, pending.id)
        code = await target.placement_failure(ann, pending.id)

    assert (failed.status, failed.cancel_reason) == ("canceled", "placement_failed")
    assert code == "insufficient_stock"


class NeverQuiet(EmbeddedTarget):
    """A shop whose audit, once the run is over, always counts a refund in flight; and a
    Ctrl-C at the first such audit (``stop`` set)."""

    stop: asyncio.Event
    running: asyncio.Event

    async def audit(self) -> dict[str, Any]:
        report = await super().audit()
        if not self.running.is_set():
            return report  # the audit before the run
        self.stop.set()
        check = {"name": "money", "ok": True, "detail": "1 refund in flight"}
        return {"ok": True, "checks": [check]}


async def test_a_stop_while_the_bench_waits_for_quiet_is_an_interrupted_run(
    tmp_path: Path,
) -> None:
    # it said the shop was not quiet (exit status 1) of a wait the stop itself cut short
    options = BenchOptions(duration_s=1.0, concurrency=1, mix={"place": 1}, seed=7, settle_s=60)
    async with Shop.open(
        str(tmp_path / "shop.db"), gateway="sandbox", gateway_secret=SECRET
    ) as shop:
        target = NeverQuiet(shop, SECRET)
        target.stop, target.running = asyncio.Event(), asyncio.Event()
        outcome = await drive(target, options, stop=target.stop, running=target.running)

    assert outcome.interrupted and not outcome.quiet
    assert outcome.audit_wait_s < 30  # the stop ended the wait
