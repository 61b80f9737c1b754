"""What the embedded API checks in a caller's request before any actor sees it.

Each failure is a ShopError ``validation_error`` naming what was wrong, and changes nothing.
The HTTP layer checks shapes and types first (msgspec); these are the rules both share.
"""

from __future__ import annotations

from typing import Any

from shopkeep.actors.config import MAX_AMOUNT
from shopkeep.errors import FieldError, ShopError

MAX_NAME = 200
MAX_KEY = 200
EARLIEST_TIME = -62_135_596_800.0
"""0001-01-01T00:00:00Z: no time the API takes may be earlier (RFC 3339 has years 1 to 9999)."""
LATEST_TIME = 253_402_300_799.0
"""9999-12-31T23:59:59Z: nor later."""
MAX_REASON = 2_000
"""The longest reason a return may give."""


def refused(field: str, detail: str) -> ShopError:
    """A validation_error of the request's ``field`` (a JSON Pointer into it: ``/name``)."""
    return ShopError.invalid([FieldError(detail, pointer=field)])


def check_amount(name: str, value: int, *, minimum: int = 0) -> None:
    """Refuse an amount that is not an integer in [minimum, MAX_AMOUNT]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise refused(f"/{name}", f"{name} must be an integer number of minor units")
    if not minimum <= value <= MAX_AMOUNT:
        raise refused(f"/{name}", f"{name} must be between {minimum} and {MAX_AMOUNT}")


def check_name(name: str) -> None:
    """Refuse an empty or overlong name."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise refused("/name", f"name must be 1 to {MAX_NAME} characters")


def checked_items(items: Any) -> tuple[tuple[int, int], ...]:
    """(goods id, quantity) pairs from ``items``, each a pair of whole numbers; else ShopError
    validation_error. Their limits are the order's rules (``order_rules.validate_request``)."""
    try:
        pairs = tuple((int(goods), quantity) for goods, quantity in items)
    except (TypeError, ValueError):
        raise refused("/items", "items must be (goods id, quantity) pairs") from None
    for index, (goods, quantity) in enumerate(pairs):
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise refused(f"/items/{index}/quantity", f"goods {goods}: quantity must be an integer")
    return pairs
