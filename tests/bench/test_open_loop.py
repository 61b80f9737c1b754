"""The open-loop client sends every request it is given, reads each answer, and counts what a
server that drops connections never answered instead of waiting for it."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from shopkeep.bench.open_loop import OpenLoop, Ticker


def request(n: int) -> bytes:
    body = b'{"n": %d}' % n
    return (
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


async def test_every_request_offered_is_answered_and_timed() -> None:
    seen: list[bytes] = []

    async def echo(req: web.Request) -> web.Response:
        seen.append(await req.read())
        return web.json_response({"ok": True}, status=201)

    app = web.Application()
    app.router.add_post("/echo", echo)
    async with TestServer(app, host="127.0.0.1") as server:
        client = OpenLoop(str(server.make_url("/")), connections=4)
        elapsed = await client.run(request, rate_per_s=400, seconds=0.1)

    assert set(seen) == {b'{"n": %d}' % n for n in range(40)}
    assert len(seen) == 40
    assert client.statuses == {"201": 40}
    assert len(client.latencies) == 40 and all(s > 0 for s in client.latencies)
    assert client.errors == 0
    assert elapsed >= max(client.latencies)


async def test_requests_on_connections_the_server_drops_are_counted_as_errors() -> None:
    async def hang_up(req: web.Request) -> web.StreamResponse:
        assert req.transport is not None
        req.transport.close()
        return web.Response()

    app = web.Application()
    app.router.add_post("/echo", hang_up)
    async with TestServer(app, host="127.0.0.1") as server:
        client = OpenLoop(str(server.make_url("/")), connections=2)
        await client.run(request, rate_per_s=200, seconds=0.05)

    assert client.latencies == []
    assert client.errors == 10


def test_it_runs_on_uvloop_too() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(test_every_request_offered_is_answered_and_timed())
    finally:
        loop.close()


async def test_the_ticker_hands_over_each_request_once_in_order_at_its_due_time() -> None:
    fallen: list[tuple[int, float]] = []
    ticker = Ticker(asyncio.get_running_loop(), fallen.extend, rate_per_s=2_000, total=50)
    try:
        await ticker.run()
    finally:
        ticker.stop()

    assert [n for n, _ in fallen] == list(range(50))
    assert [due for _, due in fallen] == [ticker.start + n / 2_000 for n in range(50)]


async def test_a_run_cut_short_ends_its_ticker_thread() -> None:
    ticker = Ticker(asyncio.get_running_loop(), lambda due: None, rate_per_s=100, total=10_000)
    running = asyncio.ensure_future(ticker.run())
    await asyncio.sleep(0)  # the run has started its thread
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    ticker.stop()

    assert not any(thread.name == "open-loop-ticker" for thread in threading.enumerate())
