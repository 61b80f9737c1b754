"""The dashboard's live figures, read from the metrics' families."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from shopkeep.admin.dashboard import live_figures


def test_each_refund_counts_once_though_its_metric_counts_each_status_it_reaches() -> None:
    refunds = CounterMetricFamily("shopkeep_refunds", "refunds", labels=["kind", "status"])
    refunds.add_metric(["cancel", "refunding"], 3)
    refunds.add_metric(["cancel", "refunded"], 2)
    refunds.add_metric(["return", "refunding"], 1)
    refunds.add_metric(["return", "refunded"], 1)

    figures = dict(live_figures([refunds]))

    assert (figures["refunds begun"], figures["refunds paid back"]) == (4, 3)


def test_a_figure_sums_its_metric_over_its_labels_and_missing_ones_are_left_out() -> None:
    placed = CounterMetricFamily("shopkeep_orders_placed", "placed", labels=["mode"])
    placed.add_metric(["sync"], 5)
    placed.add_metric(["async"], 2)
    actors = GaugeMetricFamily("shopkeep_live_actors", "live", value=12)

    assert live_figures([actors, placed]) == [("orders placed", 7), ("live actors", 12)]
