"""What the embedded API checks in a caller's request before any actor sees it.

Each failure is a ShopError ``validation_error`` naming what was wrong, and changes nothing.
The HTTP layer checks shapes and types first (msgspec); these are the rules both share.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Any, Final, TypeVar

from shopkeep.errors import FieldError, ShopError
from shopkeep.refusals import NOT_FOUND, VALIDATION_ERROR
from shopkeep.runtime import Address

MAX_AMOUNT: Final = 10**12
"""The largest amount of money (minor units) any request may carry: 10 billion."""
MAX_ID: Final = 2**63 - 1
"""Ids are signed 64-bit integers; a longer digit string names nothing."""
END: Final = "(?!\n)$"  # a newline itself, not its escape: msgspec's refusals quote it once
"""The end of the text, in a pattern read by Python (msgspec's checks, the query's guard) as by
JSON Schema (ECMA-262): Python's ``$`` matches before a last newline too, so ``"12\n"`` passed
for an id, and was answered 404, not 422."""
ID_PATTERN: Final = f"^(0|[1-9][0-9]{{0,18}}){END}"
"""Decimal digits as the server writes an id: no leading zero, at most 19 of them."""
MAX_NAME = 200
MAX_KEY: Final = 255
"""The longest Idempotency-Key (SPEC 7: printable ASCII, at most 255 characters)."""
KEY_PATTERN: Final = f"^[!-~](?:[ -~]{{0,{MAX_KEY - 2}}}[!-~])?{END}"
"""What an Idempotency-Key may be: 1 to :data:`MAX_KEY` printable ASCII characters (0x20 to
0x7E), neither the first nor the last a space: HTTP strips spaces around a header's value, so a
key sent with them would arrive as another key. Published in the OpenAPI document (a JSON
Schema ``pattern``); :class:`~shopkeep.idempotency.IdempotencyKey` applies the same rule with
``str``'s own tests
(tests/shop/test_key_check.py holds the two together)."""
KEY_RULE: Final = (
    f"an Idempotency-Key is 1 to {MAX_KEY} printable ASCII characters, without a space first "
    "or last"
)
"""The detail of a refused Idempotency-Key (it never repeats the key: it may hold any bytes)."""
_CONTROLS: Final = r"\x00-\x1f\x7f-\x9f"
TEXT_PATTERN: Final = rf"^[^{_CONTROLS}]*{END}"
"""Free text the shop keeps (a name, a reason, a note): no control character (NUL, ESC, DEL,
the C1 range), which pages, logs and terminals would get as it is. Published as the JSON Schema
``pattern`` of such fields."""
_INVISIBLE: Final = (
    r"\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb"
)
"""Characters that show as nothing: Unicode's default-ignorable ones of the Basic
Multilingual Plane (joiners, direction marks, variation selectors, a soft hyphen, a
byte-order mark, interlinear annotations) and the Hangul and braille blanks."""
NAME_PATTERN: Final = rf"^[^{_CONTROLS}]*[^\s{_CONTROLS}{_INVISIBLE}][^{_CONTROLS}]*{END}"
"""A name: free text (:data:`TEXT_PATTERN`) that is not blank: one character at least that
is neither a space nor invisible (a name of zero-width spaces showed as nothing)."""
_INVISIBLE_PAST_BMP: Final = (
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
"""The characters that show as nothing past the Basic Multilingual Plane (format controls,
tags, variation selectors): checked here, not in the published pattern, which a JSON Schema
validator without Unicode mode would read a surrogate pair at a time."""
_TEXT: Final = re.compile(TEXT_PATTERN)
_NAME: Final = re.compile(NAME_PATTERN.replace(_INVISIBLE, _INVISIBLE + _INVISIBLE_PAST_BMP))
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
"""What a Python str may hold and no UTF-8 can store (a JSON body cannot bring one: msgspec
refuses it; an embedding program's str can). Not in the published patterns: to a JSON Schema
validator without Unicode mode, every character past U+FFFF is a pair of them."""
EARLIEST_TIME = -62_135_596_800.0
"""0001-01-01T00:00:00Z: no time the API takes may be earlier (RFC 3339 has years 1 to 9999)."""
LATEST_TIME = 253_402_300_799.0
"""9999-12-31T23:59:59Z: nor later."""
MAX_REASON = 2_000
"""The longest reason a return may give."""


def refused(field: str, detail: str) -> ShopError:
    """A validation_error of the request's ``field`` (a JSON Pointer into it: ``/name``)."""
    return ShopError.invalid([FieldError(detail, pointer=field)])


T = TypeVar("T")


class Problems:
    """A call's checks, each run whatever the ones before found, their validation errors
    gathered: at the end of ``with Problems() as each:`` one validation_error lists every
    problem found, as the HTTP API's does (SPEC 7). Any other refusal (an id no id can be:
    not_found) goes through at once, as it would alone."""

    def __init__(self) -> None:
        self.found: list[FieldError] = []

    def __enter__(self) -> Problems:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None and self.found:
            raise ShopError.invalid(self.found)

    def __call__(self, check: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``check(*args, **kwargs)``'s result, or None when it found a problem (kept)."""
        try:
            return check(*args, **kwargs)
        except ShopError as refusal:
            if refusal.code != VALIDATION_ERROR:
                raise
            self.found.extend(refusal.errors or [FieldError(refusal.detail, pointer="")])
            return None

    def add(self, problems: Iterable[tuple[str, str]]) -> None:
        """Keep ``problems``, each (JSON Pointer, detail)."""
        self.found.extend(FieldError(detail, pointer=at) for at, detail in problems)


def refused_parameter(name: str, detail: str) -> ShopError:
    """A validation_error of the parameter ``name`` (of a query, or of a Python call)."""
    return ShopError.invalid([FieldError(detail, parameter=name)])


def check_instance(name: str, value: object, kind: type) -> None:
    """Refuse a call's argument ``name`` that is not a ``kind`` (an embedder's mistake the
    HTTP API cannot make), saying what it was."""
    if not isinstance(value, kind):
        raise refused_parameter(
            name, f"{name} must be {kind.__name__}, not {type(value).__name__}"
        )


def check_amount(name: str, value: int, *, minimum: int = 0, of: str = "minor units") -> None:
    """Refuse an amount (``of`` money's minor units, or of stock's units) that is not an
    integer in [minimum, MAX_AMOUNT]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise refused(f"/{name}", f"{name} must be an integer number of {of}")
    if not minimum <= value <= MAX_AMOUNT:
        raise refused(f"/{name}", f"{name} must be between {minimum} and {MAX_AMOUNT}")


OUTSIDE_YEARS: Final = (
    "outside the years 1 to 9999 in UTC (0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z)"
)
"""What is said of a time an offset takes outside them."""


def moment_in_the_years(value: datetime) -> float | None:
    """An aware datetime as Unix seconds, if it falls in the years 1 to 9999 in UTC
    (:func:`in_the_years`); None if an offset takes it outside them."""
    try:
        return in_the_years(value.timestamp())
    except (ValueError, OverflowError):
        return None


def in_the_years(seconds: float) -> float | None:
    """``seconds`` as a time the API takes, in the years 1 to 9999 in UTC, or None outside
    them (an RFC 3339 time whose offset takes it there, which no answer could write back).
    9999's last fraction of a second is its last whole second: a float rounds its last
    microsecond up to the second after it."""
    if not EARLIEST_TIME <= seconds <= LATEST_TIME + 1:
        return None
    return min(seconds, LATEST_TIME)


def check_time(name: str, value: object, *, in_body: bool = True) -> None:
    """Refuse a time that is not Unix seconds of the years 1 to 9999 (True is an int, and
    "2020" no time: both refused, as the HTTP API refuses them); ``in_body``: a field of the
    request's body, else a parameter of the call."""
    if isinstance(value, int | float) and type(value) is not bool and (
        EARLIEST_TIME <= value <= LATEST_TIME
    ):
        return
    detail = f"{name} must be a time (Unix seconds) of the years 1 to 9999"
    raise refused(f"/{name}", detail) if in_body else refused_parameter(name, detail)


def check_choice(name: str, value: object, choices: tuple[object, ...]) -> None:
    """Refuse a call's argument ``name`` that is none of ``choices``, of their type (1 is no
    True), as the HTTP API refuses the same parameter."""
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        listed = ", ".join(repr(choice) for choice in choices)
        raise refused_parameter(name, f"{name} must be one of {listed}")


def check_count(name: str, value: object, most: int) -> None:
    """Refuse a call's argument ``name`` that is not an int from 1 to ``most`` (nor a bool)."""
    if type(value) is not int or not 1 <= value <= most:
        raise refused_parameter(name, f"{name} must be an int from 1 to {most}")


def check_id(name: str, value: object, at: str | None = None) -> int:
    """``value``, the id ``name`` (at the pointer ``at``, else ``/name``), or ShopError
    validation_error: an id is an ``int`` (not a bool, nor its digits as text), since ``"42"``
    would name another actor than ``42``, with a state of its own. An int no id can be (below
    0, past :data:`MAX_ID`: SQLite's integers end there) names nothing: not_found, as the HTTP
    API answers such an id in a path."""
    if type(value) is not int:
        raise refused(
            at or f"/{name}", f"{name} must be an integer id, not {type(value).__name__}"
        )
    if not 0 <= value <= MAX_ID:
        raise ShopError(NOT_FOUND, f"{name.removesuffix('_id')} {value} does not exist")
    return value


def actor_of(kind: str, actor_id: object) -> Address:
    """The address of the ``kind`` actor whose id a caller passed, checked (:func:`check_id`):
    an actor is found by its id's value and type, so ``"42"`` would reach another actor than
    the shop's ``42``, with a state of its own."""
    return Address(kind, check_id(f"{kind}_id", actor_id))


def check_scope(user_id: object) -> int | None:
    """A call's ``user_id=`` (only that user's own: another's answers not_found), checked as
    an id; None: the admin's call, every one's. A float the id rounds to would name another
    user, and another user's order with it."""
    return None if user_id is None else check_id("user_id", user_id)


def id_in_text(text: str) -> int | None:
    """The id ``text`` writes as the server writes ids (:data:`ID_PATTERN`, up to
    :data:`MAX_ID`), else None: ``int()`` would also take ``+7``, `` 7``, ``7_0`` and
    ``007``, each another spelling of an id that has one."""
    if len(text) <= 19 and text.isdigit() and text.isascii() and (
        text[0] != "0" or len(text) == 1
    ):
        number = int(text)
        if number <= MAX_ID:
            return number
    return None


def is_text(value: str, *, blank: bool = True) -> bool:
    """Whether ``value`` is free text the shop keeps (:data:`TEXT_PATTERN`); without
    ``blank``, not blank either (:data:`NAME_PATTERN`)."""
    # fullmatch: the whole text, not a match at its start
    pattern = _TEXT if blank else _NAME
    return pattern.fullmatch(value) is not None and not holds_lone_surrogate(value)


def holds_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone UTF-16 surrogate (:data:`_LONE_SURROGATE`), which no
    UTF-8 can store."""
    return _LONE_SURROGATE.search(text) is not None


def check_name(name: str) -> None:
    """Refuse an empty, overlong or not text (:data:`NAME_PATTERN`) name."""
    if not isinstance(name, str) or len(name) > MAX_NAME or not is_text(name, blank=False):
        raise refused(
            "/name",
            f"name must be 1 to {MAX_NAME} characters, not blank (nothing but spaces or "
            "invisible characters), none a control character or a lone surrogate",
        )


def checked_items(items: Any) -> tuple[tuple[int, int], ...]:
    """(goods id, quantity) pairs from ``items``, each a pair of whole numbers; else ShopError
    validation_error. Their limits are the order's rules (``order_rules.validate_request``)."""
    try:
        listed = list(items)
        # a mapping of two keys would unpack as its keys: ("goods_id", "quantity")
        if not all(isinstance(item, tuple | list) for item in listed):
            raise TypeError("an item that is not a pair")
        pairs = tuple((goods, quantity) for goods, quantity in listed)
    except (TypeError, ValueError):
        raise refused(
            "/items", "items must be (goods id, quantity) pairs, as [(7, 2)]"
        ) from None
    for index, (goods, quantity) in enumerate(pairs):
        check_id("goods_id", goods, f"/items/{index}/goods_id")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise refused(f"/items/{index}/quantity", f"goods {goods}: quantity must be an integer")
    return pairs
