"""Structured logging for the whole process: structlog, configured once at the edge.

``configure_logging()`` is called by the command line, never on import, so tests and programs that
embed shopkeep keep whatever logging they set up. Lines go to stderr: by default JSON (one object
per line) when stderr is not a terminal, so log shippers can parse them, and coloured key=value
text when a person is watching; ``--log-format`` and ``--log-level`` choose otherwise.
"""

import logging
import sys
from typing import TextIO

import structlog

from shopkeep.runtime import message_context


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


def configure_logging(
    level: int | str = logging.INFO, stream: TextIO | None = None, fmt: str | None = None
) -> None:
    """Route structlog to ``stream`` (stderr by default) from ``level`` up (a number or a name
    such as ``"warning"``), as ``fmt`` says: "json", "console", or None for JSON unless the
    stream is a terminal."""
    out = sys.stderr if stream is None else stream
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    renderer: structlog.typing.Processor
    if (fmt or ("console" if out.isatty() else "json")) == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            # Context bound with bind_contextvars (a request id, an order id) joins every line.
            structlog.contextvars.merge_contextvars,
            add_message_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
