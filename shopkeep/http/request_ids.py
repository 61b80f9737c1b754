"""Request ids: one per request, in the response, in every log line the request causes.

The id is the client's ``X-Request-Id`` when it is sane (1 to 128 characters of letters,
digits and ``._:-``), so a caller can follow its own id through our logs; otherwise a fresh
one: 32 hex digits, a random prefix drawn when the process starts followed by a counter.
Counting is what makes it cheap (a version-4 UUID reads the system's random source on every
request); the prefix keeps ids from two runs of the server apart in the logs. An id names a
request, it is no secret: that the next one is guessable gives nobody anything.

:func:`bind` makes the id and binds it into structlog's contextvars (lines logged by the
handler) and sets it as ``shopkeep.runtime.current_trace``, which the actor runtime copies into
every envelope the request sends: an actor's task was started elsewhere and does not see this
request's contextvars, but it logs the trace of the message it is handling (a handler of
another module reads the id as ``current_trace.get()``). Nothing unbinds them: aiohttp
handles each request in a task of its own, whose copy of the context ends with it (resetting
two variables would cost a request as much as setting them).
"""

from __future__ import annotations

import itertools
import re
import secrets
from contextvars import ContextVar
from typing import Any, Final

import structlog
from multidict import istr

from shopkeep.runtime import current_trace

HEADER: Final = "X-Request-Id"
HEADER_KEY: Final = istr(HEADER)
"""The header's name as aiohttp's headers take it without folding its case on every request."""
_SANE: Final = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_PREFIX: Final = secrets.token_hex(8)
_COUNT: Final = itertools.count(1 << 64 | 1)
"""The counter, from 2**64 + 1: its hexadecimal digits after ``0x1`` are the count's 16, zero
padded, with no format specification to parse on every request."""

def _logged_var() -> ContextVar[Any]:
    # The variable structlog's ``bind_contextvars(request_id=...)`` sets: set directly, it
    # saves the keyword dictionaries of bind and reset on every request. Bound and reset at
    # once here, so nothing stays bound where this module is imported.
    token = structlog.contextvars.bind_contextvars(request_id=None)["request_id"]
    token.var.reset(token)
    return token.var


_LOGGED: Final = _logged_var()


def bind(header: str | None) -> str:
    """The request's id: the client's (``header``) when it is sane, else a new one (32 hex
    digits); bound for the logs and the actors, in the context of the request's task."""
    if header is not None and _SANE.fullmatch(header):
        request_id = header
    else:
        request_id = _PREFIX + hex(next(_COUNT))[3:]  # new_id() inline: every request asks
    current_trace.set(request_id)
    _LOGGED.set(request_id)
    return request_id


def new_id() -> str:
    """A new request id (32 hex digits), bound nowhere: for a request no handler sees (one
    the HTTP parser refused), whose answer and log line still carry one."""
    return _PREFIX + hex(next(_COUNT))[3:]
