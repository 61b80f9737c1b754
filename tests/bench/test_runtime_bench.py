"""The runtime benchmark runs end to end, scaled down, and reports every figure.

Whether the targets are met is the full run's business, on a quiet machine: here a figure only
has to exist and be a positive number, so that a broken section cannot hide.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FIGURES = (
    "ask_per_s",
    "raw_future_ask_per_s",
    "pykka_ask_per_s",
    "tell_per_s",
    "pykka_tell_per_s",
    "commit_units_per_s_group",
    "commit_units_per_s_single",
    "commit_mean_batch_group",
    "commit_mean_batch_single",
    "idle_actor_bytes",
    "idle_actor_rss_bytes",
    "idle_sweep_stall_ms",
    "idle_sweep_one_turn_ms",
    "timers_1m_rss_mb",
    "timer_lateness_p99_ms",
    "restart_ready_s",
)
TARGETS = (
    "ask_vs_raw_future",
    "ask_vs_pykka",
    "commit_group_absolute",
    "commit_group_vs_single",
    "idle_actor_bytes",
    "idle_sweep_stall_ms",
    "timers_1m_rss_mb",
    "timer_lateness_p99_ms",
    "restart_ready_s",
)


def test_the_quick_runtime_bench_reports_every_figure_as_a_positive_number(
    tmp_path: Path,
) -> None:
    out = tmp_path / "x.json"

    result = subprocess.run(
        [sys.executable, "-m", "shopkeep.bench.runtime", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    for key in FIGURES:
        value = report[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), key
        assert math.isfinite(value) and value > 0, f"{key} = {value}"
    machine = report["machine"]
    assert machine["cpu_count"] >= 1
    assert isinstance(machine["uvloop"], bool)
    assert machine["python"].startswith("3.")
    assert machine["platform"]
    assert set(report["targets_met"]) == set(TARGETS)
    assert all(isinstance(met, bool) for met in report["targets_met"].values())
    for key in FIGURES:
        assert key in result.stdout, f"{key} missing from the printed table"


def test_the_commit_section_runs_with_the_writer_in_its_own_process(tmp_path: Path) -> None:
    out = tmp_path / "commit.json"

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shopkeep.bench.runtime",
            "--section",
            "commit_group",
            "--quick",
            "--writer",
            "process",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())["figures"]
    assert figures["commit_units_per_s_group"] > 0
    assert figures["commit_writer_in_process"] == 1
