"""How the console writes money, times and ids: Jinja2 filters, pure functions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final


def money(minor: int | None) -> str:
    """Minor units (cents) as a decimal amount: ``123456`` -> ``1,234.56``."""
    if minor is None:
        return "–"
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def when(at: float | None) -> str:
    """A Unix time as UTC, to the second: ``2026-12-02 16:30:05``."""
    if at is None:
        return "–"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


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


FILTERS: Final[dict[str, Callable[..., Any]]] = {
    "money": money,
    "when": when,
    "left": seconds_left,
    "figure": figure,
}
"""The filters the templates use: ``{{ order.pay_amount | money }}``."""
