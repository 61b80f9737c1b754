"""``--compare previous.json``: each figure of this run against the same figure of an earlier one.

The figures compared are the run's totals (operations, throughput, errors, error rate, dropped
starts) and, per operation both runs have, its count, throughput, latency p50 / p90 / p99 /
max and errors. A change is relative (``+12.5%``); None when the earlier figure was 0 or
missing. Whether a change is better or worse depends on the figure: higher throughput is
better, higher latency or more errors worse (``worse_when_higher``).
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from typing import Any, Final

OPERATION_FIGURES: Final = ("count", "per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms")
TOTAL_FIGURES: Final = ("count", "per_s", "errors", "error_rate", *OPERATION_FIGURES[2:])
BETTER_HIGHER: Final = frozenset({"count", "per_s"})
MAX_REPORT_BYTES: Final = 256 << 20
"""The largest file read as a report: a day's run with a window a second is a few MiB."""


class BaselineError(ValueError):
    """A ``--compare`` file that cannot be read as a bench report (said in one line)."""


@dataclass(frozen=True)
class Baseline:
    """An earlier run's figures (its ``--json`` file) and where they were read from."""

    path: str
    data: dict[str, Any]


def read_baseline(path: str) -> Baseline:
    """The bench report at ``path``; :class:`BaselineError` when it is not one."""
    try:
        found = os.stat(path)
    except OSError as error:
        raise BaselineError(f"cannot read {path}: {error.strerror}") from None
    # a regular file of a report's size: a pipe would hold the start, a device be read
    # without end
    if not stat.S_ISREG(found.st_mode):
        raise BaselineError(f"{path} is not a regular file")
    if found.st_size > MAX_REPORT_BYTES:
        raise BaselineError(f"{path} is larger than a report ({MAX_REPORT_BYTES >> 20} MiB)")
    try:
        with open(path, encoding="utf-8") as file:
            # strict JSON: Python's own reads Infinity and NaN, which made each change NaN
            # and the next report's JSON invalid
            data = json.load(file, parse_constant=_no_constant, parse_float=_finite)
    except OSError as error:
        raise BaselineError(f"cannot read {path}: {error.strerror}") from None
    except (ValueError, UnicodeDecodeError, RecursionError):  # nested past Python's stack
        raise BaselineError(f"{path} is not JSON") from None
    if not _is_report(data):
        raise BaselineError(f"{path} is not a report of shopkeep bench --json")
    return Baseline(path, data)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    """A JSON number as a float; ValueError for one past a float's range (``1e999``)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is past a float's range")
    return value


def _counts(errors: Any) -> bool:
    """Whether ``errors`` is what a report's errors are: counts by code (summed by
    :func:`changes`)."""
    return isinstance(errors, dict) and all(
        type(count) is int and count >= 0 for count in errors.values()
    )


def _figures(figures: dict[str, Any], names: tuple[str, ...]) -> bool:
    """Whether each of ``names`` in ``figures`` is a figure a report writes: a number not below
    0, or null (none measured); a count of -5 or a p99 of "x" compared as changes."""
    for name in names:
        value = figures.get(name)
        if value is not None and (type(value) not in (int, float) or value < 0):
            return False
    return True


def _is_report(data: Any) -> bool:
    """Whether ``data`` has the parts of a report :func:`changes` reads, of their types."""
    if not isinstance(data, dict):
        return False
    operations, totals = data.get("operations"), data.get("totals")
    if not isinstance(operations, dict) or not isinstance(totals, dict):
        return False
    if not _figures(totals, TOTAL_FIGURES):
        return False
    for figures in operations.values():
        if not isinstance(figures, dict) or not _counts(figures.get("errors", {})):
            return False
        if not _figures(figures, OPERATION_FIGURES):
            return False
    dropped = data.get("dropped")
    return dropped is None or (isinstance(dropped, dict) and "total" in dropped)


def _row(figure: str, before: Any, after: Any, statistic: str) -> dict[str, Any]:
    change = None
    if isinstance(before, int | float) and isinstance(after, int | float) and before:
        change = (after - before) / before
        if not math.isfinite(change):  # over a figure too small to divide by (5e-324): none
            change = None
    return {
        "figure": figure,
        "before": before,
        "after": after,
        "change": change,
        "worse_when_higher": statistic not in BETTER_HIGHER,
    }


SETTINGS: Final = (
    "mode", "duration_s", "concurrency", "rate_per_s", "warmup_s", "ramp_s", "mix", "interrupted",
)
"""The settings of a run that make its figures another run's, and whether it was cut short
(Ctrl-C: its figures are of part of its duration): compared across them, a change says more of
the settings than of the shop."""


def unlike(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Each of :data:`SETTINGS` the two runs differ in, as ``name before -> after`` (a report
    without one says nothing of it)."""
    return [
        f"{name} {_setting(before[name])} -> {_setting(after.get(name))}"
        for name in SETTINGS
        if name in before and before[name] != after.get(name)
    ]


def _setting(value: Any) -> str:
    """A setting as the command line writes it (a mix: ``place=5,pay=2``)."""
    if isinstance(value, dict):
        return ",".join(f"{name}={weight}" for name, weight in value.items())
    return str(value)


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Every compared figure: ``figure``, ``before``, ``after``, ``change`` (relative)."""
    rows = [
        _row(f"total.{name}", before["totals"].get(name), after["totals"].get(name), name)
        for name in TOTAL_FIGURES
    ]
    if "dropped" in before and "dropped" in after:
        rows.append(_row("total.dropped", before["dropped"]["total"],
                         after["dropped"]["total"], "dropped"))  # fmt: skip
    for operation in sorted(set(before["operations"]) & set(after["operations"])):
        old, new = before["operations"][operation], after["operations"][operation]
        rows += [
            _row(f"{operation}.{name}", old.get(name), new.get(name), name)
            for name in OPERATION_FIGURES
        ]
        errors = (sum(old.get("errors", {}).values()), sum(new.get("errors", {}).values()))
        rows.append(_row(f"{operation}.errors", *errors, "errors"))
    return rows


STATISTICS: Final = ("count", "per_s", "errors", "p50_ms", "p90_ms", "p99_ms", "max_ms")
"""The columns of :func:`change_table`."""


def change_table(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any] | None]]]:
    """The changes as a table for people: ``total``, then one row per operation, each with
    the row of :func:`changes` of every statistic in :data:`STATISTICS` (None where none)."""
    by_figure = {row["figure"]: row for row in rows}
    names = ["total", *sorted({row["figure"].partition(".")[0] for row in rows} - {"total"})]
    return [
        (name, [by_figure.get(f"{name}.{statistic}") for statistic in STATISTICS]) for name in names
    ]


def shown_change(row: dict[str, Any]) -> str:
    """The change as the reports show it: ``+12.5%``, or ``-`` when there is none."""
    return "-" if row["change"] is None else f"{row['change']:+.1%}"


def is_worse(row: dict[str, Any]) -> bool:
    """Whether the figure moved the wrong way."""
    change = row["change"]
    if change is None or change == 0:
        return False
    return bool(change > 0) == bool(row["worse_when_higher"])
