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
        "place_orders_per_s", "place_p50_ms", "place_p99_ms",
        "writer_thread_ms_per_batch", "writer_alone_ms_per_batch",
    )
    for figure in figures:
        assert isinstance(report[figure], float) and report[figure] > 0, figure
    assert report["orders_placed"] > 0
    assert report["refusals"] == {}
    assert report["audit_ok"] is True
    # a one-item placement: the user's admission, the pending order, the stock take and the
    # confirmation make 3 units (the admission writes nothing without an Idempotency-Key);
    # a timer's or the sweep's unit may land in the window too, hence the small margin
    assert 3.0 <= report["units_per_order"] < 3.05
    assert 9.0 <= report["statements_per_order"] < 9.1
