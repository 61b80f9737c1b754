"""Stop signals read as requests, by ``serve`` and ``bench`` alike: the first asks for the
graceful stop, another soon after it is the same request, and one after that asks to end at once.

One request often comes as two signals: ``timeout`` sends its SIGTERM to the command and again
to the command's process group, and ``make`` passes on to its child the signal it got itself.
Read as two requests, the second ended the process in the middle of the stop it had asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, Literal

SAME_SIGNAL_S: Final = 0.5
"""A second signal this soon after the first is the same request, not another."""

Asked = Literal["first", "same", "again"]


class StopRequests:
    """What each stop signal asks, in the order they come (see the module)."""

    __slots__ = ("_clock", "_first_at")

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock
        self._first_at: float | None = None

    def asked(self) -> Asked:
        """What the signal just received asks: the first stop, the ``same`` again (within
        :data:`SAME_SIGNAL_S` of the first), or ``again``: to end now."""
        now = self._clock() if self._clock is not None else time.monotonic()
        if self._first_at is None:
            self._first_at = now
            return "first"
        return "same" if now - self._first_at < SAME_SIGNAL_S else "again"
