"""How the console writes money, times and ids: Jinja2 filters, pure functions."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from markupsafe import Markup

from shopkeep.errors import FieldError, ShopError
from shopkeep.http.errors import PROBLEMS, REFUSED
from shopkeep.payments.money import exponent, in_major_units


def money(minor: int | None, places: int = 2, *, grouped: bool = True) -> str:
    """Minor units as a decimal amount of a currency whose minor unit has ``places`` decimals
    (``payments.money.exponent``): ``123456`` -> ``1,234.56``; in yen (0), ``123,456``. Not
    ``grouped``, as a form takes it typed (``1234.56``): a field's placeholder."""
    if minor is None:
        return "–"
    written = in_major_units(abs(minor), places, "," if grouped else "")
    return f"-{written}" if minor < 0 else written


def when(at: float | None) -> str:
    """A Unix time as UTC, to the second: ``2026-12-02 16:30:05``."""
    if at is None:
        return "–"
    # isoformat, not strftime: the C library writes year 1 as "1", isoformat as "0001"
    return datetime.fromtimestamp(at, UTC).replace(tzinfo=None).isoformat(" ", "seconds")


def seconds_left(at: float | None, now: float) -> str:
    """How long until ``at``: ``12m 5s``, or ``overdue``."""
    if at is None:
        return "–"
    left = int(at - now)
    if left < 0:
        return "overdue"
    minutes, seconds = divmod(left, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


def figure(value: float) -> str:
    """A metric's value: whole numbers as such, others to three significant digits."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3g}"


DIRECTION_CONTROLS: Final = dict.fromkeys(
    (*range(0x202A, 0x202F), *range(0x2066, 0x206A)), "\ufffd"
)
"""Unicode's explicit direction controls (embeddings, overrides, isolates and their pops), each
shown as U+FFFD: inside a name they could close the isolate around it (a U+2069 of its own)
and turn the page's words after it around."""


def without_direction(text: str) -> str:
    """``text`` with its explicit direction controls shown as U+FFFD."""
    return text.translate(DIRECTION_CONTROLS)


def shown(value: Any) -> Any:
    """What a page shows of a value: the console environment's ``finalize``, run on every
    ``{{ ... }}`` before it is escaped. Text has its direction controls made inert
    (:func:`without_direction`), wherever it came from (a name, a return's reason, a
    provider's message, a refusal's detail): one holding a right-to-left override turned the
    page's own words after it around. Text already made safe (:func:`isolated`) is kept."""
    return without_direction(value) if type(value) is str else value


def isolated(text: str) -> Markup:
    """``text``, escaped, between Unicode's first-strong isolate and its pop (U+2068, U+2069),
    its own direction controls inert: a name in a title or a notice, where no element
    (``<bdi>``, as headings use) can isolate it. Markup, so that :func:`shown` keeps the
    isolate; a notice that holds it is written with ``Markup.format``."""
    return Markup("\u2068{}\u2069").format(without_direction(text))


FILTERS: Final[dict[str, Callable[..., Any]]] = {
    "money": money,
    "when": when,
    "left": seconds_left,
    "figure": figure,
    "isolated": isolated,
}
"""The filters the templates use: ``{{ order.pay_amount | money }}`` (the console sets
``money`` to the shop's currency: :func:`filters_for`)."""


def filters_for(currency: str) -> dict[str, Callable[..., Any]]:
    """:data:`FILTERS`, money written in ``currency``'s decimals."""
    return {**FILTERS, "money": functools.partial(money, places=exponent(currency))}


def explain(error: ShopError) -> str:
    """A refusal as a person reads it: ``Insufficient stock (insufficient_stock): ...``; a
    validation error lists each problem once, by the field's name where its words do not
    name it already (``Validation error (validation_error): price is not an amount``)."""
    _, title = PROBLEMS.get(error.code, REFUSED)
    if not error.errors:
        return f"{title} ({error.code}): {error.detail}"
    return f"{title} ({error.code}): " + "; ".join(_problem(e) for e in error.errors)


def _problem(problem: FieldError) -> str:
    name = problem.where.lstrip("/")
    return problem.detail if not name or name in problem.detail else f"{name}: {problem.detail}"
