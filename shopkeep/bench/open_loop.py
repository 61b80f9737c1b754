"""An open-loop HTTP/1.1 client light enough not to be the tail it measures.

The half-load figure of :mod:`shopkeep.bench.http` offers half the server's capacity on a fixed
schedule and counts each latency from when its request was due. A client built on aiohttp's
ClientSession costs more per request than the server's own HTTP layer, and shares the server's
two cores: its own queueing showed up as the server's tail (a p99 of 187 ms where the server's
histogram said ~35). This one writes pre-encoded requests on kept-alive sockets through a bare
:class:`asyncio.Protocol` and reads only what it needs from an answer (the status and
Content-Length), a few microseconds a request.

Requests are handed out to idle connections in the order they fall due; when all are busy a due
request waits in line (its latency counting from when it was due, so a server that falls behind
is charged for it: no coordinated omission).

The schedule is kept by a thread of its own (:class:`Ticker`), not by the event loop's timers:
uvloop counts its timers in whole milliseconds, so a wait shorter than one (every wait, at the
rates the half load offers: 0.4 - 0.8 ms between requests) woke at once and was tried again
until it was over. That spinning took 30% of a core at 1,300 requests a second and all of one
at 2,000, on the two cores the server under test shares with its client. A thread's timed wait
wakes within about a tenth of a millisecond, and the thread hands the loop every request that
has fallen due, in one call, each time it wakes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

HEADER_END = b"\r\n\r\n"


class ConnectionLost(Exception):
    """The server closed a connection with a request on it (or sent what is not HTTP/1.1)."""


class _Connection(asyncio.Protocol):
    """One kept-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[int] | None = None
        self._body_left = -1  # -1: still reading the head
        self._status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they behave as one
        self.transport = cast(asyncio.Transport, transport)

    def send(self, request: bytes) -> asyncio.Future[int]:
        """Write ``request``; the future resolves to the answer's status once it is read."""
        assert self.transport is not None and self._answer is None
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._answer

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while self._answer is not None:
            if self._body_left < 0:
                end = buffer.find(HEADER_END)
                if end < 0:
                    return
                head = bytes(buffer[:end]).decode("latin-1")
                del buffer[: end + len(HEADER_END)]
                self._status = int(head[9:12])
                self._body_left = _content_length(head)
            if len(buffer) < self._body_left:
                return
            del buffer[: self._body_left]
            self._body_left = -1
            answer, self._answer = self._answer, None
            answer.set_result(self._status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionLost(str(exc or "closed by the server")))
        self._answer = None


def _content_length(head: str) -> int:
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(value)
    raise ConnectionLost("an answer without Content-Length")


class OpenLoop:
    """Offers requests to one server on a schedule over at most ``connections`` sockets.

    ``make_request(n)`` gives the bytes of request ``n`` (a whole HTTP/1.1 request, kept alive);
    request ``n`` is due at ``start + n / rate_per_s``.
    """

    def __init__(self, url: str, connections: int) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._connections = connections
        self._idle: deque[_Connection] = deque()
        self._due: deque[tuple[int, float]] = deque()
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.errors = 0

    async def run(
        self, make_request: Callable[[int], bytes], rate_per_s: float, seconds: float
    ) -> float:
        """Offer ``seconds`` worth of requests; the seconds from the first due time to the last
        answer. Figures are left in ``latencies`` (seconds), ``statuses`` and ``errors``."""
        loop = asyncio.get_running_loop()
        for _ in range(self._connections):
            _, connection = await loop.create_connection(_Connection, self._host, self._port)
            self._idle.append(connection)
        self._make_request = make_request
        self._pending: set[asyncio.Task[None]] = set()
        ticker = Ticker(loop, self._fall_due, rate_per_s, max(1, round(seconds * rate_per_s)))
        start = ticker.start
        try:
            await ticker.run()
        finally:
            ticker.stop()
        while self._pending:
            await asyncio.gather(*self._pending)
        # every answer dispatches the next due request: any left had no connection to go on
        self.errors += len(self._due)
        self._due.clear()
        elapsed = time.perf_counter() - start
        for connection in self._idle:
            if connection.transport is not None:
                connection.transport.close()
        return elapsed

    def _fall_due(self, due: list[tuple[int, float]]) -> None:
        self._due.extend(due)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._due and self._idle:
            connection = self._idle.popleft()
            if connection.transport is None:
                continue  # closed by the server while idle: the others carry on
            n, due = self._due.popleft()
            task = asyncio.ensure_future(self._exchange(connection, self._make_request(n), due))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _exchange(self, connection: _Connection, request: bytes, due: float) -> None:
        try:
            status = await connection.send(request)
        except ConnectionLost:
            self.errors += 1
            self._dispatch()
            return
        self.latencies.append(time.perf_counter() - due)
        key = str(status)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        self._idle.append(connection)
        self._dispatch()


class Ticker:
    """Hands ``fall_due`` each request at its due time (request ``n`` at ``start + n /
    rate_per_s``, ``total`` of them), on ``loop``, from a thread that sleeps in between."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fall_due: Callable[[list[tuple[int, float]]], None],
        rate_per_s: float,
        total: int,
    ) -> None:
        self._loop = loop
        self._fall_due = fall_due
        self._interval = 1.0 / rate_per_s
        self._total = total
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="open-loop-ticker", daemon=True)
        self._done = asyncio.Event()
        self.start = time.perf_counter()
        """When request 0 falls due."""

    async def run(self) -> None:
        """Tick until every request has fallen due."""
        self._thread.start()
        await self._done.wait()

    def stop(self) -> None:
        """Stop ticking (at once: its wait ends too, when the run was cut short) and end the
        thread."""
        self._stopped.set()
        if self._thread.ident is not None:  # started
            self._thread.join()

    def _tick(self) -> None:
        start, interval, total = self.start, self._interval, self._total
        n = 0
        while n < total and not self._stopped.is_set():
            now = time.perf_counter()
            due = start + n * interval
            if due > now:
                self._stopped.wait(due - now)
                continue
            # every request due by now, in one hand-over (more than one when the thread woke late)
            last = min(total, max(n + 1, int((now - start) / interval) + 1))
            fallen = [(k, start + k * interval) for k in range(n, last)]
            self._loop.call_soon_threadsafe(self._fall_due, fallen)
            n = last
        if not self._stopped.is_set():
            self._loop.call_soon_threadsafe(self._done.set)
