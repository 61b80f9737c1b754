"""GET /metrics tells what the shop did: orders by outcome, callbacks by verification result,
refunds by kind and status; latencies as histograms; which build answers."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from shopkeep import __version__
from shopkeep.http.app import make_app
from shopkeep.http.config import HttpConfig
from shopkeep.http.metrics import Metrics, metrics_routes
from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop
from tests.http.conftest import ADMIN, Api

Samples = dict[str, list[tuple[dict[str, str], float]]]


@pytest.fixture
async def api(
    aiohttp_client: AiohttpClient, shop: Shop, clock: VirtualClock, config: HttpConfig
) -> Api:
    metrics = Metrics(shop, process=False)
    app = make_app(shop, config, extra_routes=[*metrics_routes(metrics)], metrics=metrics)
    return Api(await aiohttp_client(app), shop, clock)


async def scrape(api: Api) -> Samples:
    """The exposition parsed: each sample's name to its (labels, value) pairs."""
    answered = await api.client.get("/metrics")
    assert answered.status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(await answered.text()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels`` (0 when absent)."""
    return next((v for found, v in samples.get(name, []) if found == labels), 0.0)


async def test_orders_callbacks_and_refunds_are_counted_by_outcome(api: Api) -> None:
    alice = await api.customer()
    tea = await api.goods(price=1_000, stock=5)
    canceled = await api.order(alice, tea)
    paid = await api.order(alice, tea)
    refused = await api.call(
        "POST", "/v1/orders", alice.headers, {"items": [{"goods_id": tea, "quantity": 9}]}
    )
    assert refused.body["code"] == "insufficient_stock"
    by_user = await api.call("POST", f"/v1/orders/{canceled['id']}/cancel", alice.headers)
    assert by_user.status == 200
    payment = await api.pay(alice, paid)
    raw = api.callback(payment)
    again = await api.call("POST", "/v1/payments/callback", api.signed(raw), data=raw)
    assert again.status == 200
    wrong = api.callback(payment, amount=1)
    forged = await api.call("POST", "/v1/payments/callback", api.signed(wrong), data=wrong)
    assert forged.status == 400
    unsigned = await api.call("POST", "/v1/payments/callback", {}, data=raw)
    assert unsigned.status == 400
    by_admin = await api.call("POST", f"/v1/orders/{paid['id']}/cancel", ADMIN)
    assert by_admin.body["status"] == "canceled"
    await api.settle()  # the refund through the gateway is done

    samples = await scrape(api)

    assert value(samples, "shopkeep_orders_placed_total") == 2
    assert value(samples, "shopkeep_orders_refused_total", code="insufficient_stock") == 1
    assert value(samples, "shopkeep_orders_canceled_total", reason="user") == 1
    assert value(samples, "shopkeep_orders_canceled_total", reason="admin") == 1
    assert value(samples, "shopkeep_callbacks_total", result="applied") == 1
    assert value(samples, "shopkeep_callbacks_total", result="duplicate") == 1
    assert value(samples, "shopkeep_callbacks_rejected_total", reason="amount") == 1
    rejected = "shopkeep_callbacks_rejected_total"
    assert value(samples, rejected, reason="signature_missing") == 1
    refunds = "shopkeep_refunds_total"
    assert value(samples, refunds, kind="cancel", status="refunding") == 1
    assert value(samples, refunds, kind="cancel", status="refunded") == 1


async def test_a_refund_with_nothing_for_the_gateway_counts_as_begun_and_paid_back(
    api: Api,
) -> None:
    # recorded refunded at once, it was counted paid back only: more paid back than begun
    alice = await api.customer(balance=30_000)
    tea = await api.goods(price=20_000)
    placed = await api.call("POST", "/v1/orders", alice.headers,
                            {"items": [{"goods_id": tea, "quantity": 1}], "use_balance": 20_000})
    assert placed.body["status"] == "paid"
    canceled = await api.call("POST", f"/v1/orders/{placed.body['id']}/cancel", alice.headers)
    assert canceled.status == 200
    await api.settle()

    samples = await scrape(api)

    refunds = "shopkeep_refunds_total"
    assert value(samples, refunds, kind="cancel", status="refunding") == 1
    assert value(samples, refunds, kind="cancel", status="refunded") == 1


async def test_a_placement_that_fails_after_its_order_is_recorded_counts_as_refused_and_canceled(
    api: Api,
) -> None:
    alice = await api.customer()
    tea = await api.goods(stock=1)
    # without waiting, the order is recorded pending first, then its placement fails
    accepted = await api.call(
        "POST", "/v1/orders?wait=false", alice.headers,
        {"items": [{"goods_id": tea, "quantity": 2}]},
    )  # fmt: skip
    assert accepted.status == 202
    await api.settle()

    samples = await scrape(api)

    assert value(samples, "shopkeep_orders_refused_total", code="insufficient_stock") == 1
    assert value(samples, "shopkeep_orders_canceled_total", reason="placement_failed") == 1
    assert value(samples, "shopkeep_orders_placed_total") == 0


async def test_an_unpaid_order_past_its_deadline_is_counted_canceled_by_timeout(api: Api) -> None:
    alice = await api.customer()
    await api.order(alice, await api.goods())

    await api.clock.advance(api.shop.config.order_timeout_s + 1)
    await api.settle()

    samples = await scrape(api)
    assert value(samples, "shopkeep_orders_canceled_total", reason="timeout") == 1


async def test_commit_latency_and_timer_lateness_are_histograms_with_buckets(api: Api) -> None:
    alice = await api.customer()
    await api.order(alice, await api.goods())
    await api.clock.advance(api.shop.config.order_timeout_s + 1)  # the deadline fires
    await api.settle()

    samples = await scrape(api)

    for name in ("shopkeep_commit_seconds", "shopkeep_timer_lateness_seconds"):
        buckets = samples[f"{name}_bucket"]
        assert [labels["le"] for labels, _ in buckets][-1] == "+Inf"
        counts = [count for _, count in buckets]
        assert counts == sorted(counts)  # cumulative
        assert counts[-1] == value(samples, f"{name}_count") >= 1
        assert "quantile" not in {key for labels, _ in buckets for key in labels}


async def test_build_info_names_the_version_and_the_python(api: Api) -> None:
    samples = await scrape(api)

    python = ".".join(str(part) for part in sys.version_info[:3])
    assert samples["shopkeep_build_info"] == [({"version": __version__, "python": python}, 1.0)]


async def test_a_callback_too_large_to_be_one_is_refused_unread_and_counted(
    api: Api, config: HttpConfig
) -> None:
    huge = b"{" + b" " * config.max_body_bytes + b"}"

    refused = await api.call("POST", "/v1/payments/callback", {}, data=huge)
    samples = await scrape(api)

    assert (refused.status, refused.body["code"]) == (413, "payload_too_large")
    assert value(samples, "shopkeep_callbacks_rejected_total", reason="too_large") == 1


async def test_a_callback_too_large_sent_in_chunks_is_counted_as_one_announced_is(
    api: Api, config: HttpConfig
) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: its size is unannounced
        for _ in range(config.max_body_bytes // 1024 + 2):
            yield b" " * 1024

    async with api.client.post("/v1/payments/callback", data=chunks()) as refused:
        assert refused.status == 413
    samples = await scrape(api)

    assert value(samples, "shopkeep_callbacks_rejected_total", reason="too_large") == 1


@pytest.mark.parametrize("coding", ["gzip", "brotli"])
async def test_a_callback_whose_body_does_not_read_as_its_coding_says_is_refused_and_counted(
    api: Api, coding: str
) -> None:
    # answered 400 and counted nowhere: a provider's notification gone wrong in a proxy, or
    # someone probing, unseen on the dashboard
    headers = {"Content-Encoding": coding, "Content-Type": "application/json"}

    async with api.client.post(
        "/v1/payments/callback", data=b"not gzip at all", headers=headers
    ) as refused:
        assert refused.status == 400
        assert (await refused.json(content_type=None))["code"] == "bad_request"
    samples = await scrape(api)

    assert value(samples, "shopkeep_callbacks_rejected_total", reason="unreadable") == 1
