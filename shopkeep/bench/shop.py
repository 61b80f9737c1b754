"""The shop benchmark: 64 customers placing one-item orders through the embedded API.

``python -m shopkeep.bench.shop --json PATH [--seconds S] [--quick]`` opens a fresh shop on a
temporary database (``synchronous=FULL``, the real clock, uvloop when installed), creates 1,000
users and 1,000 goods, then runs 64 concurrent customers for a fixed time, each placing an order
for one unit of a random goods as soon as its previous order is answered (an answer comes after
the placement's unit is committed). It prints a table and writes JSON.

The runs, one after the other in the same process:

- ``place_orders_per_s`` (with ``place_p50_ms``, ``place_p99_ms``): plain orders, the writer
  in a process of its own, as ``shopkeep serve`` runs it by default;
- ``place_orders_coupon_wallet_per_s`` (``coupon_wallet``: its figures): every order uses a
  coupon of its user (each coupon once: its actor is loaded for the order) and pays part from
  the wallet;
- ``thread_writer``: the plain run again with the writer on a thread of the shop's process
  (``Shop.open``'s default, which starts no process);
- ``sqlite_floor_orders_per_s``: the baseline, bare sqlite3 committing a plain placement's
  minimal rows in batches of 64 (``sqlite_floor.py``); each rate is also given as a fraction
  of it (``*_floor_ratio``), since this machine's disk speed swings from run to run.

Beside them, what bounds the rate: ``units_per_order`` and ``statements_per_order`` (what a
placement asks of the writer: the statements its units carry, before the writer's batch plan
groups a batch's statements per table), the writer's time
per batch twice: in the run, from handing a batch over to its commit
(``writer_thread_ms_per_batch``), and for the very same batches replayed afterwards on a
connection with no event loop beside it (``writer_alone_ms_per_batch``); the event loop's CPU
time per order (``loop_cpu_us_per_order``); and the longest the event loop was kept from
running (``loop_stall_max_ms``: a garbage collection, a long handler), with the loop thread's CPU
time over the interval that ended in it (``loop_stall_max_cpu_ms``: far below the stall, the
loop was waiting for the GIL or a core, not working).

The process is set up as ``shopkeep serve`` sets up its own: the objects that survive young
collections are frozen (``runtime/collector.py``). One setting differs from a shop's defaults,
on purpose: the unpaid-orders cap is lifted, since these customers never pay and the cap (10 a
user) would otherwise refuse nearly every order after the first ten thousand; refusals are
counted apart and are zero in a run that is measured fairly.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sqlite3
import tempfile
import time
from typing import Any

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.coupon import INSERT_SQL as INSERT_COUPON_SQL
from shopkeep.bench.common import install_uvloop, machine, percentile, publish
from shopkeep.bench.sqlite_floor import sqlite_floor_orders_per_s
from shopkeep.errors import ShopError
from shopkeep.runtime.collector import freeze_survivors
from shopkeep.runtime.loop_monitor import LoopMonitor
from shopkeep.shop import Shop
from shopkeep.store.batch_plan import planned
from shopkeep.store.database import connect
from shopkeep.store.gil import hand_gil_over_sooner
from shopkeep.store.migrations import MIGRATIONS, apply_migrations
from shopkeep.store.writer import Statement
from shopkeep.store.writer_process import commit_statements

CUSTOMERS = 64
USERS = 1_000
GOODS = 1_000
STOCK = 10_000_000
PRICE = 1_250
PLAIN_FLOOR_RATIO = 0.25
"""Target: plain placements a second, as a fraction of the SQLite floor in the same run."""
RICH_FLOOR_RATIO = 0.15
"""Target: placements with a coupon and the wallet, as a fraction of the same floor."""
STALL_TARGET_MS = 20
COUPON_VALUE = 100
WALLET_AMOUNT = 100
BALANCE = 10**9
MAX_RATE = 30_000
"""More orders a second than any run reaches: how many coupons each user needs."""


async def populate(shop: Shop, users: int, goods: int) -> tuple[list[int], list[int]]:
    """Create the users and goods, 64 at a time."""
    user_ids: list[int] = []
    goods_ids: list[int] = []
    for start in range(0, users, 64):
        made = await asyncio.gather(
            *(
                shop.create_user(f"customer {n}", balance=BALANCE)
                for n in range(start, min(users, start + 64))
            )
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


async def issue_coupons(shop: Shop, user_ids: list[int], each: int) -> dict[int, list[int]]:
    """``each`` unused coupons of value :data:`COUPON_VALUE` for every user, written in one
    transaction on the writer's connection (through the API it would take minutes); the
    coupon ids by user."""
    ids = shop.runtime.system.ids
    coupons = {user: [ids.next() for _ in range(each)] for user in user_ids}
    rows = [(c, user, COUPON_VALUE, 0, None, 0.0) for user, own in coupons.items() for c in own]

    def insert(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_COUPON_SQL, rows)
        conn.execute("COMMIT")

    await shop.runtime.store.writer.call(insert)
    return coupons


async def customers(
    shop: Shop,
    user_ids: list[int],
    goods_ids: list[int],
    seconds: float,
    seed: int,
    coupons: dict[int, list[int]] | None = None,
) -> tuple[list[float], dict[str, int]]:
    """Run the customers for ``seconds``; every placement's latency, and refusals by code.

    With ``coupons`` every order uses one of its user's coupons and pays
    :data:`WALLET_AMOUNT` from the wallet."""
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
                if coupons is None:
                    await shop.place_order(user, [(goods, 1)])
                else:
                    coupon = coupons[user].pop()
                    await shop.place_order(
                        user, [(goods, 1)], coupon_id=coupon, use_balance=WALLET_AMOUNT
                    )
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
        schema = None
        for index, submitted in enumerate(batches):
            started = time.perf_counter()
            statements, schema = planned(conn, submitted, schema)  # as the writer plans them
            failed = commit_statements(conn, statements)
            if failed is not None:
                raise RuntimeError(f"a batch that committed in the run failed alone: {failed}")
            if index >= measured_from:
                spent += time.perf_counter() - started
        return spent
    finally:
        conn.close()


async def run(
    seconds: float, users: int, goods: int, seed: int, writer_mode: str, coupons: bool = False
) -> dict[str, Any]:
    """Measure with the writer in a ``writer_mode`` ("process" or "thread"), audit, and return
    the figures; with ``coupons``, every order uses a coupon and the wallet."""
    batches: list[list[Statement]] = []
    with tempfile.TemporaryDirectory(prefix="shopkeep-bench-") as folder:
        config = ShopConfig(max_unpaid_orders=10**9)
        path = os.path.join(folder, "shop.db")
        async with Shop.open(path, gateway="sandbox", config=config, writer=writer_mode) as shop:
            writer = shop.runtime.store.writer
            writer.tap = batches.append
            user_ids, goods_ids = await populate(shop, users, goods)
            per_user = math.ceil((seconds + 1) * MAX_RATE / users) if coupons else 0
            issued = await issue_coupons(shop, user_ids, per_user) if coupons else None
            warm_up = min(1.0, seconds / 5)
            await customers(shop, user_ids, goods_ids, warm_up, seed, issued)
            before = (
                len(batches), writer.stats.thread_s, writer.stats.units, writer.stats.statements
            )
            stalls = LoopMonitor(asyncio.get_running_loop())
            stalls.start()
            cpu_before = time.thread_time()
            started = time.perf_counter()
            latencies, refusals = await customers(
                shop, user_ids, goods_ids, seconds, seed + 1, issued
            )
            elapsed = time.perf_counter() - started
            loop_cpu = time.thread_time() - cpu_before
            stalls.stop()
            # every placement was answered, so every unit it made is committed and recorded
            measured = len(batches) - before[0]
            thread_s = writer.stats.thread_s - before[1]
            units = writer.stats.units - before[2]
            statements = writer.stats.statements - before[3]
            writer.tap = None
            report = await shop.audit()
        alone_s = writer_alone(os.path.join(folder, "replay.db"), batches, before[0])
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
        "loop_cpu_us_per_order": loop_cpu * 1e6 / placed,
        "loop_stall_max_ms": stalls.max_stall_s * 1000,
        "loop_stall_max_cpu_ms": stalls.max_stall_cpu_s * 1000,
        "gc_pause_max_ms": max(stalls.gc_pause_max_s) * 1000,
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
    floor = figures["sqlite_floor_orders_per_s"]
    plain = figures["place_orders_per_s"]
    rich = figures["place_orders_coupon_wallet_per_s"]
    longest = max((figures, figures["coupon_wallet"]), key=lambda run: run["loop_stall_max_ms"])
    stall, stall_cpu = longest["loop_stall_max_ms"], longest["loop_stall_max_cpu_ms"]
    rows = [
        ("sqlite_floor_orders_per_s", f"{floor:,.0f}", "baseline", None),
        ("place_orders_per_s", f"{plain:,.0f}", f">= {PLAIN_FLOOR_RATIO} x floor",
         plain >= PLAIN_FLOOR_RATIO * floor),
        ("place_orders_coupon_wallet_per_s", f"{rich:,.0f}", f">= {RICH_FLOOR_RATIO} x floor",
         rich >= RICH_FLOOR_RATIO * floor),
        ("place_p50_ms", f"{figures['place_p50_ms']:.2f}", "", None),
        ("place_p99_ms", f"{figures['place_p99_ms']:.2f}", "", None),
        ("orders_placed", f"{figures['orders_placed']:,}", "", None),
        ("refusals", str(figures["refusals"] or "none"), "", None),
        ("audit_ok", str(figures["audit_ok"]), "true", figures["audit_ok"]),
        ("units_per_order", f"{figures['units_per_order']:.2f}", "1", None),
        ("statements_per_order", f"{figures['statements_per_order']:.2f}", "<= 6", None),
        ("loop_cpu_us_per_order", f"{figures['loop_cpu_us_per_order']:.0f}", "", None),
        ("loop_stall_max_ms", f"{stall:.1f}", f"<= {STALL_TARGET_MS}", stall <= STALL_TARGET_MS),
        ("loop_stall_max_cpu_ms", f"{stall_cpu:.1f}", "", None),
        ("writer_thread_ms_per_batch", f"{figures['writer_thread_ms_per_batch']:.2f}", "", None),
        ("writer_alone_ms_per_batch", f"{figures['writer_alone_ms_per_batch']:.2f}", "", None),
    ]
    for name in ("coupon_wallet", "thread_writer"):
        other = figures[name]
        rows += [
            (f"{name}: p50 / p99", f"{other['place_p50_ms']:.1f} / "
             f"{other['place_p99_ms']:.1f}", "", None),
            (f"{name}: units, rows", f"{other['units_per_order']:.2f}, "
             f"{other['statements_per_order']:.2f}", "", None),
            (f"{name}: ms_per_batch", f"{other['writer_thread_ms_per_batch']:.2f}", "", None),
        ]
    other = figures["thread_writer"]
    rows.insert(3, ("thread_writer: per_s", f"{other['place_orders_per_s']:,.0f}", "", None))
    lines = [f"{'metric':<34}  {'value':>12}  {'target':<16}  result"]
    for name, value, target, met in rows:
        verdict = "" if met is None else ("pass" if met else "FAIL")
        lines.append(f"{name:<34}  {value:>12}  {target:<16}  {verdict}".rstrip())
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
    freeze_survivors()  # the process as ``serve`` runs it
    hand_gil_over_sooner()
    seconds, users, goods = (1.0, 50, 50) if args.quick else (args.seconds, USERS, GOODS)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="shopkeep-floor-") as folder:
        floor = sqlite_floor_orders_per_s(folder, min(seconds, 5.0), goods, PRICE)
    figures = asyncio.run(run(seconds, users, goods, args.seed, "process"))
    figures["sqlite_floor_orders_per_s"] = floor
    figures["coupon_wallet"] = asyncio.run(run(seconds, users, goods, args.seed, "process", True))
    figures["place_orders_coupon_wallet_per_s"] = figures["coupon_wallet"]["place_orders_per_s"]
    figures["thread_writer"] = asyncio.run(run(seconds, users, goods, args.seed, "thread"))
    figures["place_floor_ratio"] = figures["place_orders_per_s"] / floor
    figures["place_coupon_wallet_floor_ratio"] = figures["place_orders_coupon_wallet_per_s"] / floor
    loops = {"uvloop" if uvloop_version else "asyncio"}
    figures["machine"] = machine(loops, uvloop_version, load_before)
    figures["audit_ok"] = all(
        run_figures["audit_ok"]
        for run_figures in (figures, figures["coupon_wallet"], figures["thread_writer"])
    )
    return publish(figures, render(figures), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
