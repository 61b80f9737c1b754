"""The sandbox gateway over HTTP, on a real server on 127.0.0.1: a payment completed through
``POST /sandbox/payments/{id}/complete`` is called back over HTTP, signed, and pays the order."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from shopkeep.actors.order_messages import PaymentView
from shopkeep.errors import ShopError
from shopkeep.http.sandbox import HttpCallbackSink, checkout_page
from shopkeep.http.server import ServeOptions, Server, StartupError, running
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.payments.settings import ProviderSettings
from shopkeep.payments.signature import HEADER as SIGNATURE_HEADER
from shopkeep.payments.signature import verify
from shopkeep.runtime import RealClock
from shopkeep.shop import Shop
from tests.http.conftest import bearer

TIMEOUT_S = 10.0
POLLS = 20
SECRET = "sandbox-test-gateway-secret"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    options = ServeOptions(
        db=str(tmp_path / "shop.db"), host="127.0.0.1", port=0, sandbox=True, gateway_secret=SECRET
    )
    async with running(options, announce=lambda token: None) as server:
        yield server


@pytest.fixture
async def http(server: Server) -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(base_url=server.url, timeout=timeout) as session:
        yield session


def watch_callbacks(server: Server) -> tuple[asyncio.Event, list[bool]]:
    """Put an observer between the gateway and its HTTP sink: an event set at every callback
    the shop acknowledged, and every answer (True for a 200) in order."""
    assert server.gateway is not None and server.sink is not None
    sink = server.sink
    acknowledged = asyncio.Event()
    answers: list[bool] = []

    async def observed(raw_body: bytes, signature: str) -> bool:
        answer = await sink(raw_body, signature)
        answers.append(answer)
        if answer:
            acknowledged.set()
        return answer

    server.gateway.attach(observed)
    return acknowledged, answers


async def post(http: aiohttp.ClientSession, path: str, token: str | None, body: Any) -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with http.post(path, json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def order_awaiting_payment(server: Server, http: aiohttp.ClientSession) -> tuple[str, Any]:
    """A user's token and a payment started over HTTP for their new order."""
    created = await server.shop.create_user("ada")
    tea = await server.shop.create_goods("tea", price=1_200, stock=3)
    items = {"items": [{"goods_id": str(tea.id), "quantity": 1}]}
    status, order = await post(http, "/v1/orders", created.token, items)
    assert status == 201, order
    status, payment = await post(http, f"/v1/orders/{order['id']}/payment", created.token, None)
    assert status == 201, payment
    return created.token, payment


async def poll_order(
    http: aiohttp.ClientSession,
    order_id: str,
    token: str,
    until: Callable[[Any], bool],
    changed: asyncio.Event,
) -> Any:
    """GET the order until ``until(order)``, waiting for ``changed`` between tries (bounded)."""
    for _ in range(POLLS):
        changed.clear()
        async with http.get(
            f"/v1/orders/{order_id}", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            order = await response.json()
        if until(order):
            return order
        await asyncio.wait_for(changed.wait(), TIMEOUT_S)
    raise AssertionError(f"order {order_id} is still {order['status']} after {POLLS} tries")


async def test_a_sandbox_payment_is_called_back_over_http_and_the_order_becomes_paid(
    server: Server, http: aiohttp.ClientSession
) -> None:
    acknowledged, answers = watch_callbacks(server)
    token, payment = await order_awaiting_payment(server, http)
    assert payment["gateway_url"] == f"{server.url}/sandbox/payments/{payment['id']}"

    async with http.post(
        f"/sandbox/payments/{payment['id']}/complete", json={"result": "succeeded"}
    ) as response:
        assert response.status == 202

    # the 202 came once the shop acknowledged: applied, so no crash after it can lose it
    assert acknowledged.is_set() and answers == [True]
    async with http.get(
        f"/v1/orders/{payment['order_id']}", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        order = await response.json()
    assert order["status"] == "paid" and order["paid_at"] is not None
    # it came over HTTP, through the callback route, and was answered 200
    async with http.get("/metrics") as response:
        metrics = await response.text()
    assert (
        'shopkeep_http_request_duration_seconds_count{method="POST",'
        'route="/v1/payments/callback",status="200"} 1.0'
    ) in metrics
    assert (await server.shop.audit()).ok


async def test_a_complete_right_behind_another_is_refused_before_the_first_collected(
    server: Server, http: aiohttp.ClientSession
) -> None:
    # two at the same moment: the second looked at the books before the first's task had
    # collected, found them empty, and collected too
    _, payment = await order_awaiting_payment(server, http)
    gateway = server.gateway
    assert gateway is not None
    payment_id, order_id = int(payment["id"]), int(payment["order_id"])

    gateway.check_payable(payment_id, "created")
    first = gateway.complete_soon(payment_id, order_id, payment["amount"], "succeeded")
    with pytest.raises(ShopError, match="being paid already"):
        gateway.check_payable(payment_id, "created")  # its task has not run yet
    assert await asyncio.wait_for(first, TIMEOUT_S)

    assert gateway.total_collected == payment["amount"]


async def test_a_failed_payment_leaves_the_order_awaiting_payment_and_may_still_be_paid(
    server: Server, http: aiohttp.ClientSession
) -> None:
    acknowledged, answers = watch_callbacks(server)
    token, payment = await order_awaiting_payment(server, http)
    complete = f"/sandbox/payments/{payment['id']}/complete"

    async with http.post(complete, json={"result": "failed"}) as response:
        assert response.status == 202
    await asyncio.wait_for(acknowledged.wait(), TIMEOUT_S)

    order = await poll_order(http, payment["order_id"], token, lambda o: True, acknowledged)
    assert order["status"] == "awaiting_payment"
    assert answers == [True]
    async with http.post(complete, json={"result": "succeeded"}) as response:
        assert response.status == 202
    order = await poll_order(
        http, payment["order_id"], token, lambda o: o["status"] == "paid", acknowledged
    )
    assert order["status"] == "paid"


async def test_a_payment_completed_twice_is_collected_once_and_the_second_refused(
    server: Server, http: aiohttp.ClientSession
) -> None:
    # two tabs, or a network's duplicate: the sandbox collected again under a new transaction,
    # and the shop refunded it as a duplicate payment, the customer charged twice meanwhile
    token, payment = await order_awaiting_payment(server, http)
    complete = f"/sandbox/payments/{payment['id']}/complete"
    async with http.post(complete, json={"result": "succeeded"}) as response:
        assert response.status == 202

    for result in ("succeeded", "failed"):
        status, problem = await post(http, complete, None, {"result": result})
        assert (status, problem["code"]) == (409, "invalid_state")
    await server.shop.runtime.system.quiet()

    assert server.gateway is not None
    assert server.gateway.total_collected == payment["amount"]
    async with http.get(
        f"/v1/orders/{payment['order_id']}/refunds", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert (await response.json())["items"] == []
    assert (await server.shop.audit()).ok


async def test_the_payment_link_answers_the_payment_as_json(
    server: Server, http: aiohttp.ClientSession
) -> None:
    _, payment = await order_awaiting_payment(server, http)

    async with http.get(payment["gateway_url"]) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == payment


async def test_a_payment_id_written_with_a_leading_zero_names_no_payment(
    server: Server, http: aiohttp.ClientSession
) -> None:
    _, payment = await order_awaiting_payment(server, http)

    async with http.get(f"/sandbox/payments/0{payment['id']}") as response:
        assert response.status == 404
    status, problem = await post(
        http, f"/sandbox/payments/0{payment['id']}/complete", None, {"result": "succeeded"}
    )
    assert (status, problem["code"]) == (404, "not_found")


async def test_the_payment_link_opened_in_a_browser_is_a_page_that_completes_it(
    server: Server, http: aiohttp.ClientSession
) -> None:
    _, payment = await order_awaiting_payment(server, http)

    async with http.get(payment["gateway_url"], headers={"Accept": "text/html"}) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
        headers = response.headers

    assert payment["amount"] == 2_200  # the tea and the shipping fee
    # its Pay button cannot be clicked through another site's frame
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'unsafe-inline'" in headers["Content-Security-Policy"]
    assert "22.00 CNY" in page and f"Order {payment['order_id']}" in page
    assert '"/complete"' in page and 'data-result="succeeded"' in page
    assert 'data-result="failed"' in page and "disabled" not in page


async def test_an_unknown_payment_is_not_found(server: Server, http: aiohttp.ClientSession) -> None:
    for payment_id in ("123", "not-a-number", "9" * 30, "9" * 5000, "0", "-1", "+1", " 1"):
        status, problem = await post(
            http, f"/sandbox/payments/{payment_id}/complete", None, {"result": "succeeded"}
        )
        assert (status, problem["code"]) == (404, "not_found"), payment_id
        async with http.get(f"/sandbox/payments/{payment_id}") as response:
            assert response.status == 404, payment_id


@pytest.mark.parametrize(
    "body", [{"result": "succeeded", "amount": 1}, {"result": "maybe"}, {}, [1]]
)
async def test_a_body_that_is_not_a_result_is_refused(
    server: Server, http: aiohttp.ClientSession, body: Any
) -> None:
    _, payment = await order_awaiting_payment(server, http)

    status, problem = await post(http, f"/sandbox/payments/{payment['id']}/complete", None, body)

    assert (status, problem["code"]) == (422, "validation_error")


async def test_a_refused_result_lists_every_problem_where_it_is(
    server: Server, http: aiohttp.ClientSession
) -> None:
    _, payment = await order_awaiting_payment(server, http)
    body = {"result": "ok", "amount": 5}

    status, problem = await post(http, f"/sandbox/payments/{payment['id']}/complete", None, body)

    assert status == 422
    assert sorted(e["pointer"] for e in problem["errors"]) == ["/amount", "/result"]


async def test_a_sandbox_payments_link_is_at_the_public_url_when_one_is_given(
    tmp_path: Path,
) -> None:
    payments = ProviderSettings(public_url="https://shop.example.com/base/")
    options = ServeOptions(
        db=str(tmp_path / "shop.db"), host="127.0.0.1", port=0, sandbox=True,
        gateway_secret=SECRET, payments=payments,
    )
    async with (
        running(options, announce=lambda token: None) as server,
        aiohttp.ClientSession(base_url=server.url) as http,
    ):
        _, payment = await order_awaiting_payment(server, http)
        acknowledged, _ = watch_callbacks(server)
        async with http.post(
            f"/sandbox/payments/{payment['id']}/complete", json={"result": "succeeded"}
        ) as response:
            assert response.status == 202

    assert payment["gateway_url"] == (
        f"https://shop.example.com/base/sandbox/payments/{payment['id']}"
    )
    assert acknowledged.is_set()  # its callbacks still came back to the server itself


async def test_a_server_without_a_gateway_refuses_to_start_naming_the_choices(
    tmp_path: Path,
) -> None:
    options = ServeOptions(db=str(tmp_path / "shop.db"), host="127.0.0.1", port=0)
    with pytest.raises(StartupError, match="sandbox, alipay, wechatpay, stripe"):
        async with running(options, announce=lambda token: None):
            pass
    assert not (tmp_path / "shop.db").exists()  # refused before the database was touched


async def test_without_sandbox_mode_the_route_does_not_exist(tmp_path: Path) -> None:
    key, hook = tmp_path / "stripe.key", tmp_path / "stripe.whsec"
    key.write_text("sk_test_shopkeep\n")
    hook.write_text("whsec_shopkeep\n")
    payments = ProviderSettings(
        gateway="stripe", stripe_api_key_file=str(key), stripe_webhook_secret_file=str(hook),
        stripe_api_base="http://127.0.0.1:9",  # never called here
    )
    options = ServeOptions(
        db=str(tmp_path / "shop.db"), host="127.0.0.1", port=0, payments=payments
    )
    async with (
        running(options, announce=lambda token: None) as server,
        aiohttp.ClientSession(base_url=server.url) as http,
    ):
        status, problem = await post(
            http, "/sandbox/payments/123/complete", None, {"result": "succeeded"}
        )

    assert server.gateway is None
    assert (status, problem["code"]) == (404, "not_found")


async def test_the_sink_is_retried_until_the_shop_answers_200(
    aiohttp_server: AiohttpServer,
) -> None:
    received: list[tuple[int, str]] = []
    statuses = iter([503, 400, 200])

    async def callback(request: web.Request) -> web.Response:
        received.append((len(await request.read()), request.headers[SIGNATURE_HEADER]))
        return web.Response(status=next(statuses))

    app = web.Application()
    app.router.add_post("/v1/payments/callback", callback)
    shop_side: TestServer = await aiohttp_server(app)
    clock = RealClock()
    gateway = SandboxGateway(SECRET, clock, retry_s=0.001)
    sink = HttpCallbackSink(str(shop_side.make_url("/v1/payments/callback")))
    gateway.attach(sink)
    try:
        acknowledged = await asyncio.wait_for(gateway.complete(7, 8, 1_200, "succeeded"), TIMEOUT_S)
    finally:
        await sink.close()

    assert acknowledged
    assert len(received) == 3
    body = gateway.callback(7, 8, 1_200, "succeeded", "sbx-7-1")
    for size, signature in received:
        assert size == len(body)
        assert verify(SECRET, signature, body, clock.now(), 300.0)[0]


async def test_a_refused_connection_is_retried_not_raised() -> None:
    attempts: list[str] = []
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        sink = HttpCallbackSink(f"http://127.0.0.1:{port}/v1/payments/callback")

        async def counted(raw_body: bytes, signature: str) -> bool:
            attempts.append(signature)
            if len(attempts) == 3:
                return True  # the shop is back
            return await sink(raw_body, signature)

        gateway = SandboxGateway(SECRET, RealClock(), retry_s=0.001)
        gateway.attach(counted)
        try:
            acknowledged = await asyncio.wait_for(
                gateway.complete(7, 8, 1_200, "failed"), TIMEOUT_S
            )
        finally:
            await sink.close()

    assert acknowledged and len(attempts) == 3


async def test_a_graceful_stop_lets_the_callbacks_answered_202_arrive(tmp_path: Path) -> None:
    # Nothing acknowledged is lost: the sandbox's retries are memory, and its books too (the
    # deadline's query after a restart would find nothing): the stop lets them arrive first
    options = ServeOptions(
        db=str(tmp_path / "shop.db"), host="127.0.0.1", port=0, sandbox=True, gateway_secret=SECRET
    )
    async with running(options, announce=lambda token: None) as server:
        assert server.gateway is not None and server.sink is not None
        sink, first_tries, refused = server.sink, set[bytes](), asyncio.Event()

        async def refusing_each_first_try(raw_body: bytes, signature: str) -> bool:
            if raw_body not in first_tries:  # each callback waits for its retry
                first_tries.add(raw_body)
                if len(first_tries) == 3:
                    refused.set()
                return False
            return await sink(raw_body, signature)

        server.gateway.attach(refusing_each_first_try)
        shop = server.shop
        user = (await shop.create_user("ada")).user.id
        tea = await shop.create_goods("tea", price=1_200, stock=3)
        orders = [await shop.place_order(user, [(tea.id, 1)]) for _ in range(3)]
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with aiohttp.ClientSession(base_url=server.url, timeout=timeout) as http:
            for order in orders:
                payment = (await shop.start_payment(order.id)).payment
                status, _ = await post(
                    http, f"/sandbox/payments/{payment.id}/complete", None, {"result": "succeeded"}
                )
                assert status == 202
        await asyncio.wait_for(refused.wait(), TIMEOUT_S)
    async with Shop.open(options.db, gateway="sandbox", gateway_secret=SECRET) as reopened:
        for order in orders:
            assert (await reopened.get_order(order.id)).status == "paid"


async def test_once_the_stop_has_begun_a_completion_is_refused_rather_than_lost(
    server: Server, http: aiohttp.ClientSession
) -> None:
    # a 202 then could not reach a shop that is closing, nor outlive it in the sandbox's books
    assert server.gateway is not None and server.sink is not None
    sink, on_its_way, shop_may_answer = server.sink, asyncio.Event(), asyncio.Event()

    async def answering_when_let(raw_body: bytes, signature: str) -> bool:
        on_its_way.set()
        await shop_may_answer.wait()
        return await sink(raw_body, signature)

    server.gateway.attach(answering_when_let)
    _, first = await order_awaiting_payment(server, http)
    _, second = await order_awaiting_payment(server, http)
    taken = asyncio.create_task(
        post(http, f"/sandbox/payments/{first['id']}/complete", None, {"result": "succeeded"})
    )
    await asyncio.wait_for(on_its_way.wait(), TIMEOUT_S)  # the shop not answering yet
    stopping = asyncio.create_task(server.gateway.settle(TIMEOUT_S))  # as the stop begins it
    await asyncio.sleep(0)

    status, refused = await post(
        http, f"/sandbox/payments/{second['id']}/complete", None, {"result": "succeeded"}
    )
    assert (status, refused["code"]) == (503, "unavailable")
    shop_may_answer.set()
    assert (await taken)[0] == 202
    await asyncio.wait_for(stopping, TIMEOUT_S)
    assert (await server.shop.get_order(int(first["order_id"]))).status == "paid"
    assert (await server.shop.get_order(int(second["order_id"]))).status == "awaiting_payment"


async def test_a_completion_with_an_unknown_query_parameter_is_refused_listing_every_problem(
    server: Server, http: aiohttp.ClientSession
) -> None:
    # the sandbox's routes are checked as the catalog documents them, as the API's own are
    _, payment = await order_awaiting_payment(server, http)
    complete = f"/sandbox/payments/{payment['id']}/complete?x=1"

    status, refused = await post(http, complete, None, {"result": "succeeded"})
    assert (status, refused["errors"]) == (
        422, [{"detail": "unknown query parameter 'x'", "parameter": "x"}]
    )
    status, refused = await post(http, complete, None, {})
    assert status == 422
    assert [error.get("parameter") or error.get("pointer") for error in refused["errors"]] == [
        "x", "/result"
    ]


async def test_the_metrics_refuse_an_unknown_query_parameter(http: aiohttp.ClientSession) -> None:
    async with http.get("/metrics?x=1") as response:
        assert response.status == 422
        assert (await response.json(content_type=None))["code"] == "validation_error"
    async with http.get("/metrics") as response:
        assert response.status == 200


@pytest.mark.parametrize(("amount", "currency", "shown"), [
    (123_456, "JPY", "123456 JPY"), (123_456, "KWD", "123.456 KWD"), (2_200, "CNY", "22.00 CNY"),
])
def test_the_checkout_page_shows_the_amount_in_its_currencys_unit(
    amount: int, currency: str, shown: str
) -> None:
    # yen have no minor unit: 123,456 yen showed as "1234.56 JPY"
    page = checkout_page(PaymentView(id=1, order_id=2, amount=amount, status="created",
                                     currency=currency))
    assert f"<strong>{shown}</strong>" in page


@pytest.mark.parametrize(("status", "pay", "fail"), [
    ("created", True, True),
    ("failed", True, False),  # a failed payment may still be paid (the page said no)
    ("succeeded", False, False),
    ("refunded", False, False),
])
def test_the_checkout_page_offers_what_the_sandbox_takes(
    status: str, pay: bool, fail: bool
) -> None:
    page = checkout_page(PaymentView(id=1, order_id=2, amount=2_200, status=status))

    assert ('<button data-result="succeeded">Pay</button>' in page) is pay
    assert ('<button data-result="failed">Fail</button>' in page) is fail


async def test_the_document_says_the_payment_link_answers_a_browser_a_page(
    http: aiohttp.ClientSession,
) -> None:
    # its 200 listed application/json alone: a contract tester took the page for a mismatch
    async with http.get("/openapi.json") as response:
        document = await response.json()
    checkout = document["paths"]["/sandbox/payments/{payment_id}"]["get"]

    assert sorted(checkout["responses"]["200"]["content"]) == ["application/json", "text/html"]


async def test_a_payment_link_names_where_the_server_is_now_after_it_moved(
    tmp_path: Path,
) -> None:
    # the link kept at the start named the first server's port, where nothing answered after
    # the shop was started again on another: its customer could not pay
    options = ServeOptions(
        db=str(tmp_path / "shop.db"), host="127.0.0.1", port=0, sandbox=True, gateway_secret=SECRET
    )
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with (
        running(options, announce=lambda token: None) as first,
        aiohttp.ClientSession(base_url=first.url, timeout=timeout) as http,
    ):
        token, payment = await order_awaiting_payment(first, http)
    async with (
        running(options, announce=lambda token: None) as moved,
        aiohttp.ClientSession(base_url=moved.url, timeout=timeout) as http,
    ):
        status, again = await post(http, f"/v1/orders/{payment['order_id']}/payment", token, None)
        async with http.get(f"/v1/payments/{payment['id']}", headers=bearer(token)) as read:
            shown = await read.json()

    here = f"{moved.url}/sandbox/payments/{payment['id']}"
    assert first.url != moved.url
    assert (status, again["id"], again["gateway_url"]) == (200, payment["id"], here)
    assert shown["gateway_url"] == here
