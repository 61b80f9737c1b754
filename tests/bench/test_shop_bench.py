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
    for figure in ("place_orders_per_s", "place_p50_ms", "place_p99_ms"):
        assert isinstance(report[figure], float) and report[figure] > 0, figure
    assert report["orders_placed"] > 0
    assert report["refusals"] == {}
    assert report["audit_ok"] is True
