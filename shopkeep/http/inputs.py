"""Reading a request: its body, path ids and query parameters.

A body that does not decode is refused 422 validation_error listing every problem it has, each
with its JSON Pointer (``validation.py``). The query parameters were checked against their
declared schemas before the handler ran (``guard.Guard``), every problem listed too, so
the functions here only convert them. A path id that cannot be an id names nothing: 404. A
refusal is a ``ShopError``, which ``errors.py`` maps. Answers go out through :func:`reply`.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Final, Literal, TypeVar, get_args

import msgspec
from aiohttp import hdrs, web
from multidict import istr

from shopkeep.actors.config import ShopConfig
from shopkeep.errors import FieldError, ShopError
from shopkeep.http.auth import still_holds, unauthorized
from shopkeep.http.codes import BAD_REQUEST
from shopkeep.http.conversion import ref_in
from shopkeep.http.schemas import EmptyRequest, OrderStatus
from shopkeep.http.state import PRINCIPAL, SHOP, Principal
from shopkeep.http.validation import lone_surrogate, problems, refusal_of, whole_number
from shopkeep.idempotency import IdempotencyKey
from shopkeep.paging import MAX_LIMIT
from shopkeep.payments.names import CHANNELS
from shopkeep.requests import ID_PATTERN, KEY_PATTERN, KEY_RULE, MAX_KEY, refused_parameter
from shopkeep.shop import Shop

T = TypeVar("T")

ORDER_STATUSES: Final = get_args(OrderStatus)
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
"""Set to ``true`` on an answer that is the first answer to the same request again."""
REPLAYED_KEY: Final = istr(REPLAYED_HEADER)
"""The header's name as an answer's headers are looked up by, at half the cost of the text."""
IDEMPOTENCY_KEY_HEADER: Final = istr(IDEMPOTENCY_HEADER)
"""The header's name as headers are looked up without folding its case again."""

CURSOR_SCHEMA: Final = {"type": "string", "pattern": ID_PATTERN}
STATUS_SCHEMA: Final = {"type": "string", "enum": list(ORDER_STATUSES)}
WAIT_SCHEMA: Final = {"type": "boolean", "default": True}
CHANNEL_SCHEMA: Final = {"type": "string", "enum": list(CHANNELS), "default": "page"}
"""``?channel=`` of a payment start: Alipay's page pay (``page``) or its QR code (``qr``)."""
KEY_SCHEMA: Final = {
    "type": "string", "minLength": 1, "maxLength": MAX_KEY, "pattern": KEY_PATTERN,
}

_ENCODER: Final = msgspec.json.Encoder()


def shop_of(request: web.Request) -> Shop:
    """The shop this app serves."""
    return request.app[SHOP]


def caller_of(request: web.Request) -> Principal:
    """Who is asking (the access check already admitted them)."""
    return request[PRINCIPAL]


def scope_of(request: web.Request) -> int | None:
    """The user a request is confined to (their own orders), or None for the admin."""
    return caller_of(request).user_id


DECODED_CODINGS: Final = frozenset({"gzip", "deflate", "identity"})
"""The ``Content-Encoding`` of a request body read here: aiohttp inflates gzip and deflate
(and answers 400 to a body that does not inflate); any other coding it passes on as it came,
which read as JSON said "not JSON", or was taken (a JSON body under a coding of no meaning)."""


def undecoded_coding(request: web.Request) -> str | None:
    """The request's ``Content-Encoding`` when it is none of :data:`DECODED_CODINGS`, or when
    it is said more than once (aiohttp inflates by the last line, a check of the first would
    pass ``identity`` then ``x-foo``, which aiohttp passes on raw): all its values then."""
    codings = request.headers.getall(hdrs.CONTENT_ENCODING, ())
    if not codings:
        return None
    if len(codings) == 1 and codings[0].strip().lower() in DECODED_CODINGS:
        return None
    return ", ".join(codings)


def refuse_undecoded(request: web.Request) -> None:
    """ShopError bad_request, for a body in a coding this server does not decode: unread. Of
    the transfer codings, aiohttp reads ``chunked`` and refuses any other alone, but passes
    one before it (``gzip, chunked``) on undecoded: refused too."""
    coding = undecoded_coding(request)
    if coding is not None:
        raise ShopError(
            BAD_REQUEST, f"Content-Encoding {coding[:40]!r} is not one this server decodes "
            "(gzip, deflate, identity)",
        )  # fmt: skip
    transfer = request.headers.getall(hdrs.TRANSFER_ENCODING, ())
    if transfer and [c.strip().lower() for t in transfer for c in t.split(",")] != ["chunked"]:
        raise ShopError(
            BAD_REQUEST, f"Transfer-Encoding {', '.join(transfer)[:40]!r} is not one this server "
            "decodes (chunked alone; a compressed body says so in Content-Encoding)",
        )  # fmt: skip


def buffered_body(request: web.Request) -> bytes | None:
    """The request's body when it came whole with its headers (a request's small JSON body
    does), taken in one step and left where ``request.read()`` answers it again; else None,
    for :func:`body_bytes` to read.

    ``request.read()`` reads a body in two steps (the bytes, then the end), a tenth of what a
    placement's HTTP layer costs beyond a bare handler. Only a body whose size the door checked
    already (``Content-Length``: the header's presence, the door read its value) is taken so;
    any other is read by aiohttp, which counts it against ``client_max_size`` as it comes, a
    body it inflated (gzip, deflate) included. A body in a coding this server does not decode
    is refused first (:func:`refuse_undecoded`).
    """
    headers = request.headers  # a property: read once
    if hdrs.CONTENT_ENCODING in headers or hdrs.TRANSFER_ENCODING in headers:
        # rare: the whole check only then
        refuse_undecoded(request)
        # aiohttp inflated it: read by aiohttp, which counts what it inflates against
        # client_max_size (taken here, a body inflating past the limit went through)
        return None
    content = request.content
    if content.is_eof() and hdrs.CONTENT_LENGTH in headers:
        raw = content.read_nowait()
        request._read_bytes = raw  # what request.read() answers from now on
        return raw
    return None


async def body_bytes(request: web.Request) -> bytes:
    """The request's body, as ``request.read()`` answers it (and will again).

    A body in a coding this server does not decode is refused (:func:`refuse_undecoded`). A
    body that was still coming when its caller was admitted (the door looks at the headers) is
    taken only if their token still names them: one replaced meanwhile is refused 401, as it
    would be for a request sent after the replacement."""
    raw = buffered_body(request)
    if raw is not None:
        return raw
    raw = await request.read()
    principal = request.get(PRINCIPAL)
    if principal is not None and not await still_holds(
        shop_of(request), principal, request.headers.get(hdrs.AUTHORIZATION)
    ):
        raise unauthorized()
    return raw


async def body_of(request: web.Request, kind: type[T], *, optional: bool = False) -> T:
    """The body decoded as ``kind``; with ``optional``, an absent body is ``kind()``."""
    raw = await body_bytes(request)
    if optional and not raw.strip():
        return kind()
    return decoded(raw, kind, shop_of(request).config)


EMPTY_BODY: Final = "the body is not JSON: it is empty"


def decoded(raw: bytes, kind: type[T], config: ShopConfig) -> T:
    """``raw`` decoded as ``kind``, or ShopError validation_error listing every problem: the
    types' and, past them, the rules of the shop's ``config`` that the body breaks."""
    try:
        # the decoder made once per type (a call fewer than _decoder on every request)
        decoder: msgspec.json.Decoder[T] = _DECODERS.get(kind) or _decoder(kind)
        return decoder.decode(raw)
    except msgspec.ValidationError as refused:
        # msgspec refuses at the first wrong value, before it has read the rest: the body may
        # still not be JSON at all (``{"amount": 0}}``), which the second reading finds
        try:
            written = _as_written(raw)
        except RecursionError:  # nested deeper than any request type: msgspec's one will do
            raise ShopError.invalid([refusal_of(refused)]) from None
        except ValueError as broken:  # not JSON (or not UTF-8): refused as a whole
            raise ShopError.invalid([_not_json(raw, broken)]) from None
        if "got `float`" in str(refused):
            try:
                return _with_whole_numbers(written, kind)
            except (msgspec.ValidationError, RecursionError):
                pass
        try:
            found = problems(written, kind)
        except RecursionError:
            found = []
        rules = getattr(kind, "written_problems", None)  # the shop's rules past the types
        if found and rules is not None:
            found = _beside(found, rules(written, config))
        raise ShopError.invalid(found or [refusal_of(refused)]) from None
    except msgspec.DecodeError as broken:
        if not raw.strip():  # msgspec's words for it: "Input data was truncated"
            raise ShopError.invalid([FieldError(EMPTY_BODY, pointer="")]) from None
        raise ShopError.invalid([lone_surrogate(raw) or refusal_of(broken)]) from None


def _not_json(raw: bytes, broken: ValueError) -> FieldError:
    """The refusal of a body the standard library's parser found not to be JSON: in msgspec's
    words when it finds the same (read without a type, so to the end), else in the standard
    library's (``NaN``, which that parser reads and refuses here, is not JSON either)."""
    try:
        msgspec.json.decode(raw)
    except msgspec.ValidationError:  # a value it cannot hold (1e400) before the fault
        pass
    except msgspec.DecodeError as syntax:
        return refusal_of(syntax)
    return FieldError(f"the body is not JSON: {broken}", pointer="")


_DECODERS: Final[dict[type, msgspec.json.Decoder[Any]]] = {}


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    # A decoder per body type, made once: msgspec.json.decode(raw, type=kind) finds the
    # type's decoding plan again on every call. The types are the catalog's, a bounded few.
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    return decoder


def _with_whole_numbers(written: Any, kind: type[T]) -> T:
    """The body's plain values (:func:`_as_written`, every whole number written with a
    fraction, ``5.0``, read as the integer it is) converted to ``kind``.

    JSON has one kind of number, and to JSON Schema, so to the OpenAPI document, ``5.0`` is an
    integer: refusing it refused requests the document allows (schemathesis's
    positive_data_acceptance found it). msgspec reads integers strictly, so this second pass
    runs only after a refusal that names a float: the common request pays nothing.
    """
    return msgspec.convert(written, type=kind)


def _as_written(raw: bytes) -> Any:
    """``raw`` (a body msgspec began to read, then refused) as plain JSON values, each number
    that is a whole one as written (``5.0``, ``5e0``) an ``int``, any other a ``float``: read
    as a float first, ``1999.9999999999999`` would round to 2000.0 and pass for a whole number
    of cents, which it is not. The standard library's parser, as it hands over each number's
    text: msgspec reads no integer past 64 bits as a plain value. ValueError when ``raw`` is
    not JSON after all."""
    return _whole(
        json.loads(raw, parse_float=Decimal, parse_int=_integer, parse_constant=_no_constant)
    )


def _no_constant(name: str) -> Any:
    # NaN and Infinity: the standard library's extension, not JSON
    raise ValueError(f"{name} is not JSON")


_BEYOND_DIGITS: Final = 19
"""Digits before the point from which a number is past every bound of a request type (their
integers are 64-bit at most): it is read as ±10**19, as refused as itself, and not converted
(``int()`` of ``1e300000`` takes seconds of the loop, and its text is past Python's 4,300
digits)."""
_BEYOND: Final = 10**_BEYOND_DIGITS


def _integer(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > _BEYOND_DIGITS:
        return -_BEYOND if text.startswith("-") else _BEYOND
    return int(text)


def _whole(value: Any) -> Any:
    if isinstance(value, Decimal):
        if value and value.adjusted() >= _BEYOND_DIGITS:  # 0e300000 is 0
            return _BEYOND if value > 0 else -_BEYOND
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_whole(item) for item in value]
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    return value


def _beside(found: list[FieldError], more: list[FieldError]) -> list[FieldError]:
    """The types' problems ``found`` with the rules' ``more``, but those of a place the types
    refused already (a quantity of 0 is no quantity of 1 to 1,000 either: said once), each
    before the first problem inside its place (the order's lines before its first line's): the
    list is cut at :data:`~shopkeep.errors.MAX_PROBLEMS`."""
    merged = list(found)
    refused = {problem.pointer for problem in found}
    for problem in more:
        if problem.pointer in refused:
            continue
        inside = f"{problem.pointer}/"
        at = next(
            (i for i, seen in enumerate(merged) if (seen.pointer or "").startswith(inside)),
            len(merged),
        )
        merged.insert(at, problem)
    return merged


async def no_body(request: web.Request) -> None:
    """Refuse a body on an operation that takes none (``{}`` and nothing are fine): a field
    sent there would be silently ignored otherwise."""
    raw = await body_bytes(request)
    if raw.strip():
        decoded(raw, EmptyRequest, shop_of(request).config)


def path_id(request: web.Request, name: str) -> int:
    """The id in the path parameter ``name`` (``order_id``...); ShopError not_found when it
    cannot be one."""
    return ref_in(request.match_info[name], name.removesuffix("_id"))


def query_value(request: web.Request, name: str) -> str | None:
    """The query parameter ``name``, or None; a request without a query (most of them) is
    not parsed for one."""
    if not request.query_string:
        return None
    return request.query.get(name)


def limit_of(request: web.Request) -> int | None:
    """``?limit=`` (checked by the route's guard: a whole number of at least 1), or None: the
    shop's default page. One too long to parse is more than the cap, which it is taken as."""
    raw = query_value(request, "limit")
    if raw is None:
        return None
    number = whole_number(raw)  # the guard let only whole numbers of at least 1 by
    assert number is not None
    return int(min(number, MAX_LIMIT))  # an infinite one (too long to parse) is past the cap


def cursor_of(request: web.Request) -> str | None:
    """``?cursor=``: a ``next_cursor`` this server gave (an id), or None."""
    return query_value(request, "cursor")


def status_of(request: web.Request) -> str | None:
    """``?status=``: one of the order statuses, or None."""
    return query_value(request, "status")


def channel_of(request: web.Request) -> Literal["page", "qr"]:
    """``?channel=``: ``qr`` for Alipay's precreate QR code, else ``page`` (checked by the
    route's guard)."""
    return "qr" if query_value(request, "channel") == "qr" else "page"


def idempotency_key_of(request: web.Request) -> IdempotencyKey | None:
    """The ``Idempotency-Key`` header (``KEY_PATTERN``: printable ASCII, 1 to 255 characters),
    or None. Bytes that are not ASCII arrive decoded as something else, and are refused here,
    before any actor sees them (they cannot be stored as text)."""
    given = request.headers.getall(IDEMPOTENCY_KEY_HEADER, ())
    if not given:
        return None
    if len(given) > 1:  # which one would bind?
        raise refused_parameter(IDEMPOTENCY_HEADER, "given more than once: send one key")
    try:
        return IdempotencyKey(given[0])
    except ShopError:  # named as the header is, not as the Python argument
        raise refused_parameter(IDEMPOTENCY_HEADER, KEY_RULE) from None


def reply(
    value: Any,
    status: int = 200,
    location: str | None = None,
    *,
    key: IdempotencyKey | None = None,
    secret: bool = False,
) -> web.Response:
    """A JSON answer; one that created something names its URL in ``Location`` (SPEC 7), and
    a replay says so with ``Idempotent-Replayed: true`` (when ``key`` says it was replayed).
    One that carries a ``secret`` (a bearer token, a payment's client secret) is kept by no
    cache (``Cache-Control: no-store``, as OAuth's token answers are)."""
    response = web.Response(
        body=_ENCODER.encode(value), status=status, content_type="application/json"
    )
    if location is not None:
        response.headers[hdrs.LOCATION] = location
    if secret:
        response.headers[hdrs.CACHE_CONTROL] = "no-store"
    if key is not None and key.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response
