"""Prometheus metrics: request latency by route, and the runtime's gauges read at scrape time.

:class:`Metrics` owns a :class:`~prometheus_client.CollectorRegistry` of its own (never the
process-wide default one), so two apps in one process (tests, the benchmark) do not mix their
figures or collide on names. It gives the app two things:

- :meth:`Metrics.series`, where the app's front door observes every answer's time, a histogram
  labelled by method, route and status (``latency.py``, counted without locks). The route is
  the resource's canonical path (``/v1/orders/{id}``), never the raw URL: one series per
  route, not one per order id. Requests that match no route share the label ``unmatched``,
  so a scan of random URLs cannot grow the series without bound.
- :func:`metrics_routes`: ``GET /metrics``, the text exposition format.

Everything else is read from the shop when Prometheus scrapes, by :class:`RuntimeCollector`
(the runtime and the store), :class:`BusinessCollector` (orders, callbacks, refunds, from the
counts the orders keep as they decide) and :class:`BuildInfoCollector` (and the event loop's
stalls from the server's loop monitor, by :class:`LoopCollector`, its connections by
:class:`ConnectionCollector`): nothing on the hot path counts on the metrics' behalf. Each is
a class of its own, registered on the one registry, so another module's collector (the
payment providers', say) joins them the same way. Process figures (resident memory, CPU
seconds, open files) come from prometheus-client's ``ProcessCollector``, under their standard
names (``process_resident_memory_bytes``), read from ``/proc``: on a system without it they are
absent.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from shopkeep import __version__
from shopkeep.http.codes import RATE_LIMITED
from shopkeep.http.latency import LatencyHistogram, Series, histogram
from shopkeep.http.rate_limit import RateLimited, RateLimiter
from shopkeep.runtime.loop_monitor import LoopMonitor

if TYPE_CHECKING:
    from shopkeep.http.connections import BoundedServer
    from shopkeep.shop import Shop

NAMESPACE: Final = "shopkeep"
LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Request latency buckets, seconds: from half a millisecond (a cached read) to ten seconds."""
RENDERS_PER_S: Final = 2.0
RENDER_BURST: Final = 5
"""How often the metrics are rendered anew at most: a burst of 5, then 2 a second. A render
costs the loop 2 - 30 ms (more once many routes have answered many statuses), and
``/metrics`` takes no token: a few clients scraping in a loop held every other request for
seconds. A scrape past the limit is answered the last rendering, at most half a second old
(Prometheus scrapes every few seconds; a test's scrapes before and after fit the burst)."""
UNMATCHED: Final = "unmatched"
KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD: Final = "other"
"""The method label of a method none of the known ones, and of a request that could not be
read (its method unknown): the label's values stay bounded."""


class RuntimeCollector:
    """Reads the shop's live figures whenever the registry is collected (at each scrape).

    Durations (commit latency, timer lateness) are histograms counted since start by the
    writer (per batch) and the timers (per fire): they can be summed across processes and
    their quantiles taken over any window by Prometheus (``histogram_quantile``). Counts since
    start (commits, dead letters) are counters.
    """

    def __init__(self, shop: Shop) -> None:
        self._shop = shop

    def collect(self) -> Iterator[Metric]:
        """The metrics, computed now."""
        system = self._shop.system
        writer = self._shop.runtime.store.writer
        yield _gauge("live_actors", "Actor activations in memory.", system.live_actors)
        yield _gauge(
            "messages_in_flight",
            "Messages queued in mailboxes or being handled.",
            system.in_flight,
        )
        depth_max, depth_sum = 0, 0
        for depth in system.mailbox_depths():
            depth_sum += depth
            depth_max = max(depth_max, depth)
        yield _gauge("mailbox_depth_max", "The longest mailbox, in messages.", depth_max)
        yield _gauge("mailbox_depth_sum", "Messages waiting in all mailboxes.", depth_sum)
        yield _gauge(
            "commit_batch_units",
            "Units of work in the last group commit.",
            writer.stats.last_batch_units,
        )
        yield _counter("commit_batches", "Group commits since start.", writer.stats.batches)
        yield _counter("commit_units", "Units of work committed since start.", writer.stats.units)
        yield _counter(
            "commit_failed_units",
            "Units of work not committed since start: refused by the store, for what they "
            "write or for its own sake (see commit_refused_units), or built on one refused.",
            writer.stats.failed_units,
        )
        yield _counter(
            "commit_refused_units",
            "Units of work the store refused for its own sake since start (a full disk, an "
            "I/O error).",
            writer.stats.refused_units,
        )
        yield histogram(
            f"{NAMESPACE}_commit_seconds",
            "How long group commits took, from the batch's hand-over to its outcome.",
            writer.stats.commit_s,
        )
        yield _gauge("writer_backlog", "Units and calls waiting for the writer.", writer.backlog)
        yield _gauge(
            "database_wal_bytes",
            "The size of the database's WAL file: past 64 MB a reader holds an old snapshot, "
            "and it grows until that reader ends (then it is cut back to 48 MiB).",
            self._shop.runtime.store.wal_bytes(),
        )
        yield active_queries(self._shop.active_queries)
        yield _gauge(
            "timers_pending_in_memory",
            "Durable timers armed in memory (the rest wait in the database).",
            system.timers.pending_in_memory,
        )
        yield histogram(
            f"{NAMESPACE}_timer_lateness_seconds",
            "How late durable timers fired, after their due time.",
            system.timers.lateness_s,
        )
        yield _gauge(
            "outbox_backlog",
            "Durable messages committed and not yet applied.",
            system.outbox.backlog,
        )
        yield _counter(
            "dead_letters",
            "Messages parked as dead letters since start.",
            system.stats.dead_letters,
        )
        yield _counter(
            "overloaded",
            "Messages refused since start because a mailbox or the system was full.",
            system.stats.overloaded,
        )
        yield _counter(
            "actor_restarts", "Actors restarted by supervision since start.", system.stats.restarts
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{NAMESPACE}_{name}", documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{NAMESPACE}_{name}", documentation, value=value)


class BusinessCollector:
    """What the shop did, read at each scrape from the counts kept where it happens (the
    orders' :class:`~shopkeep.actors.order_stats.OrderStats`, the shop's refused callbacks):
    orders placed, refused and canceled, callbacks by what they led to or why they were
    refused, refunds by kind and status."""

    def __init__(self, shop: Shop) -> None:
        self._shop = shop

    def collect(self) -> Iterator[Metric]:
        """The metrics, as of now."""
        stats = self._shop.order_stats
        yield _counter(
            "orders_placed", "Orders placed (confirmed by their placement).", stats.placed
        )
        yield _by(
            "orders_refused",
            "Placements refused, by the refusal's code (insufficient_stock, ...).",
            ["code"],
            {(code,): n for code, n in stats.refused.items()},
        )
        yield _by(
            "orders_canceled",
            "Orders canceled, by reason (placement_failed, user, timeout, admin).",
            ["reason"],
            {(reason,): n for reason, n in stats.canceled.items()},
        )
        yield _by(
            "callbacks",
            "Verified payment callbacks, by what they led to (applied, duplicate, failed, "
            "late_payment_refund, duplicate_payment_refund, ignored).",
            ["result"],
            {(result,): n for result, n in stats.callbacks.items()},
        )
        rejected = self._shop.rejected_callbacks + stats.callbacks_rejected
        yield _by(
            "callbacks_rejected",
            "Payment callbacks refused, by reason: signature_* (the sandbox's), bad_signature, "
            "stale, malformed, too_large and unreadable (unread) before any order saw them "
            "(never stored); wrong_app and "
            "wrong_amount, signed by the provider (logged); unknown_payment, amount and "
            "currency by their order (logged).",
            ["reason"],
            {(reason,): n for reason, n in rejected.items()},
        )
        yield _by(
            "refunds",
            "Refunds by kind (cancel, return, late_payment, duplicate_payment) and status, "
            "each counted once in each status it reaches (refunding, then refunded).",
            ["kind", "status"],
            {key: n for key, n in stats.refunds.items()},
        )


class BuildInfoCollector:
    """``shopkeep_build_info{version, python} 1``: which shopkeep on which Python answers."""

    def __init__(self) -> None:
        python = ".".join(str(part) for part in sys.version_info[:3])
        self._family = GaugeMetricFamily(
            f"{NAMESPACE}_build_info",
            "Always 1; the labels say the shopkeep version and the Python version.",
            labels=["version", "python"],
        )
        self._family.add_metric([__version__, python], 1)

    def collect(self) -> Iterator[Metric]:
        """The one sample."""
        yield self._family


def _by(
    name: str, documentation: str, labels: list[str], counts: dict[tuple[str, ...], int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{NAMESPACE}_{name}", documentation, labels=labels)
    for values, count in sorted(counts.items()):
        family.add_metric(list(values), count)
    return family


def _by_generation(
    kind: type[GaugeMetricFamily | CounterMetricFamily],
    name: str,
    documentation: str,
    values: Sequence[float],
) -> Metric:
    """A family of one sample per generation of the garbage collector (``values[n]`` is
    generation ``n``'s)."""
    family = kind(f"{NAMESPACE}_{name}", documentation, labels=["generation"])
    for generation, value in enumerate(values):
        family.add_metric([str(generation)], value)
    return family


class LoopCollector:
    """The event loop's stalls, as the server's :class:`LoopMonitor` saw them, read at each
    scrape: the longest since start (and the loop's CPU time over it), how many reached the
    monitor's threshold, the quantiles
    of the latest ticks' lateness, and the longest garbage collection of each generation."""

    def __init__(self, monitor: LoopMonitor) -> None:
        self._monitor = monitor

    def collect(self) -> Iterator[Metric]:
        """The metrics, as of now."""
        monitor = self._monitor
        yield _gauge(
            "loop_stall_max_seconds",
            "The longest the event loop was late for its monitor's tick, since start.",
            monitor.max_stall_s,
        )
        yield _gauge(
            "loop_stall_max_cpu_seconds",
            "The event loop thread's CPU time over the interval that ended in its longest "
            "stall: far below the stall, the loop was waiting (for the GIL or a core), not "
            "working.",
            monitor.max_stall_cpu_s,
        )
        yield _counter(
            "loop_stalls",
            f"Monitor ticks at least {monitor.threshold_s} s late, since start.",
            monitor.stalls,
        )
        yield _by_generation(
            GaugeMetricFamily,
            "gc_pause_max_seconds",
            "The longest collection of the garbage collector since start, by generation.",
            monitor.gc_pause_max_s,
        )
        yield _by_generation(
            CounterMetricFamily,
            "gc_seconds",
            "Time spent in the garbage collector's collections since start, by generation.",
            monitor.gc_seconds,
        )
        yield _by_generation(
            CounterMetricFamily,
            "gc_collections",
            "The garbage collector's collections since start, by generation.",
            monitor.gc_collections,
        )
        yield histogram(
            f"{NAMESPACE}_loop_lag_seconds",
            "How late the loop monitor's ticks ran, since start.",
            monitor.lag_s,
        )


class ConnectionCollector:
    """The server's connections (:mod:`shopkeep.http.connections`), read at each scrape: how
    many are open, how many were closed on accept (over the cap), for a request that did not
    arrive whole in time, or for one the parser refused."""

    def __init__(self, server: BoundedServer) -> None:
        self._server = server

    def collect(self) -> Iterator[Metric]:
        """The metrics, as of now."""
        server = self._server
        yield _gauge("connections_open", "HTTP connections open now.", server.open)
        yield _counter(
            "connections_refused",
            "Connections closed on accept because the cap of open ones was reached.",
            server.refused,
        )
        yield _counter(
            "connections_read_timeouts",
            "Connections closed because a request did not arrive whole within the read timeout.",
            server.read_timeouts,
        )
        yield _counter(
            "connections_write_timeouts",
            "Connections aborted because their client took no answer for the read timeout.",
            server.write_timeouts,
        )
        yield _counter(
            "connections_unparsable_requests",
            "Requests the HTTP parser refused, answered without a route (the connection closed).",
            server.unparsable,
        )


class RateLimitCollector:
    """The per-token rate limit's refusals and the tokens it tracks, read at each scrape;
    the refusals of the Idempotency-Keys a day (``keys``) counted with them."""

    def __init__(self, limiter: RateLimiter | None, keys: RateLimiter | None = None) -> None:
        self._limiters = [each for each in (limiter, keys) if each is not None]
        self._limiter = limiter

    def collect(self) -> Iterator[Metric]:
        """The metrics, as of now."""
        yield _counter(
            RATE_LIMITED,
            "Requests refused 429 rate_limited since start (one token over its limit of "
            "requests, or of Idempotency-Keys kept in a day).",
            sum(each.refused for each in self._limiters),
        )
        tracked = self._limiter.tracked if self._limiter is not None else 0
        yield _gauge("rate_limit_tokens", "Tokens whose rate the limit tracks now.", tracked)


class Metrics:
    """The metrics of one app: its registry, the request histogram and the shop's collector."""

    def __init__(
        self,
        shop: Shop,
        *,
        process: bool = True,
        loop_monitor: LoopMonitor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = CollectorRegistry()
        self._renders = RateLimiter(RENDERS_PER_S, RENDER_BURST, clock, tracked=1)
        self._rendered: bytes | None = None
        self.requests = LatencyHistogram(
            f"{NAMESPACE}_http_request_duration_seconds",
            "Time from a request's arrival to its answer, by method, route and status.",
            ("method", "route", "status"),
            LATENCY_BUCKETS,
        )
        self.registry.register(self.requests)
        self.registry.register(RuntimeCollector(shop))
        self.registry.register(BusinessCollector(shop))
        self.registry.register(BuildInfoCollector())
        if loop_monitor is not None:
            self.registry.register(LoopCollector(loop_monitor))
        if process:
            ProcessCollector(registry=self.registry)

    def watch(self, limiter: RateLimiter | None, keys: RateLimiter | None = None) -> None:
        """Show the rate limit's figures (``shopkeep_rate_limited_total``, the tokens tracked),
        the refusals of the Idempotency-Keys a day (``keys``) among them."""
        self.registry.register(RateLimitCollector(limiter, keys))

    def series(self, method: str, route: str, status: int) -> Series:
        """The latency series of answers of ``status`` to ``method`` on ``route`` (a route's
        pattern, or :data:`UNMATCHED`), for the front door to observe each answer's time in.

        The label values are bounded: the known methods and ``other``, the app's routes, the
        statuses HTTP has.
        """
        known = method if method in KNOWN_METHODS else OTHER_METHOD
        return self.requests.labels(known, route, str(status))

    def watch_connections(self, server: BoundedServer) -> None:
        """Show ``server``'s connections too (:class:`ConnectionCollector`), and time the
        requests no route took since they could not be read, as their access lines say them
        (route ``unparsable`` or ``unread``, method ``other``: it was not read)."""
        self.registry.register(ConnectionCollector(server))

        def unrouted(route: str, status: int, seconds: float) -> None:
            self.series(OTHER_METHOD, route, status).observe(seconds)

        server.unrouted = unrouted

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (version 0.0.4): rendered now, or, asked
        more often than :data:`RENDERS_PER_S` allows, the last rendering again."""
        try:
            self._renders.admit("render")
        except RateLimited:
            if self._rendered is not None:
                return self._rendered
        self._rendered = generate_latest(self.registry)
        return self._rendered


def metrics_routes(metrics: Metrics) -> Iterable[web.RouteDef]:
    """``GET /metrics``: the text exposition, without a token (SPEC 7)."""

    async def scrape(request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        )

    return [web.get("/metrics", scrape, name="metrics")]


def active_queries(counts: Mapping[str, int]) -> CounterMetricFamily:
    """SPEC 10's active queries of the provider (a payment open at its deadline, a refund
    still processing), by what (payment, refund) and by what they learned."""
    family = CounterMetricFamily(
        f"{NAMESPACE}_active_queries",
        "Payments and refunds asked of the provider (SPEC 10), by outcome.",
        labels=["what", "outcome"],
    )
    for key, count in sorted(counts.items()):
        what, _, outcome = key.partition(":")
        family.add_metric([what, outcome], count)
    return family
