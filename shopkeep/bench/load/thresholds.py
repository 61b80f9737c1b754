"""Thresholds: the figures a run must meet for CI to pass it (``--threshold``).

A threshold is ``FIGURE COMPARATOR VALUE``, e.g. ``place.p99<50ms`` or ``errors<0.1%``:

- ``FIGURE`` is ``OPERATION.STATISTIC`` (an operation of the report: ``place``, ``await_paid``,
  ...) or a STATISTIC of the whole run (every operation together);
- a STATISTIC is a latency (``p50``, ``p99``, ``p99.9``, any ``pN``; ``mean``; ``max``), whose
  VALUE takes ``ms`` or ``s``; ``errors``, a rate with ``%`` (errors / attempts) or a count
  without; ``count`` or ``per_s`` (operations answered, in all and a second), plain numbers;
  and, for the whole run only, ``dropped``: paced starts not made on time, a rate with ``%``
  (of the starts planned) or a count;
- ``COMPARATOR`` is one of ``<``, ``<=``, ``>``, ``>=``.

A figure with nothing measured (a latency or an error rate of an operation that never ran)
fails its threshold: a gate that cannot be checked does not pass. Its count, throughput and
errors are measured: 0.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from shopkeep.bench.load.mix import OPERATIONS

COMPARATORS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
PLAIN: Final = frozenset({"count", "per_s"})
COUNTED: Final = frozenset({"errors", "dropped"})
"""Statistics that are a rate with ``%`` and a count without."""
RUN_ONLY: Final = frozenset({"dropped"})
GRAMMAR: Final = (
    "FIGURE<VALUE, FIGURE being OPERATION.STATISTIC or a STATISTIC of the whole run "
    "(pN, mean, max with ms or s; errors, dropped with % or as a count; count, per_s), "
    "comparator <, <=, > or >="
)
# ASCII digits only ([0-9]): \d also takes other scripts' digits ("١٢"), as float() reads them
_SHAPE = re.compile(
    r"^\s*(?P<figure>[a-z_][a-z0-9_.]*)\s*(?P<op><=|>=|<|>)\s*"
    r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>ms|s|%)?\s*$"
)
_PERCENTILE = re.compile(r"^p([0-9]+(?:\.[0-9]+)?)$")


class ThresholdError(ValueError):
    """A ``--threshold`` that does not parse: the operator's mistake, said in one line."""


@dataclass(frozen=True)
class Threshold:
    """One parsed threshold; ``value`` is in the figure's own unit (ms for a latency, a
    fraction for a rate, else a plain number)."""

    text: str
    operation: str | None
    """None: the whole run."""
    statistic: str
    comparator: str
    value: float
    is_rate: bool = False
    """``errors`` or ``dropped`` given with ``%``."""

    @property
    def unit(self) -> str:
        """How the figure and the value are shown: ``ms``, ``%`` or nothing."""
        if self.is_rate:
            return "%"
        return "" if self.statistic in PLAIN | COUNTED else "ms"


def is_latency(statistic: str) -> bool:
    """Whether ``statistic`` is a latency (a percentile, ``mean`` or ``max``)."""
    return statistic in ("mean", "max") or _PERCENTILE.match(statistic) is not None


def parse_threshold(text: str) -> Threshold:
    """The threshold of ``text``; :class:`ThresholdError` says what is wrong with it."""
    text = text.strip()
    shape = _SHAPE.match(text.lower())
    if shape is None:
        raise ThresholdError(f"{text!r} is not a threshold ({GRAMMAR})")
    figure, unit = shape["figure"], shape["unit"]
    operation: str | None = None
    statistic = figure
    if not (is_latency(figure) or figure in PLAIN | COUNTED):
        operation, _, statistic = figure.partition(".")
        if operation not in OPERATIONS:
            raise ThresholdError(
                f"{text!r}: {operation!r} is neither an operation nor a figure of the run "
                f"(operations: {', '.join(sorted(OPERATIONS))})"
            )
        if statistic in RUN_ONLY:
            raise ThresholdError(f"{text!r}: {statistic} is a figure of the whole run only")
    number = float(shape["number"])
    if is_latency(statistic):
        percentile = _PERCENTILE.match(statistic)
        if percentile is not None and not 0 < float(percentile[1]) <= 100:
            raise ThresholdError(f"{text!r}: a percentile is above 0 and at most 100")
        if unit not in ("ms", "s"):
            raise ThresholdError(f"{text!r}: a latency takes a unit, ms or s (e.g. 50ms)")
        return Threshold(
            text, operation, statistic, shape["op"], number * (1000 if unit == "s" else 1)
        )
    if statistic in COUNTED:
        if unit not in (None, "%"):
            raise ThresholdError(f"{text!r}: {statistic} is a rate (with %) or a count")
        rate = unit == "%"
        if rate and number > 100:  # a share of the attempts: errors<150% holds always
            raise ThresholdError(f"{text!r}: a rate is at most 100%")
        return Threshold(
            text, operation, statistic, shape["op"], number / 100 if rate else number, rate
        )
    if statistic in PLAIN:
        if unit is not None:
            raise ThresholdError(f"{text!r}: {statistic} is a plain number, without a unit")
        return Threshold(text, operation, statistic, shape["op"], number)
    raise ThresholdError(f"{text!r}: {statistic!r} is not a statistic ({GRAMMAR})")


LatencyOf = Callable[[str | None, str], float | None]
"""The latency statistic (ms) of an operation (None: every operation), None if none ran."""


def measure(threshold: Threshold, data: dict[str, Any], latency: LatencyOf) -> float | None:
    """The figure ``threshold`` is about, from the run's figures (``data``, see
    :func:`shopkeep.bench.load.report.figures`) and its histograms (``latency``)."""
    if is_latency(threshold.statistic):
        return latency(threshold.operation, threshold.statistic)
    if threshold.statistic == "dropped":
        dropped = data["dropped"]
        if not threshold.is_rate:
            return float(dropped["total"])
        return dropped["total"] / dropped["planned"] if dropped["planned"] else None
    if threshold.operation is None:
        totals = data["totals"]
        count, per_s, errors = totals["count"], totals["per_s"], totals["errors"]
    else:
        figures = data["operations"].get(threshold.operation)
        if figures is None:  # an operation of the mix that never ran: none, none failed
            count, per_s, errors = 0, 0.0, 0
        else:
            count, per_s = figures["count"], figures["per_s"]
            errors = sum(figures["errors"].values())
    if threshold.statistic == "count":
        return float(count)
    if threshold.statistic == "per_s":
        return float(per_s)
    if not threshold.is_rate:
        return float(errors)
    return errors / (count + errors) if count + errors else None


def check(
    thresholds: list[Threshold], data: dict[str, Any], latency: LatencyOf
) -> list[dict[str, Any]]:
    """Each threshold with its measured value (None: nothing measured) and whether it passed."""
    results = []
    for threshold in thresholds:
        measured = measure(threshold, data, latency)
        passed = measured is not None and COMPARATORS[threshold.comparator](
            measured, threshold.value
        )
        results.append(
            {
                "threshold": threshold.text,
                "measured": measured,
                "limit": threshold.value,
                "unit": threshold.unit,
                "passed": passed,
            }
        )
    return results


def shown(value: float | None, unit: str) -> str:
    """A measured value or a limit as the reports show it."""
    if value is None:
        return "nothing"
    if unit == "%":
        return f"{value:.3%}"
    if unit == "ms":
        return f"{value:,.2f} ms"
    return f"{value:,.4g}"
