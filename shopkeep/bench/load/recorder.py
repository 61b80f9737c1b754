"""What a run measured: per operation, per time interval, and a running p99 for the live line.

Each operation keeps every latency (a float, 8 bytes: a 10-minute soak at a few thousand
operations a second is tens of megabytes, which is fine for a load generator and keeps the
percentiles exact, computed once at the end with :func:`shopkeep.bench.common.percentile`).
The live line's "p99 so far" cannot sort everything twice a second, so it reads a log-bucket
histogram (buckets 2% wide) of every latency instead: exact to within a bucket.

An expected refusal (:mod:`.mix`) is an answer: its latency counts. An error's does not (a
timeout's sixty seconds would say nothing of the server's speed); it is counted by code.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shopkeep.bench.common import percentile
from shopkeep.bench.load.mix import is_expected

BUCKET_RATIO = 1.02
SMALLEST_S = 1e-5


@dataclass
class Operation:
    """One operation's figures."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)


@dataclass
class Interval:
    """What happened during one interval of the run."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    resident_memory: float | None = None


class LogHistogram:
    """Counts of latencies in buckets 2% wide, from 10 microseconds up."""

    def __init__(self) -> None:
        self._counts: Counter[int] = Counter()
        self.total = 0

    def add(self, seconds: float) -> None:
        """Count one latency."""
        bucket = 0 if seconds <= SMALLEST_S else int(math.log(seconds / SMALLEST_S, BUCKET_RATIO))
        self._counts[bucket] += 1
        self.total += 1

    def quantile(self, fraction: float) -> float:
        """The upper edge of the bucket holding the ``fraction`` quantile (0 when empty)."""
        rank = max(1, math.ceil(fraction * self.total))
        seen = 0
        for bucket in sorted(self._counts):
            seen += self._counts[bucket]
            if seen >= rank:
                return float(SMALLEST_S * BUCKET_RATIO ** (bucket + 1))
        return 0.0


class Recorder:
    """Collects outcomes from every worker (one event loop: no locks needed)."""

    def __init__(self, interval_s: float, clock: Any = time.perf_counter) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self.started = clock()
        self.operations: dict[str, Operation] = {}
        self.intervals: list[Interval] = []
        self.histogram = LogHistogram()
        self.errors = 0
        self.refusals = 0
        self.journeys: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()

    def now(self) -> float:
        """Seconds since the run started."""
        return float(self._clock() - self.started)

    def _interval(self, at: float) -> Interval:
        index = max(0, int(at / self.interval_s))
        while len(self.intervals) <= index:
            self.intervals.append(Interval())
        return self.intervals[index]

    def answered(self, name: str, seconds: float, refusal: str | None = None) -> None:
        """An operation got its answer (``refusal``: an expected refusal's code)."""
        operation = self.operations.setdefault(name, Operation())
        operation.latencies.append(seconds)
        if refusal is not None:
            operation.refusals[refusal] += 1
            self.refusals += 1
        self.histogram.add(seconds)
        self._interval(self.now()).latencies.append(seconds)

    def failed(self, name: str, code: str) -> None:
        """An operation failed with ``code`` (not an expected refusal)."""
        self.operations.setdefault(name, Operation()).errors[code] += 1
        self.errors += 1
        self._interval(self.now()).errors += 1

    def outcome(self, name: str, seconds: float, code: str | None) -> None:
        """Record an answer or a refusal, deciding with :func:`~.mix.is_expected`."""
        if code is None:
            self.answered(name, seconds)
        elif is_expected(name, code):
            self.answered(name, seconds, code)
        else:
            self.failed(name, code)

    def memory(self, resident: float | None) -> None:
        """The shop's resident memory now (kept in the current interval)."""
        if resident is not None:
            self._interval(self.now()).resident_memory = resident

    @property
    def count(self) -> int:
        """Operations answered so far (expected refusals included)."""
        return self.histogram.total

    # -- the figures --------------------------------------------------------------------------

    def operation_figures(self, elapsed: float) -> dict[str, dict[str, Any]]:
        """Per operation: count, throughput, latency percentiles (ms), errors and refusals."""
        figures: dict[str, dict[str, Any]] = {}
        for name in sorted(self.operations):
            operation = self.operations[name]
            samples = operation.latencies
            figures[name] = {
                "count": len(samples),
                "per_s": len(samples) / elapsed if elapsed else 0.0,
                **latency_figures(samples),
                "errors": dict(operation.errors),
                "expected_refusals": dict(operation.refusals),
            }
        return figures

    def series(self, elapsed: float) -> list[dict[str, Any]]:
        """Per interval: its end (s), operations per second, errors per second, latency
        percentiles (ms) and the shop's resident memory (bytes) when it was sampled. The last
        interval is cut at ``elapsed`` and its rates are over what it lasted."""
        rows = []
        for index, interval in enumerate(self.intervals):
            begins = index * self.interval_s
            width = min(self.interval_s, max(elapsed - begins, 0.0)) or self.interval_s
            rows.append(
                {
                    "t": round(begins + width, 3),
                    "ops_per_s": len(interval.latencies) / width,
                    "errors_per_s": interval.errors / width,
                    **latency_figures(interval.latencies),
                    "resident_memory_bytes": interval.resident_memory,
                }
            )
        return rows


def latency_figures(samples: list[float]) -> dict[str, float | None]:
    """p50, p90, p99 and max of ``samples``, in milliseconds (None when there are none)."""
    if not samples:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": percentile(samples, 0.50) * 1000,
        "p90_ms": percentile(samples, 0.90) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
        "max_ms": max(samples) * 1000,
    }
