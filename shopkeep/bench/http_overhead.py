"""The bare aiohttp baseline, and what shopkeep's HTTP layer costs a request beside it.

The baseline (:func:`bare_app`) is one aiohttp POST handler that decodes a body of the shape
of shopkeep's order with msgspec and answers 201 with an order-sized JSON body, with no
middleware. The HTTP bench serves it in a process of its own (:func:`run_bare`) and compares
whole placements with it. :func:`measure_overhead` compares shopkeep's HTTP layer alone with
the same handler decoding and encoding shopkeep's own types, in one process:

- shopkeep's side is the app the server builds (``shopkeep.http.server.build_app``: the
  front door, the metrics, the access check, the handler, the conversion of the answer) over
  a stand-in shop (:class:`StandInShop`) whose token lookup is a dictionary hit, as the real
  shop's cache of known tokens is, and whose ``place_order`` returns a ready order: what is
  left is exactly what the HTTP layer adds around the shop call;
- the bare side is :func:`bare_typed_app`, one aiohttp handler without middleware doing the
  same decode and encode: the body into shopkeep's own request type (so with the same
  validation), an answer of its own order type built at once and encoded.

Both are driven the same way: ``POST /v1/orders`` requests (a one-item order, the bearer token
of one of :data:`USERS` users in turn, an ``Idempotency-Key``, ``Content-Length``) are built
beforehand with aiohttp's ``make_mocked_request`` (a real :class:`aiohttp.web.Request` over a
body stream holding the bytes, with no socket), then handed to ``Application._handle``, the
coroutine aiohttp's server calls for each parsed request: route resolution, the front door,
the handler, up to the response object with its body encoded. Only that is timed, in batches of
:data:`BATCH` requests, in the thread's CPU time (``time.thread_time``: on a shared machine,
the time other processes hold the core is not counted); the HTTP parsing and the socket writes
are aiohttp's and the same for both, so they are left out of both. The two sides alternate,
batch by batch, on the same event loop (uvloop when installed, as the server).

Each side's figure is its median batch: a burst of other work on a shared machine moves one
batch, not the comparison. The fastest batches are reported beside them. The figures: each
side's cost per request (``http_overhead_shopkeep_us``, ``http_overhead_bare_us``) and their
ratio (``http_overhead_ratio``, shopkeep / bare); the same from the fastest batches
(``..._min_us``, ``http_overhead_ratio_min``).

The same comparison counted in instructions, which do not move with the machine, is
:mod:`shopkeep.bench.http_instructions`.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import signal
import statistics
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, cast

import msgspec
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_messages import OrderItemView, OrderView
from shopkeep.bench.generators import ORDERS_PATH, order_body
from shopkeep.http.schemas import OrderItemOut, OrderOut, PlaceOrderRequest
from shopkeep.shop import Shop
from shopkeep.shop_accounts import hash_token

T = TypeVar("T")

HOST: Final = "127.0.0.1"
PRICE: Final = 1_250
BATCH: Final = 500
"""Requests timed together (one timer read per batch, so the timer's cost is out)."""
ROUNDS: Final = 30
"""Batches per side (after one to warm up); the figure is the median."""
QUICK_ROUNDS: Final = 6
USERS: Final = 100
"""Users whose tokens the requests carry, in turn."""

# ---------------------------------------------------------------- the baseline


class BareItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One line of the baseline's order body (the shape of shopkeep's)."""

    goods_id: str
    quantity: int


class BareOrder(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The baseline's request body."""

    items: list[BareItem]
    coupon_id: str | None = None
    use_balance: int = 0
    expected_total: int | None = None


class BareAnswer(msgspec.Struct, frozen=True):
    """The baseline's answer: the fields and size of shopkeep's order."""

    id: str
    user_id: str
    status: str
    items: list[dict[str, Any]]
    coupon_id: str | None
    goods_amount: int
    shipping_fee: int
    order_amount: int
    coupon_discount: int
    wallet_amount: int
    pay_amount: int
    cancel_reason: str | None
    created_at: datetime
    confirmed_at: datetime | None
    paid_at: datetime | None
    canceled_at: datetime | None
    expires_at: datetime | None
    currency: str


def bare_app(wait_s: float = 0.0) -> web.Application:
    """The baseline: decode the body, answer 201 with an order-sized JSON body; with
    ``wait_s``, that long after decoding (as a placement waits for its commit)."""
    ids = itertools.count(1)

    async def place(request: web.Request) -> web.Response:
        order = msgspec.json.decode(await request.read(), type=BareOrder)
        if wait_s:
            await asyncio.sleep(wait_s)
        now = datetime.now(UTC)
        answer = BareAnswer(
            str(next(ids)), "1", "awaiting_payment",
            [{"goods_id": i.goods_id, "quantity": i.quantity, "unit_price": PRICE}
             for i in order.items],
            None, PRICE, 1_000, PRICE + 1_000, 0, 0, PRICE + 1_000, None, now, now, None, None,
            now, "CNY",
        )  # fmt: skip
        return web.Response(
            status=201, body=msgspec.json.encode(answer), content_type="application/json"
        )

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post(ORDERS_PATH, place)
    app.router.add_get("/healthz", healthz)
    return app


def bare_typed_app() -> web.Application:
    """The micro-benchmark's baseline: :func:`bare_app`'s handler, decoding into shopkeep's
    own request type (``PlaceOrderRequest``, the same validation) and encoding an answer of
    its own order type (``OrderOut``), so that both sides decode and encode the same."""
    ids = itertools.count(1)
    encoder = msgspec.json.Encoder()

    async def place(request: web.Request) -> web.Response:
        order = msgspec.json.decode(await request.read(), type=PlaceOrderRequest)
        now = datetime.now(UTC)
        answer = OrderOut(
            str(next(ids)), "1", "awaiting_payment",
            [OrderItemOut(i.goods_id, i.quantity, PRICE) for i in order.items],
            None, PRICE, 1_000, PRICE + 1_000, 0, 0, PRICE + 1_000, None, now, now, None, None,
            now, "CNY",
        )  # fmt: skip
        body = encoder.encode(answer)
        return web.Response(status=201, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post(ORDERS_PATH, place)
    return app


async def serve_bare(port: int, wait_s: float = 0.0) -> None:
    """Serve :func:`bare_app` (waiting ``wait_s``) on ``HOST:port`` until SIGTERM or SIGINT."""
    runner = web.AppRunner(bare_app(wait_s))
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run_bare(port: int, wait_s: float = 0.0) -> int:
    """The baseline process's main: on the same loop as ``serve``."""
    from shopkeep.http.server import fastest_loop_factory

    with asyncio.Runner(loop_factory=fastest_loop_factory()) as runner:
        runner.run(serve_bare(port, wait_s))
    return 0


# ---------------------------------------------------------------- shopkeep's side


class StandInShop:
    """What the HTTP layer calls of a shop on a placement, answering at once: the token
    lookup hits a dictionary (as :class:`Shop`'s cache of known tokens does), and
    ``place_order`` returns a ready order."""

    config: Final = ShopConfig()
    """The default rules (the app writes a placement's limits into its OpenAPI document)."""

    def __init__(self, tokens: dict[str, int]) -> None:
        self._token_users = OrderedDict(
            (hash_token(token), user_id) for token, user_id in tokens.items()
        )
        now = time.time()
        self._order = OrderView(
            id=1, user_id=1, status="awaiting_payment", coupon_id=None, created_at=now,
            goods_amount=PRICE, shipping_fee=1_000, order_amount=PRICE + 1_000,
            pay_amount=PRICE + 1_000, confirmed_at=now, expires_at=now + 1800,
            items=(OrderItemView(1, 1, PRICE),),
        )

    def known_user_for_token_hash(self, token_hash: str) -> int | None:
        """As :meth:`Shop.known_user_for_token_hash`: a remembered token's user."""
        user_id = self._token_users.get(token_hash)
        if user_id is not None:
            self._token_users.move_to_end(token_hash)
        return user_id

    async def user_for_token_hash(self, token_hash: str) -> int | None:
        """The cache hit of :meth:`Shop.user_for_token_hash`."""
        return self.known_user_for_token_hash(token_hash)

    async def user_for_token(self, token: str) -> int | None:
        """The cache hit of :meth:`Shop.user_for_token`."""
        return await self.user_for_token_hash(hash_token(token))

    async def place_order(
        self,
        user_id: int,
        items: Any,
        *,
        coupon_id: int | None = None,
        use_balance: int = 0,
        expected_total: int | None = None,
        idempotency_key: str | None = None,
        wait: bool = True,
    ) -> OrderView:
        """A ready order, whatever is asked (the signature of :meth:`Shop.place_order`)."""
        return self._order


def shopkeep_app(shop: StandInShop, admin_token: str) -> web.Application:
    """The app ``serve`` builds (metrics included), over ``shop``."""
    from shopkeep.credentials import Credentials
    from shopkeep.http.metrics import Metrics
    from shopkeep.http.server import build_app

    real = cast(Shop, shop)  # the handlers call only what StandInShop has
    metrics = Metrics(real, process=False)
    return build_app(real, Credentials(hash_token(admin_token), "unused"), metrics, None)


# ---------------------------------------------------------------- the measure


class _Protocol:
    """Enough of aiohttp's protocol for a body stream that is already complete."""

    _reading_paused = False
    connected = True

    def pause_reading(self) -> None:
        """Nothing to pause: the body is all there."""

    def resume_reading(self, resume_parser: bool = True) -> None:
        """Nothing to resume."""


def mocked_posts(
    app: web.Application, count: int, tokens: list[str], goods_id: str
) -> list[web.Request]:
    """``count`` ready ``POST /v1/orders`` requests for ``app``, each with its own key, from
    each of ``tokens`` in turn."""
    loop = asyncio.get_running_loop()
    body = order_body(goods_id)
    protocol = _Protocol()
    # One set of mocks (connection, transport, writer) for every request: a set per request
    # would make a heap the collector spends seconds on.
    shared = make_mocked_request("POST", ORDERS_PATH, app=app)
    requests = []
    for n in range(count):
        payload = StreamReader(protocol, 2**16, loop=loop)  # type: ignore[arg-type]
        payload.feed_data(body)
        payload.feed_eof()
        headers = {
            "Host": HOST,
            "Authorization": f"Bearer {tokens[n % len(tokens)]}",
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Idempotency-Key": f"overhead-{n}",
        }
        request = make_mocked_request(
            "POST", ORDERS_PATH, headers, app=app, payload=payload, client_max_size=2**16,
            protocol=shared.protocol, transport=shared.transport, writer=shared.writer,
        )  # fmt: skip
        requests.append(request)
    return requests


async def time_batch(app: web.Application, requests: list[web.Request]) -> float:
    """Seconds per request to handle ``requests`` through ``app``; each must answer 201."""
    handle: Callable[[web.Request], Awaitable[web.StreamResponse]] = app._handle
    # What was built beforehand is out of the collector's sight, as ``serve`` freezes what
    # starting built: each side's collections walk only what its own requests make.
    gc.collect()
    gc.freeze()
    try:
        started = time.thread_time()
        for request in requests:
            response = await handle(request)
            if response.status != 201:
                raise RuntimeError(f"{ORDERS_PATH} answered {response.status}")
        return (time.thread_time() - started) / len(requests)
    finally:
        gc.unfreeze()


def user_tokens() -> list[str]:
    """The bearer tokens of the :data:`USERS` users the requests come from, in turn (one
    token sending every request would be refused 429 by the rate limit: its cost per request
    is part of the measure, the refusals are not)."""
    return [f"overhead-user-token-{n}" for n in range(USERS)]


def both_apps(tokens: list[str]) -> tuple[web.Application, web.Application]:
    """Shopkeep's side (over a :class:`StandInShop` knowing ``tokens``) and the bare side,
    frozen as the runner freezes an app before serving."""
    shop_side = shopkeep_app(
        StandInShop({t: n + 1 for n, t in enumerate(tokens)}), "overhead-admin-token"
    )
    bare_side = bare_typed_app()
    for app in (shop_side, bare_side):
        app.freeze()
    return shop_side, bare_side


async def measure_overhead(rounds: int = ROUNDS, batch: int = BATCH) -> dict[str, float]:
    """Per-request cost of shopkeep's HTTP layer and of the bare handler (microseconds, each
    the median of ``rounds`` batches, alternating; and the fastest) and their ratios; see the
    module's docstring."""
    tokens = user_tokens()
    shop_side, bare_side = both_apps(tokens)
    shop_s: list[float] = []
    bare_s: list[float] = []
    for n in range(rounds + 1):
        shop_batch = mocked_posts(shop_side, batch, tokens, "1")
        bare_batch = mocked_posts(bare_side, batch, tokens, "1")
        shop_first = n % 2 == 0
        for app, requests, into in (
            (shop_side, shop_batch, shop_s),
            (bare_side, bare_batch, bare_s),
        )[:: 1 if shop_first else -1]:
            seconds = await time_batch(app, requests)
            if n:  # the first round warms caches up
                into.append(seconds)
    shop_us = statistics.median(shop_s) * 1e6
    bare_us = statistics.median(bare_s) * 1e6
    shop_min_us, bare_min_us = min(shop_s) * 1e6, min(bare_s) * 1e6
    return {
        "http_overhead_shopkeep_us": shop_us,
        "http_overhead_bare_us": bare_us,
        "http_overhead_ratio": shop_us / bare_us,
        "http_overhead_shopkeep_min_us": shop_min_us,
        "http_overhead_bare_min_us": bare_min_us,
        "http_overhead_ratio_min": shop_min_us / bare_min_us,
        "http_overhead_rounds": rounds,
        "http_overhead_batch": batch,
    }


def run_as_served(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` on the server's event loop, in this process, logging as ``serve`` does:
    JSON lines into a file (the access log's line is part of a request's cost; the file is a
    temporary one, gone when the process ends)."""
    import tempfile

    from shopkeep.http.server import fastest_loop_factory
    from shopkeep.logs import configure_logging

    configure_logging("info", "json", stream=tempfile.TemporaryFile("w"))  # noqa: SIM115
    with asyncio.Runner(loop_factory=fastest_loop_factory()) as runner:
        return runner.run(work)


def run_overhead(quick: bool = False) -> dict[str, float]:
    """:func:`measure_overhead`, as served (:func:`run_as_served`)."""
    return run_as_served(measure_overhead(QUICK_ROUNDS if quick else ROUNDS))


if __name__ == "__main__":
    import json

    print(json.dumps(run_overhead(), indent=2))
