"""Waits that double after each failed try, up to a most (the outbox's redeliveries, and any
caller's retries of a call that failed)."""

from __future__ import annotations

from typing import Final

MOST_DOUBLINGS: Final = 1023
"""Doublings counted at most: ``2.0 ** 1024`` overflows (an int's power, turned into a float,
does at the 1,025th try, which a call refused for days reaches; the retry would crash).
Long before, any most is reached."""


def doubling_delay(attempt: int, first_s: float, most_s: float) -> float:
    """The pause after failed try number ``attempt`` (1 the first): ``first_s``, doubled each
    try, never past ``most_s``."""
    doublings = min(max(attempt - 1, 0), MOST_DOUBLINGS)
    return float(min(most_s, first_s * 2.0**doublings))
