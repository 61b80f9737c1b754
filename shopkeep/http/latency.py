"""Histograms counted without locks (:class:`~shopkeep.tally.Tally`), exposed as
prometheus-client's own: the request latency by label set, and any one tally.

prometheus-client's ``Histogram`` may be shared between threads, so each observation takes a
lock for its bucket and another for its sum; with the lookup of the labelled child, that was
a measurable share of what the HTTP layer cost a request. Every request here is observed on
the event loop's thread, and scraped there too, so plain integers do. The exposition is the
one ``Histogram`` gives: per label set, the cumulative ``_bucket`` samples with ``le`` (``+Inf``
last), then ``_count``, ``_sum`` and ``_created`` (left out, as prometheus-client does, when
``PROMETHEUS_DISABLE_CREATED_SERIES`` is set).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from shopkeep.tally import Tally

_go_float: Callable[[float], str] = floatToGoString  # how prometheus-client writes ``le``
_le: Callable[[float], str] = functools.cache(_go_float)  # a few bounds, written every scrape
_CREATED = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in (
    "true",
    "1",
    "t",
)


class Series(Tally):
    """The counts of one label set, and when it was made."""

    __slots__ = ("created",)

    def __init__(self, buckets: Sequence[float]) -> None:
        super().__init__(buckets)
        self.created = time.time()


def add_samples(
    metric: Metric, name: str, labels: dict[str, str], tally: Tally, created: float | None
) -> None:
    """``tally``'s samples, as ``Histogram`` writes them, into ``metric``: the cumulative
    ``_bucket`` with ``le``, ``_count``, ``_sum``, and ``_created`` when given (and not
    disabled)."""
    total = 0
    for bound, count in zip(tally.bounds, tally.counts, strict=True):
        total += count
        metric.add_sample(f"{name}_bucket", {**labels, "le": _le(bound)}, total)
    metric.add_sample(f"{name}_count", labels, total)
    metric.add_sample(f"{name}_sum", labels, tally.sum)
    if _CREATED and created is not None:
        metric.add_sample(f"{name}_created", labels, created)


def histogram(name: str, documentation: str, tally: Tally) -> Metric:
    """A histogram family of one series (no labels) from ``tally``."""
    metric = Metric(name, documentation, "histogram")
    add_samples(metric, name, {}, tally, None)
    return metric


class LatencyHistogram:
    """A histogram family of ``name`` with ``labelnames``, for a registry (a collector)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._labelnames = tuple(labelnames)
        self._buckets = tuple(buckets)
        self._series: dict[tuple[str, ...], Series] = {}

    def labels(self, *values: str) -> Series:
        """The series of these label values (in ``labelnames`` order), made on first use."""
        found = self._series.get(values)
        if found is None:
            found = self._series[values] = Series(self._buckets)
        return found

    def collect(self) -> Iterator[Metric]:
        """The family, as of now."""
        metric = Metric(self.name, self.documentation, "histogram")
        for values, series in self._series.items():
            labels = dict(zip(self._labelnames, values, strict=True))
            add_samples(metric, self.name, labels, series, series.created)
        yield metric
