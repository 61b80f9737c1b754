"""Reading a request: its body, path ids and query parameters, each checked or refused 422.

Every refusal is a ``ShopError("validation_error", ...)`` (or msgspec's ValidationError) whose
detail names what was wrong and where (``$.items[0].quantity``, ``limit``, ``order_id``), so
``errors.py`` maps them all the same way. Answers go out through :func:`reply`.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar, get_args

import msgspec
from aiohttp import web

from shopkeep.errors import ShopError
from shopkeep.http.conversion import id_in
from shopkeep.http.schemas import ID_PATTERN, EmptyRequest, OrderStatus
from shopkeep.http.state import CONFIG, PRINCIPAL, SHOP, Principal
from shopkeep.idempotency import IdempotencyKey
from shopkeep.requests import KEY_PATTERN, MAX_KEY
from shopkeep.shop import Shop

T = TypeVar("T")

ORDER_STATUSES: Final = get_args(OrderStatus)
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
"""Set to ``true`` on an answer that is the first answer to the same request again."""

CURSOR_SCHEMA: Final = {"type": "string", "pattern": ID_PATTERN}
STATUS_SCHEMA: Final = {"type": "string", "enum": list(ORDER_STATUSES)}
WAIT_SCHEMA: Final = {"type": "boolean", "default": True}
KEY_SCHEMA: Final = {
    "type": "string", "minLength": 1, "maxLength": MAX_KEY, "pattern": KEY_PATTERN,
}

_ENCODER: Final = msgspec.json.Encoder()


def invalid(detail: str, where: str) -> ShopError:
    """A validation_error naming ``where``."""
    return ShopError("validation_error", f"{detail} - at `{where}`")


def shop_of(request: web.Request) -> Shop:
    """The shop this app serves."""
    return request.app[SHOP]


def caller_of(request: web.Request) -> Principal:
    """Who is asking (the access check already admitted them)."""
    return request[PRINCIPAL]


def scope_of(request: web.Request) -> int | None:
    """The user a request is confined to (their own orders), or None for the admin."""
    return caller_of(request).user_id


async def body_of(request: web.Request, kind: type[T], *, optional: bool = False) -> T:
    """The body decoded as ``kind``; with ``optional``, an absent body is ``kind()``."""
    raw = await request.read()
    if optional and not raw.strip():
        return kind()
    try:
        return _decoder(kind).decode(raw)
    except msgspec.ValidationError as refused:
        if "got `float`" not in str(refused):
            raise
        return _with_whole_numbers(raw, kind, refused)


_DECODERS: Final[dict[type, msgspec.json.Decoder[Any]]] = {}


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    # A decoder per body type, made once: msgspec.json.decode(raw, type=kind) finds the
    # type's decoding plan again on every call. The types are the catalog's, a bounded few.
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    return decoder


def _with_whole_numbers(raw: bytes, kind: type[T], refused: msgspec.ValidationError) -> T:
    """``raw`` decoded as ``kind`` with every whole number written with a fraction (``5.0``)
    read as the integer it is, or the first refusal raised again.

    JSON has one kind of number, and to JSON Schema, so to the OpenAPI document, ``5.0`` is an
    integer: refusing it refused requests the document allows (schemathesis's
    positive_data_acceptance found it). msgspec reads integers strictly, so this second pass
    runs only after a refusal that names a float: the common request pays nothing.
    """
    try:
        return msgspec.convert(_whole(msgspec.json.decode(raw)), type=kind)
    except (msgspec.ValidationError, RecursionError):
        raise refused from None


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole(item) for item in value]
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    return value


async def no_body(request: web.Request) -> None:
    """Refuse a body on an operation that takes none (``{}`` and nothing are fine): a field
    sent there would be silently ignored otherwise."""
    raw = await request.read()
    if raw.strip():
        msgspec.json.decode(raw, type=EmptyRequest)


def path_id(request: web.Request, name: str) -> int:
    """The id in the path parameter ``name``."""
    return id_in(request.match_info[name], name)


def query_value(request: web.Request, name: str) -> str | None:
    """The query parameter ``name``, or None; a request without a query (most of them) is
    not parsed for one."""
    if not request.query_string:
        return None
    return request.query.get(name)


def limit_of(request: web.Request) -> int | None:
    """``?limit=``: 1 to the configured maximum, or None (the shop's default page)."""
    raw = query_value(request, "limit")
    if raw is None:
        return None
    most = request.app[CONFIG].list_limit_max
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= most):
        raise invalid(f"limit is an integer from 1 to {most}", "limit")
    return int(raw)


def cursor_of(request: web.Request) -> str | None:
    """``?cursor=``: a ``next_cursor`` this server gave (an id), or None."""
    raw = query_value(request, "cursor")
    if raw is None:
        return None
    id_in(raw, "cursor")
    return raw


def status_of(request: web.Request) -> str | None:
    """``?status=``: one of the order statuses, or None."""
    raw = query_value(request, "status")
    if raw is not None and raw not in ORDER_STATUSES:
        raise invalid(f"status is one of {', '.join(ORDER_STATUSES)}", "status")
    return raw


def wait_of(request: web.Request) -> bool:
    """``?wait=``: ``true`` (the default: answer the placed order) or ``false`` (202 at once)."""
    raw = query_value(request, "wait")
    if raw is None:
        return True
    if raw not in ("true", "false"):
        raise invalid("wait is true or false", "wait")
    return raw == "true"


def idempotency_key_of(request: web.Request) -> IdempotencyKey | None:
    """The ``Idempotency-Key`` header (``KEY_PATTERN``: printable ASCII, 1 to 255 characters),
    or None. Bytes that are not ASCII arrive decoded as something else, and are refused here,
    before any actor sees them (they cannot be stored as text)."""
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    try:
        return IdempotencyKey(raw)
    except ShopError as refused:
        raise invalid(refused.detail, IDEMPOTENCY_HEADER) from None


def reply(value: Any, status: int = 200, *, key: IdempotencyKey | None = None) -> web.Response:
    """A JSON answer; with ``Idempotent-Replayed: true`` when ``key`` says it was replayed."""
    answer = web.Response(
        body=_ENCODER.encode(value), status=status, content_type="application/json"
    )
    if key is not None and key.replayed:
        answer.headers[REPLAYED_HEADER] = "true"
    return answer
