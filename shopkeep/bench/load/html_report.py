"""The HTML report: one self-contained page, charts as inline SVG, no script, no network.

Charts (one point per interval of the run): throughput and errors per second; latency p50 /
p90 / p99 (all operations together); and, when it was sampled, the shop's resident memory.
Then the tables of the text report: per operation, errors and expected refusals by code, the
run's totals, and the audit. Every piece of text is escaped (operation names, codes and audit
details come from the server).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

WIDTH = 760
HEIGHT = 240
MARGIN_LEFT = 64
MARGIN_RIGHT = 16
MARGIN_TOP = 28
MARGIN_BOTTOM = 36
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd")
TICKS = 4

Series = dict[str, list[tuple[float, float | None]]]


def _nice_top(value: float) -> float:
    """A round number at or above ``value`` for the top of an axis."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10 if value >= 1 else 1.0
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def line_chart(title: str, unit: str, series: Series) -> str:
    """An SVG line chart of ``series`` (name -> [(t seconds, value or None)]), with axes,
    grid lines and a legend; a gap where a value is None."""
    xs = [t for points in series.values() for t, _ in points]
    ys = [v for points in series.values() for _, v in points if v is not None]
    right = max(xs, default=1.0) or 1.0
    top = _nice_top(max(ys, default=0.0))
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def x(t: float) -> float:
        return MARGIN_LEFT + plot_w * t / right

    def y(v: float) -> float:
        return MARGIN_TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<text x="{MARGIN_LEFT}" y="16" class="title">{escape(title)} ({escape(unit)})</text>',
    ]
    for i in range(TICKS + 1):
        value = top * i / TICKS
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}" class="grid"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y(value) + 4:.1f}" class="tick" '
            f'text-anchor="end">{value:,.4g}</text>'
        )
        t = right * i / TICKS
        parts.append(
            f'<text x="{x(t):.1f}" y="{HEIGHT - MARGIN_BOTTOM + 16}" class="tick" '
            f'text-anchor="middle">{t:,.4g}s</text>'
        )
    for index, (name, points) in enumerate(series.items()):
        color = COLORS[index % len(COLORS)]
        segments: list[list[str]] = [[]]
        for t, v in points:
            if v is None:
                segments.append([])
            else:
                segments[-1].append(f"{x(t):.1f},{y(v):.1f}")
        for segment in segments:
            if len(segment) == 1:
                cx, cy = segment[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
            elif segment:
                parts.append(
                    f'<polyline points="{" ".join(segment)}" fill="none" stroke="{color}" '
                    'stroke-width="1.5"/>'
                )
        lx = MARGIN_LEFT + 10 + index * 120
        parts.append(
            f'<rect x="{lx}" y="{HEIGHT - 14}" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 14}" y="{HEIGHT - 5}" class="tick">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.1f} MB"


def _codes(counts: dict[str, int]) -> str:
    return ", ".join(f"{code}: {n}" for code, n in sorted(counts.items())) or "-"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.chart { display: block; margin: 1em 0; border: 1px solid #eee; }
.chart .grid { stroke: #e4e4e4; }
.chart .tick { font-size: 11px; fill: #555; }
.chart .title { font-size: 13px; font-weight: 600; }
.fail { color: #b00; font-weight: 600; } .pass { color: #080; font-weight: 600; }
"""


def render_html(data: dict[str, Any]) -> str:
    """The whole page for the figures of :func:`shopkeep.bench.load.report.figures`."""
    series = data["series"]
    charts = [
        line_chart(
            "Throughput",
            "per second",
            {
                "ops/s": [(row["t"], row["ops_per_s"]) for row in series],
                "errors/s": [(row["t"], row["errors_per_s"]) for row in series],
            },
        ),
        line_chart(
            "Latency, all operations",
            "ms",
            {
                name: [(row["t"], row[f"{name}_ms"]) for row in series]
                for name in ("p50", "p90", "p99")
            },
        ),
    ]
    memory = [(row["t"], row["resident_memory_bytes"]) for row in series]
    if any(value is not None for _, value in memory):
        charts.append(
            line_chart(
                "Shop resident memory",
                "MB",
                {"rss": [(t, None if v is None else v / 2**20) for t, v in memory]},
            )
        )
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
    totals, cpu, rss = data["totals"], data["client_cpu"], data["resident_memory_bytes"]
    summary = _table(
        ("figure", "value"),
        [
            ("mode", str(data["mode"]) + (f" {data['url']}" if data["url"] else "")),
            ("concurrency", str(data["concurrency"])),
            ("elapsed", f"{data['elapsed_s']:.1f} s (planned {data['duration_s']:g} s)"),
            ("operations", f"{totals['count']:,} ({totals['per_s']:,.1f}/s)"),
            ("errors", f"{totals['errors']:,} ({totals['error_rate']:.3%})"),
            ("expected refusals", f"{totals['expected_refusals']:,}"),
            ("client CPU", f"{cpu['cpu_s']:.1f} s of {cpu['wall_s']:.1f} s "
             f"({cpu['utilization']:.0%} of one core)"),
            ("shop resident memory", f"{_mb(rss['start'])} at start, {_mb(rss['end'])} at end"),
            ("journeys", _codes(data["journeys"])),
            ("skipped journeys", _codes(data["skipped_journeys"])),
            ("mix", json.dumps(data["mix"])),
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
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>shopkeep bench {escape(data['started_at'])}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>shopkeep bench</h1>{verdict}"
        f"<h2>Over time</h2>{''.join(charts)}"
        f"<h2>Operations</h2>{operations}"
        f"<h2>Run</h2>{summary}"
        f"<h2>Audit</h2>{audit}"
        "</body></html>\n"
    )
