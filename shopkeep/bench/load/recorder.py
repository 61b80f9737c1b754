"""What a run measured: per operation, per time window, in HDR histograms.

Latencies are counted in HDR histograms (the ``hdrhistogram`` package), in microseconds from 1
µs to an hour: each operation has one for the whole run (3 significant digits: a percentile is
exact to 0.1%) and one for the current window (2 digits), which is turned into the window's
figures (count, p50 / p90 / p99 / max) when time moves past it, then emptied. So memory does not
grow with the run's length, only the rows of the time series do. The live line's "p99 so far"
reads the histogram of every operation together.

An expected refusal (:mod:`.mix`; the journey that provoked it says so) is an answer: its
latency counts. An error's does not (a
timeout's sixty seconds would say nothing of the server's speed); it is counted by code.

The run's clock starts with the warm-up: an operation that *started* before ``warmup_s`` (and
an error that happened then) is counted apart, in ``warmup_operations``, and not in the figures;
the time series and the rates begin when the warm-up ends. The time series ends with the run's
``duration_s``: what is answered after it (the journeys in flight at the end finishing, the
late callbacks parked) is in the totals, not in a window of its own cut after the end (a
sliver of a few milliseconds, whose rates over its width spiked in the chart).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from hdrh.histogram import HdrHistogram

LOWEST_US: Final = 1
HIGHEST_US: Final = 3_600_000_000
RUN_DIGITS: Final = 3
WINDOW_DIGITS: Final = 2
PERCENTILES: Final = (50.0, 90.0, 99.0)
CURVE: Final = (0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.75, 99.9, 99.95, 99.99,
                99.995, 99.999, 100.0)  # fmt: skip
"""The percentiles of the latency distribution's curve (denser towards the tail)."""


def new_histogram(digits: int = RUN_DIGITS) -> HdrHistogram:
    """An empty histogram of latencies in microseconds."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, digits)


def record(histogram: HdrHistogram, seconds: float) -> None:
    """Count one latency (clamped into the histogram's range)."""
    histogram.record_value(min(HIGHEST_US, max(0, round(seconds * 1_000_000))))


def percentile_ms(histogram: HdrHistogram, percentile: float) -> float | None:
    """The ``percentile`` (0-100) of ``histogram`` in milliseconds; None when it is empty."""
    if histogram.get_total_count() == 0:
        return None
    if percentile >= 100:
        return float(histogram.get_max_value()) / 1000
    return float(histogram.get_value_at_percentile(percentile)) / 1000


def latency_figures(histogram: HdrHistogram, sum_s: float = 0.0) -> dict[str, float | None]:
    """p50, p90, p99, max of ``histogram`` and the mean of its ``sum_s``, in milliseconds
    (None when empty)."""
    count = histogram.get_total_count()
    if count == 0:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    values = histogram.get_percentile_to_value_dict(list(PERCENTILES))
    return {
        "p50_ms": values[50.0] / 1000,
        "p90_ms": values[90.0] / 1000,
        "p99_ms": values[99.0] / 1000,
        "max_ms": histogram.get_max_value() / 1000,
        "mean_ms": sum_s * 1000 / count,
    }


def curve(histogram: HdrHistogram) -> list[tuple[float, float]]:
    """The latency distribution: (percentile, ms) at each of :data:`CURVE`."""
    if histogram.get_total_count() == 0:
        return []
    values = histogram.get_percentile_to_value_dict([p for p in CURVE if 0 < p < 100])
    points = [(0.0, histogram.get_min_value() / 1000)]
    points += [(p, values[p] / 1000) for p in CURVE if 0 < p < 100 and p in values]
    return [*points, (100.0, histogram.get_max_value() / 1000)]


@dataclass
class Operation:
    """One operation's figures: its latencies over the run and in the current window."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    window: HdrHistogram = field(default_factory=lambda: new_histogram(WINDOW_DIGITS))
    errors: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    sum_s: float = 0.0
    """The latencies' sum, for their mean (the histogram's own walks every bucket)."""

    @property
    def count(self) -> int:
        """Answers counted (expected refusals included)."""
        return int(self.histogram.get_total_count())


@dataclass
class Window:
    """The current window of the time series, until time moves past it."""

    index: int = 0
    histogram: HdrHistogram = field(default_factory=lambda: new_histogram(WINDOW_DIGITS))
    errors: int = 0
    resident_memory: float | None = None


class Recorder:
    """Collects outcomes from every worker (one event loop: no locks needed)."""

    def __init__(
        self,
        interval_s: float,
        clock: Callable[[], float] = time.perf_counter,
        warmup_s: float = 0.0,
        duration_s: float | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.warmup_s = warmup_s
        self.duration_s = duration_s
        """The measured time the series covers (None: until :meth:`series` is asked)."""
        self._clock = clock
        self.started = clock()
        self.operations: dict[str, Operation] = {}
        self.histogram = new_histogram()
        self.sum_s = 0.0
        self.errors = 0
        self.refusals = 0
        self.journeys: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.planned = 0
        """Paced starts planned after the warm-up (made or dropped)."""
        self.warmup_operations = 0
        self.rows: list[dict[str, Any]] = []
        self._window = Window()

    def now(self) -> float:
        """Seconds since the run (its warm-up included) started."""
        return float(self._clock() - self.started)

    def measured(self) -> float:
        """Seconds since the warm-up ended (0 during it)."""
        return max(0.0, self.now() - self.warmup_s)

    def warming_up(self, at: float | None = None) -> bool:
        """Whether ``at`` (default: now), on the run's clock, falls in the warm-up."""
        return self.warmup_s > 0 and (self.now() if at is None else at) < self.warmup_s

    def _current(self) -> Window | None:
        """The window of now, once the ones time moved past are closed into rows; None after
        ``duration_s`` (the series has ended)."""
        measured = self.measured()
        if self.duration_s is not None and measured >= self.duration_s:
            return None
        index = int(measured / self.interval_s)
        while self._window.index < index:
            self._close(self.interval_s)
        return self._window

    def _close(self, width: float) -> None:
        window = self._window
        operations = {
            name: {
                "count": int(op.window.get_total_count()),
                "p50_ms": percentile_ms(op.window, 50.0),
                "p99_ms": percentile_ms(op.window, 99.0),
            }
            for name, op in sorted(self.operations.items())
            if op.window.get_total_count()
        }
        figures = latency_figures(window.histogram)
        del figures["mean_ms"]
        self.rows.append(
            {
                "t": round(window.index * self.interval_s + width, 3),
                "ops_per_s": window.histogram.get_total_count() / width,
                "errors_per_s": window.errors / width,
                **figures,
                "resident_memory_bytes": window.resident_memory,
                "operations": operations,
            }
        )
        for op in self.operations.values():
            if op.window.get_total_count():
                op.window.reset()
        window.histogram.reset()
        self._window = Window(window.index + 1, window.histogram)

    def started_journey(self, name: str) -> None:
        """A journey of ``name`` starts now (counted unless during the warm-up)."""
        if not self.warming_up():
            self.journeys[name] += 1

    def answered(self, name: str, seconds: float, refusal: str | None = None) -> None:
        """An operation got its answer (``refusal``: an expected refusal's code) ``seconds``
        after it started (or was meant to: a paced journey's first operation)."""
        if self.warming_up(self.now() - seconds):
            self.warmup_operations += 1
            return
        operation = self.operations.setdefault(name, Operation())
        window = self._current()
        record(operation.histogram, seconds)
        record(self.histogram, seconds)
        if window is not None:
            record(operation.window, seconds)
            record(window.histogram, seconds)
        operation.sum_s += seconds
        self.sum_s += seconds
        if refusal is not None:
            operation.refusals[refusal] += 1
            self.refusals += 1

    def failed(self, name: str, code: str) -> None:
        """An operation failed with ``code`` (not an expected refusal)."""
        if self.warming_up():
            self.warmup_operations += 1
            return
        self.operations.setdefault(name, Operation()).errors[code] += 1
        self.errors += 1
        window = self._current()
        if window is not None:
            window.errors += 1

    def outcome(self, name: str, seconds: float, code: str | None, expected: bool = False) -> None:
        """Record an answer, or a refusal: ``expected`` when the journey provoked it on
        purpose (:data:`~.mix.EXPECTED`), else an error."""
        if code is None:
            self.answered(name, seconds)
        elif expected:
            self.answered(name, seconds, code)
        else:
            self.failed(name, code)

    def drop(self, reason: str, due: float) -> None:
        """A paced start planned for ``due`` was not made (``late`` or ``busy``)."""
        if not self.warming_up(due):
            self.dropped[reason] += 1

    def plan(self, due: float) -> None:
        """A paced start is planned for ``due`` (counted unless during the warm-up)."""
        if not self.warming_up(due):
            self.planned += 1

    def memory(self, resident: float | None) -> None:
        """The shop's resident memory now (kept in the current window)."""
        window = None if resident is None or self.warming_up() else self._current()
        if window is not None:
            window.resident_memory = resident

    @property
    def count(self) -> int:
        """Operations answered so far (expected refusals included)."""
        return int(self.histogram.get_total_count())

    def latency(self, operation: str | None, statistic: str) -> float | None:
        """A latency statistic (``pN``, ``mean``, ``max``) in ms of ``operation`` (None: every
        operation), or None when it never ran."""
        if operation is None:
            histogram, sum_s = self.histogram, self.sum_s
        elif operation in self.operations:
            histogram, sum_s = (
                self.operations[operation].histogram,
                self.operations[operation].sum_s,
            )
        else:
            return None
        if histogram.get_total_count() == 0:
            return None
        if statistic == "mean":
            return float(sum_s * 1000 / histogram.get_total_count())
        if statistic == "max":
            return float(histogram.get_max_value()) / 1000
        return percentile_ms(histogram, float(statistic[1:]))

    # -- the figures --------------------------------------------------------------------------

    def operation_figures(self, elapsed: float) -> dict[str, dict[str, Any]]:
        """Per operation: count, throughput, latency percentiles (ms), errors and refusals,
        and its latency distribution (``curve``: [percentile, ms] points)."""
        figures: dict[str, dict[str, Any]] = {}
        for name in sorted(self.operations):
            operation = self.operations[name]
            figures[name] = {
                "count": operation.count,
                "per_s": operation.count / elapsed if elapsed else 0.0,
                **latency_figures(operation.histogram, operation.sum_s),
                "errors": dict(operation.errors),
                "expected_refusals": dict(operation.refusals),
                "curve": curve(operation.histogram),
            }
        return figures

    def series(self, elapsed: float) -> list[dict[str, Any]]:
        """Per window: its end (s after the warm-up), operations and errors per second,
        latency percentiles (ms) of every operation and of each (``operations``), and the
        shop's resident memory (bytes) when it was sampled. The last window is cut at
        ``elapsed`` (measured seconds: the run's ``--duration``, or less when it was stopped)
        and its rates are over what it lasted; a window after it (what the journeys in flight
        at the end answered after it) is left out."""
        last = int(elapsed / self.interval_s) if elapsed > 0 else 0
        if elapsed > 0 and elapsed % self.interval_s == 0:
            last -= 1  # a run that ends on a window's edge has no window after it
        while self._window.index < last:
            self._close(self.interval_s)
        window = self._window
        if window.index == last and (
            window.histogram.get_total_count() or window.errors or not self.rows
        ):  # an empty sliver after the last journey ended is no point of the series
            begins = last * self.interval_s
            self._close(min(self.interval_s, max(elapsed - begins, 0.0)) or self.interval_s)
        return self.rows
