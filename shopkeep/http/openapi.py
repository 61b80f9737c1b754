"""``GET /openapi.json`` and ``GET /docs``: the OpenAPI 3.1 document of the served routes.

The document is generated from the catalog (``catalog.py``) and the msgspec types the handlers
decode and encode (``msgspec.json.schema_components``), once, when the app is built: what it
says is what is served. A problem's ``code`` is the enum of every code of ``errors.PROBLEMS``.
Descriptions come from docstrings, whose reStructuredText ``literals`` become Markdown
`literals` here. ``/docs`` is the same document as one plain HTML page, with no scripts or
external assets, so it works offline (``docs_html.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec
from aiohttp import web

from shopkeep import __version__
from shopkeep.actors.config import ShopConfig
from shopkeep.http.auth import Access
from shopkeep.http.docs_html import render_docs
from shopkeep.http.errors import PROBLEM_JSON, PROBLEMS, Problem
from shopkeep.http.html_pages import html_page
from shopkeep.http.inputs import IDEMPOTENCY_HEADER, REPLAYED_HEADER
from shopkeep.http.operations import Operation
from shopkeep.http.rate_limit import KEYS_PER_DAY
from shopkeep.payments.names import CALLBACK_PATHS, SANDBOX
from shopkeep.requests import ID_PATTERN

DOCUMENT: Final = web.AppKey("openapi_document", bytes)
DOCS: Final = web.AppKey("docs_page", str)
REF_TEMPLATE: Final = "#/components/schemas/{name}"
BEARER: Final = "bearer"

DESCRIPTION: Final = f"""\
The order and payment engine of a small online shop (SPEC section 7).

JSON in and out: a body is read as JSON whatever its `Content-Type` says (`application/json`
is what to send; a client that sends none, or a form's type, is not refused for it). Ids are
strings of digits, money is integer minor units (cents): answers
write it `100`; a request may write a whole number as JSON Schema counts integers (`100.0`,
`1e2`), never a fraction of a unit (`100.5`). Times are RFC 3339 strings (answers are in UTC).
Every error is `application/problem+json` (RFC 9457) with a stable `code`; see the responses
of each operation. Authenticate with `Authorization: Bearer <token>`:
the admin token, or a user's token (given once, when the user is created). A user sees and
acts on their own orders only: another user's order answers 404, as one nobody has. A token
of the other role answers 403 `forbidden`: a user's on a route of the admin's, and the
admin's on a route that acts as a user (`/v1/me`, placing an order, starting its payment,
asking to return it, `GET /v1/coupons`).
Every answer carries an `X-Request-Id` header (the client's, when sane), and every answer
that created something (201) its URL in `Location`. Every GET also answers HEAD; a method a
path does not take answers 405 `method_not_allowed`, its `Allow` header naming the ones it does.

A validation error (422) lists every problem found in `errors`, in the query, the
`Idempotency-Key` header and the body together, each with a JSON Pointer into the body
(`pointer`: `/items/0/quantity`) or the name of a query parameter or header (`parameter`).
An id in a path that is not one names nothing: 404, as an id that names nothing; in a body,
an id is a decimal string (the schema's pattern), else 422. Lists answer `{{"items",
"next_cursor"}}`: pass
`next_cursor` back as `?cursor=` for the next page (null: there is none).

Too many requests from one user's token answer 429 `rate_limited` with `Retry-After` (the
limit is the server's `--rate-limit`; the admin's token is not limited), and so does a keyed
request of a user's token that has had {KEYS_PER_DAY:,} Idempotency-Keys kept in a day (by
default: `--keys-per-day`), beyond a day's worth at once: each key is kept 24 hours.
"""

TAGS: Final = (
    ("users", "Users, their wallets and tokens (the admin), and the calling user."),
    ("goods", "Goods (SKUs): price and stock."),
    ("coupons", "Coupons given to users."),
    ("orders", "Orders: placing, paying, canceling, shipping, returns and refunds."),
    ("gateway", "The payment gateway's signed callback, and the sandbox gateway."),
    ("audit", "The invariants, checked now."),
    ("service", "Liveness, metrics and this document."),
)
"""The document's tags, in its order: each operation has the one :func:`tag_of` its path."""
_TAG_OF_SEGMENT: Final = {
    "users": "users", "me": "users", "goods": "goods", "coupons": "coupons", "orders": "orders",
    "returns": "orders", "payments": "orders", "audit": "audit", "sandbox": "gateway",
}  # fmt: skip
_RST_LITERAL: Final = re.compile(r"``(.+?)``")
_RST_ROLE: Final = re.compile(r":[a-z]+:`~?([^`]+)`")

_PROBLEM_TEXT: Final = {
    400: "The request could not be read (bad_request): a header past the server's limit, a "
    "body in a `Content-Encoding` other than gzip, deflate or identity (or said more than "
    "once), one that does not decode as its `Content-Encoding` says, or one that did not "
    "arrive whole; nothing changed.",
    401: "No bearer token, one nobody holds, or two Authorization headers (unauthorized).",
    403: "A valid token of the other role: a user's on a route of the admin's, or the "
    "admin's on a route that acts as the calling user (forbidden).",
    429: "Too many requests from this token (rate_limited): try again after `Retry-After` "
    "seconds.",
    404: "No such thing, or not the caller's (not_found).",
    409: "A business rule refused; `code` says which.",
    413: "The body is larger than the server accepts (payload_too_large).",
    422: "A body, parameter or header is invalid (validation_error); `errors` lists every "
    "problem, each with where it is.",
    502: "The payment provider refused to start the payment (provider_refused; the server "
    "logs what it said): trying again helps once the shop's settings or the order change.",
    503: "Overloaded or unavailable: try again after `Retry-After` seconds.",
}

_CALLBACK_REFUSED: Final = (
    "The payment callback failed verification (invalid_callback); nothing changed. Or: "
)


def build_document(operations: Sequence[Operation], limits: ShopConfig) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``; a placement's limits are the ones the
    shop's rules (``limits``) set, which the types leave to them."""
    types = _unique(
        [Problem]
        + [op.body for op in operations if op.body is not None]
        + [t for op in operations for t in op.answers.values() if t is not None]
    )
    refs, components = msgspec.json.schema_components(types, ref_template=REF_TEMPLATE)
    components["Problem"]["properties"]["code"]["enum"] = list(PROBLEMS)
    _set_order_limits(components, limits)
    schema_of = dict(zip(types, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schema_of)
    used = {tag_of(op.path) for op in operations}
    document = {
        "openapi": "3.1.0",
        "info": {"title": "shopkeep", "version": __version__, "description": DESCRIPTION},
        "servers": [{"url": "/", "description": "The server this document is served by."}],
        "tags": [{"name": n, "description": d} for n, d in TAGS if n in used],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {BEARER: {"type": "http", "scheme": "bearer"}},
        },
    }
    marked: dict[str, Any] = _markdown(document)
    return marked


def _set_order_limits(components: dict[str, Any], limits: ShopConfig) -> None:
    """Write the shop's own limits of an order's lines into the placement's schema: the
    types have none, the shop's rules check them (``schemas.Quantity``)."""
    if "PlaceOrderRequest" in components:
        components["PlaceOrderRequest"]["properties"]["items"]["maxItems"] = limits.max_items
        quantity = components["OrderItemRequest"]["properties"]["quantity"]
        quantity["maximum"] = limits.max_quantity


def tag_of(path: str) -> str:
    """The tag of an operation at ``path``: its resource (``/v1/orders/...``: orders)."""
    if path == CALLBACK_PATHS[SANDBOX]:
        return "gateway"
    segment = path.removeprefix("/v1/").split("/")[0]
    return _TAG_OF_SEGMENT.get(segment, "service")


def _markdown(value: Any, key: str = "") -> Any:
    """``value`` with every description's reStructuredText literals (````x````) and roles
    (``:class:`x```) written as Markdown code spans, which OpenAPI renders."""
    if isinstance(value, dict):
        return {k: _markdown(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_markdown(v, key) for v in value]
    if key == "description" and isinstance(value, str):
        return _RST_ROLE.sub(r"`\1`", _RST_LITERAL.sub(r"`\1`", value))
    return value


def _unique(types: Iterable[Any]) -> list[Any]:
    seen: list[Any] = []
    for kind in types:
        if kind not in seen:
            seen.append(kind)
    return seen


def _operation(op: Operation, schema_of: dict[Any, Any]) -> dict[str, Any]:
    description = f"Who: {op.access.value}."
    if op.refusals:
        description += " Refusals (409): " + ", ".join(f"`{c}`" for c in op.refusals) + "."
    document: dict[str, Any] = {
        "operationId": op.name,
        "tags": [tag_of(op.path)],
        "summary": op.summary,
        "description": description,
        "security": [] if op.access is Access.PUBLIC else [{BEARER: []}],
        "parameters": _parameters(op),
        "responses": _responses(op, schema_of),
    }
    if op.body is not None:
        document["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": schema_of[op.body]}},
        }
    return document


def _parameters(op: Operation) -> list[dict[str, Any]]:
    path = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": "An id: decimal digits, at most 2**63 - 1.",
            "schema": {"type": "string", "pattern": ID_PATTERN},
        }
        for name in op.path_params
    ]
    others = [
        {
            "name": p.name,
            "in": p.location,
            "required": p.required,
            "description": p.description,
            "schema": p.schema,
        }
        for p in op.params
    ]
    return path + others


def _headers(*names: str) -> dict[str, Any]:
    schemas = {
        "X-Request-Id": {"type": "string", "minLength": 1},
        "Location": {"type": "string", "format": "uri-reference"},
        "Retry-After": {"type": "integer", "minimum": 1},
        "WWW-Authenticate": {"type": "string"},
    }
    return {name: {"required": True, "schema": schemas[name]} for name in names}


_REPLAYED: Final = {
    "required": False,
    "description": "`true` when this is the first answer to the same request under the same "
    "Idempotency-Key, given again: nothing was done again.",
    "schema": {"type": "string", "enum": ["true"]},
}


def _responses(op: Operation, schema_of: dict[Any, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    replayable = any(p.name == IDEMPOTENCY_HEADER for p in op.params)
    for status, kind in sorted(op.answers.items()):
        # what is created (201), or accepted to be (a placement's 202), is named in Location
        created = status == 201 or (status == 202 and 201 in op.answers)
        headers = ("X-Request-Id", "Location") if created else ("X-Request-Id",)
        answer: dict[str, Any] = {"description": op.summary, "headers": _headers(*headers)}
        if replayable:
            answer["headers"][REPLAYED_HEADER] = _REPLAYED
        if kind is not None:
            answer["content"] = {op.content_type: {"schema": schema_of[kind]}}
            if op.page_for_browsers:
                answer["content"]["text/html"] = {"schema": {"type": "string"}}
        responses[str(status)] = answer
    native = op.native_refusal
    if native is not None:
        responses["400"] = {
            "description": native.description,
            "headers": _headers("X-Request-Id"),
            "content": {native.content_type: {"schema": native.schema}},
        }
    for status in op.problem_statuses():
        names = ["X-Request-Id"]
        if status == 401:
            names.append("WWW-Authenticate")
        if status in (429, 503):
            names.append("Retry-After")
        problem: dict[str, Any] = {
            "description": _CALLBACK_REFUSED + _PROBLEM_TEXT[status]
            if status == 400 and 400 in op.extra_problems
            else _PROBLEM_TEXT[status],
            "headers": _headers(*names),
            "content": {PROBLEM_JSON: {"schema": schema_of[Problem]}},
        }
        if replayable and status in (404, 409):  # the refusals a key binds (key_rules)
            problem["headers"][REPLAYED_HEADER] = _REPLAYED
        responses[str(status)] = problem
    return responses


def publish(
    app: web.Application, operations: Sequence[Operation], limits: ShopConfig
) -> None:
    """Build the document and its page once and keep them in ``app`` for the two routes."""
    document = build_document(operations, limits)
    app[DOCUMENT] = msgspec.json.encode(document)
    app[DOCS] = render_docs(document, PROBLEMS)


async def openapi_json(request: web.Request) -> web.Response:
    """GET /openapi.json."""
    return web.Response(body=request.app[DOCUMENT], content_type="application/json")


async def docs_page(request: web.Request) -> web.Response:
    """GET /docs."""
    return html_page(request.app[DOCS])
