"""The figures of a run, for machines (JSON) and for people (a text table), and its exit status.

The JSON holds: what was run (``mode``, ``url``, ``mix``, ``concurrency``, ``seed``, ``rate_per_s``,
``warmup_s``, ``ramp_s``), when it started (``started_at``, UTC), whether it was
``interrupted``; per operation ``count``, ``per_s``, ``p50_ms`` / ``p90_ms`` / ``p99_ms`` /
``max_ms`` / ``mean_ms``, ``errors`` and
``expected_refusals`` by code, and ``curve`` (its latency distribution); the totals and
``error_rate`` (errors / attempts), with the latency figures and ``curve`` of every operation
together; ``dropped`` paced starts; the journeys started and skipped; ``warmup_operations``;
``client_cpu`` (process CPU seconds / wall seconds of the run); the shop's resident memory at
the start and the end; ``series`` (per window: throughput, errors, latency percentiles of every
operation and of each, memory); the audit (``audit`` as its checks, ``audit_ok``,
``audit_answered``, how many audits it took to find the shop quiet); ``thresholds`` (each
with its measured value and whether it passed); ``comparison`` (with ``--compare``);
``failures`` (why the exit status is not 0), ``warnings`` (a placement mostly refused: the
run may pass, its figures are of refusals), ``exit_status`` and ``machine``. The same dict is
the input of the HTML report.

The exit status (:func:`exit_status`), the most serious failure winning: 1 when the audit failed,
or the shop was not quiet within ``--settle`` (SPEC 6: once quiet, nothing is in flight; a shop
whose releases or refunds never drain has not shown that nothing was lost); else 4 when the error
rate is above ``--max-error-rate`` (or nothing was answered, or the audit itself went unanswered:
the shop stopped, say); else 3 when a threshold failed; else 6 when the run was interrupted
(Ctrl-C, SIGTERM); else 0. (2, a usage or set-up error, ends a
run before it has figures; 5, a report that could not be written, is the command's.)
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Final

from shopkeep.bench.load.compare import (
    STATISTICS,
    Baseline,
    change_table,
    changes,
    shown_change,
    unlike,
)
from shopkeep.bench.load.journeys import HOLD_LIMIT
from shopkeep.bench.load.mix import EXPECTED, PLACEMENT_REFUSALS
from shopkeep.bench.load.recorder import curve, latency_figures
from shopkeep.bench.load.run import BenchOptions, Outcome, checks_in_flight
from shopkeep.bench.load.thresholds import check, shown

EXIT_OK: Final = 0
EXIT_AUDIT: Final = 1
EXIT_SETUP: Final = 2
EXIT_THRESHOLD: Final = 3
EXIT_ERRORS: Final = 4
EXIT_INTERRUPTED_RUN: Final = 6
"""A run ended early by Ctrl-C or SIGTERM that nothing else failed: it is no pass (a job
killed by ``timeout`` proved a slice of the run, its one audit not waiting for quiet)."""


def figures(
    options: BenchOptions, outcome: Outcome, baseline: Baseline | None = None
) -> dict[str, Any]:
    """Everything the run measured, as JSON-ready data (see the module docstring)."""
    recorder = outcome.recorder
    elapsed = outcome.elapsed_s
    operations = recorder.operation_figures(elapsed)
    # the series covers the run's --duration: what the journeys in flight at its end answer
    # after it is in the totals, not in a window cut after the end (a sliver of a few ms
    # whose rates, over its width, spiked in the chart)
    series = recorder.series(min(elapsed, options.duration_s))
    answered = recorder.count
    attempts = answered + recorder.errors
    error_rate = recorder.errors / attempts if attempts else 0.0
    dropped = sum(recorder.dropped.values())
    data: dict[str, Any] = {
        "mode": "http" if options.url else "embedded",
        "url": options.url,
        # the run's start, not the report's: a report is written after --settle, or later
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(outcome.started_at)),
        "duration_s": options.duration_s,
        "elapsed_s": elapsed,
        "interrupted": outcome.interrupted,
        "setup_s": outcome.setup_s,
        "concurrency": options.concurrency,
        "rate_per_s": options.rate_per_s,
        "warmup_s": options.warmup_s,
        "ramp_s": options.ramp_s,
        "seed": options.seed,
        "mix": options.mix,
        "operations": operations,
        "expected_refusal_codes": {op: sorted(codes) for op, codes in EXPECTED.items()},
        "totals": {
            "count": answered,
            "per_s": answered / elapsed if elapsed else 0.0,
            "errors": recorder.errors,
            "expected_refusals": recorder.refusals,
            "error_rate": error_rate,
            **latency_figures(recorder.histogram, recorder.sum_s),
            "curve": curve(recorder.histogram),
        },
        "dropped": {"total": dropped, "planned": recorder.planned, **recorder.dropped},
        "journeys": dict(recorder.journeys),
        "skipped_journeys": dict(recorder.skipped),
        "warmup_operations": recorder.warmup_operations,
        "client_cpu": cpu_figures(outcome),
        "resident_memory_bytes": {"start": outcome.memory_start, "end": outcome.memory_end},
        "series": series,
        "audit_ok": bool(outcome.audit["ok"]),
        "audit_answered": bool(outcome.audit.get("answered", True)),
        "audit": outcome.audit["checks"],
        "audit_quiet": outcome.quiet,
        "audit_attempts": outcome.audit_attempts,
        "audit_wait_s": outcome.audit_wait_s,
        "max_error_rate": options.max_error_rate,
    }
    data["thresholds"] = check(list(options.thresholds), data, recorder.latency)
    if baseline is not None:
        data["comparison"] = {
            "path": baseline.path,
            "unlike": unlike(baseline.data, data),
            "changes": changes(baseline.data, data),
        }
    failures: list[str] = []
    if not data["audit_answered"]:
        said = "; ".join(c["detail"] for c in outcome.audit["checks"]) or "no answer"
        failures.append(f"the audit could not be asked ({said})")
    elif not outcome.audit["ok"]:
        bad = [c["name"] for c in outcome.audit["checks"] if not c["ok"]]
        failures.append(f"the audit failed: {', '.join(bad) or 'no answer'}")
    elif not settled(data):
        flying = checks_in_flight(outcome.audit)
        failures.append(
            f"the shop was not quiet after --settle {options.settle_s:g}s "
            f"({outcome.audit_attempts} audits): still in flight in {', '.join(flying) or '-'}"
        )
    if error_rate > options.max_error_rate:
        failures.append(
            f"error rate {error_rate:.4%} is above --max-error-rate {options.max_error_rate:.4%}"
        )
    if attempts == 0:
        failures.append("no operation was answered")
    failures += [
        f"threshold {t['threshold']} failed: measured {shown(t['measured'], t['unit'])}"
        for t in data["thresholds"]
        if not t["passed"]
    ]
    if outcome.interrupted:
        failures.append(
            f"the run was interrupted (Ctrl-C or SIGTERM) {elapsed:.1f}s into its "
            f"{options.warmup_s + options.duration_s:g}s, and its audit did not wait for quiet"
        )
    data["failures"] = failures
    data["warnings"] = mostly_refused(operations) + unsigned_callbacks(operations)
    if not outcome.interrupted:  # cut short, a run leaves journeys unrun for that alone
        data["warnings"] += late_callbacks_skipped(operations, data["skipped_journeys"])
    data["passed"] = not failures
    data["exit_status"] = exit_status(data)
    return data


MOSTLY: Final = 0.5
"""A placement operation one refusal code answered more than this share of (expected or not)
is said to measure refusals (a warning: the run may still pass)."""
REFUSAL_CAUSES: Final = {
    "too_many_unpaid_orders": f"the server's cap of unpaid orders (serve --max-unpaid-orders) "
    f"is below what this mix keeps unpaid ({HOLD_LIMIT} orders a shopper, and one in flight)",
}
"""What a placement refused mostly for a code says of the shop under test."""


def mostly_refused(operations: dict[str, Any]) -> list[str]:
    """A warning for each placement operation the shop mostly refused, expectedly: its
    figures are of the refusals, not of placements (a shop whose cap of unpaid orders is
    below the mix's holdings refuses nearly every one)."""
    warnings = []
    for name in ("place", "place_async"):
        op = operations.get(name)
        if not op:
            continue
        # a refusal the mix did not provoke is an error of the same code: counted too
        by_code = Counter(op["expected_refusals"]) + Counter(
            {code: n for code, n in op["errors"].items() if code in PLACEMENT_REFUSALS}
        )
        answers = op["count"] + sum(op["errors"].values())
        code, refused = max(by_code.items(), key=lambda kv: kv[1], default=("", 0))
        if answers and refused > MOSTLY * answers:
            cause = REFUSAL_CAUSES.get(code, "the shop refused it, often")
            warnings.append(
                f"{name}: {refused / answers:.0%} of its answers were {code} refusals, so "
                f"its figures are of refusals: {cause}"
            )
    return warnings


def late_callbacks_skipped(operations: dict[str, Any], skipped: dict[str, int]) -> list[str]:
    """A warning when late_callback journeys were skipped and none reached its order's
    deadline (``await_timeout``): each waits for it, and a deadline past the run's end (a
    server's default of 30 minutes, or a run shorter than its deadline) leaves none to run.
    A journey whose placement was refused is neither skipped nor run: not counted either way;
    and a run whose server stopped answering (``connection_error``) cut its journeys short
    whatever the deadline: the advice would blame the wrong setting."""
    count = skipped.get("late_callback", 0)
    if not count or operations.get("await_timeout", {}).get("count", 0):
        return []
    if any(op.get("errors", {}).get("connection_error") for op in operations.values()):
        return []
    return [
        f"late_callback: {count:,} skipped and none ran: each waits for its order's payment "
        "deadline, which must pass before the run ends: give the server (embedded, the "
        "bench) an --order-timeout well below the run's --duration (5s with 30s, as the "
        "recipes of load-testing.md do)"
    ]


def unsigned_callbacks(operations: dict[str, Any]) -> list[str]:
    """A warning when the server refused the bench's own signed callbacks: the bench's gateway
    secret is not the server's (an error of the run's, which says no more than the code)."""
    refused = sum(op["errors"].get("invalid_callback", 0) for op in operations.values())
    if not refused:
        return []
    return [f"{refused:,} callbacks the bench signed were refused invalid_callback: is its "
            "--gateway-secret (SHOPKEEP_GATEWAY_SECRET) the server's?"]


def cpu_figures(outcome: Outcome) -> dict[str, float]:
    """The harness's CPU time and the wall time it was spent over (the warm-up's included in
    both: over the measured time alone, a run with a warm-up showed 120% of one core)."""
    wall = outcome.elapsed_s if outcome.cpu_wall_s is None else outcome.cpu_wall_s
    return {"cpu_s": outcome.cpu_s, "wall_s": wall,
            "utilization": outcome.cpu_s / wall if wall else 0.0}


def settled(data: dict[str, Any]) -> bool:
    """Whether the shop was found quiet after the run, or was not waited for (an interrupted
    run's one audit does not wait)."""
    return bool(data.get("audit_quiet", True) or data.get("interrupted", False))


def exit_status(data: dict[str, Any]) -> int:
    """The exit status of a run's figures, the most serious failure winning (see the module
    docstring)."""
    answered = data.get("audit_answered", True)
    if answered and (not data["audit_ok"] or not settled(data)):
        return EXIT_AUDIT
    totals = data["totals"]
    errors = totals["error_rate"] > data["max_error_rate"] or not answered
    if errors or totals["count"] + totals["errors"] == 0:
        return EXIT_ERRORS
    if not all(threshold["passed"] for threshold in data["thresholds"]):
        return EXIT_THRESHOLD
    if data.get("interrupted", False):
        return EXIT_INTERRUPTED_RUN
    return EXIT_OK


def _share(part: int, whole: int) -> str:
    """``part`` as a share of ``whole`` (a rate threshold's measure), or nothing of none."""
    return f", {part / whole:.2%}" if whole else ""


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _codes(counts: dict[str, int]) -> str:
    return " ".join(f"{code}={n}" for code, n in sorted(counts.items())) or "-"


def mib(value: float | None) -> str:
    """Bytes as the reports show them: MiB (2**20 bytes), or n/a."""
    return "n/a" if value is None else f"{value / 2**20:,.1f} MiB"


def render(data: dict[str, Any]) -> str:
    """The text report: the table per operation, then the totals, CPU, memory and audit."""
    header = ("operation", "count", "per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms")
    rows = [header]
    for name, op in data["operations"].items():
        rows.append(
            (
                name,
                f"{op['count']:,}",
                f"{op['per_s']:,.1f}",
                _ms(op["p50_ms"]),
                _ms(op["p90_ms"]),
                _ms(op["p99_ms"]),
                _ms(op["max_ms"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    lines.append("")
    for name, op in data["operations"].items():
        if op["errors"] or op["expected_refusals"]:
            lines.append(
                f"{name}: errors {_codes(op['errors'])}; "
                f"expected refusals {_codes(op['expected_refusals'])}"
            )
    totals = data["totals"]
    dropped = data["dropped"]
    cpu = data["client_cpu"]
    memory = data["resident_memory_bytes"]
    audit = "ok" if data["audit_ok"] else "FAILED" if data["audit_answered"] else "NOT ANSWERED"
    # a failure the audits saw to the end of --settle is no longer a matter of what is in flight
    quiet = "quiet" if data["audit_quiet"] else (
        "still failing" if data["audit_answered"] and not data["audit_ok"]
        else "not waited for: interrupted" if data["interrupted"]
        else "quiet unknown" if not data["audit_answered"] else "NOT quiet"
    )
    pace = f"  rate {data['rate_per_s']:g}/s" if data["rate_per_s"] else ""
    lines += [
        "",
        f"mode {data['mode']}  concurrency {data['concurrency']}{pace}  "
        f"elapsed {data['elapsed_s']:.1f}s  seed {data['seed']}",
        f"warm-up {data['warmup_s']:g}s ({data['warmup_operations']:,} ops left out)  "
        f"ramp {data['ramp_s']:g}s",
        f"total {totals['count']:,} ops, {totals['per_s']:,.1f} ops/s; errors "
        f"{totals['errors']:,} ({totals['error_rate']:.3%} of "
        f"{totals['count'] + totals['errors']:,} attempts); expected refusals "
        f"{totals['expected_refusals']:,}",
        f"latency, every operation: p50 {_ms(totals['p50_ms'])}  p90 {_ms(totals['p90_ms'])}  "
        f"p99 {_ms(totals['p99_ms'])}  max {_ms(totals['max_ms'])} ms",
        f"dropped starts {dropped['total']:,} of {dropped['planned']:,} planned"
        f"{_share(dropped['total'], dropped['planned'])} "
        f"({_codes({k: v for k, v in dropped.items() if k not in ('total', 'planned')})})",
        f"journeys {_codes(data['journeys'])}",
        f"skipped journeys {_codes(data['skipped_journeys'])}",
        f"client cpu {cpu['cpu_s']:.1f}s / {cpu['wall_s']:.1f}s wall = "
        f"{cpu['utilization']:.0%} of one core",
        f"shop resident memory {mib(memory['start'])} at start, {mib(memory['end'])} at end",
        f"audit {audit} ({quiet} after {data['audit_attempts']} audits, "
        f"{data['audit_wait_s']:.1f}s)",
    ]
    for audit_check in data["audit"]:
        lines.append(
            f"  {'ok' if audit_check['ok'] else 'FAILED':<6}  {audit_check['name']:<8}  "
            f"{audit_check['detail']}"
        )
    lines += _thresholds(data) + _comparison(data)
    if data["interrupted"]:
        lines.append(
            "interrupted: the run was ended early (Ctrl-C or SIGTERM); its figures are partial"
        )
    lines += [f"warning: {warning}" for warning in data.get("warnings", ())]
    lines.append(
        f"result: {'pass' if data['passed'] else 'FAIL: ' + '; '.join(data['failures'])} "
        f"(exit status {data['exit_status']})"
    )
    return "\n".join(lines)


def _thresholds(data: dict[str, Any]) -> list[str]:
    if not data["thresholds"]:
        return []
    lines = ["thresholds:"]
    for t in data["thresholds"]:
        lines.append(
            f"  {'ok' if t['passed'] else 'FAILED':<6}  {t['threshold']:<24}  "
            f"measured {shown(t['measured'], t['unit'])}"
        )
    return lines


def _comparison(data: dict[str, Any]) -> list[str]:
    comparison = data.get("comparison")
    if comparison is None:
        return []
    rows: list[tuple[str, ...]] = [("operation", *STATISTICS)]
    for name, changed in change_table(comparison["changes"]):
        rows.append((name, *("" if cell is None else shown_change(cell) for cell in changed)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"compared with {comparison['path']} (change of each figure):"]
    if comparison.get("unlike"):
        lines.append("  runs unlike in " + "; ".join(comparison["unlike"]))
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  " + "  ".join(cells))
    return lines
