"""The bench's pure parts: the mix, the recorder's bookkeeping, the reports' text and HTML."""

from __future__ import annotations

import asyncio
import dataclasses
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shopkeep.bench.load import run
from shopkeep.bench.load.html_report import render_html
from shopkeep.bench.load.mix import DEFAULT_MIX, JOURNEYS, MixError, parse_mix
from shopkeep.bench.load.progress import status_line
from shopkeep.bench.load.recorder import Recorder, new_histogram, percentile_ms, record
from shopkeep.bench.load.report import figures, render
from shopkeep.bench.load.run import BenchOptions, Outcome, in_flight, setup_plan
from shopkeep.bench.load.target import Refused


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_default_mix_runs_every_journey() -> None:
    assert set(parse_mix(None)) == set(JOURNEYS) == set(DEFAULT_MIX)


def test_the_plan_says_which_journeys_of_the_default_mix_are_left_out() -> None:
    over_http = BenchOptions(1.0, 1, {"pay": 1}, 1, url="http://127.0.0.1:1", admin_token="t")
    left_out = dataclasses.replace(over_http, left_out=("duplicate_callback",))

    assert setup_plan(left_out).splitlines()[1].startswith(
        "bench: journeys duplicate_callback left out"
    )
    assert len(setup_plan(over_http).splitlines()) == 1


def test_a_mix_keeps_only_the_journeys_it_weighs() -> None:
    assert parse_mix("pay=3, ship=1,return=0") == {"pay": 3, "ship": 1}
    assert parse_mix(" pay = 3 ") == {"pay": 3}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("teleport=1", "'teleport' is no journey"),
        ("pay", "not journey=weight"),
        ("pay=x", "not a whole number"),
        ("pay=-1", "negative"),
        ("pay=1,pay=2", "twice"),
        ("pay=0", "nothing to run"),
        ("", "names no journey"),  # given and empty: it ran the default mix
        (" ", "names no journey"),
    ],
)
def test_a_bad_mix_is_refused_with_the_reason(text: str, words: str) -> None:
    with pytest.raises(MixError, match=words):
        parse_mix(text)


def test_an_expected_refusal_is_an_answer_and_any_other_code_an_error() -> None:
    recorder = Recorder(1.0, clock=FakeClock())

    recorder.outcome("place", 0.010, "insufficient_stock", expected=True)
    recorder.outcome("place", 0.020, None)
    recorder.outcome("place", 0.030, "overloaded")
    recorder.outcome("deliver", 0.040, "invalid_state")

    place = recorder.operations["place"]
    assert place.count == 2
    assert recorder.latency("place", "max") == pytest.approx(20.0, rel=1e-3)
    assert dict(place.refusals) == {"insufficient_stock": 1}
    assert dict(place.errors) == {"overloaded": 1}
    assert dict(recorder.operations["deliver"].errors) == {"invalid_state": 1}
    assert (recorder.count, recorder.errors, recorder.refusals) == (2, 2, 1)


def test_the_series_has_one_row_per_interval_and_rates_over_what_the_last_one_lasted() -> None:
    clock = FakeClock()
    recorder = Recorder(1.0, clock=clock)
    for at, seconds in ((0.1, 0.001), (0.5, 0.003), (1.2, 0.002), (2.1, 0.004)):
        clock.now = 100.0 + at
        recorder.answered("pay", seconds)
    clock.now = 102.2
    recorder.memory(5e7)

    rows = recorder.series(elapsed=2.25)

    assert [row["t"] for row in rows] == [1.0, 2.0, 2.25]
    assert [row["ops_per_s"] for row in rows] == [2.0, 1.0, pytest.approx(4.0)]
    assert rows[0]["p99_ms"] == pytest.approx(3.0, rel=1e-2)  # a window keeps 2 digits
    assert rows[0]["operations"]["pay"]["count"] == 2
    assert [row["resident_memory_bytes"] for row in rows] == [None, None, 5e7]


@given(st.lists(st.floats(min_value=1e-5, max_value=100.0), min_size=1, max_size=200))
def test_a_percentile_is_the_samples_at_its_rank_within_a_thousandth(samples: list[float]) -> None:
    histogram = new_histogram()
    for sample in samples:
        record(histogram, sample)
    # HDR's rank of a percentile: the count rounded to the nearest, at least 1
    at_rank = sorted(samples)[max(1, int(0.99 * len(samples) + 0.5)) - 1] * 1000

    p99 = percentile_ms(histogram, 99.0)

    assert p99 is not None
    assert at_rank * 0.999 - 0.001 <= p99 <= at_rank * 1.001 + 0.001


def test_quiet_means_nothing_in_flight_in_any_check() -> None:
    busy = {"ok": True, "checks": [{"name": "money", "ok": True, "detail": "x; 3 in flight"}]}
    calm = {"ok": True, "checks": [{"name": "money", "ok": True, "detail": "x"}]}

    assert in_flight(busy) and not in_flight(calm)


class HungServer:
    """A server stopped (``kill -STOP``): its audit and its metrics never answer."""

    async def audit(self) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    async def resident_memory(self) -> float | None:
        await asyncio.Event().wait()
        raise AssertionError("never answered")


async def test_the_memory_of_a_server_that_hangs_is_waited_for_no_longer_than_its_bound() -> None:
    # asked after the bounded audit, it held the run a request's minute more
    assert await run.memory_within(HungServer(), 0.01) is None  # type: ignore[arg-type]


async def test_an_audit_that_never_answers_is_waited_for_no_longer_than_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # each audit waited out the request's own minute: 106 s against a --settle of 5
    monkeypatch.setattr(run, "AUDIT_ANSWER_S", 0.01)

    report, _, quiet = await run.settle(HungServer(), 0.05)  # type: ignore[arg-type]

    assert not quiet and report["answered"] is False
    assert report["checks"][0]["detail"].startswith("no answer in ")


def run_figures(audit_detail: str, errors: int = 0) -> dict[str, Any]:
    clock = FakeClock()
    recorder = Recorder(1.0, clock=clock)
    clock.now = 100.5
    recorder.answered("place", 0.005)
    recorder.answered("place", 0.007, "insufficient_stock")
    recorder.memory(4e7)
    for _ in range(errors):
        recorder.failed("ship", "overloaded")
    audit = {"ok": "<" not in audit_detail, "checks": [
        {"name": "stock", "ok": "<" not in audit_detail, "detail": audit_detail}
    ]}  # fmt: skip
    outcome = Outcome(recorder, 1.0, 0.25, 4e7, 5e7, audit, 1, 0.0, True, 0.1, 0.0)
    options = BenchOptions(duration_s=1.0, concurrency=2, mix={"place": 1}, seed=7)
    return figures(options, outcome)


def test_the_figures_fail_on_an_error_rate_above_the_limit() -> None:
    data = run_figures("all well", errors=1)

    assert data["totals"]["error_rate"] == pytest.approx(1 / 3)
    assert data["passed"] is False
    assert "error rate" in data["failures"][0]
    assert data["client_cpu"]["utilization"] == 0.25
    # the rate's whole is said beside it: the operations answered leave the error out
    assert "errors 1 (33.333% of 3 attempts)" in render(data)


def test_the_client_cpu_is_over_the_wall_time_it_was_spent_in_the_warm_up_included() -> None:
    recorder = Recorder(1.0, clock=FakeClock())
    audit = {"ok": True, "checks": []}
    # 4.8 s of CPU over a 6 s run of which 2 s warm-up: 80% of one core, not 120%
    outcome = Outcome(recorder, 4.0, 4.8, 4e7, 5e7, audit, 1, 0.0, True, 0.1, 0.0, cpu_wall_s=6.0)
    options = BenchOptions(duration_s=4.0, concurrency=2, mix={"place": 1}, seed=7)

    cpu = figures(options, outcome)["client_cpu"]

    assert (cpu["cpu_s"], cpu["wall_s"]) == (4.8, 6.0)
    assert cpu["utilization"] == pytest.approx(0.8)


def test_the_report_says_when_the_run_started_not_when_it_was_written() -> None:
    recorder = Recorder(1.0, clock=FakeClock())
    audit = {"ok": True, "checks": []}
    outcome = Outcome(recorder, 1.0, 0.1, 4e7, 5e7, audit, 1, 0.0, True, 0.1, 1_700_000_000.0)
    options = BenchOptions(duration_s=1.0, concurrency=2, mix={"place": 1}, seed=7)

    data = figures(options, outcome)

    assert data["started_at"] == "2023-11-14T22:13:20Z"
    assert "<title>shopkeep bench 2023-11-14T22:13:20Z</title>" in render_html(data)


def test_the_text_report_has_a_row_per_operation_and_the_verdict() -> None:
    text = render(run_figures("all well"))

    assert text.splitlines()[0].split() == [
        "operation", "count", "per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms"
    ]  # fmt: skip
    assert "place: errors -; expected refusals insufficient_stock=1" in text
    assert "client cpu 0.2s / 1.0s wall = 25% of one core" in text
    assert text.endswith("result: pass (exit status 0)")


class Texts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_html_report_escapes_what_the_server_said() -> None:
    page = render_html(run_figures("<script>alert(1)</script>"))
    parsed = Texts()
    parsed.feed(page)

    assert "script" not in parsed.tags
    assert "<script>alert(1)</script>" in "".join(parsed.text)
    # throughput, latency, memory; the distribution; place over time
    assert parsed.tags.count("svg") == 5


def test_the_progress_line_says_elapsed_rate_errors_and_p99() -> None:
    clock = FakeClock()
    recorder = Recorder(1.0, clock=clock)
    recorder.answered("pay", 0.050)
    recorder.failed("pay", "timeout")
    clock.now = 102.0

    line = status_line(recorder, 30, 123.0, parked=2)

    assert line.startswith("bench    2.0/30s  ops 1  123 ops/s  errors 1")
    assert "p99 50." in line and line.endswith("parked 2")


class StoppedServer:
    """A server stopped or killed: nothing listens any more."""

    def __init__(self) -> None:
        self.audits = 0

    async def audit(self) -> dict[str, Any]:
        self.audits += 1
        raise Refused("connection_error", "GET /v1/admin/audit: Connect call failed")


async def test_a_server_gone_is_not_waited_for_to_the_end_of_settle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # sixty-one audits of a port nobody listened on, 30 s, then "NOT quiet"
    monkeypatch.setattr(run, "AUDIT_PAUSE_S", 0.001)
    monkeypatch.setattr(run, "GONE_AFTER_S", 0.02)
    server = StoppedServer()

    report, attempts, quiet = await run.settle(server, 3_600.0)  # type: ignore[arg-type]

    assert attempts == server.audits >= 2 and not quiet
    assert report["answered"] is False
    assert report["checks"][0]["detail"].startswith("refused: connection_error")
