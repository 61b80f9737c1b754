"""What the dashboard shows, gathered from the shop and the server's metrics.

The live part (:func:`live`) is the same fragment on the first load and on each htmx poll:
the per-minute charts, the orders awaiting payment with their deadlines, the refunds in flight,
the dead letters waiting, the last audit, and a few figures read from the same registry
``/metrics`` exposes, so the dashboard and Prometheus never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from prometheus_client.metrics_core import Metric

from shopkeep.actors.audit import AuditReport
from shopkeep.admin.app import Console
from shopkeep.http.metrics import NAMESPACE

AUDIT_FRESH_S: Final = 60.0
"""The dashboard runs the audit again when its last run is older than this (the audit reads
every table; the audit page runs it at each visit)."""
AWAITING_SHOWN: Final = 20
"""How many of the orders awaiting payment the dashboard lists."""


class LiveFigure(NamedTuple):
    """A figure of the dashboard's live part: metric ``name`` (without the ``shopkeep_``
    prefix), summed over the samples whose labels include ``only``, shown as ``label``."""

    name: str
    label: str
    only: tuple[tuple[str, str], ...] = ()


LIVE_FIGURES: Final = (
    LiveFigure("orders_placed", "orders placed"),
    LiveFigure("orders_canceled", "orders canceled"),
    LiveFigure("orders_refused", "orders refused"),
    LiveFigure("callbacks", "payment callbacks"),
    # a refund is counted once in each status it reaches: each begins refunding
    LiveFigure("refunds", "refunds begun", (("status", "refunding"),)),
    LiveFigure("refunds", "refunds paid back", (("status", "refunded"),)),
    LiveFigure("http_request_duration_seconds", "HTTP requests answered"),
    LiveFigure("live_actors", "live actors"),
    LiveFigure("messages_in_flight", "messages in flight"),
    LiveFigure("writer_backlog", "writer backlog"),
    LiveFigure("outbox_backlog", "outbox backlog"),
    LiveFigure("dead_letters", "dead letters since start"),
    LiveFigure("loop_stall_max_seconds", "longest loop stall (s)"),
)
"""The metrics the dashboard shows (without the ``shopkeep_`` prefix), and their labels."""
SUFFIXES: Final = ("", "_total", "_count")
"""The samples that carry a family's value: a gauge's, a counter's total, a histogram's count
(not ``_created``, ``_sum`` nor the buckets)."""


@dataclass(frozen=True)
class Bar:
    """One minute of a chart, placed in a 600 x 100 SVG box."""

    x: float
    height: float
    value: int
    minute: float


def bars(values: list[int], since: float) -> list[Bar]:
    """The bars of a per-minute chart: heights scaled to the largest value."""
    top = max(values, default=0) or 1
    width = 600 / max(len(values), 1)
    return [
        Bar(i * width, round(value / top * 96, 1), value, since + 60 * i)
        for i, value in enumerate(values)
    ]


def live_figures(families: list[Metric]) -> list[tuple[str, float]]:
    """The values of :data:`LIVE_FIGURES` found in ``families``, each with its label."""
    by_name = {family.name: family for family in families}
    shown = []
    for figure in LIVE_FIGURES:
        family = by_name.get(f"{NAMESPACE}_{figure.name}")
        if family is None:
            continue
        names = {family.name + suffix for suffix in SUFFIXES}
        total = sum(
            sample.value
            for sample in family.samples
            if sample.name in names
            and all(sample.labels.get(key) == value for key, value in figure.only)
        )
        shown.append((figure.label, total))
    return shown


async def audit_now(console: Console, *, fresh_s: float = 0.0) -> AuditReport:
    """The audit, run again unless the last run is younger than ``fresh_s``."""
    now = console.shop.system.clock.now()
    if console.audit is not None and now - console.audit[0] < fresh_s:
        return console.audit[1]
    report = await console.shop.audit()
    console.audit = (now, report)
    return report


async def live(console: Console) -> dict[str, Any]:
    """The live fragment's values."""
    shop = console.shop
    figures = await shop.minute_figures()
    # one more than shown: whether there are more than the list shows
    awaiting = await shop.due_soonest(AWAITING_SHOWN + 1)
    return {
        "now": shop.system.clock.now(),
        "orders_chart": bars(figures.orders, figures.since),
        "paid_chart": bars(figures.paid, figures.since),
        "orders_last_hour": sum(figures.orders),
        "paid_last_hour": sum(figures.paid),
        "awaiting": awaiting[:AWAITING_SHOWN],
        "awaiting_more": len(awaiting) > AWAITING_SHOWN,
        "refunds": await shop.refunds_in_flight(),
        "refunds_total": await shop.refunds_in_flight_count(),
        "dead_letters": await shop.dead_letter_count(),
        "audit": await audit_now(console, fresh_s=AUDIT_FRESH_S),
        "figures": live_figures(list(console.metrics.registry.collect())),
    }
