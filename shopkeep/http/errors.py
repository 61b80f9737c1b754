"""Every outcome that is not a success, mapped to problem+json (RFC 9457) in one place.

A problem is ``{"type", "title", "status", "code", "detail"}``, plus ``order_id`` when a failed
placement recorded its order, and ``errors`` on a validation error. ``code`` is the stable,
machine-readable part; ``type`` points at the code's entry in ``/docs``. The map, by whose
fault it is:

- the client: ``validation_error`` 422 (the body, a parameter or a header; ``errors`` lists
  every problem found, each with its JSON Pointer into the body, ``/items/0/quantity``, or
  the name of its ``parameter``; ``detail`` says the first), ``unauthorized`` 401,
  ``not_found`` 404 (an id that names nothing, or cannot), ``method_not_allowed`` 405,
  ``payload_too_large`` 413, ``invalid_callback`` 400 (a payment callback that failed
  verification: the gateway's fault, or a forger's);
- the business rules: 409 with the refusal's own code (insufficient_stock, coupon_unavailable,
  insufficient_balance, price_changed, invalid_state, too_many_unpaid_orders,
  idempotency_conflict; any other refusal code is a 409 too);
- load: ``rate_limited`` 429 (one token's requests beyond its limit, ``rate_limit.py``),
  ``overloaded`` 503 and ``unavailable`` 503 (stopping, an ask that got no answer, or a
  placement whose step failed that way), always with ``Retry-After``;
- a bug: ``internal_error`` 500, logged with its traceback, which never leaves the server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final

import msgspec
import structlog
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError, InvalidURLError

from shopkeep.actors.order_state import INTERRUPTED, PLACEMENT_FAILED
from shopkeep.errors import CallbackRejected, FieldError, ShopError
from shopkeep.http.auth import NO_SUCH_ROUTE, unauthorized
from shopkeep.http.codes import (
    BAD_REQUEST,
    FORBIDDEN,
    INTERNAL_ERROR,
    INVALID_CALLBACK,
    METHOD_NOT_ALLOWED,
    PAYLOAD_TOO_LARGE,
    RATE_LIMITED,
    UNAUTHORIZED,
)
from shopkeep.http.inputs import IDEMPOTENCY_HEADER, REPLAYED_HEADER
from shopkeep.http.rate_limit import RateLimited, whole_seconds
from shopkeep.http.validation import refusal_of
from shopkeep.refusals import (
    COUPON_UNAVAILABLE,
    IDEMPOTENCY_CONFLICT,
    INSUFFICIENT_BALANCE,
    INSUFFICIENT_STOCK,
    INVALID_STATE,
    NOT_FOUND,
    OVERLOADED,
    PRICE_CHANGED,
    PROVIDER_REFUSED,
    TOO_MANY_UNPAID_ORDERS,
    UNAVAILABLE,
    VALIDATION_ERROR,
)
from shopkeep.requests import KEY_RULE, refused_parameter
from shopkeep.runtime import ActorStopped, AskTimeout, Overloaded, ShuttingDown
from shopkeep.store.errors import CommitFailed

log = structlog.get_logger("shopkeep.http")

PROBLEM_JSON: Final = "application/problem+json"
TYPE_BASE: Final = "/docs#problem-"
"""A problem's ``type`` is this followed by its code: the code's entry in the docs page."""


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """An error answer (RFC 9457). `order_id` names the order a failed placement recorded;
    `errors` lists every problem of a refused request (validation_error), each with a JSON
    Pointer into the body (`pointer`) or the name of a query parameter or header
    (`parameter`)."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    order_id: str | None = None
    errors: list[FieldError] | None = None


PROBLEMS: Final[dict[str, tuple[int, str]]] = {
    VALIDATION_ERROR: (422, "Validation error"),
    UNAUTHORIZED: (401, "Unauthorized"),
    FORBIDDEN: (403, "Forbidden"),
    NOT_FOUND: (404, "Not found"),
    METHOD_NOT_ALLOWED: (405, "Method not allowed"),
    PAYLOAD_TOO_LARGE: (413, "Payload too large"),
    INVALID_CALLBACK: (400, "Invalid callback"),
    BAD_REQUEST: (400, "Bad request"),
    INSUFFICIENT_STOCK: (409, "Insufficient stock"),
    COUPON_UNAVAILABLE: (409, "Coupon unavailable"),
    INSUFFICIENT_BALANCE: (409, "Insufficient balance"),
    PRICE_CHANGED: (409, "Price changed"),
    INVALID_STATE: (409, "Invalid state"),
    TOO_MANY_UNPAID_ORDERS: (409, "Too many unpaid orders"),
    IDEMPOTENCY_CONFLICT: (409, "Idempotency conflict"),
    PLACEMENT_FAILED: (409, "Placement failed"),
    INTERRUPTED: (409, "Placement interrupted"),
    RATE_LIMITED: (429, "Too many requests"),
    OVERLOADED: (503, "Overloaded"),
    UNAVAILABLE: (503, "Unavailable"),
    PROVIDER_REFUSED: (502, "Payment provider refused"),
    INTERNAL_ERROR: (500, "Internal error"),
}
"""Every code this API answers with, its status and title (the docs page lists them, the
OpenAPI document has them as the enum of a problem's ``code``). ``placement_failed`` and
``interrupted`` are what a retry of a placement that failed without a refusal of its own (a
crash cut it) answers."""

BUSY: Final = "the shop is too busy now; try again after Retry-After seconds"
"""The detail of every 503 overloaded the runtime raised."""

REFUSED: Final = (409, "Refused")
"""Any other business refusal code."""

_BY_STATUS: Final = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 413: PAYLOAD_TOO_LARGE}

_ERROR_OWN: Final = frozenset({hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH})
"""The headers of aiohttp's own text answer to an HTTPException, which its problem+json
answer replaces."""


def problem(
    code: str,
    detail: str,
    *,
    order_id: int | None = None,
    retry_after: float | None = None,
    errors: Sequence[FieldError] = (),
) -> web.Response:
    """The problem+json answer for ``code``. A 401 carries ``WWW-Authenticate: Bearer``
    (RFC 6750); a 429 and a 503 always carry ``Retry-After``, in whole seconds."""
    status, title = PROBLEMS.get(code, REFUSED)
    if code == VALIDATION_ERROR and not errors:
        errors = (FieldError(detail, pointer=""),)  # somewhere in the request: every one says
    body = Problem(
        TYPE_BASE + code,
        title,
        status,
        code,
        detail,
        None if order_id is None else str(order_id),
        list(errors) if errors else None,
    )
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="shopkeep"'
    if status in (429, 503):
        headers["Retry-After"] = str(whole_seconds(retry_after))
    return web.Response(
        status=status,
        body=msgspec.json.encode(body),
        content_type=PROBLEM_JSON,
        headers=headers,
    )


def problem_for(
    error: BaseException, method: str = "POST", keyed: bool = False
) -> web.Response | None:
    """The answer for an expected error, or None for a bug (the caller answers 500);
    ``method`` and ``keyed`` (an Idempotency-Key sent to a route that reads one) say what the
    request was, for the words of a failed commit's."""
    match error:
        case ShopError(code=code, detail=detail, order_id=order_id):
            # placement codes overloaded / unavailable are 503s too: nothing is held, retry
            answer = problem(code, detail, order_id=order_id, errors=error.errors)
            if error.replayed:  # the first answer under its Idempotency-Key, again
                answer.headers[REPLAYED_HEADER] = "true"
            return answer
        case RateLimited():
            return problem(RATE_LIMITED, str(error), retry_after=error.retry_after)
        case CallbackRejected():
            return problem(INVALID_CALLBACK, str(error))
        case msgspec.ValidationError() | msgspec.DecodeError():
            refused = ShopError.invalid([refusal_of(error)])
            return problem(VALIDATION_ERROR, refused.detail, errors=refused.errors)
        case ShuttingDown():
            return problem(UNAVAILABLE, "the server is stopping", retry_after=error.retry_after)
        case Overloaded():
            # which mailbox was full, or how many messages were in flight, is ours to know
            return problem(OVERLOADED, BUSY, retry_after=error.retry_after)
        case AskTimeout():
            # the request may still be done after this answer: say so (SPEC 7: a 503 says
            # what was done); a retry under the same Idempotency-Key is safe either way
            return problem(
                UNAVAILABLE,
                "the shop did not answer in time and may still carry the request out: retry "
                "it with the same Idempotency-Key, or look before retrying without one",
            )
        case ActorStopped():
            return problem(UNAVAILABLE, "the shop did not answer; nothing was done, try again")
        case CommitFailed():
            return commit_failed_problem(method, keyed, error)
        case web.RequestPayloadError():
            # the body's bytes arrived but could not be read as they said they were (gzip or
            # deflate that does not inflate, chunks that do not add up): the client's, not ours
            said = getattr(error.__cause__, "message", None) or str(error)
            answer = problem(BAD_REQUEST, f"the body could not be read: {said}")
            answer.force_close()  # aiohttp closes it after: the client is told, not surprised
            return answer
        case ConnectionResetError():
            # reading the request failed: its client left, or ended its side in the middle of
            # the body (connections.py), and may read this; it is no bug of ours
            return problem(BAD_REQUEST, "the request's body did not arrive whole: the "
                           "connection ended before it")
        case web.HTTPException() if error.status >= 400:
            code = _BY_STATUS.get(error.status, BAD_REQUEST)
            answer = problem(code, error.reason if code == BAD_REQUEST else _detail_of(error))
            # what the error says besides its text: a 405's Allow, the headers a wrapper of
            # the handler put on it (the admin console's page headers)
            for name, value in error.headers.items():
                if name not in _ERROR_OWN:
                    answer.headers[name] = value
            return answer
    return None


_REFUSED_HEADER: Final = re.compile(r"\n\s*b['\"]([!#$%&*+.^_`|~0-9A-Za-z-]+):")
"""The name of the header line aiohttp's parser quotes in its refusal (``b'Name: value'``)."""


_LINE_PAST: Final = re.compile(r"Got more than (\d+) bytes")
"""aiohttp's parser's words for a header or request line past its limit."""


def unparsable(error: HttpProcessingError) -> web.Response:
    """The answer to a request aiohttp's parser refused before any handler saw it: bytes no
    HTTP client sends (a control character in a header, a line past its limit).

    problem+json like every other answer, and never the refused bytes (they may hold a token).
    A refused ``Authorization`` is nobody's token (401) and a refused ``Idempotency-Key`` an
    invalid key (422 naming it), as when either arrives as other bytes that are not printable
    ASCII (SPEC 7); anything else is 400 bad_request, which says what the parser found."""
    found = _REFUSED_HEADER.search(error.message)
    header = found.group(1).lower() if found else None
    if header == hdrs.AUTHORIZATION.lower():
        answer = problem_for(unauthorized())
    elif header == IDEMPOTENCY_HEADER.lower():
        answer = problem_for(refused_parameter(IDEMPOTENCY_HEADER, KEY_RULE))
    elif (limit := _LINE_PAST.match(error.message)) is not None:
        # the parser quotes neither the header's name nor whether it was one: a token or a
        # key this long is refused here, not 401 / 422 (HTTP's own 431 and 414 would split
        # what cannot be told apart)
        answer = problem(BAD_REQUEST, f"a line of the request (a header, or its target) is "
                                      f"longer than the {limit.group(1)} bytes this server reads")
    elif isinstance(error, InvalidURLError) and "\n" not in error.message:
        # its message is the target itself, as it came
        answer = problem(BAD_REQUEST, "the request's target is neither a path nor a URL with "
                                      "a host")
    else:
        said = parser_found(error.message, "the request is not valid HTTP")
        where = "" if found is None else f" (header {found.group(1)})"
        answer = problem(BAD_REQUEST, f"{said}{where}")
    assert answer is not None
    return answer


def parser_found(message: str, otherwise: str) -> str:
    """What aiohttp's parser found, from its ``message``, without the bytes it quotes (they may
    hold a token): llhttp's words end their first line, the bytes on the lines after
    (``Data after `Connection: close`:`` then the bytes); a message of one line quotes them
    after a colon (``Invalid HTTP header: b'...'``). ``otherwise`` when it says nothing else."""
    first, newline, _ = message.partition("\n")
    said = first.rstrip().removesuffix(":") if newline else first.split(":", 1)[0]
    return said.strip() or otherwise


def _detail_of(error: web.HTTPException) -> str:
    if error.status == 404:
        return NO_SUCH_ROUTE
    if error.status == 405:
        return "this route does not take that method"
    return "the request body is too large"


Refusal = Callable[[web.Request], web.Response]
"""A route's own answer to a request the door refuses (the console's page)."""


def too_large_for(request: web.Request, max_body_bytes: int, page: Refusal | None) -> web.Response:
    """413 for a body announced larger than ``max_body_bytes`` (problem+json, or the route's
    own ``page``); with ``Expect: 100-continue`` (no 100 invited the body: the door's
    ``continue_only``) the connection closes after it: what the client sends next may be that
    body, or another request, and cannot be told apart."""
    answer = too_large(max_body_bytes) if page is None else page(request)
    if hdrs.EXPECT in request.headers:
        answer.force_close()
    return answer


def too_large(max_body_bytes: int) -> web.Response:
    """413 payload_too_large: the answer to a body announced (Content-Length) as larger than
    ``max_body_bytes``, before anything reads it. A larger chunked body is cut off by aiohttp
    itself on reading (the app's ``client_max_size``), which :func:`answer_error` answers 413
    too."""
    return problem(PAYLOAD_TOO_LARGE, f"a body has at most {max_body_bytes} bytes")


def cut_short(request: web.Request, error: BaseException) -> int | None:
    """The status its access line says (408, 503) when reading ``request`` failed with
    ``error`` because the server closed its connection before it arrived whole
    (connections.py: the read deadline, a stop); None otherwise. aiohttp raises
    ConnectionResetError to a read under way, and RuntimeError("Connection closed.") to one
    begun after the close."""
    cut = getattr(request.protocol, "cut_status", None)
    if cut is None:
        return None
    lost = isinstance(error, ConnectionResetError) or (
        type(error) is RuntimeError and str(error) == "Connection closed."
    )
    return cut if lost else None


def commit_failed_problem(
    method: str, keyed: bool, error: CommitFailed | None = None
) -> web.Response:
    """503 unavailable for a request the store failed (CommitFailed), in words for what it
    was. The store refused a write (locked past its busy timeout, a full disk) or its writer
    process died mid-batch, when the batch may have committed after all; or a request of
    several writes (a payment start: the payment, then its answer) had its first kept and a
    later one refused. A read fails so when it waited behind its actor's failed write: its
    answer came from what the disk never took. A retry under the same Idempotency-Key is safe
    either way (SPEC 7: 503, retry). Where the store refused it for its own sake, its words
    say why (a full disk, the database file moved: not something a retry mends soon)."""
    why = ""
    if error is not None and error.refused_by_store:
        why = f" ({error.cause})"
    if method in ("GET", "HEAD"):
        said = (
            f"the shop could not answer it: a write before it could not be stored{why}; try "
            "again"
        )
    else:
        retry = "retry it under the same Idempotency-Key" if keyed else "look before retrying it"
        if error is not None and error.refused_by_store and not error.maybe_kept:
            said = (
                f"the shop's store refused to write it{why}: nothing of it was kept, unless "
                f"it makes several writes and one before was (a payment start's payment); "
                f"{retry}"
            )
        else:  # its outcome not known (the writer process died mid-batch), or in part
            said = (
                f"the shop could not write it to its store{why}: it may not be done, or be "
                f"done in part; {retry}"
            )
    return problem(UNAVAILABLE, said)


def answer_error(request: web.Request, error: Exception, takes_key: bool = True) -> web.Response:
    """The answer to an error a handler raised: problem+json for every expected one, a bare
    500 for a bug, whose traceback goes to the log only; nothing for a request whose
    connection was cut before it arrived whole (connections.py: the read deadline, a stop):
    its access line and metrics say why (408, 503), not the 400 of a body that could not be
    read, which no client received."""
    cut = cut_short(request, error)
    if cut is not None:
        return web.Response(status=cut)
    # a key the route does not read (takes_key) is none
    keyed = takes_key and IDEMPOTENCY_HEADER in request.headers
    answer = problem_for(error, request.method, keyed)
    if answer is not None:
        return answer
    log.exception("http_internal_error", method=request.method, path=request.path)
    return problem(INTERNAL_ERROR, "something went wrong on our side; it was logged")
