"""The embedded shop benchmark runs end to end, scaled down (--quick), and reports its figures.

Whether the figures are good is the full run's business: here each only has to exist and be a
positive number, and the audit after the run has to pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_shop_bench_reports_every_figure_and_a_clean_audit(tmp_path: Path) -> None:
    out = tmp_path / "shop.json"
    result = subprocess.run(
        [sys.executable, "-m", "shopkeep.bench.shop", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    figures = (
        "place_orders_per_s", "place_p50_ms", "place_p99_ms", "loop_cpu_us_per_order",
        "writer_thread_ms_per_batch", "writer_alone_ms_per_batch", "loop_stall_max_ms",
    )
    for run in (report, report["coupon_wallet"], report["thread_writer"]):
        for figure in figures:
            assert isinstance(run[figure], float) and run[figure] > 0, figure
        assert 0 <= run["loop_stall_max_cpu_ms"] < 60_000
        assert run["orders_placed"] > 0
        assert run["refusals"] == {}
        assert run["audit_ok"] is True
    for figure in ("sqlite_floor_orders_per_s", "place_orders_coupon_wallet_per_s",
                   "place_floor_ratio", "place_coupon_wallet_floor_ratio"):
        assert isinstance(report[figure], float) and report[figure] > 0, figure
    # a placement is one unit of work; a timer's or the sweep's unit may land in the window
    # too, hence the small margin. Plain: the order, its item, its history (placed,
    # confirmed: one statement), the goods' stock, its ledger row, the deadline. With a coupon
    # and the wallet, also the coupon's holder, the user's balance and its ledger row.
    assert 1.0 <= report["units_per_order"] < 1.05
    assert 6.0 <= report["statements_per_order"] < 6.1
    assert 1.0 <= report["coupon_wallet"]["units_per_order"] < 1.05
    assert 9.0 <= report["coupon_wallet"]["statements_per_order"] < 9.1
