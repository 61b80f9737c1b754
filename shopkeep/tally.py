"""A histogram's counts, kept without locks by whoever measures: bucket counts and a sum.

The store's writer (each commit), the timers (each fire) and the HTTP layer (each request)
record durations on the event loop's thread or the writer's, and the metrics read them at
scrape time (``shopkeep.http.latency`` turns one into Prometheus's histogram samples). A
``Tally`` depends on nothing, so the store and the runtime can keep one without importing
the HTTP layer or prometheus-client; and a record is one bisect and two additions, no lock.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence


class Tally:
    """How many observations fell at or below each bound (the last bound is +Inf), and
    their sum. ``counts[i]`` is the count of bucket ``i`` alone, not cumulative."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds: tuple[float, ...] = (*buckets, math.inf)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose bound is at least ``value``."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)
