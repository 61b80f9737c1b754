"""GET /metrics: request latency by canonical route, and the shop's gauges read at scrape time."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from shopkeep.credentials import Credentials
from shopkeep.http.metrics import RENDER_BURST, RENDERS_PER_S, Metrics
from shopkeep.http.server import ServeOptions, build_app, running
from shopkeep.runtime.loop_monitor import LoopMonitor
from shopkeep.shop import Shop
from shopkeep.shop_accounts import hash_token

CREDENTIALS = Credentials(hash_token("metrics-test-admin-token"), "metrics-test-gateway-secret")
Client = TestClient[web.Request, web.Application]
RUNTIME_METRICS = (
    "shopkeep_live_actors",
    "shopkeep_messages_in_flight",
    "shopkeep_mailbox_depth_max",
    "shopkeep_mailbox_depth_sum",
    "shopkeep_commit_batch_units",
    "shopkeep_commit_batches",
    "shopkeep_commit_failed_units",
    "shopkeep_commit_refused_units",
    "shopkeep_commit_seconds",
    "shopkeep_writer_backlog",
    "shopkeep_database_wal_bytes",
    "shopkeep_timers_pending_in_memory",
    "shopkeep_timer_lateness_seconds",
    "shopkeep_outbox_backlog",
    "shopkeep_dead_letters",
    "shopkeep_overloaded",
    "process_resident_memory_bytes",
    "shopkeep_http_request_duration_seconds",
)


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop.open(str(tmp_path / "shop.db"), gateway="sandbox") as shop:
        yield shop


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, shop: Shop) -> Client:
    app = build_app(shop, CREDENTIALS, Metrics(shop), None)
    return await aiohttp_client(app)


async def scrape(client: Client) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The exposition parsed: each sample name to its (labels, value) pairs."""
    response = await client.get("/metrics")
    assert response.status == 200
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def request_count(samples: dict[str, list[tuple[dict[str, str], float]]], **labels: str) -> float:
    """How many requests the histogram counted with exactly these labels."""
    for found, value in samples.get("shopkeep_http_request_duration_seconds_count", []):
        if found == labels:
            return value
    return 0


async def test_metrics_are_text_in_the_prometheus_format(client: Client) -> None:
    response = await client.get("/metrics")

    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


async def test_every_named_metric_is_exposed_after_a_request(client: Client, shop: Shop) -> None:
    created = await shop.create_user("ada")
    bearer = {"Authorization": f"Bearer {created.token}"}
    assert (await client.get("/v1/me", headers=bearer)).status == 200

    text = await (await client.get("/metrics")).text()

    names = {family.name for family in text_string_to_metric_families(text)}
    for name in RUNTIME_METRICS:
        assert name in names, name
    assert "# TYPE shopkeep_dead_letters_total counter" in text


async def test_the_route_label_is_the_canonical_path_not_the_url(
    client: Client, shop: Shop
) -> None:
    created = await shop.create_user("ada")
    goods = await shop.create_goods("tea", price=1_200, stock=4)
    bearer = {"Authorization": f"Bearer {created.token}"}

    found = await client.get(f"/v1/goods/{goods.id}", headers=bearer)
    missing = await client.get(f"/v1/goods/{goods.id + 1}", headers=bearer)

    assert (found.status, missing.status) == (200, 404)
    samples = await scrape(client)
    route = "/v1/goods/{goods_id}"
    assert request_count(samples, method="GET", route=route, status="200") == 1
    # an error answer is counted with the status the client got: the middleware is outermost
    assert request_count(samples, method="GET", route=route, status="404") == 1
    routes = {
        labels["route"] for labels, _ in samples["shopkeep_http_request_duration_seconds_count"]
    }
    assert not any(str(goods.id) in r for r in routes)


async def test_requests_that_match_no_route_share_one_label(client: Client) -> None:
    for n in range(3):
        response = await client.get(f"/no/such/{n}")
        assert response.status == 404

    samples = await scrape(client)

    assert request_count(samples, method="GET", route="unmatched", status="404") == 3


async def test_gauges_read_the_shop_at_scrape_time(client: Client, shop: Shop) -> None:
    before = await scrape(client)
    await shop.create_goods("tea", price=1_200, stock=4)

    after = await scrape(client)

    assert (
        after["shopkeep_commit_batches_total"][0][1] > before["shopkeep_commit_batches_total"][0][1]
    )
    assert after["shopkeep_live_actors"][0][1] >= 1
    assert after["process_resident_memory_bytes"][0][1] > 1_000_000
    wal = os.path.getsize(f"{shop.runtime.store.config.path}-wal")
    assert after["shopkeep_database_wal_bytes"][0][1] == wal > 0


async def test_each_app_counts_into_its_own_registry(
    aiohttp_client: AiohttpClient, client: Client, shop: Shop
) -> None:
    await client.get("/healthz")
    other = await aiohttp_client(build_app(shop, CREDENTIALS, Metrics(shop), None))

    samples = await scrape(other)

    assert request_count(samples, method="GET", route="/healthz", status="200") == 0


async def test_a_loop_held_by_a_blocking_call_shows_as_the_longest_stall(
    aiohttp_client: AiohttpClient, shop: Shop
) -> None:
    monitor = LoopMonitor(asyncio.get_running_loop(), interval_s=0.001)
    client = await aiohttp_client(
        build_app(shop, CREDENTIALS, Metrics(shop, loop_monitor=monitor), None)
    )
    # started once the app is built and serving: building it is a turn of the loop too, which
    # on a busy machine took longer than the blocking call below
    monitor.start()
    try:
        await asyncio.sleep(0.005)
        time.sleep(0.040)  # what the monitor is there to see: nothing else runs meanwhile
        await asyncio.sleep(0.005)
        samples = await scrape(client)
    finally:
        monitor.stop()

    assert 0.030 <= samples["shopkeep_loop_stall_max_seconds"][0][1] < 1.0
    assert samples["shopkeep_loop_stall_max_cpu_seconds"][0][1] < 0.030  # it slept, idle
    assert samples["shopkeep_loop_stalls_total"][0][1] >= 1
    lag = {labels["le"]: value for labels, value in samples["shopkeep_loop_lag_seconds_bucket"]}
    assert lag["+Inf"] >= 1 and lag["0.02"] < lag["+Inf"]  # the 40 ms stall is over 20 ms
    pauses = {labels["generation"] for labels, _ in samples["shopkeep_gc_pause_max_seconds"]}
    assert pauses == {"0", "1", "2"}
    spent = {labels["generation"]: value for labels, value in samples["shopkeep_gc_seconds_total"]}
    counted = {
        labels["generation"]: value for labels, value in samples["shopkeep_gc_collections_total"]
    }
    assert set(spent) == set(counted) == {"0", "1", "2"}
    assert all(value >= 0 for value in [*spent.values(), *counted.values()])


async def test_the_server_monitors_its_loop_and_shows_it_on_metrics(tmp_path: Path) -> None:
    options = ServeOptions(db=str(tmp_path / "shop.db"), host="127.0.0.1", port=0, sandbox=True)
    async with (
        running(options, announce=lambda token: None) as server,
        aiohttp.ClientSession() as session,
    ):
        assert server.loop_monitor is not None and server.loop_monitor.running
        async with session.get(server.url + "/metrics") as response:
            text = await response.text()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"shopkeep_loop_stall_max_seconds", "shopkeep_loop_stalls"} <= names
    assert not server.loop_monitor.running  # stopped with the server


async def test_callbacks_refused_before_any_order_are_counted_by_reason(client: Client) -> None:
    for _ in range(3):
        refused = await client.post("/v1/payments/callback", data=b"{}")
        assert refused.status == 400
    samples = await scrape(client)
    assert ({"reason": "signature_missing"}, 3.0) in samples["shopkeep_callbacks_rejected_total"]


class CountedCollector:
    """A collector that counts how often the registry was rendered."""

    def __init__(self) -> None:
        self.renders = 0

    def collect(self) -> Iterator[Metric]:
        self.renders += 1
        return iter(())


async def test_scrapes_in_a_flood_are_answered_from_a_rendering_at_most_half_a_second_old(
    shop: Shop,
) -> None:
    now = [1_000.0]
    metrics = Metrics(shop, process=False, clock=lambda: now[0])
    counted = CountedCollector()
    metrics.registry.register(counted)
    answers = [metrics.exposition() for _ in range(100)]  # a client scraping in a loop
    assert counted.renders == RENDER_BURST
    assert all(answer == answers[-1] for answer in answers[RENDER_BURST:])
    now[0] += 1.0
    [metrics.exposition() for _ in range(100)]
    assert counted.renders == RENDER_BURST + RENDERS_PER_S  # the flood gets two a second
    now[0] += 60.0
    metrics.exposition()
    assert counted.renders == RENDER_BURST + RENDERS_PER_S + 1  # a scrape alone: rendered now
