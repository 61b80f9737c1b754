"""Line charts as inline SVG, for the HTML report: no script, nothing fetched.

:func:`line_chart` draws named series of (x, y) points with axes, grid lines and a legend; a
None y leaves a gap. The x axis is time in seconds unless ``x_ticks`` names its own ticks (the
latency distribution's percentiles). Every piece of text is escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

MARGIN_LEFT = 64
MARGIN_RIGHT = 16
MARGIN_TOP = 28
MARGIN_BOTTOM = 36
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd")
TICKS = 4
NINES_CAP = 5.0
"""The latency distribution's x axis ends at 99.999% (five nines); the max is drawn there."""

Series = dict[str, list[tuple[float, float | None]]]


@dataclass(frozen=True)
class Size:
    """A chart's size in pixels."""

    width: int = 760
    height: int = 240


LARGE = Size()
SMALL = Size(370, 180)


def _nice_top(value: float) -> float:
    """A round number at or above ``value`` for the top of an axis."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10 if value >= 1 else 1.0
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def nines(percentile: float) -> float:
    """Where ``percentile`` (0-100) sits on the distribution's axis: 90% at 1, 99% at 2, ..."""
    if percentile >= 100:
        return NINES_CAP
    return min(NINES_CAP, -math.log10(1 - percentile / 100))


NINES_TICKS = [(0.0, "0%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (4.0, "99.99%"),
               (5.0, "max")]  # fmt: skip


def line_chart(
    title: str,
    unit: str,
    series: Series,
    *,
    size: Size = LARGE,
    x_ticks: list[tuple[float, str]] | None = None,
) -> str:
    """An SVG line chart of ``series`` (name -> [(x, value or None)]); see the module
    docstring."""
    xs = [t for points in series.values() for t, _ in points]
    ys = [v for points in series.values() for _, v in points if v is not None]
    left = min(xs, default=0.0) if x_ticks is None else x_ticks[0][0]
    left = min(left, 0.0)
    right = max(xs, default=1.0) if x_ticks is None else x_ticks[-1][0]
    right = right if right > left else left + 1.0
    top = _nice_top(max(ys, default=0.0))
    width, height = size.width, size.height
    plot_w = width - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = height - MARGIN_TOP - MARGIN_BOTTOM

    def x(t: float) -> float:
        return MARGIN_LEFT + plot_w * (t - left) / (right - left)

    def y(v: float) -> float:
        return MARGIN_TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<text x="{MARGIN_LEFT}" y="16" class="title">{escape(title)} ({escape(unit)})</text>',
    ]
    ticks = x_ticks or [(left + (right - left) * i / TICKS, "") for i in range(TICKS + 1)]
    for i in range(TICKS + 1):
        value = top * i / TICKS
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{width - MARGIN_RIGHT}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}" class="grid"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y(value) + 4:.1f}" class="tick" '
            f'text-anchor="end">{value:,.4g}</text>'
        )
    for t, label in ticks:
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - MARGIN_BOTTOM + 16}" class="tick" '
            f'text-anchor="middle">{escape(label or f"{t:,.3g}s")}</text>'
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
        lx = MARGIN_LEFT + 10 + index * 140
        parts.append(
            f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 14}" y="{height - 5}" class="tick">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
