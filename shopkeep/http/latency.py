"""The request-latency histogram, counted without locks, exposed as prometheus-client's own.

prometheus-client's ``Histogram`` may be shared between threads, so each observation takes a
lock for its bucket and another for its sum; with the lookup of the labelled child, that was
a measurable share of what the HTTP layer cost a request. Every request here is observed on
the event loop's thread, and scraped there too, so plain integers do. The exposition is the
one ``Histogram`` gives: per label set, the cumulative ``_bucket`` samples with ``le`` (``+Inf``
last), then ``_count``, ``_sum`` and ``_created`` (left out, as prometheus-client does, when
``PROMETHEUS_DISABLE_CREATED_SERIES`` is set).
"""

from __future__ import annotations

import math
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

_go_float: Callable[[float], str] = floatToGoString  # how prometheus-client writes ``le``
_CREATED = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in (
    "true",
    "1",
    "t",
)


class Series:
    """The counts of one label set."""

    __slots__ = ("_bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, seconds: float) -> None:
        """Count one duration in the first bucket whose bound is at least ``seconds``."""
        self.counts[bisect_left(self._bounds, seconds)] += 1
        self.sum += seconds


class LatencyHistogram:
    """A histogram family of ``name`` with ``labelnames``, for a registry (a collector)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._labelnames = tuple(labelnames)
        self._bounds = (*buckets, math.inf)
        self._les = tuple(_go_float(bound) for bound in self._bounds)
        self._series: dict[tuple[str, ...], Series] = {}

    def labels(self, *values: str) -> Series:
        """The series of these label values (in ``labelnames`` order), made on first use."""
        found = self._series.get(values)
        if found is None:
            found = self._series[values] = Series(self._bounds)
        return found

    def collect(self) -> Iterator[Metric]:
        """The family, as of now."""
        metric = Metric(self.name, self.documentation, "histogram")
        for values, series in self._series.items():
            labels = dict(zip(self._labelnames, values, strict=True))
            total = 0
            for le, count in zip(self._les, series.counts, strict=True):
                total += count
                metric.add_sample(f"{self.name}_bucket", {**labels, "le": le}, total)
            metric.add_sample(f"{self.name}_count", labels, total)
            metric.add_sample(f"{self.name}_sum", labels, series.sum)
            if _CREATED:
                metric.add_sample(f"{self.name}_created", labels, series.created)
        yield metric
