"""The HTML report: one self-contained page, charts as inline SVG, no script, no network.

Charts (:mod:`.charts`; one point per window of the run): throughput and errors per second;
latency p50 / p90 / p99 of every operation together; when it was sampled, the shop's resident
memory; the latency distribution (the percentile curve of every operation together and of the
busiest operations, read from their HDR histograms); and per operation its p50 and p99 over
time. Then the verdict's details: the thresholds (each with its measured value), the
comparison with an earlier run (``--compare``), and the tables of the text report: per
operation, the run's figures, and the audit. Every piece of text is escaped (operation names,
codes and audit details come from the server).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import Any

from shopkeep.bench.load.charts import NINES_TICKS, SMALL, line_chart, nines
from shopkeep.bench.load.compare import STATISTICS, change_table, is_worse, shown_change
from shopkeep.bench.load.report import mib
from shopkeep.bench.load.thresholds import shown

DISTRIBUTION_LINES = 4
"""Operations drawn on the distribution chart beside every operation together: the busiest."""


def _table(
    header: tuple[str, ...], rows: Sequence[tuple[str, ...]], classes: list[str] | None = None
) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join(
        (f'<tr class="{classes[index]}">' if classes and classes[index] else "<tr>")
        + "".join(f"<td>{escape(cell)}</td>" for cell in row)
        + "</tr>"
        for index, row in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    return "-" if value is None else str(value)


def _codes(counts: dict[str, int]) -> str:
    return ", ".join(f"{code}: {n}" for code, n in sorted(counts.items())) or "-"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.chart { display: block; margin: 1em 0; border: 1px solid #eee; }
.small { display: flex; flex-wrap: wrap; gap: 0 1em; }
.chart .grid { stroke: #e4e4e4; }
.chart .tick { font-size: 11px; fill: #555; }
.chart .title { font-size: 13px; font-weight: 600; }
.fail { color: #b00; font-weight: 600; } .pass { color: #080; font-weight: 600; }
tr.worse td, td.worse { color: #b00; } tr.better td, td.better { color: #080; }
"""


def _over_time(series: list[dict[str, Any]]) -> list[str]:
    charts = [
        line_chart("Throughput", "per second", {
            "ops/s": [(row["t"], row["ops_per_s"]) for row in series],
            "errors/s": [(row["t"], row["errors_per_s"]) for row in series],
        }),
        line_chart("Latency over time, every operation", "ms", {
            name: [(row["t"], row[f"{name}_ms"]) for row in series]
            for name in ("p50", "p90", "p99")
        }),
    ]  # fmt: skip
    memory = [(row["t"], row["resident_memory_bytes"]) for row in series]
    if any(value is not None for _, value in memory):
        charts.append(
            line_chart(
                "Shop resident memory",
                "MiB",
                {"rss": [(t, None if v is None else v / 2**20) for t, v in memory]},
            )
        )
    return charts


def _distribution(data: dict[str, Any]) -> str:
    """The percentile curves: every operation together, and the busiest operations."""
    busiest = sorted(data["operations"].items(), key=lambda item: -item[1]["count"])
    curves = {"every operation": data["totals"]["curve"]}
    curves |= {name: op["curve"] for name, op in busiest[:DISTRIBUTION_LINES]}
    return line_chart(
        "Latency distribution (percentile, HDR histograms)",
        "ms",
        {name: [(nines(p), ms) for p, ms in points] for name, points in curves.items()},
        x_ticks=NINES_TICKS,
    )


def _per_operation(data: dict[str, Any]) -> str:
    """Per operation, its p50 and p99 in each window."""
    series = data["series"]
    charts = []
    for name in data["operations"]:
        points: dict[str, list[tuple[float, float | None]]] = {"p50": [], "p99": []}
        for row in series:
            figures = row["operations"].get(name)
            for statistic, line in points.items():
                line.append((row["t"], None if figures is None else figures[f"{statistic}_ms"]))
        charts.append(line_chart(f"{name} latency", "ms", points, size=SMALL))
    return f'<div class="small">{"".join(charts)}</div>'


def _thresholds(data: dict[str, Any]) -> str:
    if not data["thresholds"]:
        return "<p>No thresholds (--threshold).</p>"
    rows = [
        (t["threshold"], shown(t["measured"], t["unit"]), "pass" if t["passed"] else "FAIL")
        for t in data["thresholds"]
    ]
    classes = ["better" if t["passed"] else "worse" for t in data["thresholds"]]
    return _table(("threshold", "measured", "result"), rows, classes)


def _comparison(data: dict[str, Any]) -> str:
    """Per operation (and in total), each statistic before -> after and its change; red where
    it got worse, green where better."""
    comparison = data.get("comparison")
    if comparison is None:
        return ""
    head = "".join(f"<th>{escape(cell)}</th>" for cell in ("operation", *STATISTICS))
    body = []
    for name, cells in change_table(comparison["changes"]):
        tds = [f"<td>{escape(name)}</td>"]
        for cell in cells:
            if cell is None:
                tds.append("<td></td>")
                continue
            mood = "worse" if is_worse(cell) else "better" if cell["change"] else ""
            tds.append(
                f'<td class="{mood}">{escape(_value(cell["before"]))} → '
                f"{escape(_value(cell['after']))} ({escape(shown_change(cell))})</td>"
            )
        body.append("<tr>" + "".join(tds) + "</tr>")
    unlike = comparison.get("unlike")
    said = f"<p>Runs unlike in {escape('; '.join(unlike))}.</p>" if unlike else ""
    return (
        f"<h2>Compared with {escape(comparison['path'])}</h2>{said}"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _summary(data: dict[str, Any]) -> str:
    totals, cpu, rss = data["totals"], data["client_cpu"], data["resident_memory_bytes"]
    dropped = data["dropped"]
    reasons = {k: v for k, v in dropped.items() if k not in ("total", "planned")}
    return _table(
        ("figure", "value"),
        [
            ("mode", str(data["mode"]) + (f" {data['url']}" if data["url"] else "")),
            ("concurrency", str(data["concurrency"])),
            ("rate", f"{data['rate_per_s']:g} journeys/s" if data["rate_per_s"] else "unpaced"),
            ("elapsed", f"{data['elapsed_s']:.1f} s (planned {data['duration_s']:g} s)"
             + (", interrupted" if data["interrupted"] else "")),
            ("warm-up, ramp", f"{data['warmup_s']:g} s ({data['warmup_operations']:,} "
             f"operations left out), {data['ramp_s']:g} s"),
            ("operations", f"{totals['count']:,} ({totals['per_s']:,.1f}/s)"),
            ("errors", f"{totals['errors']:,} ({totals['error_rate']:.3%} of "
                       f"{totals['count'] + totals['errors']:,} attempts)"),
            ("expected refusals", f"{totals['expected_refusals']:,}"),
            ("dropped starts", f"{dropped['total']:,} of {dropped['planned']:,} planned "
             f"({_codes(reasons)})"),
            ("client CPU", f"{cpu['cpu_s']:.1f} s of {cpu['wall_s']:.1f} s "
             f"({cpu['utilization']:.0%} of one core)"),
            ("shop resident memory", f"{mib(rss['start'])} at start, {mib(rss['end'])} at end"),
            ("journeys", _codes(data["journeys"])),
            ("skipped journeys", _codes(data["skipped_journeys"])),
            ("mix", json.dumps(data["mix"])),
        ],
    )  # fmt: skip


def render_html(data: dict[str, Any]) -> str:
    """The whole page for the figures of :func:`shopkeep.bench.load.report.figures`."""
    operations = _table(
        ("operation", "count", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors",
         "expected refusals"),
        [
            (name, f"{op['count']:,}", _num(op["per_s"]), _num(op["p50_ms"]), _num(op["p90_ms"]),
             _num(op["p99_ms"]), _num(op["max_ms"]), _codes(op["errors"]),
             _codes(op["expected_refusals"]))
            for name, op in data["operations"].items()
        ],
    )  # fmt: skip
    audit = _table(
        ("check", "ok", "detail"),
        [(c["name"], "ok" if c["ok"] else "FAILED", c["detail"]) for c in data["audit"]],
    )
    verdict = (
        '<p class="pass">pass</p>'
        if data["passed"]
        else '<p class="fail">FAIL: ' + escape("; ".join(data["failures"])) + "</p>"
    )
    verdict += f"<p>exit status {data['exit_status']}</p>"
    verdict += "".join(
        f'<p class="fail">Warning: {escape(warning)}</p>' for warning in data.get("warnings", ())
    )
    if data["interrupted"]:
        verdict += '<p class="fail">Interrupted (Ctrl-C or SIGTERM): the figures are partial.</p>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>shopkeep bench {escape(data['started_at'])}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>shopkeep bench</h1>{verdict}"
        f"<h2>Thresholds</h2>{_thresholds(data)}"
        f"{_comparison(data)}"
        f"<h2>Over time</h2>{''.join(_over_time(data['series']))}"
        f"<h2>Latency distribution</h2>{_distribution(data)}"
        f"<h2>Latency over time, per operation</h2>{_per_operation(data)}"
        f"<h2>Operations</h2>{operations}"
        f"<h2>Run</h2>{_summary(data)}"
        f"<h2>Audit</h2>{audit}"
        "</body></html>\n"
    )
