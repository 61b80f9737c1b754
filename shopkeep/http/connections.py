"""The server's connections, bounded (SPEC 7): :class:`BoundedRunner` runs an app under
:class:`~shopkeep.http.connection_limits.ConnectionLimits`.

What aiohttp does itself: close a keep-alive connection idle for ``keepalive_timeout`` (its
default is an hour; ours is 15 s). What it does not, and this module adds:

- a read deadline: from the first byte of a request (or from the accept, for a connection's
  first request) its line, headers and body must all arrive within ``read_s``, else the
  connection is closed unanswered, the way Go's ``ReadHeaderTimeout`` and nginx's
  ``client_header_timeout`` do. aiohttp waits for a half-sent request for as long as the
  keep-alive timer lets it, and for a half-sent body for ever;
- a write deadline: a connection whose client stops taking its answers (the socket's send
  buffer full, writing paused, and none of it taken) for ``read_s`` is aborted. aiohttp waits
  for it for ever, and keeps it open past every other bound: a few clients that pipeline
  requests and never read held the cap's every connection;
- a client's half-close (its FIN, as ``nc`` sends) ends the connection once what it sent is
  answered: asyncio's default closed it at once, the requests carried out and unanswered; in
  the middle of a body, that body's read fails at once (answered 400, after the requests
  before it), where aiohttp waited for the rest until the read deadline;
- a connection answered before its body arrived (a 413) reads and drops the rest for
  :data:`LINGER_S`, not aiohttp's 10 s, then closes; one whose body is compressed closes at
  once (the rest, decompressed to be dropped, held the loop: a bomb under the size limit);
- a cap: a connection accepted while ``max_connections`` are open is closed at once, without a
  word (it was not read, so there is no request to answer); those open are served as before;
- a request aiohttp's parser refuses (a control character in a header, a line past its limit)
  is answered problem+json like every other refusal (``errors.unparsable``), where aiohttp
  answers plain text quoting the refused line and logs it with a traceback, token and all.

aiohttp has no hook for any of these, so each connection's protocol is our subclass of its
:class:`~aiohttp.web.RequestHandler`, made by our :class:`~aiohttp.web.Server`. The deadline
looks at two attributes of aiohttp's handler that are not public (``_messages``, the requests
parsed and not yet handled, and ``_request_count``), and a broken body's framing at its
private ``_ErrInfo``; tests/http/test_connections.py fails if they change.

The deadlines share one timer, the server's: a connection notes when its request began, and the
timer fires at the earliest deadline, closes every connection past its own and sets itself for
the next. A timer of each request's own cost about 2 us a request to set and cancel (uvloop),
for a deadline that almost never comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sys
import termios
from collections.abc import Callable, Coroutine
from typing import Any, Final, cast

import structlog
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import _ErrInfo
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from yarl import URL

from shopkeep.http.connection_limits import ConnectionLimits
from shopkeep.http.errors import parser_found, unparsable
from shopkeep.http.request_ids import HEADER_KEY, new_id
from shopkeep.logs import ACCESS

log = structlog.get_logger("shopkeep.http")

DEADLINE_SLACK_S: Final = 0.001
"""How early a read deadline may be taken as reached: a timer may fire up to the loop's clock
resolution before its time, and then found nothing late would set itself again at once."""


READ_DEADLINE_STATUS: Final = 408
"""What the access line of a request cut by the read deadline says (as nginx's log does)."""
STOPPED_STATUS: Final = 503
"""What the access line of a request whose body was still coming when the stop began says."""
UNPARSABLE_ROUTE: Final = "unparsable"
"""The route of a request's access line when the parser refused it."""
UNREAD_ROUTE: Final = "unread"
"""The route of a request's access line when its headers did not arrive within the bound."""
UNKNOWN_METHOD: Final = "-"
"""The method of such a line: the request's own was not read (or was what was refused)."""
CLIENT_LEFT: Final = "the client ended its side in the middle of the body"
"""Why the body of a request whose client half-closed in its middle cannot be read (a 400)."""
LINGER_S: Final = 1.0
"""How long a connection answered before its body arrived (a 413, a 401) reads and drops the
rest before it closes, so that the client, still sending, reads the answer rather than a
reset. aiohttp's default, 10 s, held the connection for the read bound and counted it late."""


class BoundedServer(web.Server):
    """aiohttp's low-level server whose connections are :class:`BoundedRequestHandler`."""

    def __init__(self, handler: Any, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self.refused = 0
        """Connections closed on accept because ``max_connections`` were open."""
        self.read_timeouts = 0
        """Connections closed because a request did not arrive whole within ``read_s``."""
        self.write_timeouts = 0
        """Connections aborted because their client took no answer for ``read_s``."""
        self.unparsable = 0
        """Requests aiohttp's parser refused (answered 400 or 413, the connection closed after):
        they reach no route, so the requests' own metric does not count them."""
        self.unrouted: Callable[[str, int, float], None] | None = None
        """Told of each request no route took since it could not be read (its route label,
        ``unparsable`` or ``unread``, its status and its time in seconds): the requests'
        latency metric, as their access lines, once the metrics watch this server."""
        self._handler_kwargs = {
            key: value
            for key, value in kwargs.items()
            if key not in ("request_factory", "handler_cancellation", "loop")
        }
        self._handler_loop = asyncio.get_running_loop()
        self._sweep: asyncio.TimerHandle | None = None

    def __call__(self) -> BoundedRequestHandler:
        """A new connection's protocol (asyncio calls this on every accept)."""
        return BoundedRequestHandler(
            self,
            loop=self._handler_loop,
            keepalive_timeout=self.limits.keepalive_s,
            lingering_time=LINGER_S,
            **self._handler_kwargs,
        )

    @property
    def open(self) -> int:
        """Connections open now (aiohttp counts one until its last request is handled)."""
        return len(self.connections)

    def reading(self, since: float) -> None:
        """A connection began to read a request at ``since`` (the loop's time): the timer will
        come by its deadline."""
        if self._sweep is None:
            self._sweep = self._handler_loop.call_at(since + self.limits.read_s, self._close_late)

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop serving, as aiohttp's server does, but cut at once a request whose body is
        still coming."""
        # Once the stop begins, aiohttp reads nothing more from any connection: a request whose
        # body is still coming would wait for it, unanswered, until its read deadline. Cut it
        # now (nothing of it was done; its client sends it again). The read deadline still
        # bounds what the stop waits for.
        for handler in list(self.connections):
            connection = cast(BoundedRequestHandler, handler)  # every one is made by __call__
            if connection.body_coming:
                connection.cut(STOPPED_STATUS)
        try:
            await super().shutdown(timeout)
        finally:
            if self._sweep is not None:
                self._sweep.cancel()
                self._sweep = None

    def _close_late(self) -> None:
        """Close every connection past its read deadline; set the timer for the next one."""
        self._sweep = None
        read_s = self.limits.read_s
        # a timer may fire a little before its time (the loop's clock resolution)
        late = self._handler_loop.time() + DEADLINE_SLACK_S - read_s
        earliest: float | None = None
        for handler in self.connections:
            connection = cast(BoundedRequestHandler, handler)  # every one is made by __call__
            since = connection.reading_since
            if since is None:
                continue
            if since <= late:
                connection.overdue()
            elif earliest is None or since < earliest:
                earliest = since
        if earliest is not None:
            self._sweep = self._handler_loop.call_at(earliest + read_s, self._close_late)


class BoundedRequestHandler(web.RequestHandler):
    """One connection: aiohttp's handler, refused over the cap, closed when a request is late."""

    def __init__(self, server: BoundedServer, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self._bounds = server
        self._now = server._handler_loop.time
        self._refused = False
        self.reading_since: float | None = None
        """When the request being read began (the loop's time); None between requests."""
        self.cut_status: int | None = None
        """Set when the connection was closed before its request arrived whole: what its
        handler then answers reaches no one, and its access line says this status instead
        (408 for the read deadline, 503 for a stop)."""
        self._body: StreamReader | None = None  # of the last request whose headers arrived
        self._answered_early: StreamReader | None = None  # a body its answer came before
        # set while writing is paused (the client takes no more): rare, so a timer of its own
        self._write_stall: asyncio.TimerHandle | None = None
        self._unsent = 0  # bytes waiting to be sent when the write deadline was set

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._bounds
        if server.open >= server.limits.max_connections:
            # Before aiohttp sees it: no task, no timer, not counted. The kernel accepted it
            # already; closing it is the only refusal there is.
            self._refused = True
            server.refused += 1
            transport.close()
            return
        super().connection_made(transport)
        self._begin()  # the first request must begin (and end) within the bound too

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        self._done()
        self._taking_answers()
        super().connection_lost(exc)

    def eof_received(self) -> bool:  # type: ignore[override]  # asyncio.Protocol: bool | None
        """The client half-closed (it sent all it will, as ``nc`` does): what it sent is
        answered, then the connection closes. asyncio's default closed it at once: the
        requests were carried out and their answers lost."""
        waiter = self._waiter
        if self._request_count == 0 or (waiter is not None and not waiter.done()):
            return False  # nothing asked, or all answered (waiting for more): close now
        body = self._body
        if body is not None and not body.is_eof():
            # in the middle of a body, which can never arrive whole now: its read fails at once
            # (answered 400, to a client that may still read), not at the read deadline; the
            # requests before it are answered first
            self._body_never_whole(body, ConnectionResetError(CLIENT_LEFT))
        if self._messages:
            # requests still to answer (pipelined): the last one's answer closes it
            message, payload = self._messages[-1]
            if isinstance(message, RawRequestMessage):
                self._messages[-1] = (message._replace(should_close=True), payload)
        else:
            self.close()  # once the request in hand is answered
        return True  # the transport stays open for the answers

    def finish_response(
        self, request: BaseRequest, resp: StreamResponse, start_time: float | None
    ) -> Coroutine[Any, Any, tuple[StreamResponse, bool]]:
        # not a coroutine of its own: one call more on every request's path, not a frame
        payload = request._payload
        if not payload.is_eof():  # answered before its body came: aiohttp lingers to read it
            self._answered_early = payload
            encoding = request.headers.get(hdrs.CONTENT_ENCODING)
            if encoding is not None and encoding.lower() != "identity":
                # not this one: aiohttp decompresses what it reads, and its lingering reads
                # on without ever waiting while bytes are there, all on the loop (58 KB of
                # deflate made 60 MB to throw away: 0.3 - 0.6 s with every request held)
                self._lingering_time = 0.0
        return super().finish_response(request, resp, start_time)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_stall is None:
            self._arm_write_deadline()

    def _arm_write_deadline(self) -> None:
        self._unsent = self._bytes_unsent()
        self._write_stall = self._bounds._handler_loop.call_later(
            self._bounds.limits.read_s, self._not_taking_answers
        )

    def _bytes_unsent(self) -> int:
        """What the client has not taken yet: the transport's buffer and the socket's send
        queue in the kernel (which a slow reader drains long before the transport's buffer
        moves)."""
        transport = self.transport
        if transport is None:
            return 0
        unsent = transport.get_write_buffer_size()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
                unsent += int.from_bytes(queued, sys.byteorder)
        return unsent

    def resume_writing(self) -> None:
        super().resume_writing()
        self._taking_answers()

    def _taking_answers(self) -> None:
        if self._write_stall is not None:
            self._write_stall.cancel()
            self._write_stall = None

    def _not_taking_answers(self) -> None:
        """Writing stayed paused for ``read_s``: unless the client took some of it meanwhile
        (a slow reader, still reading: the deadline starts again), abort (closing would wait
        to send what the client does not take)."""
        self._write_stall = None
        transport = self.transport
        if transport is None:
            return  # gone meanwhile
        if self._bytes_unsent() < self._unsent:
            self._arm_write_deadline()
            return
        self._bounds.write_timeouts += 1
        log.info("http_write_timeout", detail="the client took no answer for the read timeout")
        transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.reading_since is None and data:
            self._begin()  # the first byte of a request
        parsed = self._request_count
        body = self._body
        super().data_received(data)
        if self._request_count != parsed and self._messages:
            message, payload = self._messages[-1]
            if isinstance(message, _ErrInfo) and body is not None and not body.is_eof():
                self._framing_broken(body, message)
                return
            self._body = payload  # headers arrived; the body may still come
        if self._body is not None and self._body.is_eof():
            self._done()  # the request is whole
        # Bytes of a next, pipelined request that came with the end of this one get no
        # deadline of their own: the keep-alive timer closes a connection waiting for them.

    def _framing_broken(self, body: StreamReader, refused: _ErrInfo) -> None:
        """The parser refused bytes in the middle of ``body`` (a chunk's size that is no
        number): aiohttp's C parser drops the body without a word and queues the refusal as
        a request of its own, so the handler reading the body waited for ever, past the read
        deadline, which the refusal's empty body ended, and past the client's close: a few
        such requests held the cap's every connection. The body's read fails now (answered
        400 by its handler, as one request gets one answer) and the connection closes after:
        where the next request would begin is unknown."""
        self._messages.pop()
        said = parser_found(refused.message, "the chunks do not add up")
        self._body_never_whole(body, web.RequestPayloadError(said))
        self.close()

    def _body_never_whole(self, body: StreamReader, error: BaseException) -> None:
        """``body`` can never arrive whole: a read under way or to come fails with ``error``.
        One answered already is only put at its end: aiohttp's lingering, reading the rest
        after the answer, met the error and logged an "Unhandled exception" at error level."""
        if body is not self._answered_early:
            body.set_exception(error)
        # and at its end: a read still meets the error first, but a lingering that begins
        # after this does not read at all
        body.feed_eof()
        self._done()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        answer = unparsable(exc)
        self._bounds.unparsable += 1
        request_id = new_id()  # a client's own is among the headers that did not parse
        answer.headers[HEADER_KEY] = request_id
        # the parser's own message quotes the refused bytes: only what they were is logged
        log.info(
            "http_unparsable_request",
            status=answer.status,
            error=type(exc).__name__,
            request_id=request_id,
        )
        self._access_line(UNPARSABLE_ROUTE, answer.status, request_id)
        answer.force_close()  # where the next request would begin in these bytes is unknown
        return answer

    @property
    def body_coming(self) -> bool:
        """A request's headers arrived and its body is still coming."""
        return self._body is not None and not self._body.is_eof()

    def overdue(self) -> None:
        """The request did not arrive whole within the bound: close the connection."""
        self._bounds.read_timeouts += 1
        if not self.body_coming:  # its headers had not ended: no route's access line
            request_id = new_id()
            log.info("http_read_timeout", status=READ_DEADLINE_STATUS, request_id=request_id,
                     detail="the request's headers did not arrive within the read timeout")
            self._access_line(UNREAD_ROUTE, READ_DEADLINE_STATUS, request_id)
        self.cut(READ_DEADLINE_STATUS)

    def _access_line(self, route: str, status: int, request_id: str) -> None:
        """The access line of a request no route took, since it could not be read (SPEC 8:
        one a request): its method unknown (``-``), its time from its first byte."""
        since = self.reading_since
        took_s = 0.0 if since is None else self._now() - since
        ACCESS.request(UNKNOWN_METHOD, route, status, round(took_s * 1000, 3), request_id, None)
        if self._bounds.unrouted is not None:
            self._bounds.unrouted(route, status, took_s)

    def cut(self, status: int) -> None:
        """Close the connection before its request arrived whole; its access line says
        ``status``."""
        self.cut_status = status
        self._done()
        self.force_close()

    def _begin(self) -> None:
        self.reading_since = since = self._now()
        self._bounds.reading(since)
        idle = self._keepalive_handle
        if idle is not None:
            # a request under way is bounded by the read deadline alone: aiohttp's idle timer,
            # armed after the last answer (or at the accept), closed one still arriving when a
            # keep-alive timeout shorter than the read timeout (or the rest of one) ran out;
            # aiohttp arms it again after this request's answer
            idle.cancel()
            self._keepalive_handle = None

    def _done(self) -> None:
        self._body = None
        self.reading_since = None


def origin_form(message: RawRequestMessage) -> RawRequestMessage:
    """``message`` with a target the router can take: what is not a path routes as ``/``.

    aiohttp routes by the path of the target's URL, and answers its own plain-text 404, with no
    request id, access line or metric, to the targets RFC 9112 allows without one: ``OPTIONS
    *``, ``CONNECT host:port``, and an absolute URL with no path (``GET http://shop.example``,
    which RFC 9112 says means ``/``; its host is kept). Each gets the answer of ``/`` by its
    method, through the front door, as any other request does. A ``CONNECT`` is never a tunnel
    here: a path it names is taken as one (aiohttp's parser makes any target an authority)."""
    target, url = message.path, message.url
    if message.method == hdrs.METH_CONNECT:
        url = URL(target) if target[:1] == "/" else URL("/")
    elif (url.relative() if url.absolute else url).path[:1] == "/":
        return message  # an absolute URL with a path: aiohttp routes it by that path
    elif url.absolute:
        url = url.with_path("/", keep_query=True)
    else:
        url = URL.build(path="/", query_string=url.raw_query_string, encoded=True)
    return message._replace(url=url, upgrade=False)


class BoundedRunner(web.AppRunner):
    """:class:`aiohttp.web.AppRunner` whose server bounds its connections by ``limits``."""

    def __init__(self, app: web.Application, limits: ConnectionLimits) -> None:
        super().__init__(app)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        # The app's startup and freeze are aiohttp's; only the server that accepts is ours.
        made = await super()._make_server()
        factory = made.request_factory

        def request_in_origin_form(
            message: RawRequestMessage, *args: Any
        ) -> BaseRequest:
            if message.path[:1] != "/" or message.method == hdrs.METH_CONNECT:
                message = origin_form(message)
            return factory(message, *args)

        return BoundedServer(
            made.request_handler, limits=self.limits, request_factory=request_in_origin_form
        )

    @property
    def bounded(self) -> BoundedServer | None:
        """The server, once set up (for its counts)."""
        server = self.server
        return server if isinstance(server, BoundedServer) else None
