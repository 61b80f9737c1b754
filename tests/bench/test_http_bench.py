"""The HTTP benchmark runs end to end, scaled down (--quick), and reports every figure.

As with the other benchmarks, whether the figures are good is the full run's business: here
each only has to exist, be a positive number, and the audit after the run has to pass.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shopkeep.bench.http import (
    FALLBACK_WARNING,
    WAITING_BARE_WAIT_S,
    CpuPerAnswer,
    buckets_in,
    cores_bound_per_s,
    counted_over,
    fallback_warning,
    histogram_quantile,
    share_over,
)
from shopkeep.bench.processes import children_cpu_s, cpu_s, own_side_cpu_s

ROOT = Path(__file__).resolve().parents[2]

FIGURES = (
    "bare_post_per_s",
    "waiting_bare_post_per_s",
    "place_order_per_s",
    "place_order_p50_ms",
    "place_order_p99_ms",
    "ratio",
    "get_me_per_s",
    "ratio_get_me",
    "place_order_p99_ms_half_load",
    "commit_p50_ms_half_load",
    "commit_p99_ms_half_load",
    "http_overhead_shopkeep_us",
    "http_overhead_bare_us",
    "http_overhead_ratio",
)

CPU_FIGURES = (
    "bare_post_loop_cpu_us",
    "waiting_bare_post_loop_cpu_us",
    "place_order_loop_cpu_us",
    "get_me_loop_cpu_us",
    "place_order_process_cpu_us",
    "place_order_loop_cpu_us_half_load",
    "place_order_gc_us",
    "place_order_gc_us_half_load",
    "place_order_writer_process_cpu_us",
    "place_order_cores_cpu_us",
    "bare_post_cores_cpu_us",
    "place_order_cores_bound_per_s",
)


@pytest.mark.parametrize("generator", ["auto", "aiohttp-client"])
def test_the_quick_http_bench_reports_every_figure(tmp_path: Path, generator: str) -> None:
    out = tmp_path / "http.json"

    result = subprocess.run(
        [sys.executable, "-m", "shopkeep.bench.http", "--quick", "--json", str(out),
         "--load-generator", generator],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    for key in FIGURES:
        value = report[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), key
        assert math.isfinite(value) and value > 0, f"{key} = {value}"
        assert key in result.stdout, f"{key} missing from the printed table"
    assert report["ratio"] == pytest.approx(report["place_order_per_s"] / report["bare_post_per_s"])
    assert report["ratio_get_me"] == pytest.approx(
        report["get_me_per_s"] / report["bare_post_per_s"]
    )
    assert set(report["get_me_statuses"]) == {"200"}, report["get_me_statuses"]
    assert report["http_overhead_ratio"] == pytest.approx(
        report["http_overhead_shopkeep_us"] / report["http_overhead_bare_us"]
    )
    assert report["half_load_offered_per_s"] == pytest.approx(report["place_order_per_s"] / 2)
    assert report["waiting_bare_wait_ms"] == pytest.approx(WAITING_BARE_WAIT_S * 1000)
    assert set(report["place_order_statuses_half_load"]) == {"201"}
    assert 0 <= report["commits_over_50ms_half_load"] <= report["half_load_answered_per_s"] * 60
    assert "commits_over_50ms_half_load" in result.stdout
    assert 0 <= report["server_over_10ms_share_half_load"] <= 1  # the server's own timing
    assert "server_over_10ms_share_half_load" in result.stdout
    stall = report["loop_stall_max_ms"]
    assert isinstance(stall, float) and 0 <= stall < 60_000
    assert report["loop_stall_max_ms_before_load"] <= stall  # a maximum since the start
    assert 0 <= report["loop_stall_max_cpu_ms"] < 60_000
    for key in CPU_FIGURES:  # read from /proc (which these machines have) and /metrics
        assert 0 < report[key] < 1_000_000, f"{key} = {report[key]}"
        assert key in result.stdout, f"{key} missing from the printed table"
    assert report["ratio_cores_bound"] == pytest.approx(
        report["place_order_cores_bound_per_s"] / report["bare_post_per_s"]
    )
    assert "ratio_cores_bound" in result.stdout
    assert report["place_order_loop_busy_half_load"] == pytest.approx(
        report["place_order_loop_cpu_us_half_load"] * report["half_load_answered_per_s"] / 1e6
    )
    assert 0 < report["place_order_loop_busy_half_load"] < 2  # read in clock ticks: an estimate
    assert "place_order_loop_busy_half_load" in result.stdout
    assert "loop_stall_max_ms" in result.stdout
    assert set(report["gc_pause_max_ms"]) == {"0", "1", "2"}
    assert report["audit_ok"] is True
    expected = "wrk" if generator == "auto" and shutil.which("wrk") else "aiohttp-client"
    assert report["load_generator"] == expected
    fell_back = generator == "auto" and expected == "aiohttp-client"
    assert (FALLBACK_WARNING in result.stderr) == fell_back
    assert set(report["place_order_statuses"]) == {"201"}, report["place_order_statuses"]
    machine = report["machine"]
    assert machine["cpu_count"] >= 1
    assert isinstance(machine["uvloop"], bool)
    assert machine["python"].startswith("3.")


def test_falling_back_to_the_built_in_client_is_said_only_when_wrk_was_wanted() -> None:
    assert fallback_warning("auto", has_wrk=False) == FALLBACK_WARNING
    assert fallback_warning("auto", has_wrk=True) is None
    assert fallback_warning("aiohttp-client", has_wrk=False) is None


def test_a_quantile_of_what_a_histogram_counted_between_two_scrapes_is_interpolated() -> None:
    before = [(0.001, 10.0), (0.01, 10.0), (float("inf"), 10.0)]
    after = [(0.001, 10.0), (0.01, 110.0), (float("inf"), 110.0)]  # 100 more, 1 to 10 ms

    assert histogram_quantile(0.5, before, after) == pytest.approx(0.0055)
    assert histogram_quantile(0.99, before, after) == pytest.approx(0.00991)


def test_what_a_histogram_counted_over_a_bound_between_two_scrapes_is_counted() -> None:
    before = [(0.01, 10.0), (0.05, 12.0), (0.1, 12.0), (float("inf"), 13.0)]
    after = [(0.01, 90.0), (0.05, 95.0), (0.1, 97.0), (float("inf"), 99.0)]

    assert counted_over(0.05, before, after) == 3  # 86 counted, 83 of them within 50 ms
    assert counted_over(0.1, before, after) == 1


def test_the_share_a_histogram_counted_over_a_bound_between_two_scrapes_is_of_all_counted() -> None:
    before = [(0.01, 10.0), (0.05, 12.0), (float("inf"), 13.0)]
    after = [(0.01, 90.0), (0.05, 95.0), (float("inf"), 113.0)]

    assert share_over(0.01, before, after) == pytest.approx(20 / 100)  # 80 of 100 within 10 ms
    assert share_over(0.05, before, after) == pytest.approx(17 / 100)


def test_the_buckets_of_one_series_of_a_histogram_are_read_from_the_metrics_page() -> None:
    page = [
        '# TYPE x_seconds histogram',
        'x_seconds_bucket{le="0.01",method="GET",route="/v1/orders",status="200"} 7.0',
        'x_seconds_bucket{le="0.01",method="POST",route="/v1/orders",status="201"} 3.0',
        'x_seconds_bucket{le="+Inf",method="POST",route="/v1/orders",status="201"} 4.0',
        'x_seconds_count{method="POST",route="/v1/orders",status="201"} 4.0',
        'y_seconds_bucket{le="0.5"} 2.0',
        'y_seconds_bucket{le="+Inf"} 5.0',
    ]

    placed = buckets_in(page, "x_seconds", 'method="POST",route="/v1/orders",status="201"')

    assert placed == [(0.01, 3.0), (float("inf"), 4.0)]
    assert buckets_in(page, "y_seconds") == [(0.5, 2.0), (float("inf"), 5.0)]
    assert buckets_in(page, "x_seconds") == []  # no unlabelled series


def test_a_histogram_that_counted_nothing_has_no_quantile_nor_share() -> None:
    buckets = [(0.001, 3.0), (float("inf"), 3.0)]

    assert histogram_quantile(0.99, buckets, buckets) is None
    assert share_over(0.001, buckets, buckets) is None
    assert share_over(0.001, [], []) is None  # a series the server has not made yet


def test_a_process_cpu_is_read_whole_or_its_main_thread_and_none_once_it_is_gone() -> None:
    main_thread = cpu_s(os.getpid(), main_thread=True)
    whole = cpu_s(os.getpid())
    assert main_thread is not None and whole is not None
    assert main_thread > 0  # this test process has run for more than a tick
    # the kernel scales a thread's ticks and the whole process's each on its own: the sum may
    # come out up to two ticks under the main thread's share (one short was seen in make test)
    assert main_thread <= whole + 2 / os.sysconf("SC_CLK_TCK")

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert cpu_s(gone.pid) is None


SPIN = "import time\nend = time.thread_time() + 0.2\nwhile time.thread_time() < end: pass\n"
"""A child's program: use 0.2 s of CPU."""


def test_a_live_childs_cpu_is_counted_for_its_parent() -> None:
    before = children_cpu_s(os.getpid())
    child = subprocess.Popen(
        [sys.executable, "-c", SPIN + "print('spun', flush=True)\ninput()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline() == "spun\n"
        after = children_cpu_s(os.getpid())
    finally:
        child.communicate("", timeout=30)
    assert before is not None and after is not None
    assert after - before >= 0.1  # its 0.2 s, in whole ticks


def test_a_reaped_childs_cpu_is_counted_on_this_side() -> None:
    before = own_side_cpu_s()

    subprocess.run([sys.executable, "-c", SPIN], check=True, timeout=30)

    assert own_side_cpu_s() - before >= 0.1


def test_the_cores_bound_is_the_cores_over_what_an_answer_costs_them_all() -> None:
    cpu = CpuPerAnswer(loop_us=100.0, process_us=120.0, children_us=60.0, generator_us=20.0)

    assert cpu.cores_us == 200.0
    assert cores_bound_per_s(cpu) == pytest.approx((os.cpu_count() or 1) * 5_000)
    unknown = CpuPerAnswer(loop_us=None, process_us=None, children_us=None, generator_us=20.0)
    assert cores_bound_per_s(unknown) is None  # no /proc: nothing to say
