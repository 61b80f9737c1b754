"""The figures of a run, for machines (JSON) and for people (a text table).

The JSON holds: what was run (``mode``, ``url``, ``mix``, ``concurrency``, ``seed``), per
operation ``count``, ``per_s``, ``p50_ms`` / ``p90_ms`` / ``p99_ms`` / ``max_ms``, ``errors``
and ``expected_refusals`` by code; the totals and ``error_rate`` (errors / attempts); the
journeys started and skipped; ``client_cpu`` (process CPU seconds / wall seconds of the run);
the shop's resident memory at the start and the end; ``series`` (per interval: throughput,
errors, latency percentiles, memory); the audit (``audit`` as its checks, ``audit_ok``, how
many audits it took to find the shop quiet); ``failures`` (why the exit status is not 0) and
``machine``. The same dict is the input of the HTML report.
"""

from __future__ import annotations

import time
from typing import Any

from shopkeep.bench.load.mix import EXPECTED
from shopkeep.bench.load.run import BenchOptions, Outcome


def figures(options: BenchOptions, outcome: Outcome) -> dict[str, Any]:
    """Everything the run measured, as JSON-ready data (see the module docstring)."""
    recorder = outcome.recorder
    elapsed = outcome.elapsed_s
    operations = recorder.operation_figures(elapsed)
    answered = recorder.count
    attempts = answered + recorder.errors
    error_rate = recorder.errors / attempts if attempts else 0.0
    failures: list[str] = []
    if not outcome.audit["ok"]:
        bad = [c["name"] for c in outcome.audit["checks"] if not c["ok"]]
        failures.append(f"the audit failed: {', '.join(bad) or 'no answer'}")
    if error_rate > options.max_error_rate:
        failures.append(
            f"error rate {error_rate:.4%} is above --max-error-rate {options.max_error_rate:.4%}"
        )
    if attempts == 0:
        failures.append("no operation was answered")
    return {
        "mode": "http" if options.url else "embedded",
        "url": options.url,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": options.duration_s,
        "elapsed_s": elapsed,
        "setup_s": outcome.setup_s,
        "concurrency": options.concurrency,
        "rate_per_s": options.rate_per_s,
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
        },
        "journeys": dict(recorder.journeys),
        "skipped_journeys": dict(recorder.skipped),
        "client_cpu": {
            "cpu_s": outcome.cpu_s,
            "wall_s": elapsed,
            "utilization": outcome.cpu_s / elapsed if elapsed else 0.0,
        },
        "resident_memory_bytes": {"start": outcome.memory_start, "end": outcome.memory_end},
        "series": recorder.series(elapsed),
        "audit_ok": bool(outcome.audit["ok"]),
        "audit": outcome.audit["checks"],
        "audit_quiet": outcome.quiet,
        "audit_attempts": outcome.audit_attempts,
        "audit_wait_s": outcome.audit_wait_s,
        "max_error_rate": options.max_error_rate,
        "failures": failures,
        "passed": not failures,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _codes(counts: dict[str, int]) -> str:
    return " ".join(f"{code}={n}" for code, n in sorted(counts.items())) or "-"


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.1f} MB"


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
    cpu = data["client_cpu"]
    memory = data["resident_memory_bytes"]
    audit = "ok" if data["audit_ok"] else "FAILED"
    quiet = "quiet" if data["audit_quiet"] else "NOT quiet"
    lines += [
        "",
        f"mode {data['mode']}  concurrency {data['concurrency']}  "
        f"elapsed {data['elapsed_s']:.1f}s  seed {data['seed']}",
        f"total {totals['count']:,} ops, {totals['per_s']:,.1f} ops/s; errors "
        f"{totals['errors']:,} ({totals['error_rate']:.3%}); expected refusals "
        f"{totals['expected_refusals']:,}",
        f"journeys {_codes(data['journeys'])}",
        f"skipped journeys {_codes(data['skipped_journeys'])}",
        f"client cpu {cpu['cpu_s']:.1f}s / {cpu['wall_s']:.1f}s wall = "
        f"{cpu['utilization']:.0%} of one core",
        f"shop resident memory {_mb(memory['start'])} at start, {_mb(memory['end'])} at end",
        f"audit {audit} ({quiet} after {data['audit_attempts']} audits, "
        f"{data['audit_wait_s']:.1f}s)",
    ]
    for check in data["audit"]:
        lines.append(
            f"  {'ok' if check['ok'] else 'FAILED':<6}  {check['name']:<8}  {check['detail']}"
        )
    lines.append(
        "result: " + ("pass" if data["passed"] else "FAIL: " + "; ".join(data["failures"]))
    )
    return "\n".join(lines)
