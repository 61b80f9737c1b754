"""Structured logging for the whole process: structlog, configured once at the edge.

``configure_logging()`` is called by the command line, never on import, so tests and programs that
embed shopkeep keep whatever logging they set up. Every line goes to one stream (stderr by
default) in one format: JSON, one object per line, for log shippers; or key=value text,
coloured on a terminal, for a person watching. Without a format, a terminal gets text and
anything else JSON.

The standard library's logging (aiohttp's, asyncio's) goes through the same processors and
renderer (structlog's :class:`~structlog.stdlib.ProcessorFormatter` on the root logger), so a
traceback from asyncio comes out as a JSON line like any other. aiohttp's own access log is
silenced: the front door (``shopkeep.http.front_door``) writes one ``request`` line per request,
with the route's pattern, the status, the duration, the request id and the user.

Cost: every HTTP request logs a line, so the chain is kept short and cheap: the timestamp is
formatted once a second (:class:`IsoTimestamper`), JSON is encoded by msgspec, the request
line skips structlog's logger machinery (:class:`RequestLog`), and the lines of one loop turn
are written together (:class:`LineWriter`). Above ``info`` the request line costs one test.
"""

import asyncio
import atexit
import json
import logging
import sys
import threading
import time
from collections import deque
from typing import Any, Final, TextIO

import msgspec
import structlog
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from shopkeep.runtime import message_context

FORMATS: Final = ("json", "console")
"""The values of ``--log-format``."""
LEVELS: Final = ("debug", "info", "warning", "error", "critical")
"""The names ``--log-level`` takes (case-insensitive), most verbose first."""
SILENCED: Final = ("aiohttp.access", "aiosqlite", "stripe")
"""Standard-library loggers kept to warnings whatever the level: aiohttp's access log would
repeat, less well, the front door's ``request`` line; aiosqlite's debug lines carry every
statement's parameters, stored credentials' hashes among them, which no log should hold;
Stripe's SDK says two lines of free text at info for every call it makes (its request and
its response: twice the log's lines under load, no event to filter them by), which the
shop's own lines of each payment, refund and query say already."""
STDLIB_FIELDS: Final = ("event", "pid", "how")
"""The fields a record of the standard library's logging may carry in its ``extra`` into the
line, ``event`` in place of its message (the store's writer process, which imports no
structlog, logs through it: a sentence for a program's own logging, an event with fields
here); no others, so that a library's own extras never reach the log unlooked at."""


def level_of(level: str | int) -> int:
    """The logging level of a name of :data:`LEVELS` (any case) or a number; ValueError else."""
    if isinstance(level, int):
        return level
    name = level.strip().lower()
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LEVELS)}")
    return logging.getLevelNamesMapping()[name.upper()]


def add_message_context(
    logger: object, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Name the actor being handled (``order:42``) and the trace id of the request behind it.

    Both travel in the message's envelope, not in the task, so a line logged by an actor shows
    the request that caused the message even though the actor's task was started elsewhere.
    """
    address, trace = message_context()
    if address is not None:
        event.setdefault("actor", f"{address.kind}:{address.id}")
    if trace is not None:
        event.setdefault("trace", trace)
    return event


def ids_as_text(
    logger: object, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Write an id (a field ``id`` or ``..._id``) as text, as the API and the access line do:
    a 64-bit id is past the integers a JSON reader in JavaScript keeps exactly (2**53)."""
    for key, value in event.items():
        if type(value) is int and (key == "id" or key.endswith("_id")):
            event[key] = str(value)
    return event


_THREE_DIGITS: Final = tuple(f"{n:03d}" for n in range(1000))
_THREE_DIGITS_Z: Final = tuple(f"{n:03d}Z" for n in range(1000))


class IsoTimestamper:
    """Adds ``timestamp``: UTC, ISO 8601 with microseconds (``2026-01-02T03:04:05.678901Z``).

    structlog's ``TimeStamper(fmt="iso")`` builds a ``datetime`` per line, about as long as the
    rest of a request's line; the date and time of day change once a second, so they are
    formatted once a second here, and a line's six digits of microseconds are two strings of
    three taken from tables (a format specification such as ``06d`` is parsed anew on every
    call, and cost as much as the rest of the stamp).
    """

    __slots__ = ("_prefix", "_second_ns")

    def __init__(self) -> None:
        # the second being written, in nanoseconds: none yet (no time_ns is within a second
        # after this one)
        self._second_ns = -(2**63)
        self._prefix = ""

    def __call__(
        self, logger: object, method: str, event: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        """Stamp ``event`` with the time now."""
        event["timestamp"] = self.now()
        return event

    def now(self) -> str:
        """The time now, as a line's ``timestamp``."""
        # In integers (half the cost of splitting a float into its second and fraction), and
        # from the nanoseconds into the second being written: a subtraction, where dividing
        # the whole count (three of Python's 30-bit digits) takes division's slow path.
        ns = time.time_ns()
        into = ns - self._second_ns
        if not 0 <= into < 1_000_000_000:
            second = ns // 1_000_000_000
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
            self._second_ns = second * 1_000_000_000
            into = ns - self._second_ns
        micros = into // 1000
        return self._prefix + _THREE_DIGITS[micros // 1000] + _THREE_DIGITS_Z[micros % 1000]


_ENCODER: Final = msgspec.json.Encoder(enc_hook=repr)


def _to_json(event: structlog.typing.EventDict, **options: Any) -> str:
    """``event`` as one JSON object (msgspec: several times faster than ``json.dumps``); a
    value msgspec cannot write (an integer beyond 64 bits) falls back to ``json``."""
    try:
        return _ENCODER.encode(event).decode()
    except (TypeError, OverflowError, msgspec.EncodeError):
        return json.dumps(event, default=repr)


class AccessLine(msgspec.Struct, gc=False):
    """The JSON access line, field by field in the order the JSON renderer writes an event's
    keys: encoded straight from this struct, it is the very line the renderer would write
    from the event's dictionary, for a third of the cost."""

    method: str
    route: str
    status: int
    duration_ms: float
    request_id: str
    user_id: str | None
    event: str
    level: str
    timestamp: str


def renderer_of(fmt: str, stream: TextIO) -> structlog.typing.Processor:
    """The last processor of format ``fmt`` (:data:`FORMATS`) writing to ``stream``."""
    if fmt == "json":
        return structlog.processors.JSONRenderer(serializer=_to_json)
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=stream.isatty())
    raise ValueError(f"unknown log format {fmt!r}: use one of {', '.join(FORMATS)}")


PENDING_LINES: Final = 64
"""Lines kept for the end of a loop turn at most (a long turn writes them in blocks)."""


class LineWriter:
    """Where every line goes: structlog's logger (``msg``, ``info``, ...) over a text stream.

    The lines logged during one turn of the event loop are written together at its end (a
    loaded server answers many requests a turn: one write and one flush for all their access
    lines, not one each), or every :data:`PENDING_LINES` in a long turn. A line of
    ``warning`` or above is written at once with those before it, and a line logged with no
    loop running (another thread, a command) at once too; so at most the last turn's
    ``info`` lines are lost if the process is killed.

    An access line waits as its :class:`AccessLine` (:meth:`record`), and any other line as
    its text's bytes (``msgspec.Raw``, which the encoder copies as they are): the lines of a
    turn are made one text in one call, in order, when they are written. A request's line
    costs its struct, not an encoding, a decoding and a join of its own.
    """

    __slots__ = ("_lock", "_pending", "_scheduled", "flushes", "stream")

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        # Lines are added without a lock (a lock cost a request's line a tenth of its price):
        # a deque's append and popleft are each atomic, so another thread's line is either
        # among those a flush takes or left for the next. The lock keeps flushes (and writes
        # of lines logged with no loop) from interleaving on the stream.
        self._pending: deque[AccessLine | msgspec.Raw] = deque()
        self._scheduled = False
        self._lock = threading.Lock()
        self.flushes = 0
        """How many times the waiting lines were written (or found none): each block of
        lines is written in the flush numbered after it."""

    def msg(self, message: str) -> None:
        """Write ``message`` as a line by the end of this loop turn (now, without a loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._write(message + "\n")
            return
        self.record(_text(message))

    def record(self, line: AccessLine | msgspec.Raw) -> None:
        """Write ``line`` by the end of this loop turn (now, without a loop)."""
        pending = self._pending
        pending.append(line)
        if len(pending) >= PENDING_LINES:
            self.flush()
        elif not self._scheduled:
            # A flush resets this before it takes the lines: a line added while one was
            # scheduled is taken by it, or finds none scheduled and schedules one. Two
            # threads scheduling at once make a flush that finds nothing, no harm.
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # a record with no loop running
                self.flush()

    def urgent(self, message: str) -> None:
        """Write ``message`` as a line now, after the lines waiting for the turn's end."""
        self._pending.append(_text(message))
        self.flush()

    debug = info = log = msg
    warning = warn = error = err = exception = critical = fatal = failure = urgent

    def flush(self) -> None:
        """Write the waiting lines now."""
        with self._lock:
            self._scheduled = False
            self.flushes += 1
            pending = self._pending
            if pending:
                # as many as there are now: a line another thread adds meanwhile stays
                lines = [pending.popleft() for _ in range(len(pending))]
                self.stream.write(_ENCODER.encode_lines(lines).decode())
                self.stream.flush()

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)
            self.stream.flush()


def _text(line: str) -> msgspec.Raw:
    """A line that is text already, to be written as it is among the encoded ones (a lone
    surrogate, from bytes that were not text, as its escape)."""
    return msgspec.Raw(line.encode("utf-8", "backslashreplace"))


class _UnparsableRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (bytes that are not HTTP: a scanner, a broken
    client or proxy) as an error with its traceback, though it answers it 400 itself and none
    of shopkeep's code ran; and a body that does not decode (gzip that does not inflate) again
    after the handler answered it 400, when it reads what is left of it: the client's fault,
    made one warning line with the parser's reason and no traceback. Every other error of
    aiohttp's keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, RequestPayloadError):
            error = error.__cause__ or error
        if record.name == "aiohttp.server" and isinstance(
            error, HttpProcessingError | RequestPayloadError
        ):
            record.msg, record.args = "%s: %s", (record.getMessage(), error)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


class _LineHandler(logging.Handler):
    """The root logger's handler: a standard-library record, formatted, to the LineWriter."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer
        self.addFilter(_UnparsableRequests())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if record.levelno >= logging.WARNING:
                self.writer.urgent(line)
            else:
                self.writer.msg(line)
        except Exception:
            self.handleError(record)


class RequestLog:
    """The access log: one ``request`` line per answered request, at ``info``.

    Through structlog's logger ``shopkeep.access``, so a program that embeds shopkeep and
    configured structlog itself (or a test's ``capture_logs``) gets the line as any other
    event. Under :func:`configure_logging`'s own pipeline the event takes a shorter way to
    the same line: the fields a request line has no use for (the bound context, an actor, a
    stack) are not looked for, and structlog's logger machinery (three calls, each copying
    the keywords) is skipped; what remains is the level, the timestamp, the renderer and the
    write, the very objects of the pipeline; in JSON, the line is encoded from an
    :class:`AccessLine` instead of a dictionary through the renderer. A request's line costs a
    third of the way through structlog, and a level above ``info`` costs one test.
    """

    __slots__ = (
        "_chain", "_checked", "_enabled", "_json", "_out", "_renderer", "_stamp"
    )  # fmt: skip

    def __init__(self) -> None:
        self._chain: list[Any] = [object()]  # no pipeline of ours yet: never the renderer
        self._renderer: structlog.typing.Processor | None = None
        self._stamp = IsoTimestamper()
        self._out: Any = None
        self._enabled = True
        self._json = False
        self._checked = -1
        """The writer's block (``LineWriter.flushes``) in which the pipeline was last found
        to be ours."""

    def take(
        self,
        chain: list[structlog.typing.Processor],
        stamp: IsoTimestamper,
        out: LineWriter,
        threshold: int,
        *,
        json_lines: bool = False,
    ) -> None:
        """Write straight to ``out`` while structlog runs ``chain`` (configure_logging's,
        whose last processor renders and whose ``stamp`` stamps); with ``json_lines`` (the
        renderer writes JSON) as an :class:`AccessLine`."""
        self._chain = chain
        self._renderer = chain[-1]
        self._stamp = stamp
        self._out = out
        self._enabled = threshold <= logging.INFO
        self._json = json_lines
        self._checked = -1

    def request(
        self,
        method: str,
        route: str,
        status: int,
        duration_ms: float,
        request_id: str,
        user_id: str | None,
    ) -> None:
        """Log one answered request (``user_id`` as the API writes ids: a string)."""
        # Still our pipeline? capture_logs puts its own processor in the very list (looked at
        # on every line), and structlog may have been configured since, by an embedding
        # program or a test: asked once per block of lines the writer writes (a loop turn's),
        # since get_config() builds a dictionary each time; a line found ours waits in that
        # block, so the next block asks again.
        chain = self._chain
        if chain[-1] is not self._renderer or (
            self._checked != self._out.flushes and not self._still_ours()
        ):
            # a logger got anew: one kept would keep the first pipeline it met
            # (configure_logging caches loggers on first use, and a later configure that does
            # not say otherwise keeps that)
            structlog.get_logger("shopkeep.access").info(
                "request", method=method, route=route, status=status,
                duration_ms=duration_ms, request_id=request_id, user_id=user_id,
            )  # fmt: skip
        elif self._json and self._enabled:
            self._out.record(
                AccessLine(
                    method, route, status, duration_ms, request_id, user_id, "request",
                    "info", self._stamp.now(),
                )
            )  # fmt: skip
        elif self._enabled:
            event: structlog.typing.EventDict = {
                "method": method, "route": route, "status": status, "duration_ms": duration_ms,
                "request_id": request_id, "user_id": user_id, "event": "request",
                "level": "info",
            }  # fmt: skip
            self._out.msg(self._renderer(None, "info", self._stamp(None, "info", event)))

    def _still_ours(self) -> bool:
        """Whether structlog still runs the pipeline :meth:`take` was given; if so, and a line
        is to be written, not asked again until the writer's next block."""
        if structlog.get_config()["processors"] is not self._chain:
            return False
        if self._enabled:
            self._checked = self._out.flushes
        return True


ACCESS: Final = RequestLog()
"""The process's access log (the front door writes to it)."""


_handler: _LineHandler | None = None  # the root logger's handler configure_logging added


def _flush_at_exit() -> None:
    if _handler is not None:
        _handler.writer.flush()


def log_through_stdlib_unless_configured() -> None:
    """In a program that has not configured structlog (one embedding a shop), make shopkeep's
    lines records of the standard library's loggers, one text each, under that program's own
    handlers and levels: structlog's defaults would print them on stdout, which such a program
    may use for data, with tracebacks of dozens of lines. A program that configured structlog,
    or ``shopkeep serve`` (:func:`configure_logging`), keeps its own."""
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # first: a line its logger drops costs no more
            structlog.contextvars.merge_contextvars,
            add_message_context,
            ids_as_text,
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(key_order=["event"]),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
    )


def configure_logging(
    level: str | int = logging.INFO, fmt: str | None = None, *, stream: TextIO | None = None
) -> None:
    """Send every line of the process, structlog's and the standard library's, to ``stream``
    (stderr by default) as ``fmt`` (``json`` or ``console``; None: console on a terminal, JSON
    otherwise), dropping those below ``level`` (a name of :data:`LEVELS` or a number).

    ValueError for an unknown level or format. Calling it again replaces what it set up.
    """
    global _handler
    threshold = level_of(level)
    out = sys.stderr if stream is None else stream
    chosen = fmt or ("console" if out.isatty() else "json")
    renderer = renderer_of(chosen, out)
    stamp = IsoTimestamper()
    shared: list[structlog.typing.Processor] = [
        # Context bound with bind_contextvars (a request id, an order id) joins every line.
        structlog.contextvars.merge_contextvars,
        add_message_context,
        ids_as_text,
        structlog.processors.add_log_level,
        stamp,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    chain = [*shared, renderer]
    writer = LineWriter(out)
    structlog.configure(
        processors=chain,
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=lambda *args: writer,
        cache_logger_on_first_use=True,
    )
    ACCESS.take(chain, stamp, writer, threshold, json_lines=chosen == "json")
    handler = _LineHandler(writer)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # a record of the standard library gets the same fields, plus its logger's name
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(allow=STDLIB_FIELDS),
                *shared,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.writer.flush()
    else:
        atexit.register(_flush_at_exit)
    root.addHandler(handler)
    root.setLevel(threshold)
    _handler = handler
    for name in SILENCED:
        logging.getLogger(name).setLevel(max(threshold, logging.WARNING))
    logging.captureWarnings(True)  # warnings.warn too, as lines of the ``py.warnings`` logger
