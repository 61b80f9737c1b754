"""What makes the bench usable in CI, in this process: thresholds, the exit status, warm-up,
the ramp, and a paced schedule timed from each journey's due time on a stepped clock."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from html.parser import HTMLParser
from typing import Any

import pytest

from shopkeep.bench.load import command
from shopkeep.bench.load.compare import changes, unlike
from shopkeep.bench.load.html_report import render_html
from shopkeep.bench.load.journeys import (
    HOLD_LIMIT,
    OPENING_BALANCE,
    Catalog,
    Journeys,
    Shopper,
)
from shopkeep.bench.load.recorder import Recorder
from shopkeep.bench.load.report import EXIT_SETUP, figures, late_callbacks_skipped, render
from shopkeep.bench.load.run import BenchOptions, Outcome, chooser_of
from shopkeep.bench.load.schedule import LATE_BOUND_S, Schedule, paced_start, worker_start
from shopkeep.bench.load.target import Customer, Order, Payment, Refused
from shopkeep.bench.load.thresholds import Threshold, ThresholdError, parse_threshold
from shopkeep.stop_requests import SAME_SIGNAL_S
from shopkeep.store.errors import StoreError


class SteppedClock:
    """Time that moves only when the test says. A sleeper wakes at the first move that reaches
    its time, *at that move's time*: a move past it is an event loop held up, which wakes it
    late."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + delay, future))
        await future

    async def move_to(self, when: float) -> None:
        self.now = when
        for entry in [entry for entry in self._sleepers if entry[0] <= when]:
            self._sleepers.remove(entry)
            entry[1].set_result(None)
        for _ in range(20):  # the woken tasks run before time moves again
            await asyncio.sleep(0)


# -- thresholds -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("place.p99<50ms", Threshold("place.p99<50ms", "place", "p99", "<", 50.0)),
        ("errors<0.1%", Threshold("errors<0.1%", None, "errors", "<", 0.001, is_rate=True)),
        ("errors <= 3", Threshold("errors <= 3", None, "errors", "<=", 3.0)),
        ("p99.9<1s", Threshold("p99.9<1s", None, "p99.9", "<", 1000.0)),
        ("await_paid.max>=2ms", Threshold("await_paid.max>=2ms", "await_paid", "max", ">=", 2.0)),
        ("per_s>100", Threshold("per_s>100", None, "per_s", ">", 100.0)),
        ("dropped<1%", Threshold("dropped<1%", None, "dropped", "<", 0.01, is_rate=True)),
    ],
)
def test_a_threshold_reads_its_figure_comparator_and_value_in_the_figures_unit(
    text: str, expected: Threshold
) -> None:
    assert parse_threshold(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("place.p99<50", "takes a unit"),
        ("place.p99=50ms", "not a threshold"),
        ("teleport.p99<5ms", "neither an operation"),
        ("place.median<5ms", "not a statistic"),
        ("per_s>5ms", "plain number"),
        ("place.dropped<1%", "whole run only"),
        ("p0<5ms", "percentile"),
        ("errors<5ms", "a rate .with %. or a count"),
        ("errors<150%", "at most 100%"),
        ("", "not a threshold"),
        ("place.p99<١٢ms", "not a threshold"),  # other scripts' digits, as the flags
    ],
)
def test_a_malformed_threshold_says_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ThresholdError, match=words):
        parse_threshold(text)


def run_figures(
    *thresholds: str,
    errors: int = 0,
    audit_ok: bool = True,
    audit_answered: bool = True,
    max_error_rate: float = 0.0,
    quiet: bool = True,
    interrupted: bool = False,
    capped: int = 0,
    capped_unprovoked: int = 0,
    unsigned: int = 0,
    late_skipped: int = 0,
    planned: int = 0,
    busy: int = 0,
) -> dict[str, Any]:
    clock = SteppedClock()
    clock.now = 0.5
    recorder = Recorder(1.0, clock=clock)
    clock.now = 1.0
    recorder.answered("place", 0.040)
    recorder.answered("place", 0.060, "insufficient_stock")
    for _ in range(capped):
        recorder.answered("place", 0.001, "too_many_unpaid_orders")
    for _ in range(capped_unprovoked):  # by a shopper the bench saw holding none
        recorder.failed("place", "too_many_unpaid_orders")
    for _ in range(errors):
        recorder.failed("ship", "overloaded")
    for _ in range(unsigned):
        recorder.failed("callback", "invalid_callback")
    recorder.skipped["late_callback"] += late_skipped
    for start in range(planned):
        recorder.plan(0.5)
        if start < busy:
            recorder.drop("busy", 0.5)
    checks = [{"name": "stock", "ok": audit_ok, "detail": "on hand = initial"}]
    audit = {"ok": audit_ok, "checks": checks}
    if not audit_answered:  # as settle says it when the shop does not answer
        audit = {"ok": False, "answered": False,
                 "checks": [{"name": "answer", "ok": False, "detail": "refused: gone"}]}
    outcome = Outcome(
        recorder, 1.0, 0.2, 4e7, 5e7, audit, 7, 3.1, quiet, 0.1, 0.0, interrupted=interrupted
    )
    options = BenchOptions(
        duration_s=1.0, concurrency=2, mix={"place": 1}, seed=7, max_error_rate=max_error_rate,
        thresholds=tuple(parse_threshold(text) for text in thresholds),
    )  # fmt: skip
    return figures(options, outcome)


def test_thresholds_are_checked_against_the_histograms_and_shown_in_every_report() -> None:
    data = run_figures(
        "place.p99<50ms", "place.max<100ms", "errors<0.1%", "approve_return.p50<1s",
        "approve_return.count<1", "approve_return.errors<1", "approve_return.errors<1%",
    )

    assert [(t["threshold"], t["passed"]) for t in data["thresholds"]] == [
        ("place.p99<50ms", False),  # 60 ms, at the histogram's precision
        ("place.max<100ms", True),
        ("errors<0.1%", True),
        ("approve_return.p50<1s", False),  # never ran: nothing measured does not pass
        ("approve_return.count<1", True),  # never ran: counted none, and none failed
        ("approve_return.errors<1", True),
        ("approve_return.errors<1%", False),  # a rate of nothing: nothing measured
    ]
    assert data["thresholds"][0]["measured"] == pytest.approx(60.0, rel=1e-3)
    assert data["exit_status"] == 3
    text = render(data)
    assert "FAILED  place.p99<50ms" in text and "measured 60.0" in text
    assert "measured nothing" in text
    page = render_html(data)
    assert "place.p99&lt;50ms" in page and "approve_return.p50&lt;1s" in page


def test_a_run_whose_placements_were_mostly_refused_says_its_figures_are_of_refusals() -> None:
    # a shop capping unpaid orders below the mix's holdings refused 93% of the placements,
    # expectedly: the run passed and its table showed a throughput of refusals, unremarked
    data = run_figures(capped=3)

    [warning] = data["warnings"]
    assert warning.startswith("place: 60% of its answers were too_many_unpaid_orders refusals")
    assert "--max-unpaid-orders" in warning
    assert data["exit_status"] == 0
    assert f"warning: {warning}" in render(data)
    assert "Warning: place: 60%" in render_html(data)
    assert run_figures(capped=1)["warnings"] == []  # a third: as a scarce goods may be
    # refused where the mix did not provoke it (an error): counted with the expected ones
    [warning] = run_figures(capped=1, capped_unprovoked=2, max_error_rate=1.0)["warnings"]
    assert warning.startswith("place: 60% of its answers were too_many_unpaid_orders")


def test_callbacks_the_server_refused_as_unsigned_ask_whether_the_secret_is_the_servers() -> None:
    # a wrong --gateway-secret: exit 4 and "callback: errors invalid_callback=47", no more
    data = run_figures(unsigned=47, max_error_rate=1.0)

    assert data["warnings"] == [
        "47 callbacks the bench signed were refused invalid_callback: is its --gateway-secret "
        "(SHOPKEEP_GATEWAY_SECRET) the server's?"
    ]


def test_late_callbacks_skipped_with_none_run_say_the_deadline_must_pass_before_the_end() -> None:
    # against `make serve` (a 30-minute deadline) the summary alone said late_callback=206;
    # 141 of 143 skipped, the other two refused insufficient_stock, said nothing either
    assert late_callbacks_skipped({"place": {"count": 9}}, {"late_callback": 141}) == [
        "late_callback: 141 skipped and none ran: each waits for its order's payment "
        "deadline, which must pass before the run ends: give the server (embedded, the bench) "
        "an --order-timeout well below the run's --duration (5s with 30s, as the recipes of "
        "load-testing.md do)"
    ]
    ran = {"await_timeout": {"count": 4}}
    assert late_callbacks_skipped(ran, {"late_callback": 3}) == []  # some ran: a long tail
    assert late_callbacks_skipped({"place": {"count": 9}}, {}) == []
    # the server gone mid-run: its journeys were cut by that, not by a deadline past the end
    cut = {"place": {"count": 9, "errors": {"connection_error": 81}}}
    assert late_callbacks_skipped(cut, {"late_callback": 15}) == []


def test_the_summary_says_what_share_of_the_planned_starts_was_dropped() -> None:
    paced = run_figures(planned=4, busy=1)
    assert "dropped starts 1 of 4 planned, 25.00% (busy=1)" in render(paced)
    assert "dropped starts 0 of 0 planned (-)" in render(run_figures())  # a closed run plans none


def test_an_interrupted_run_does_not_blame_its_deadlines_for_the_late_callbacks_it_cut() -> None:
    finished = run_figures(late_skipped=3)
    interrupted = run_figures(late_skipped=3, interrupted=True)

    assert any(w.startswith("late_callback: 3 skipped") for w in finished["warnings"])
    assert not any(w.startswith("late_callback") for w in interrupted["warnings"])


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({}, 0),
        ({"thresholds": ("place.p99<1ms",)}, 3),
        ({"errors": 1}, 4),
        ({"errors": 1, "max_error_rate": 0.5}, 0),
        ({"errors": 1, "thresholds": ("place.p99<1ms",)}, 4),  # errors are more serious
        ({"errors": 1, "thresholds": ("place.p99<1ms",), "audit_ok": False}, 1),  # the audit most
        ({"audit_answered": False}, 4),  # no audit is no failed invariant: an error of the run
        ({"audit_answered": False, "thresholds": ("place.p99<1ms",)}, 4),
        ({"audit_answered": False, "quiet": False}, 4),  # the server gone: settle stopped
        ({"quiet": False}, 1),  # releases or refunds that never drain: it passed
        ({"quiet": False, "errors": 1}, 1),
        ({"quiet": False, "interrupted": True}, 6),  # its one audit does not wait for quiet
        ({"interrupted": True}, 6),  # a slice of the run asked for: no pass
        ({"interrupted": True, "thresholds": ("place.p99<1ms",)}, 3),
        ({"interrupted": True, "audit_ok": False}, 1),
    ],
)
def test_the_exit_status_is_that_of_the_most_serious_failure(
    kwargs: dict[str, Any], status: int
) -> None:
    thresholds = kwargs.pop("thresholds", ())

    data = run_figures(*thresholds, **kwargs)

    assert data["exit_status"] == status
    assert data["passed"] is (status == 0)
    if not kwargs.get("audit_answered", True):
        assert "the audit could not be asked (refused: gone)" in data["failures"]
        assert "audit NOT ANSWERED" in render(data)
        if not kwargs.get("quiet", True):  # nothing is known of quiet: not "NOT quiet"
            assert "audit NOT ANSWERED (quiet unknown after 7 audits" in render(data)
    elif not kwargs.get("quiet", True) and status and not kwargs.get("interrupted"):
        assert "the shop was not quiet after --settle 30s (7 audits)" in data["failures"][0]
        assert "audit ok (NOT quiet after 7 audits, 3.1s)" in render(data)


def test_a_comparison_gives_each_figures_change_and_which_way_is_worse() -> None:
    before, after = run_figures(), run_figures(errors=1)
    before["operations"]["place"]["p99_ms"] = 30.0

    rows = {row["figure"]: row for row in changes(before, after)}

    assert rows["place.p99_ms"]["change"] == pytest.approx(1.0, rel=1e-2)  # 30 -> 60 ms
    assert rows["place.p99_ms"]["worse_when_higher"] is True
    assert rows["total.per_s"]["worse_when_higher"] is False
    assert rows["total.errors"]["change"] is None  # from 0: no ratio


def test_a_change_from_a_figure_too_small_to_divide_by_is_none_never_infinity() -> None:
    # a baseline's p99 of 5e-324 made the change overflow: "Infinity" in the report's JSON,
    # which no strict parser (the next --compare included) reads
    before, after = run_figures(), run_figures()
    before["operations"]["place"]["p99_ms"] = 5e-324

    rows = {row["figure"]: row for row in changes(before, after)}

    assert rows["place.p99_ms"]["change"] is None


def test_a_comparison_with_a_run_of_other_settings_says_how_they_differ() -> None:
    # an embedded run of 3 s compared with an HTTP run of 10 s: "+128% per_s", and not a word
    before, after = run_figures(), run_figures()
    before.update(mode="http", duration_s=10.0)

    assert unlike(before, after) == ["mode http -> embedded", "duration_s 10.0 -> 1.0"]
    assert unlike(after, run_figures()) == []
    assert unlike(run_figures(interrupted=True), after) == ["interrupted True -> False"]
    assert unlike({"mix": {"place": 5, "pay": 2}}, {"mix": {"place": 1}}) == [
        "mix place=5,pay=2 -> place=1"
    ]
    after["comparison"] = {
        "path": "old.json", "unlike": unlike(before, after), "changes": changes(before, after),
    }
    assert "  runs unlike in mode http -> embedded; duration_s 10.0 -> 1.0" in (
        render(after).splitlines()
    )
    assert "<p>Runs unlike in mode http -&gt; embedded; duration_s 10.0 -&gt; 1.0.</p>" in (
        render_html(after)
    )


# -- warm-up, ramp, pacing --------------------------------------------------------------------


def test_what_started_during_the_warm_up_is_left_out_of_the_figures() -> None:
    clock = SteppedClock()
    recorder = Recorder(1.0, clock=clock, warmup_s=5.0)

    clock.now = 3.0
    recorder.started_journey("pay")
    recorder.answered("place", 0.010)
    recorder.failed("ship", "overloaded")
    clock.now = 5.5
    recorder.answered("place", 1.0)  # started at 4.5, in the warm-up
    recorder.started_journey("pay")
    recorder.answered("place", 0.020)
    clock.now = 7.25

    assert recorder.count == 1 and recorder.errors == 0
    assert recorder.warmup_operations == 3
    assert dict(recorder.journeys) == {"pay": 1}
    assert recorder.measured() == 2.25
    rows = recorder.series(recorder.measured())
    # the series starts after the warm-up; the empty sliver after the last answer is left out
    assert [(row["t"], row["ops_per_s"]) for row in rows] == [(1.0, 1.0), (2.0, 0.0)]


def test_a_paced_schedule_ramps_its_rate_linearly_then_holds_it() -> None:
    starts = [paced_start(k, rate=10.0, ramp_s=2.0) for k in range(13)]

    assert starts[0] == 0.0
    assert starts == sorted(starts)
    # 10 starts are due over a 2 s ramp to 10/s (its mean rate 5/s), then one every 0.1 s
    assert starts[10] == pytest.approx(2.0)
    assert starts[12] - starts[11] == pytest.approx(0.1)
    assert starts[2] - starts[1] > starts[11] - starts[10]  # slower at first
    assert [paced_start(k, 4.0, 0.0) for k in range(3)] == [0.0, 0.25, 0.5]


def test_closed_workers_join_one_by_one_over_the_ramp() -> None:
    assert [worker_start(n, 4, 2.0) for n in range(4)] == [0.0, 0.5, 1.0, 1.5]


class SlowShop:
    """Answers a placement after the next of ``service_s`` on ``clock``."""

    def __init__(self, clock: SteppedClock, service_s: list[float]) -> None:
        self.clock = clock
        self.service_s = service_s

    async def place_order(self, customer: Customer, items: Any, **kwargs: Any) -> Order:
        await self.clock.sleep(self.service_s.pop(0))
        return Order("1", "awaiting_payment", 100, None, None, None, None)


async def test_a_paced_journey_is_timed_from_its_due_time_and_late_or_busy_starts_dropped() -> None:
    clock = SteppedClock()
    recorder = Recorder(1.0, clock=clock)
    shop = SlowShop(clock, [0.15, 0.05])
    journeys = Journeys(shop, recorder, Catalog(["g1"], "g0"), "run", 1.0)  # type: ignore[arg-type]
    shopper = Shopper(Customer("1", "token"))

    async def run_one(number: int, start: int | None) -> None:
        recorder.started_journey("place")
        await journeys.place(shopper, random.Random(1))

    # one worker, starts due every 0.1 s until 0.35: at 0, 0.1, 0.2, 0.3
    schedule = Schedule(
        recorder, run_one, concurrency=1, ends_at=0.35, rate=10.0, sleep=clock.sleep
    )
    running = asyncio.create_task(schedule.run())
    await clock.move_to(0.0)  # the start due at 0 is made: the shop takes 0.15 s
    await clock.move_to(0.1)  # due now, but the only worker is busy: dropped
    await clock.move_to(0.15)
    await clock.move_to(0.24)  # the loop was held up, within the bound: made late
    await clock.move_to(0.29)  # answered 0.05 s after it was made, 0.09 s after it was due
    await clock.move_to(0.3 + 2 * LATE_BOUND_S)  # held up too long: dropped
    await running

    assert dict(recorder.journeys) == {"place": 2}
    assert dict(recorder.dropped) == {"busy": 1, "late": 1}
    assert recorder.planned == 4
    assert recorder.latency("place", "max") == pytest.approx(150.0, rel=1e-3)
    assert recorder.latency("place", "p50") == pytest.approx(90.0, rel=1e-3)  # not 50


async def test_each_paced_start_is_numbered_in_order_whichever_worker_takes_it() -> None:
    # the start's number seeds its picks (--seed): which worker is free depends on timing
    clock = SteppedClock()
    recorder = Recorder(1.0, clock=clock)
    taken: list[tuple[int | None, int]] = []

    async def run_one(number: int, start: int | None) -> None:
        taken.append((start, number))
        await clock.sleep(0.15 if number == 0 else 0.02)

    schedule = Schedule(
        recorder, run_one, concurrency=2, ends_at=0.45, rate=10.0, sleep=clock.sleep
    )
    running = asyncio.create_task(schedule.run())
    for when in (0.0, 0.1, 0.12, 0.15, 0.2, 0.3, 0.32, 0.35, 0.4, 0.45, 0.55):
        await clock.move_to(when)
    await asyncio.wait_for(running, 5.0)

    assert [start for start, _ in taken] == [0, 1, 2, 3, 4]
    assert {worker for _, worker in taken} == {0, 1}  # the starts shared by the two


def test_a_paced_starts_picks_are_its_own_and_a_closed_workers_its_worker_s() -> None:
    taken_by_one, taken_by_another = random.Random("one"), random.Random("another")

    first = chooser_of(7, 3, taken_by_one).random()

    assert chooser_of(7, 3, taken_by_another).random() == first  # whichever worker took it
    assert chooser_of(8, 3, taken_by_one).random() != first  # the seed's
    assert chooser_of(7, None, taken_by_one) is taken_by_one


async def test_a_stop_cancels_the_journeys_under_way_and_starts_no_other() -> None:
    clock = SteppedClock()
    recorder = Recorder(1.0, clock=clock)
    stop = asyncio.Event()
    started: list[int] = []

    async def run_one(number: int, start: int | None) -> None:
        started.append(number)
        await clock.sleep(10.0)

    schedule = Schedule(
        recorder, run_one, concurrency=2, ends_at=60.0, stop=stop, sleep=clock.sleep
    )
    running = asyncio.create_task(schedule.run())
    await clock.move_to(0.0)
    stop.set()
    await running

    assert started == [0, 1]
    assert not schedule.running


async def test_a_ramp_longer_than_the_run_starts_no_worker_after_its_end() -> None:
    # workers would join at 0, 2.5, 5 and 7.5 s: the run stayed idle until 7.5 s
    clock = SteppedClock()
    recorder = Recorder(1.0, clock=clock)
    started: list[tuple[int, float]] = []

    async def run_one(number: int, start: int | None) -> None:
        started.append((number, clock.now))
        await clock.sleep(1.0)

    schedule = Schedule(
        recorder, run_one, concurrency=4, ends_at=2.0, ramp_s=10.0, sleep=clock.sleep
    )
    running = asyncio.create_task(schedule.run())
    for when in (0.0, 1.0, 2.0):
        await clock.move_to(when)

    assert running.done()
    assert started == [(0, 0.0), (0, 1.0)]
    assert recorder.measured() == 2.0


async def test_a_paced_run_lasts_its_duration_past_its_last_start() -> None:
    # at 0.5 a second, a 5 s run ended when its last start, due at 4 s, was answered
    clock = SteppedClock()
    recorder = Recorder(1.0, clock=clock)

    async def run_one(number: int, start: int | None) -> None:
        recorder.answered("place", 0.0)

    schedule = Schedule(
        recorder, run_one, concurrency=2, ends_at=5.0, rate=0.5, sleep=clock.sleep
    )
    running = asyncio.create_task(schedule.run())
    for when in (0.0, 2.0, 4.0, 4.9):
        await clock.move_to(when)
    assert not running.done()
    await clock.move_to(5.0)
    await running

    assert recorder.count == 3 and recorder.measured() == 5.0


def test_the_series_ends_with_the_run_what_is_answered_after_it_in_the_totals() -> None:
    # a window [2, 2.003) of what was in flight at the end showed 333 ops/s
    clock = SteppedClock()
    recorder = Recorder(1.0, clock=clock, duration_s=2.0)
    for when in (0.5, 1.5, 2.003):
        clock.now = when
        recorder.answered("pay", 0.001)
    audit = {"ok": True, "checks": []}
    outcome = Outcome(recorder, 2.003, 0.2, 4e7, 5e7, audit, 1, 0.0, True, 0.1, 0.0)
    options = BenchOptions(duration_s=2.0, concurrency=2, mix={"pay": 1}, seed=7)

    data = figures(options, outcome)

    assert [(row["t"], row["ops_per_s"]) for row in data["series"]] == [(1.0, 1.0), (2.0, 1.0)]
    assert data["totals"]["count"] == 3
    assert data["totals"]["per_s"] == pytest.approx(3 / 2.003)


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.titles: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_title = tag == "title"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles.append(data)
            self._in_title = False


def test_the_html_report_charts_the_distribution_and_each_operation_over_time() -> None:
    data = run_figures("place.p99<1s")
    data["comparison"] = {"path": "old.json", "changes": changes(run_figures(), data)}
    parsed = Tags()

    parsed.feed(render_html(data))

    assert "Latency distribution (percentile, HDR histograms)" in parsed.titles
    assert "place latency" in parsed.titles
    assert "Latency over time, every operation" in parsed.titles
    assert "Compared with old.json" in render_html(data)


def test_a_signal_sent_twice_at_once_stops_the_run_and_a_later_one_quits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `timeout` sends its SIGTERM to the command and again to its process group: one request
    now, quits = [100.0], []
    monkeypatch.setattr("shopkeep.stop_requests.time.monotonic", lambda: now[0])
    monkeypatch.setattr(command, "quit_now", lambda: quits.append(now[0]))
    monkeypatch.setattr(command, "say", lambda line: None)
    stop, running = asyncio.Event(), asyncio.Event()
    running.set()
    on_signal = command.interrupter(stop, running)

    on_signal()
    now[0] += 0.001
    on_signal()
    assert stop.is_set() and quits == []
    now[0] += SAME_SIGNAL_S
    on_signal()
    assert quits == [now[0]]


def test_a_signal_during_the_setup_stops_it_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # it said 'interrupt again to quit now' before 'interrupted during the setup'
    lines: list[str] = []
    monkeypatch.setattr(command, "say", lines.append)
    stop, running = asyncio.Event(), asyncio.Event()

    command.interrupter(stop, running)()

    assert stop.is_set() and lines == []


def test_a_signal_once_the_run_is_over_leaves_the_status_the_report_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a Ctrl-C after the summary said 'exit status 0' ended the process with 130
    quits: list[str] = []
    monkeypatch.setattr(command, "quit_now", lambda *_: quits.append("quit"))
    monkeypatch.setattr(command, "install_uvloop", lambda: None)

    async def measured(options: BenchOptions) -> str:
        return "outcome"

    def reported(*args: Any) -> int:
        os.kill(os.getpid(), signal.SIGINT)  # while the reports are written: its handler
        return 0  # runs before the next bytecode, in this very thread

    monkeypatch.setattr(command, "measure", measured)
    monkeypatch.setattr(command, "report", reported)
    options = BenchOptions(duration_s=1.0, concurrency=1, mix={"pay": 1}, seed=1, url="http://x")
    handlers = {signum: signal.getsignal(signum) for signum in command.STOPPING_SIGNALS}
    try:
        status = command.execute(options, None, None)
        os.kill(os.getpid(), signal.SIGINT)  # on the way out of the process
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    assert status == 0 and quits == []


def test_an_embedded_shop_whose_database_cannot_open_is_a_one_line_setup_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the store's refusal (a full disk as the database was made, say) was a traceback and
    # status 1, which says the audit failed
    monkeypatch.setattr(command, "install_uvloop", lambda: None)
    monkeypatch.setattr(command, "freeze_survivors", lambda: None)
    monkeypatch.setattr(command, "hand_gil_over_sooner", lambda: None)

    async def refused(options: BenchOptions) -> str:
        raise StoreError("cannot open database run.db: database or disk is full")

    monkeypatch.setattr(command, "measure", refused)
    options = BenchOptions(duration_s=1.0, concurrency=1, mix={"pay": 1}, seed=1)

    status = command.execute(options, None, None)

    (line,) = capsys.readouterr().err.splitlines()
    assert status == EXIT_SETUP
    assert line.endswith("setup of the embedded shop failed: cannot open database run.db: "
                         "database or disk is full")


class CancelingShop:
    """Places orders due in 5 s, and cancels them."""

    def __init__(self) -> None:
        self.canceled = 0

    async def place_order(self, customer: Customer, items: Any, **kwargs: Any) -> Order:
        return Order("1", "awaiting_payment", 100, None, None, 0.0, 5.0)

    async def cancel_order(self, customer: Customer, order_id: str) -> Order:
        self.canceled += 1
        return Order(order_id, "canceled", 100, None, "user", 0.0, 5.0)


@pytest.mark.parametrize("journey", ["place", "late_callback"])
async def test_a_shopper_holding_its_share_of_unpaid_orders_cancels_instead_of_holding_more(
    journey: str,
) -> None:
    # every order held for its deadline counts against the shop's unpaid cap (10 a user)
    shop = CancelingShop()
    recorder = Recorder(60.0)
    journeys = Journeys(shop, recorder, Catalog(["g1"], "g0"), "run", 60.0)  # type: ignore[arg-type]
    shopper = Shopper(Customer("1", "token"))
    shopper.holding = [time.time() + 5.0] * HOLD_LIMIT

    await getattr(journeys, journey)(shopper, random.Random(1))

    assert dict(recorder.skipped) == {journey: 1}
    assert shop.canceled == 1 and len(shopper.holding) == HOLD_LIMIT


class DeadlineFirstShop:
    """Places orders with a coupon whose payments land after their deadline canceled them."""

    def __init__(self) -> None:
        self.polls = 0

    async def place_order(self, customer: Customer, items: Any, **kwargs: Any) -> Order:
        return Order("1", "awaiting_payment", 100, kwargs["coupon_id"], None, 0.0, 1.0)

    async def start_payment(self, customer: Customer, order_id: str) -> Payment:
        return Payment("7", order_id, 100)

    async def complete_payment(self, payment_id: str, result: str) -> None:
        return None

    async def get_order(self, customer: Customer, order_id: str) -> Order:
        self.polls += 1
        return Order(order_id, "canceled", 100, "c1", "timeout", 0.0, 1.0)


async def test_a_payment_its_deadline_beat_ends_the_wait_as_an_expected_refusal() -> None:
    # the journey polled for "paid" 15 s, then counted an error, and the run overran by it
    shop = DeadlineFirstShop()
    recorder = Recorder(60.0)
    journeys = Journeys(shop, recorder, Catalog(["g1"], "g0"), "run", 60.0)  # type: ignore[arg-type]
    shopper = Shopper(Customer("1", "token"), coupons=["c1"])

    with pytest.raises(Refused):
        await journeys.pay(shopper, random.Random(3))

    assert shop.polls == 1
    assert recorder.operations["await_paid"].refusals == {"invalid_state": 1}
    assert recorder.errors == 0
    assert shopper.coupons == ["c1"]  # the canceled order's coupon is the shopper's again


# -- which refusals are expected --------------------------------------------------------------


class RefusingShop:
    """A broken shop: refuses every placement with ``placement``, every start of a payment
    with ``payment``, every ship with ``ship`` (None: does it); orders are due in 5 s."""

    def __init__(
        self, placement: str | None = None, payment: str | None = None, ship: str | None = None
    ) -> None:
        self.placement, self.payment, self.shipping = placement, payment, ship
        self.placed: list[list[tuple[str, int]]] = []
        self.coupons: list[str | None] = []
        self.wallet: list[int] = []
        self.canceling: str | None = None
        """The refusal of every cancel (None: cancels)."""

    async def place_order(self, customer: Customer, items: Any, **kwargs: Any) -> Order:
        self.placed.append(items)
        self.coupons.append(kwargs["coupon_id"])
        self.wallet.append(kwargs["use_balance"])
        if self.placement is not None:
            raise Refused(self.placement)
        return Order("1", "awaiting_payment", 100, kwargs["coupon_id"], None, 0.0, 5.0)

    async def start_payment(self, customer: Customer, order_id: str) -> Payment:
        if self.payment is not None:
            raise Refused(self.payment)
        return Payment("7", order_id, 100)

    async def complete_payment(self, payment_id: str, result: str) -> None:
        return None

    async def get_order(self, customer: Customer, order_id: str) -> Order:
        return Order(order_id, "paid", 100, None, None, 0.0, 5.0)

    async def ship(self, order_id: str) -> None:
        if self.shipping is not None:
            raise Refused(self.shipping)

    async def deliver(self, order_id: str) -> None:
        return None

    async def cancel_order(self, customer: Customer, order_id: str) -> Order:
        if self.canceling is not None:
            raise Refused(self.canceling)
        coupon = self.coupons[-1] if self.coupons else None  # the last order's, given back
        return Order(order_id, "canceled", 100, coupon, "user", 0.0, 5.0)


def journeys_of(shop: Any) -> tuple[Journeys, Recorder]:
    recorder = Recorder(60.0)
    return Journeys(shop, recorder, Catalog(["g1", "g2"], "g0"), "run", 60.0), recorder


async def refused_60_times(shop: RefusingShop, journey: str) -> tuple[Recorder, int]:
    """``journey`` run 60 times against ``shop``, each refused: the recorder, and how many of
    its placements asked for the scarce goods."""
    journeys, recorder = journeys_of(shop)
    pick = random.Random(5)
    for _ in range(60):
        with pytest.raises(Refused):
            await journeys.by_name[journey](Shopper(Customer("1", "token")), pick)
    scarce = sum(1 for items in shop.placed if any(goods == "g0" for goods, _ in items))
    assert 0 < scarce < 60
    return recorder, scarce


async def test_a_stock_out_is_expected_only_of_a_placement_of_the_scarce_goods() -> None:
    # a shop that says every goods is out of stock (each has 10**9) did pass, 0 errors
    recorder, scarce = await refused_60_times(
        RefusingShop(placement="insufficient_stock"), "cancel_unpaid"
    )

    assert recorder.operations["place"].refusals == {"insufficient_stock": scarce}
    assert recorder.operations["place"].errors == {"insufficient_stock": 60 - scarce}


class FailingAsyncShop(RefusingShop):
    """Answers every placement 202 pending, then fails it ``code`` (canceled
    placement_failed, its history naming the code)."""

    def __init__(self, code: str) -> None:
        super().__init__()
        self.code = code

    async def place_order(self, customer: Customer, items: Any, **kwargs: Any) -> Order:
        self.placed.append(items)
        return Order("1", "pending", 100, kwargs["coupon_id"], None, None, None)

    async def get_order(self, customer: Customer, order_id: str) -> Order:
        return Order(order_id, "canceled", 100, None, "placement_failed", None, None)

    async def placement_failure(self, customer: Customer, order_id: str) -> str:
        return self.code


async def test_an_async_placement_that_failed_after_its_202_is_a_refusal_of_its_wait() -> None:
    # counted placed: a shop that failed every async placement passed, 0 errors, no refusal
    recorder, scarce = await refused_60_times(FailingAsyncShop("insufficient_stock"), "place_async")

    assert recorder.operations["place_async"].count == 60  # each answered 202
    assert recorder.operations["await_placed"].refusals == {"insufficient_stock": scarce}
    assert recorder.operations["await_placed"].errors == {"insufficient_stock": 60 - scarce}


async def test_a_coupon_refused_is_expected_only_when_a_cancel_gave_it_back() -> None:
    # a shop refusing every coupon coupon_unavailable did pass: any coupon's use was expected
    shop = RefusingShop()
    journeys, recorder = journeys_of(shop)
    pick = random.Random(5)
    shopper = Shopper(Customer("1", "token"), coupons=["c1"])
    for _ in range(200):  # a coupon comes round in a few placements (COUPON_SHARE)
        if shop.coupons[-1:] == ["c1"]:  # used, then given back by the cancel
            break
        await journeys.cancel_unpaid(shopper, pick)
    assert shopper.coupons == ["c1"]
    accepted = len(shop.coupons)

    shop.placement = "coupon_unavailable"
    first_use = Shopper(Customer("2", "token"), coupons=["c2"])
    for coupon, of in (("c1", shopper), ("c2", first_use)):
        for _ in range(200):
            with pytest.raises(Refused):
                await journeys.cancel_unpaid(of, pick)
            if shop.coupons[-1] == coupon:
                break
        assert shop.coupons[-1] == coupon

    place = recorder.operations["place"]
    assert place.refusals == {"coupon_unavailable": 1}  # c1's reuse only
    assert place.errors == {"coupon_unavailable": len(shop.coupons) - accepted - 1}
    assert first_use.coupons == ["c2"] and "c2" not in first_use.given_back


async def test_a_wallet_refused_is_expected_only_once_the_shopper_may_have_spent_it() -> None:
    # a shop refusing every wallet payment insufficient_balance did pass (each shopper opens
    # with 100,000 and a wallet placement asks 100-500)
    shop = RefusingShop(placement="insufficient_balance")
    journeys, recorder = journeys_of(shop)
    pick = random.Random(5)
    rich, spent = Shopper(Customer("1", "token")), Shopper(Customer("2", "token"))
    spent.wallet_floor = 99  # its placements so far asked all but 99 of its opening balance

    for shopper in (rich, spent):
        for _ in range(30):
            with pytest.raises(Refused):
                await journeys.cancel_unpaid(shopper, pick)

    asked = [amount for amount in shop.wallet[30:] if amount > 0]
    assert 0 < len(asked) < 30 and any(amount > 0 for amount in shop.wallet[:30])
    assert recorder.operations["place"].refusals == {"insufficient_balance": len(asked)}
    assert recorder.operations["place"].errors == {"insufficient_balance": 60 - len(asked)}
    assert rich.wallet_floor == OPENING_BALANCE - sum(shop.wallet[:30])


async def test_unpaid_orders_capped_are_expected_only_of_a_shopper_holding_some() -> None:
    shop = RefusingShop(placement="too_many_unpaid_orders")
    journeys, recorder = journeys_of(shop)
    idle, holding = Shopper(Customer("1", "t")), Shopper(Customer("2", "t"))
    holding.holding.append(time.time() + 60)

    for shopper in (idle, holding):
        with pytest.raises(Refused):
            await journeys.cancel_unpaid(shopper, random.Random(1))

    assert recorder.operations["place"].errors == {"too_many_unpaid_orders": 1}
    assert recorder.operations["place"].refusals == {"too_many_unpaid_orders": 1}


async def test_a_refused_ship_is_expected_only_in_the_race_with_a_cancel() -> None:
    # a shop refusing every ship invalid_state did pass
    journeys, recorder = journeys_of(RefusingShop(ship="invalid_state"))
    shopper = Shopper(Customer("1", "token"))

    with pytest.raises(Refused):
        await journeys.ship(shopper, random.Random(1))
    await journeys.cancel_race(shopper, random.Random(1))

    assert recorder.operations["ship"].errors == {"invalid_state": 1}
    assert recorder.operations["ship"].refusals == {"invalid_state": 1}


async def test_a_race_of_ship_and_cancel_that_neither_or_both_win_is_an_error() -> None:
    # both halves refused were both expected: with --mix cancel_race=1 a shop that never
    # ships (nor cancels a paid order) passed; both done (a shipped order canceled) too
    shop = RefusingShop(ship="invalid_state")
    shop.canceling = "invalid_state"
    journeys, recorder = journeys_of(shop)
    shopper = Shopper(Customer("1", "token"))

    await journeys.cancel_race(shopper, random.Random(1))
    shop.shipping = shop.canceling = None
    await journeys.cancel_race(shopper, random.Random(1))

    ship, cancel = recorder.operations["ship"], recorder.operations["cancel_paid"]
    assert ship.errors == {"invalid_state": 1} and not ship.refusals and ship.count == 1
    assert cancel.errors == {"invalid_state": 1, "race_both_done": 1}
    assert not cancel.refusals and cancel.count == 0


async def test_a_payment_refused_before_the_deadline_could_come_is_an_error() -> None:
    journeys, recorder = journeys_of(RefusingShop(payment="invalid_state"))

    with pytest.raises(Refused):
        await journeys.pay(Shopper(Customer("1", "token")), random.Random(1))

    assert recorder.operations["start_payment"].errors == {"invalid_state": 1}
    assert not recorder.operations["start_payment"].refusals


class CanceledByOthersShop(DeadlineFirstShop):
    """Its orders are canceled by the admin while the payment is under way."""

    async def get_order(self, customer: Customer, order_id: str) -> Order:
        return Order(order_id, "canceled", 100, "c1", "admin", 0.0, 1.0)


async def test_a_wait_for_paid_ended_by_another_cancel_than_the_deadlines_is_an_error() -> None:
    recorder = Recorder(60.0)
    journeys = Journeys(CanceledByOthersShop(), recorder, Catalog(["g1"], "g0"), "run", 60.0)  # type: ignore[arg-type]

    with pytest.raises(Refused):
        await journeys.pay(Shopper(Customer("1", "token")), random.Random(3))

    assert recorder.operations["await_paid"].errors == {"order_canceled_by_admin": 1}


class CallbackAfterTheDeadlineShop(DeadlineFirstShop):
    """Acknowledges callbacks, for orders whose deadline canceled them first (or ``reason``)."""

    def __init__(self, reason: str = "timeout") -> None:
        super().__init__()
        self.reason = reason
        self.callbacks = 0

    def sign(self, raw: bytes, at: int) -> str:
        return f"t={at},v1=00"

    async def send_callback(self, raw: bytes, signature: str) -> None:
        self.callbacks += 1

    async def get_order(self, customer: Customer, order_id: str) -> Order:
        return Order(order_id, "canceled", 100, "c1", self.reason, 0.0, 1.0)


async def test_a_duplicate_callback_its_orders_deadline_beat_is_no_error() -> None:
    # a shop slower than the deadline under load failed the run for refunding as SPEC 3.4 says
    shop, recorder = CallbackAfterTheDeadlineShop(), Recorder(60.0)
    journeys = Journeys(shop, recorder, Catalog(["g1"], "g0"), "run", 60.0)  # type: ignore[arg-type]

    await journeys.duplicate_callback(Shopper(Customer("1", "token")), random.Random(3))

    assert shop.callbacks == 2 and recorder.errors == 0


async def test_a_duplicate_callback_whose_order_another_client_canceled_is_an_error() -> None:
    shop, recorder = CallbackAfterTheDeadlineShop("admin"), Recorder(60.0)
    journeys = Journeys(shop, recorder, Catalog(["g1"], "g0"), "run", 60.0)  # type: ignore[arg-type]

    await journeys.duplicate_callback(Shopper(Customer("1", "token")), random.Random(3))

    assert recorder.operations["callback_duplicate"].errors == {"order_canceled_by_admin": 1}


class SecretRefusedShop(CallbackAfterTheDeadlineShop):
    """Refuses every callback (signed with a secret not the server's), and counts cancels."""

    def __init__(self) -> None:
        super().__init__()
        self.canceled: list[str] = []

    async def send_callback(self, raw: bytes, signature: str) -> None:
        raise Refused("invalid_callback")

    async def cancel_order(self, customer: Customer, order_id: str) -> Order:
        self.canceled.append(order_id)
        return Order(order_id, "canceled", 100, None, "user", 0.0, 1.0)


async def test_a_duplicate_callback_refused_cancels_its_order_rather_than_leave_it_unpaid() -> None:
    # left unpaid, each counted against the shopper's unpaid cap: 2,700 placements refused
    # too_many_unpaid_orders in 4 s, and a warning blaming the server's cap
    shop, recorder = SecretRefusedShop(), Recorder(60.0)
    journeys = Journeys(shop, recorder, Catalog(["g1"], "g0"), "run", 60.0)  # type: ignore[arg-type]

    with pytest.raises(Refused):
        await journeys.duplicate_callback(Shopper(Customer("1", "token")), random.Random(3))

    assert shop.canceled == ["1"]
    assert recorder.operations["callback"].errors == {"invalid_callback": 1}
