"""Which writes the server takes now: the front door's step 6 and what ``/healthz`` says.

A write (any method but GET, HEAD, OPTIONS) is refused 503 ``unavailable``, nothing done,
while the store is stalled (one commit under way for over :data:`STALLED_AFTER_S`: its disk
does not answer), rather than left waiting with every write before it for an answer no one
can give; and once the server is stopping (:meth:`WriteGate.stop_taking_writes`), every
write but the payment providers' callbacks (which the sandbox's stop still waits for) and
the routes that refuse by themselves (the console, in a page of its own), so that what is
under way finishes and no new order or payment starts that the stop would leave without its
callbacks. The gate looks at the store once every :data:`WATCH_S` while the app runs, and at
each ``/healthz``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

import structlog
from aiohttp import web

from shopkeep.http.errors import problem
from shopkeep.refusals import UNAVAILABLE

if TYPE_CHECKING:
    from shopkeep.shop import Shop

log = structlog.get_logger("shopkeep.http")

STALLED_AFTER_S: Final = 10.0
"""How long one commit may take before the store counts as stalled: commits take
milliseconds, one beside a checkpoint under a second."""
STOPPING_RETRY_S: Final = 5.0
"""The Retry-After of a write refused while the server stops (a restart takes seconds)."""
WATCH_S: Final = 1.0
"""How often the gate looks at the store while the app runs."""
REFUSING_WITHIN_S: Final = 5.0
"""How recent a refusal of the store's own (a full disk) must be, with no commit since, for
the store to count as refusing writes (``/healthz`` 503): a shop that writes nothing after
it does not stay unhealthy for ever."""
READS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
"""The methods still served while the store is stalled or the server stops."""
_NOTHING_DONE: Final = "nothing was done; try again later"
"""What a write refused while the store is stalled is told."""


class WriteGate:
    """Whether writes are taken now, for one app over ``shop``'s store."""

    def __init__(self, shop: Shop) -> None:
        self._shop = shop
        self.store_busy_s = 0.0
        """How long the store had been at its current commit when last looked at."""
        self.store_stalled = False
        """Whether the store was stalled when last looked at (:meth:`watch_store`): writes
        are refused while it is."""
        self.store_refusal: str | None = None
        """What SQLite said when the store last refused writes for its own sake (a full
        disk), while it counts as refusing them (:meth:`watch_store`); else None."""
        self.stopping = False
        """Whether the server is stopping (:meth:`stop_taking_writes`)."""
        self.refusing_writes = False
        """Whether some writes are refused now (the store stalled, or the server stopping):
        the one look a write's path takes."""
        self._watching: asyncio.TimerHandle | None = None

    def watch_store(self) -> float:
        """Look at the store now: how long it has been at its current commit (0 between
        commits); past :data:`STALLED_AFTER_S` it is stalled, and writes are refused until it
        is looked at again and answers."""
        self.store_busy_s = busy_s = self._shop.store_busy_s()
        stalled = busy_s > STALLED_AFTER_S
        if stalled != self.store_stalled:
            # the operator reading the log sees why writes are refused 503, and when they
            # are taken again
            if stalled:
                log.warning("store_stalled", commit_s=round(busy_s, 1),
                            detail="a commit has not finished: writes are refused 503")
            else:
                log.warning("store_answering", detail="commits finish again: writes are taken")
        self.store_stalled = stalled
        self.refusing_writes = stalled or self.stopping
        self.store_refusal = self._shop.store_refusal(REFUSING_WITHIN_S)
        return busy_s

    def health(self) -> web.Response | None:
        """What ``/healthz`` answers after looking at the store, when not ok: 503 while the
        store is stalled, while it refuses writes for its own sake, or once the server is
        stopping; else None."""
        busy_s = self.watch_store()
        if self.store_stalled:
            return stalled_problem(busy_s, "writes are refused meanwhile")
        if self.store_refusal is not None:
            return refusing_problem(self.store_refusal)
        if self.stopping:
            return stopping_problem("writes are refused")
        return None

    def stop_taking_writes(self) -> None:
        """The server is stopping: from now on every write is refused 503 unavailable, nothing
        done, but on the routes open while it stops (the providers' callbacks, and those that
        refuse by themselves: :meth:`write_refusal`)."""
        self.stopping = self.refusing_writes = True

    def write_refusal(self, open_while_stopping: bool) -> web.Response | None:
        """The answer to a write while :attr:`refusing_writes`, or None: taken after all (a
        provider's callback while the server stops, or a route that refuses by itself)."""
        if self.store_stalled:
            return stalled_problem(self.store_busy_s, _NOTHING_DONE)
        if open_while_stopping:
            return None
        return stopping_problem("nothing was done: try again once it is back")

    async def start_watching(self, app: web.Application) -> None:
        """The app's start: look at the store every :data:`WATCH_S` until it stops."""
        loop = asyncio.get_running_loop()

        def look() -> None:
            self.watch_store()
            self._watching = loop.call_later(WATCH_S, look)

        self._watching = loop.call_later(WATCH_S, look)

    async def stop_watching(self, app: web.Application) -> None:
        """The app's end: stop looking."""
        if self._watching is not None:
            self._watching.cancel()
            self._watching = None


def stopping_problem(said: str) -> web.Response:
    """503 unavailable: the server is stopping, and ``said`` (what that means here)."""
    return problem(UNAVAILABLE, f"the server is stopping; {said}", retry_after=STOPPING_RETRY_S)


def refusing_problem(refusal: str) -> web.Response:
    """503 unavailable: the store refuses writes for its own sake; ``refusal``, SQLite's
    words (``database or disk is full``)."""
    return problem(
        UNAVAILABLE,
        f"the store refuses writes ({refusal}): each it refuses is answered 503, as is a read "
        "that waited behind one; writes that fit are taken, other reads answer",
    )


def stalled_problem(busy_s: float, said: str) -> web.Response:
    """503 unavailable: the store has been at one commit for ``busy_s`` seconds, its disk not
    answering, and ``said`` (what that means for this request)."""
    return problem(
        UNAVAILABLE,
        f"the store has been at one commit for {busy_s:.0f} s: its disk does not answer; {said}",
    )
