"""The server's connections are bounded (SPEC 7), seen from real sockets on 127.0.0.1: a
request that does not arrive whole in time is closed, so is an idle keep-alive connection, and
connections beyond the cap are closed while the open ones go on being served.

The bounds are made small (tenths of a second) and each test awaits the close, within a wait
several times the bound, rather than sleeping."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import zlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import structlog

from shopkeep.http.connection_limits import (
    FILES_BESIDE_CONNECTIONS,
    ConnectionLimits,
    files_for_connections,
)
from shopkeep.http.connections import BoundedRequestHandler, BoundedServer
from shopkeep.http.server import Server
from shopkeep.proof.raw_http import (
    read_answer,
    request_bytes,
    seconds_until_closed,
)
from tests.http.conftest import ADMIN_TOKEN, serving

BOUND_S = 0.2
WAIT_S = 5.0
"""How long a test waits for a close that should come after about BOUND_S."""
WITHIN_S = BOUND_S + 1.0
"""How soon a close due at BOUND_S must come, a busy machine's second allowed: a bound ten
times longer than told (2 s) is not met."""
LONG_S = 60.0
"""A bound no test reaches."""
HALF_A_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
HEALTHZ = request_bytes("GET", "/healthz", {})

Serve = Callable[[ConnectionLimits], AbstractAsyncContextManager[Server]]
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
def serve(tmp_path: Path) -> Serve:
    """Run a server on 127.0.0.1 with the given connection limits."""

    def served(limits: ConnectionLimits) -> AbstractAsyncContextManager[Server]:
        return serving(
            tmp_path, writer="thread", connections=limits, sandbox=True, admin_token=ADMIN_TOKEN
        )

    return served


async def connect(server: Server) -> Streams:
    host, port = server.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


def counts(server: Server) -> BoundedServer:
    assert server.connections is not None
    return server.connections


async def healthy(streams: Streams) -> bool:
    """Ask /healthz on an open connection; whether it answered 200."""
    reader, writer = streams
    writer.write(HEALTHZ)
    return (await asyncio.wait_for(read_answer(reader), WAIT_S)).status == 200


async def test_a_connection_that_sent_half_a_request_is_closed_within_the_read_bound(
    serve: Serve,
) -> None:
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=BOUND_S)) as server:
        reader, writer = await connect(server)
        with structlog.testing.capture_logs() as logs:
            writer.write(HALF_A_REQUEST)

            closed_after = await seconds_until_closed(reader, WITHIN_S)

        assert closed_after is not None and closed_after >= BOUND_S * 0.5
        assert counts(server).read_timeouts == 1
        # it reached no route: its access line says it was not read, and why beside it
        said = [line for line in logs if line["event"] == "http_read_timeout"]
        assert [line["status"] for line in said] == [408]
        [access] = [line for line in logs if line["event"] == "request"]
        assert (access["method"], access["route"], access["status"]) == ("-", "unread", 408)
        assert access["request_id"] == said[0]["request_id"]
        assert access["duration_ms"] >= BOUND_S * 1000 * 0.5
        assert await healthy(await connect(server))
        # and timed as its access line says it (the requests' histogram counts every line)
        reader, writer = await connect(server)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        metrics = await asyncio.wait_for(read_answer(reader), WAIT_S)
        timed = b'_count{method="other",route="unread",status="408"} 1.0'
        assert b"shopkeep_http_request_duration_seconds" + timed in metrics.body


async def test_a_request_whose_body_stops_halfway_is_closed_within_the_read_bound(
    serve: Serve,
) -> None:
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=BOUND_S)) as server:
        reader, writer = await connect(server)
        whole = request_bytes("POST", "/v1/payments/callback", {}, b"{" + b" " * 99)
        with structlog.testing.capture_logs() as logs:
            writer.write(whole[:-50])

            assert await seconds_until_closed(reader, WITHIN_S) is not None
            assert counts(server).read_timeouts == 1
            assert await healthy(await connect(server))
        assert [line for line in logs if line["log_level"] == "error"] == []  # not a bug: no 500
        # closed unanswered: the access line says so (408), not a 400 nobody received
        cut = [line for line in logs if line.get("route") == "/v1/payments/callback"]
        assert [line["status"] for line in cut] == [408]


async def test_a_stop_cuts_a_body_still_coming_at_once_not_at_its_read_bound(
    serve: Serve,
) -> None:
    # once the stop begins aiohttp reads nothing more: the rest of the body would be dropped
    served = serve(ConnectionLimits(keepalive_s=LONG_S, read_s=LONG_S))
    server = await served.__aenter__()
    with structlog.testing.capture_logs() as logs:
        try:
            reader, writer = await connect(server)
            whole = request_bytes("POST", "/v1/payments/callback", {}, b"{" + b" " * 99)
            writer.write(whole[:-50])
            for _ in range(int(WAIT_S / 0.01)):  # until its handler waits for the rest
                if any(c.body_coming for c in counts(server).connections):  # type: ignore[attr-defined]
                    break
                await asyncio.sleep(0.01)
        finally:
            # the stop waits for requests under way: this one it cuts (it waited for its read
            # bound before, and aiohttp's 60 s before that)
            await asyncio.wait_for(served.__aexit__(None, None, None), WAIT_S)
        assert await seconds_until_closed(reader, WAIT_S) is not None
    cut = [line for line in logs if line.get("route") == "/v1/payments/callback"]
    assert [line["status"] for line in cut] == [503]


async def test_a_request_sent_slowly_but_whole_within_the_bound_is_answered(
    serve: Serve,
) -> None:
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=LONG_S)) as server:
        reader, writer = await connect(server)
        for byte in range(len(HEALTHZ)):
            writer.write(HEALTHZ[byte : byte + 1])
            await writer.drain()

        assert (await asyncio.wait_for(read_answer(reader), WAIT_S)).status == 200
        assert counts(server).read_timeouts == 0


async def test_a_connection_that_says_nothing_is_closed_within_the_read_bound(
    serve: Serve,
) -> None:
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=BOUND_S)) as server:
        reader, _ = await connect(server)

        assert await seconds_until_closed(reader, WITHIN_S) is not None


async def test_late_requests_begun_one_after_another_are_each_closed_and_the_prompt_kept(
    serve: Serve,
) -> None:
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=BOUND_S)) as server:
        prompt = await connect(server)
        assert await healthy(prompt)
        late = [await connect(server) for _ in range(3)]  # kept: a dropped writer closes
        for _, writer in late:
            writer.write(HALF_A_REQUEST)
            await writer.drain()

        for reader, _ in late:
            assert await seconds_until_closed(reader, WITHIN_S) is not None
        assert counts(server).read_timeouts == 3
        assert await healthy(prompt)  # whole requests, each read at once: never late


async def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_time(
    serve: Serve,
) -> None:
    async with serve(ConnectionLimits(keepalive_s=BOUND_S, read_s=LONG_S)) as server:
        streams = await connect(server)
        assert await healthy(streams)
        assert await healthy(streams)  # kept alive between requests

        closed_after = await seconds_until_closed(streams[0], WITHIN_S)

        assert closed_after is not None and closed_after >= BOUND_S * 0.5
        assert counts(server).read_timeouts == 0


async def test_a_request_still_arriving_is_not_cut_by_a_shorter_keep_alive_time(
    serve: Serve,
) -> None:
    # the idle timer closed a connection whose request had begun: the read timeout, told
    # longer, bounds a request under way
    async with serve(ConnectionLimits(keepalive_s=BOUND_S, read_s=LONG_S)) as server:
        streams = await connect(server)
        assert await healthy(streams)  # the keep-alive timer armed by its answer
        reader, writer = streams
        writer.write(HALF_A_REQUEST)
        await writer.drain()

        assert await seconds_until_closed(reader, WITHIN_S) is None  # open past keep-alive
        writer.write(b"1\r\n\r\n")
        assert (await asyncio.wait_for(read_answer(reader), WAIT_S)).status == 200


async def test_connections_over_the_cap_are_closed_while_the_open_ones_keep_working(
    serve: Serve,
) -> None:
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=LONG_S, max_connections=3)) as (
        server
    ):
        kept = [await connect(server) for _ in range(3)]
        for streams in kept:
            assert await healthy(streams)  # accepted and served: each one counts now

        over, _ = await connect(server)

        assert await seconds_until_closed(over, WAIT_S) is not None
        assert counts(server).refused == 1
        for streams in kept:
            assert await healthy(streams)
        assert counts(server).open == 3
        assert b"shopkeep_connections_refused_total 1.0" in await metrics_text(kept[0])


async def metrics_text(streams: Streams) -> bytes:
    reader, writer = streams
    writer.write(request_bytes("GET", "/metrics", {}))
    return (await asyncio.wait_for(read_answer(reader), WAIT_S)).body


async def small_window(server: Server) -> socket.socket:
    """A socket connected to ``server`` whose receive window is small (4 KiB), so that what
    its client does not read soon fills the server's buffers."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    host, port = server.url.removeprefix("http://").split(":")
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return sock


async def test_a_client_that_takes_no_answers_is_aborted_within_the_read_bound(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it pipelined requests and never read: aiohttp waited for it to take the answers for
    # ever, past every other bound, and a few such clients held every connection of the cap
    aborted = asyncio.Event()
    give_up = BoundedRequestHandler._not_taking_answers

    def noted(handler: BoundedRequestHandler) -> None:
        before = handler._bounds.write_timeouts
        give_up(handler)  # which waits again while the kernel still takes some of it
        if handler._bounds.write_timeouts > before:
            aborted.set()

    monkeypatch.setattr(BoundedRequestHandler, "_not_taking_answers", noted)
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=BOUND_S)) as server:
        sock = await small_window(server)
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)  # reads ~2 KiB
        writer.write(request_bytes("GET", "/openapi.json", {}) * 100)

        await asyncio.wait_for(aborted.wait(), WAIT_S)

        assert counts(server).write_timeouts == 1
        assert await seconds_until_closed(reader, WAIT_S) is not None  # reset, or read out
        assert await healthy(await connect(server))
        writer.close()


async def test_a_client_that_half_closes_after_its_request_gets_the_answer(
    serve: Serve,
) -> None:
    # as nc does: asyncio closed the connection on the client's FIN, the request carried out
    # (a placement, say) and its answer never sent
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=LONG_S)) as server:
        reader, writer = await connect(server)
        writer.write(HEALTHZ)
        writer.write_eof()

        answer = await asyncio.wait_for(read_answer(reader), WAIT_S)

        assert answer.status == 200
        assert await seconds_until_closed(reader, WAIT_S) is not None  # and then closed
        writer.close()


async def test_a_client_that_half_closes_in_the_middle_of_its_body_is_let_go_at_once(
    serve: Serve,
) -> None:
    # the connection was kept for the read bound, then logged 408 and counted a read timeout,
    # as a slow client's would be
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=LONG_S)) as server:
        reader, writer = await connect(server)
        whole = request_bytes("POST", "/v1/payments/callback", {}, b"{" + b" " * 99)
        with structlog.testing.capture_logs() as logs:
            writer.write(whole[:-50])
            writer.write_eof()

            assert await seconds_until_closed(reader, WAIT_S) is not None
            assert await healthy(await connect(server))
        assert counts(server).read_timeouts == 0
        cut = [line for line in logs if line.get("route") == "/v1/payments/callback"]
        assert [line["status"] for line in cut] == [400]


async def test_requests_before_a_body_a_half_close_cuts_are_answered_and_it_is_a_400(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    # the connection was closed at the half-close, the first request carried out (a user
    # made) and its answer lost; a 100-continue was written to the closed transport
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=LONG_S)) as server:
        reader, writer = await connect(server)
        cut = request_bytes("POST", "/v1/payments/callback", {"Expect": b"100-continue"}, b"{" * 9)
        with structlog.testing.capture_logs() as logs:
            writer.write(HEALTHZ + cut[:-5])
            writer.write_eof()

            first = await asyncio.wait_for(read_answer(reader), WAIT_S)
            assert await seconds_until_closed(reader, WAIT_S) is not None
        assert first.status == 200
        assert [line for line in logs if line["log_level"] == "error"] == []
        # nor aiohttp's own (not structlog's): its lingering met the body's error after the
        # answer and logged an "Unhandled exception" with its traceback
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == []
        statuses = [line["status"] for line in logs if line.get("event") == "request"]
        assert statuses == [200, 400]
        assert counts(server).read_timeouts == 0
        writer.close()


@pytest.mark.parametrize("path", ["/v1/payments/callback", "/v1/goods"])
async def test_a_body_whose_chunks_break_once_it_is_being_read_is_answered_400_at_once(
    serve: Serve, path: str
) -> None:
    # aiohttp's parser dropped the body without a word: its handler waited for it for ever,
    # past the read bound and the client's close, and four such requests held a cap of four
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=LONG_S, max_connections=4)) as (
        server
    ):
        for _ in range(5):
            reader, writer = await connect(server)
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                f"{ADMIN_TOKEN}\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n"
                "\r\n".encode()
            )
            # the handler is reading the body: its headers were parsed in a feed of their own
            assert b" 100 " in await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
            writer.write(b'5\r\n{"a":\r\nzz\r\n')

            answer = await asyncio.wait_for(read_answer(reader), WAIT_S)
            assert answer.status == 400, answer
            assert b"the body could not be read" in answer.body
            assert await seconds_until_closed(reader, WAIT_S) is not None
            writer.close()
        assert await healthy(await connect(server))
        assert counts(server).read_timeouts == 0


async def broken_chunks_answer(server: Server, target: str, chunks: bytes) -> tuple[int, bytes]:
    """The answer to a chunked POST to ``target`` whose ``chunks`` break after its headers were
    parsed on their own; the connection is closed after it."""
    reader, writer = await connect(server)
    writer.write(
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_TOKEN}"
        "\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    assert b" 100 " in await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    writer.write(chunks)
    answer = await asyncio.wait_for(read_answer(reader), WAIT_S)
    assert await seconds_until_closed(reader, WAIT_S) is not None
    writer.close()
    return answer.status, answer.body


async def test_broken_chunks_beside_a_refused_query_are_its_422_and_quote_no_bytes(
    serve: Serve,
) -> None:
    # the guard, listing every problem, read the body and met the parser's error: a plain
    # 500 that logged the refused bytes; and a 400 quoted a broken trailer's bytes, token and all
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=LONG_S)) as server:
        broken = b'5\r\n{"a":\r\nzz\r\n'
        status, body = await broken_chunks_answer(server, "/v1/goods?x=1", broken)
        assert status == 422 and b'"parameter":"x"' in body

        secret = b"trailer-secret-0123456789"
        status, body = await broken_chunks_answer(
            server, "/v1/goods", b"2\r\n{}\r\n0\r\nX-Trace: " + secret + b"\x01\r\n\r\n"
        )
        assert status == 400 and b"the body could not be read" in body
        assert secret not in body


async def test_a_request_cut_by_its_read_bound_says_408_whatever_else_was_wrong_with_it(
    serve: Serve,
) -> None:
    # a bad Idempotency-Key had its 422 logged (the body's lost read swallowed, to list every
    # problem), though the client was given nothing
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=BOUND_S)) as server:
        reader, writer = await connect(server)
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}".encode(), "Idempotency-Key": b"a" * 300}
        whole = request_bytes("POST", "/v1/users", headers, b'{"name": "ann"}' + b" " * 40)
        with structlog.testing.capture_logs() as logs:
            writer.write(whole[:-30])

            assert await seconds_until_closed(reader, WAIT_S) is not None
        assert counts(server).read_timeouts == 1
        assert [line["status"] for line in logs if line.get("route") == "/v1/users"] == [408]
        assert [line for line in logs if line["event"] == "http_read_timeout"] == []
        writer.close()


async def test_a_connection_answered_before_its_body_came_closes_without_its_read_bound(
    serve: Serve,
) -> None:
    # a 413 said "Connection: close", and the connection stayed open, lingering for the
    # body for aiohttp's 10 s, then counted late
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=LONG_S)) as server:
        reader, writer = await connect(server)
        writer.write(waiting_to_send("/v1/goods", 40_000_000))

        answer = await asyncio.wait_for(read_answer(reader), WAIT_S)

        assert answer.status == 413
        assert await seconds_until_closed(reader, WAIT_S) is not None  # not after LONG_S
        assert counts(server).read_timeouts == 0
        writer.close()


def waiting_to_send(path: str, length: int, token: str | None = None) -> bytes:
    """The head of a POST to ``path`` that waits for 100 Continue before its body of
    ``length`` bytes, with ``token`` as its bearer."""
    bearer = "" if token is None else f"Authorization: Bearer {token}\r\n"
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{bearer}Expect: 100-continue\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("token", [None, "nobody-holds-this-token"])
async def test_a_request_waiting_to_send_its_body_is_refused_for_its_token_first(
    serve: Serve, token: str | None
) -> None:
    # the door answered "100 Continue" and invited a body it would refuse unread
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=LONG_S)) as server:
        reader, writer = await connect(server)
        writer.write(waiting_to_send("/v1/orders", 100, token))

        answer = await asyncio.wait_for(read_answer(reader), WAIT_S)

        assert answer.status == 401
        writer.close()


async def test_a_request_with_a_token_the_door_knows_is_invited_to_send_its_body(
    serve: Serve,
) -> None:
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=LONG_S)) as server:
        reader, writer = await connect(server)
        writer.write(waiting_to_send("/v1/goods", 2, ADMIN_TOKEN))

        assert await asyncio.wait_for(reader.readline(), WAIT_S) == b"HTTP/1.1 100 Continue\r\n"
        writer.close()


def test_the_open_files_limit_is_raised_to_fit_the_connections_or_said_short() -> None:
    # under `ulimit -n 1024` a cap of 1,024 never held: the system refused connections first,
    # with no log and no metric
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 512:
        pytest.skip(f"this machine's hard limit on open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # the hard one is kept as it is
    try:
        fits = files_for_connections(300)
        raised, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        short = None if hard == resource.RLIM_INFINITY else files_for_connections(hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    assert fits is None and raised == 300 + FILES_BESIDE_CONNECTIONS
    if hard != resource.RLIM_INFINITY:  # a cap the hard limit cannot fit: said short
        assert short == hard - FILES_BESIDE_CONNECTIONS


async def test_a_client_that_reads_slowly_but_steadily_is_not_cut(serve: Serve) -> None:
    # the write deadline ran from the pause to the resume: a reader slower than the buffer's
    # low-water mark a read bound was aborted though it never stopped reading
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=BOUND_S)) as server:
        sock = await small_window(server)
        loop = asyncio.get_running_loop()
        asked = request_bytes("GET", "/openapi.json", {})
        await loop.sock_sendall(sock, asked * 40 + request_bytes("GET", "/healthz", {
            "Connection": b"close"}))  # fmt: skip
        received = b""
        for _ in range(40):  # 2 KiB every 50 ms: slower than the deadline's bound drains
            received += await asyncio.wait_for(loop.sock_recv(sock, 2048), WAIT_S)
            await asyncio.sleep(0.05)
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), WAIT_S):
            received += chunk
        sock.close()

        assert received.count(b"HTTP/1.1 200 OK") == 41
        assert counts(server).write_timeouts == 0


async def test_a_client_that_half_closes_after_its_early_answer_leaves_no_error_in_the_log(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    # a 413 given before the body came, the client read it and half-closed: aiohttp's
    # lingering, reading the rest of the body after the answer, met the body's error and
    # logged an "Unhandled exception" with its traceback (for most such clients, as curl)
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=LONG_S)) as server:
        for _ in range(5):  # the lingering must be under way when the half-close comes
            reader, writer = await connect(server)
            writer.write(
                b"POST /v1/goods HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                b"\r\nContent-Length: 200000\r\n\r\n" + b" " * 10
            )
            answer = await asyncio.wait_for(read_answer(reader), WAIT_S)
            writer.write_eof()

            assert answer.status == 413
            assert await seconds_until_closed(reader, WAIT_S) is not None
            writer.close()
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == []
        assert counts(server).read_timeouts == 0


@pytest.mark.parametrize("path", ["/healthz", "/v1/payments/callback"])
async def test_a_compressed_body_answered_before_it_was_read_is_not_read_after(
    serve: Serve, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    # aiohttp decompresses what it reads, and its lingering read the rest of such a body on
    # the loop without waiting (58 KB of deflate made 60 MB to drop, every request held for
    # half a second): here, a rest that does not decompress, which lingering met and logged
    packer = zlib.compressobj()
    body = packer.compress(b" " * 2_000_000) + packer.flush(zlib.Z_SYNC_FLUSH) + b"\xff" * 5_000
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=LONG_S)) as server:
        reader, writer = await connect(server)
        headers = {"Content-Encoding": b"deflate", "Content-Type": b"application/json"}
        writer.write(request_bytes("POST", path, headers, body))

        answer = await asyncio.wait_for(read_answer(reader), WAIT_S)

        assert answer.status in (400, 405, 413)
        assert await seconds_until_closed(reader, WAIT_S) is not None
        assert [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"] == []
        writer.close()


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("OPTIONS *", 404),
        ("CONNECT shop.example:443", 404),
        ("GET http://shop.example", 404),  # an absolute URL with no path is `/` (RFC 9112)
        ("GET http://shop.example?x=1", 404),
        ("CONNECT /v1/goods", 405),
    ],
)
async def test_a_target_that_is_no_path_is_answered_and_logged_as_the_root_path(
    serve: Serve, target: str, status: int
) -> None:
    # aiohttp routes by the target's path and answered these a plain-text 404 of its own, with
    # no request id, no access line and no metric: anyone could send them unseen
    async with serve(ConnectionLimits(keepalive_s=LONG_S, read_s=LONG_S)) as server:
        reader, writer = await connect(server)
        with structlog.testing.capture_logs() as logs:
            writer.write(f"{target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            answer = await asyncio.wait_for(read_answer(reader), WAIT_S)
            assert await healthy((reader, writer))  # a CONNECT opened no tunnel
        writer.close()

    assert answer.status == status
    assert answer.headers["content-type"] == "application/problem+json"
    [line, _] = [log for log in logs if log["event"] == "request"]
    assert (line["route"], line["status"]) == ("unmatched", status)
    assert line["request_id"] == answer.headers["x-request-id"]


def test_an_idle_keep_alive_connection_is_kept_15_seconds_by_default() -> None:
    # SPEC 7: "closed after a configurable time (default 15 s)"; every test here sets its own
    assert ConnectionLimits().keepalive_s == 15.0
