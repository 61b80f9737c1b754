"""Request ids: one per request, in the response, in every log line the request causes.

The id is the client's ``X-Request-Id`` when it is sane (1 to 128 characters of letters,
digits and ``._:-``), so a caller can follow its own id through our logs; otherwise a fresh
one. It is bound into structlog's contextvars (lines logged by the handler) and set as
``shopkeep.runtime.current_trace``, which the actor runtime copies into every envelope the
request sends: an actor's task was started elsewhere and does not see this request's
contextvars, but it logs the trace of the message it is handling.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from shopkeep.http.state import REQUEST_ID
from shopkeep.runtime import current_trace

HEADER: Final = "X-Request-Id"
_SANE: Final = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id_of(header: str | None) -> str:
    """The client's id when it is sane, else a new one (32 hex digits)."""
    if header is not None and _SANE.fullmatch(header):
        return header
    return uuid.uuid4().hex


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its id, bind it for the logs and the actors, and answer it back."""
    request_id = request_id_of(request.headers.get(HEADER))
    request[REQUEST_ID] = request_id
    trace = current_trace.set(request_id)
    bound = structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await handler(request)
    except web.HTTPException as error:
        # an exception that is an answer (a redirect, say): it carries the id too
        error.headers[HEADER] = request_id
        raise
    finally:
        structlog.contextvars.reset_contextvars(**bound)
        current_trace.reset(trace)
    if not response.prepared:  # a streamed answer sent its headers already
        response.headers[HEADER] = request_id
    return response
