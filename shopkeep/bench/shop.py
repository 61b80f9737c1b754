"""The shop benchmark: 64 customers placing one-item orders through the embedded API.

``python -m shopkeep.bench.shop --json PATH [--seconds S] [--quick]`` opens a fresh shop on a
temporary database (``synchronous=FULL``, the real clock, uvloop when installed), creates 1,000
users and 1,000 goods, then runs 64 concurrent customers for a fixed time, each placing an order
for one unit of a random goods as soon as its previous order is answered (an answer comes after
the placement's last unit is committed). It prints a table and writes JSON with
``place_orders_per_s``, ``place_p50_ms``, ``place_p99_ms``, ``audit_ok`` and what it measured
them on.

The shop runs as the server does by default, its writer committing on a thread of the shop's
process; the same run is then repeated with the writer in a process of its own
(``writer="process"``, ``process_writer``: the same figures), for comparison.

Beside them, what bounds the rate: ``units_per_order`` and ``statements_per_order`` (what a
placement costs the writer), and the writer's time per batch twice: in the run, from handing a
batch over to its commit (``writer_thread_ms_per_batch``), and for the very same batches
replayed afterwards on a connection with no event loop beside it
(``writer_alone_ms_per_batch``). With the thread writer, the gap between the two is what the
writer loses to the event loop for the GIL.

One setting differs from a shop's defaults, on purpose: the unpaid-orders cap is lifted, since
these customers never pay and the cap (10 a user) would otherwise refuse nearly every order after
the first ten thousand; refusals are counted apart and are zero in a run that is measured fairly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from typing import Any

from shopkeep.actors.config import ShopConfig
from shopkeep.bench.common import install_uvloop, machine, percentile, publish
from shopkeep.errors import ShopError
from shopkeep.shop import Shop
from shopkeep.store.database import connect
from shopkeep.store.migrations import MIGRATIONS, apply_migrations
from shopkeep.store.writer import Statement
from shopkeep.store.writer_process import commit_statements

CUSTOMERS = 64
USERS = 1_000
GOODS = 1_000
STOCK = 10_000_000
PRICE = 1_250
TARGET_PER_S = 20_000


async def populate(shop: Shop, users: int, goods: int) -> tuple[list[int], list[int]]:
    """Create the users and goods, 64 at a time."""
    user_ids: list[int] = []
    goods_ids: list[int] = []
    for start in range(0, users, 64):
        made = await asyncio.gather(
            *(shop.create_user(f"customer {n}") for n in range(start, min(users, start + 64)))
        )
        user_ids += [created.user.id for created in made]
    for start in range(0, goods, 64):
        created_goods = await asyncio.gather(
            *(
                shop.create_goods(f"goods {n}", PRICE, STOCK)
                for n in range(start, min(goods, start + 64))
            )
        )
        goods_ids += [g.id for g in created_goods]
    return user_ids, goods_ids


async def customers(
    shop: Shop, user_ids: list[int], goods_ids: list[int], seconds: float, seed: int
) -> tuple[list[float], dict[str, int]]:
    """Run the customers for ``seconds``; every placement's latency, and refusals by code."""
    latencies: list[float] = []
    refusals: dict[str, int] = {}
    deadline = time.perf_counter() + seconds

    async def customer(n: int) -> None:
        pick = random.Random(seed * 1000 + n)
        while time.perf_counter() < deadline:
            user = pick.choice(user_ids)
            goods = pick.choice(goods_ids)
            started = time.perf_counter()
            try:
                await shop.place_order(user, [(goods, 1)])
            except ShopError as refused:
                refusals[refused.code] = refusals.get(refused.code, 0) + 1
                continue
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(customer(n) for n in range(CUSTOMERS)))
    return latencies, refusals


def writer_alone(path: str, batches: list[list[Statement]], measured_from: int) -> float:
    """Seconds a connection of its own, with no event loop beside it, takes to commit
    ``batches[measured_from:]`` (the earlier ones are replayed first, untimed, to rebuild
    the same state): the baseline of the writer thread's own time in the same run."""
    conn = connect(path, "FULL")
    try:
        apply_migrations(conn, MIGRATIONS)
        spent = 0.0
        for index, statements in enumerate(batches):
            started = time.perf_counter()
            failed = commit_statements(conn, statements)
            if failed is not None:
                raise RuntimeError(f"a batch that committed in the run failed alone: {failed}")
            if index >= measured_from:
                spent += time.perf_counter() - started
        return spent
    finally:
        conn.close()


async def run(
    seconds: float, users: int, goods: int, seed: int, writer_mode: str
) -> dict[str, Any]:
    """Measure with the writer in a ``writer_mode`` ("process" or "thread"), audit, and return
    the figures."""
    batches: list[list[Statement]] = []
    with tempfile.TemporaryDirectory(prefix="shopkeep-bench-") as folder:
        config = ShopConfig(max_unpaid_orders=10**9)
        path = os.path.join(folder, "shop.db")
        async with Shop.open(path, config=config, writer=writer_mode) as shop:
            writer = shop.runtime.store.writer
            writer.tap = batches.append
            user_ids, goods_ids = await populate(shop, users, goods)
            await customers(shop, user_ids, goods_ids, min(1.0, seconds / 5), seed)  # warm-up
            before = (len(batches), writer.stats.thread_s, writer.stats.units)
            started = time.perf_counter()
            latencies, refusals = await customers(shop, user_ids, goods_ids, seconds, seed + 1)
            elapsed = time.perf_counter() - started
            # every placement was answered, so every unit it made is committed and recorded
            measured = len(batches) - before[0]
            thread_s = writer.stats.thread_s - before[1]
            units = writer.stats.units - before[2]
            writer.tap = None
            report = await shop.audit()
        alone_s = writer_alone(os.path.join(folder, "replay.db"), batches, before[0])
    statements = sum(
        len(params) if many else 1 for batch in batches[before[0]:] for _, params, many in batch
    )
    placed = max(1, len(latencies))
    return {
        "place_orders_per_s": len(latencies) / elapsed,
        "place_p50_ms": percentile(latencies, 0.50) * 1000,
        "place_p99_ms": percentile(latencies, 0.99) * 1000,
        "place_max_ms": max(latencies) * 1000,
        "orders_placed": len(latencies),
        "refusals": refusals,
        "audit_ok": report.ok,
        "audit": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in report.checks],
        "units_per_order": units / placed,
        "statements_per_order": statements / placed,
        "writer_batches": measured,
        "writer_thread_ms_per_batch": thread_s * 1000 / max(1, measured),
        "writer_alone_ms_per_batch": alone_s * 1000 / max(1, measured),
        "seconds": elapsed,
        "customers": CUSTOMERS,
        "users": users,
        "goods": goods,
    }


def render(figures: dict[str, Any]) -> str:
    """The table printed for people."""
    rate = figures["place_orders_per_s"]
    rows = [
        ("place_orders_per_s", f"{rate:,.0f}", f">= {TARGET_PER_S:,}", rate >= TARGET_PER_S),
        ("place_p50_ms", f"{figures['place_p50_ms']:.2f}", "", None),
        ("place_p99_ms", f"{figures['place_p99_ms']:.2f}", "", None),
        ("orders_placed", f"{figures['orders_placed']:,}", "", None),
        ("refusals", str(figures["refusals"] or "none"), "", None),
        ("audit_ok", str(figures["audit_ok"]), "true", figures["audit_ok"]),
        ("units_per_order", f"{figures['units_per_order']:.2f}", "", None),
        ("statements_per_order", f"{figures['statements_per_order']:.2f}", "", None),
        ("writer_thread_ms_per_batch", f"{figures['writer_thread_ms_per_batch']:.2f}", "", None),
        ("writer_alone_ms_per_batch", f"{figures['writer_alone_ms_per_batch']:.2f}", "", None),
    ]
    other = figures["process_writer"]
    rows += [
        ("process_writer: per_s", f"{other['place_orders_per_s']:,.0f}", "", None),
        ("process_writer: p50 / p99", f"{other['place_p50_ms']:.1f} / "
         f"{other['place_p99_ms']:.1f}", "", None),
        ("process_writer: ms_per_batch", f"{other['writer_thread_ms_per_batch']:.2f}", "", None),
        ("process_writer: alone", f"{other['writer_alone_ms_per_batch']:.2f}", "", None),
    ]
    lines = [f"{'metric':<26}  {'value':>12}  {'target':<10}  result"]
    for name, value, target, met in rows:
        verdict = "" if met is None else ("pass" if met else "FAIL")
        lines.append(f"{name:<26}  {value:>12}  {target:<10}  {verdict}".rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m shopkeep.bench.shop", description=__doc__)
    parser.add_argument("--json", metavar="PATH", help="write the figures here as JSON")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the customers' choices")
    parser.add_argument("--quick", action="store_true", help="a short, small run (for tests)")
    args = parser.parse_args(argv)
    uvloop_version = install_uvloop()
    seconds, users, goods = (1.0, 50, 50) if args.quick else (args.seconds, USERS, GOODS)
    load_before = os.getloadavg()[0]
    figures = asyncio.run(run(seconds, users, goods, args.seed, "thread"))
    figures["process_writer"] = asyncio.run(run(seconds, users, goods, args.seed, "process"))
    loops = {"uvloop" if uvloop_version else "asyncio"}
    figures["machine"] = machine(loops, uvloop_version, load_before)
    return publish(figures, render(figures), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
