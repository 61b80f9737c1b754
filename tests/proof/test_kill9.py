"""Group 2, bounded: 30 SIGKILLs of a real ``main.py serve`` under 8 to 32 clients.

The same run as ``python -m shopkeep.proof kill9 --cycles 30``; and the checker's own checks,
shown to fail on a file that breaks them (a checker that cannot fail proves nothing).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from shopkeep.proof.kill9 import Plan, run
from shopkeep.proof.kill9_checks import Acknowledged, half_done
from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop


async def test_thirty_kills_lose_no_acknowledged_write_and_leave_nothing_half_done(
    tmp_path: Path,
) -> None:
    figures = await run(Plan(cycles=30), tmp_path)

    assert figures.violations == [], figures.line()
    assert figures.cycles == 30
    assert figures.writes["ok"] > 1_000 and figures.writes["unknown"] > 0
    assert figures.unknown_applied + figures.unknown_absent > 0
    assert figures.deadlines_fired > 0
    assert figures.line().startswith("kill9: 30 kill -9 cycles")


async def empty_shop(db: Path) -> None:
    async with Shop.open(str(db), gateway="sandbox", clock=VirtualClock(), gateway_secret="s" * 16):
        pass


async def test_the_checker_reports_an_acknowledged_order_that_is_gone(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    await empty_shop(db)
    acknowledged = Acknowledged(placed={"12": ("1", 2)}, canceled={"13"})

    assert acknowledged.lost(db) == [
        "acknowledged order 12 is gone",
        "acknowledged cancel of 13 lost: no order",
    ]


async def test_the_checker_reports_a_canceled_order_that_still_holds_stock(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shop.db"
    await empty_shop(db)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "INSERT INTO orders (id, user_id, status, created_at) VALUES (7, 1, 'canceled', 0)"
        )
        conn.execute("INSERT INTO order_items VALUES (7, 3, 2, 100, 0)")
        conn.execute("INSERT INTO stock_ledger VALUES (1, 3, 7, 'take', -2, 0)")

    assert half_done(db) == ["order 7 canceled: stock -2 of 2, wallet 0 of 0, coupons held 0"]
