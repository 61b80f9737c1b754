"""Every problem of a refused request body, each with its JSON Pointer (SPEC 7).

msgspec decodes a body into its request type (``schemas.py``) fast, and stops at the first
problem. A client fixing a form wants them all, so when decoding fails, :func:`problems` walks
the body, as parsed JSON, down the same request type: objects field by field (unknown fields,
missing ones), arrays item by item, and each value that is neither through msgspec itself,
decoding it alone into its field's declared type. So every limit stays declared once, in the
type's ``Meta``: msgspec applies it on the fast path, and here, with msgspec's own words.

This runs only for bodies already refused: the request that decodes pays nothing for it.
:func:`query_problem` checks a query parameter's text against its declared JSON Schema (the
catalog's), for the route's guard, so every bad parameter is listed too.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import types
from collections.abc import Iterator
from typing import Annotated, Any, Final, Union, get_args, get_origin

import msgspec

from shopkeep.errors import MAX_PROBLEMS, FieldError
from shopkeep.requests import ID_PATTERN, NAME_PATTERN, TEXT_PATTERN, holds_lone_surrogate

_NONE: Final = type(None)
_JSON_NAMES: Final = {
    dict: "object", list: "array", str: "str", int: "int", float: "float", bool: "bool",
}  # fmt: skip


def problems(value: Any, kind: Any) -> list[FieldError]:
    """Every problem of ``value`` (parsed JSON) as a ``kind``, in the order of the body (the
    first :data:`MAX_PROBLEMS`, and one more if there are more: the error says "and more")."""
    found = itertools.islice(_walk(value, kind, ""), MAX_PROBLEMS + 1)
    return [FieldError(detail, pointer=pointer) for pointer, detail in found]


def refusal_of(error: msgspec.MsgspecError) -> FieldError:
    """msgspec's one refusal of a body, with its JSON Pointer: a ValidationError's path
    (``... - at `$.items[0].quantity```) as ``/items/0/quantity``; a body that is not JSON at
    all is refused as a whole (``""``)."""
    if not isinstance(error, msgspec.ValidationError):
        return FieldError(f"the body is not JSON: {error}", pointer="")
    message, _, path = str(error).partition(" - at `")
    pointer = pointer_of(path.removesuffix("`"))
    member = _MEMBER.match(message)
    if member is not None:  # msgspec says it of the object; :func:`problems`, of the member
        pointer += f"/{_escape(member.group(1))}"
    return FieldError(worded(message), pointer=pointer)


_MEMBER: Final = re.compile(r"Object (?:contains unknown|missing required) field `(.*)`\Z", re.S)
"""msgspec's refusal of a member unknown or missing, and its name."""


def pointer_of(path: str) -> str:
    """msgspec's path of a problem (``$.items[0].quantity``) as a JSON Pointer
    (``/items/0/quantity``). A key holding ``.`` or ``[`` is ambiguous in msgspec's path: such
    keys are not fields of any request body, and come out split."""
    parts = []
    for piece in path.removeprefix("$").replace("[", ".").replace("]", "").split("."):
        if piece:
            parts.append(_escape(piece))
    return "".join(f"/{part}" for part in parts)


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


LONE_SURROGATE: Final = (
    "holds a lone UTF-16 surrogate (an escape from \\ud800 to \\udfff not in a pair, or "
    "its bytes encoded as if UTF-8), which is no character: text must be Unicode"
)


def lone_surrogate(raw: bytes) -> FieldError | None:
    """The refusal of a body that is JSON but whose string at some place holds a lone UTF-16
    surrogate (``"\\ud800"``), at that place: msgspec refuses such a body as a whole, in
    words that mislead (``Input data was truncated``). None when ``raw`` is no such body."""
    try:
        written = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    places: list[tuple[str, Any]] = [("", written)]
    while places:  # in the body's order: each value's own, then its parts
        pointer, value = places.pop()
        if isinstance(value, str) and holds_lone_surrogate(value):
            return FieldError(LONE_SURROGATE, pointer=pointer)
        if isinstance(value, dict):
            if any(holds_lone_surrogate(key) for key in value):
                return FieldError(f"a name of it {LONE_SURROGATE}", pointer=pointer)
            parts = [(f"{pointer}/{_escape(key)}", part) for key, part in value.items()]
            places.extend(reversed(parts))
        elif isinstance(value, list):
            places.extend(reversed([(f"{pointer}/{n}", part) for n, part in enumerate(value)]))
    return None


def _walk(value: Any, kind: Any, pointer: str) -> Iterator[tuple[str, str]]:
    base, meta = _unwrap(kind)
    origin = get_origin(base)
    if origin in (Union, types.UnionType):
        options = [option for option in get_args(base) if option is not _NONE]
        if value is None and len(options) < len(get_args(base)):
            return
        if len(options) == 1 and _is_container(options[0]):
            yield from _walk(value, options[0], pointer)
            return  # a value of any other union is msgspec's to judge, in its own words
    elif isinstance(base, type) and issubclass(base, msgspec.Struct):
        yield from _struct(value, base, pointer)
        return
    elif origin is list:
        yield from _array(value, get_args(base)[0], meta, pointer)
        return
    detail = _leaf(value, kind)
    if detail is not None:
        yield pointer, detail


def _is_container(kind: Any) -> bool:
    base, _ = _unwrap(kind)
    return get_origin(base) is list or (isinstance(base, type) and issubclass(base, msgspec.Struct))


def _unwrap(kind: Any) -> tuple[Any, msgspec.Meta | None]:
    """``kind`` without ``Annotated``, and its last Meta (the one msgspec applies)."""
    if get_origin(kind) is not Annotated:
        return kind, None
    base, *extras = get_args(kind)
    metas = [extra for extra in extras if isinstance(extra, msgspec.Meta)]
    return base, metas[-1] if metas else None


def _struct(value: Any, kind: type[msgspec.Struct], pointer: str) -> Iterator[tuple[str, str]]:
    if not isinstance(value, dict):
        yield pointer, f"Expected `object`, got `{_json_name(value)}`"
        return
    fields = {field.encode_name: field for field in msgspec.structs.fields(kind)}
    for name, item in value.items():
        field = fields.get(name)
        where = f"{pointer}/{_escape(name)}"
        if field is None:
            if kind.__struct_config__.forbid_unknown_fields:
                yield where, f"Object contains unknown field `{name}`"
            continue
        yield from _walk(item, field.type, where)
    for name, field in fields.items():
        if field.required and name not in value:
            yield f"{pointer}/{_escape(name)}", f"Object missing required field `{name}`"


def _array(
    value: Any, item_kind: Any, meta: msgspec.Meta | None, pointer: str
) -> Iterator[tuple[str, str]]:
    if not isinstance(value, list):
        yield pointer, f"Expected `array`, got `{_json_name(value)}`"
        return
    if meta is not None and meta.min_length is not None and len(value) < meta.min_length:
        yield pointer, f"Expected `array` of length >= {meta.min_length}"
    if meta is not None and meta.max_length is not None and len(value) > meta.max_length:
        yield pointer, f"Expected `array` of length <= {meta.max_length}"
        return  # its items are not worth walking: the array is refused whole
    for index, item in enumerate(value):
        yield from _walk(item, item_kind, f"{pointer}/{index}")


_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def _leaf(value: Any, kind: Any) -> str | None:
    """msgspec's own refusal of ``value`` as a ``kind``, or None when it takes it."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    try:
        decoder.decode(msgspec.json.encode(value))
    except msgspec.ValidationError as refused:
        return worded(str(refused))
    return None


def _json_name(value: Any) -> str:
    if value is None:
        return "null"
    return _JSON_NAMES.get(type(value), type(value).__name__)


WHOLE_DIGITS: Final = 18
"""The longest query integer that is parsed: every bound the catalog declares has fewer
digits, so a longer one is beyond them all."""


def whole_number(raw: str) -> int | float | None:
    """A query parameter's text as a whole number: None when it is not one (digits, a ``-``
    first or not); past :data:`WHOLE_DIGITS` significant digits, beyond every bound, the
    infinity of its sign, unparsed (a query line holds 8,000 digits; ``int()`` refuses past
    4,300)."""
    negative = raw.startswith("-")
    digits = raw[1:] if negative else raw
    if not (digits.isascii() and digits.isdigit()):
        return None
    significant = digits.lstrip("0") or "0"
    if len(significant) > WHOLE_DIGITS:
        return -math.inf if negative else math.inf
    return -int(significant) if negative else int(significant)


def query_problem(raw: str, schema: dict[str, Any]) -> str | None:
    """What is wrong with ``raw``, a query parameter's text, as the JSON Schema ``schema`` it
    is declared with (the few kinds the catalog's parameters use), or None."""
    kind = schema.get("type")
    if kind == "boolean":
        return None if raw in ("true", "false") else "Expected `true` or `false`"
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            bounds = f" from {low} to {high}"
        else:
            bounds = "" if low is None else f" of at least {low}"
        number = whole_number(raw)
        if number is None:
            return f"Expected an integer{bounds}"
        if (low is not None and number < low) or (high is not None and number > high):
            return f"Expected an integer{bounds}"
        return None
    if "enum" in schema and raw not in schema["enum"]:
        return f"Expected one of {', '.join(schema['enum'])}"
    pattern = schema.get("pattern")
    if pattern is not None and _compiled(pattern).search(raw) is None:
        return _PATTERN_MEANS.get(pattern, f"Expected a string matching regex {pattern!r}")
    return None


_PATTERN_MEANS: Final = {
    ID_PATTERN: "Expected an id as this server writes them: 1 to 19 digits, no sign, no "
    "leading zero",
    TEXT_PATTERN: "Expected text without control characters",
    NAME_PATTERN: "Expected text that is not blank (nor only invisible characters), without "
    "control characters",
}
"""What a pattern of the API's asks for, in words: a client is not shown the regex."""
_MSGSPEC_PATTERN: Final = {
    f"Expected `str` matching regex {pattern!r}": words for pattern, words in _PATTERN_MEANS.items()
}


def worded(detail: str) -> str:
    """msgspec's refusal ``detail``, its regex said in words when it is one of the API's."""
    return _MSGSPEC_PATTERN.get(detail, detail)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
