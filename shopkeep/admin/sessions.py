"""The console's sign-in sessions: server-side, a random id in a cookie, a CSRF token each.

Signing in with the admin token opens a :class:`Session`; the browser keeps only its id, in a
cookie that scripts cannot read (HttpOnly), that no other site's page sends (SameSite=Strict),
sent over HTTPS only when the server's public URL is https (Secure). The token itself is never
kept: not in the cookie, not in the session. A session ends when it is idle for
:data:`IDLE_S` (the dashboard's polling of its live part is not a use), at :data:`ABSOLUTE_S`
after sign-in whatever its use, or at sign-out; the sessions live in this process's memory (a
restart signs everyone out).

Every form the console serves carries the session's CSRF token, and every POST is refused
(403, nothing done) unless it comes back: another site can make a browser send the cookie with
a form, never read the token out of the console's pages. Each form also carries a nonce of its
own: a form sent twice (a double click, a reload of the answer) acts once
(:meth:`Session.spend`), and the Idempotency-Key of the shop's operation is derived from it
(:func:`idempotency_key`), so even two sends racing each other act once. A session remembers
the last :data:`SPENT_KEPT` forms it sent; nonces are numbered in the order the console made
them, so a form made before the newest one forgotten (a tab left open all day) is refused as
too old to tell, never done again.
"""

from __future__ import annotations

import hmac
import itertools
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from shopkeep.runtime import Clock

COOKIE: Final = "shopkeep_admin"
"""The session cookie's name (its path is ``/admin``)."""
IDLE_S: Final = 30 * 60.0
"""A session unused this long is over (seconds)."""
ABSOLUTE_S: Final = 12 * 3600.0
"""A session is over this long after sign-in, however busy (seconds)."""
MAX_SESSIONS: Final = 1_000
"""Sessions kept at once; one more ends the least recently used (a bound on memory)."""
SPENT_KEPT: Final = 512
"""Nonces of used forms a session remembers, the most recent."""
MAX_NONCE: Final = 64


@dataclass
class Session:
    """One signed-in browser: its cookie's id, its CSRF token, and what it has done."""

    id: str
    csrf: str
    started: float
    seen: float
    notices: OrderedDict[str, list[tuple[str, str]]] = field(default_factory=OrderedDict)
    """Messages for the page each is for, by its path: (``ok`` or ``error``, text); shown
    once, on that page: a form's outcome on the page the form leads to, not on a page another
    tab of the session loads meanwhile."""
    spent: OrderedDict[str, None] = field(default_factory=OrderedDict)
    forgotten_through: int = -1
    """The highest number of a nonce :attr:`spent` has forgotten: a form made up to then and
    not remembered may have acted already."""
    typed: OrderedDict[str, dict[str, dict[str, str]]] = field(default_factory=OrderedDict)
    """What a refused form held, for the page it leads to, by the path it posts to: its fields
    filled again as they were typed, to be corrected rather than typed again; shown once."""

    def notify(self, page: str, kind: str, text: str) -> None:
        """Show ``text`` (``kind``: ok or error) when the page at path ``page`` is next shown,
        once however often it was said since."""
        said = _for_page(self.notices, page, list)
        if (kind, text) not in said:
            said.append((kind, text))

    def take_notices(self, page: str) -> list[tuple[str, str]]:
        """The messages to show now on the page at path ``page``; not shown again."""
        return self.notices.pop(page, [])

    def keep_typed(self, page: str, action: str, fields: dict[str, str]) -> None:
        """Fill the form posting to ``action`` with ``fields`` when the page at path ``page``
        is next shown."""
        _for_page(self.typed, page, dict)[action] = fields

    def take_typed(self, page: str) -> dict[str, dict[str, str]]:
        """The refused forms' fields to fill now on the page at path ``page``, by the path each
        posts to; not again."""
        return self.typed.pop(page, {})

    def spend(self, nonce: str) -> str | None:
        """None the first time a form's ``nonce`` is sent (it may act); after, why it may not:
        :data:`SENT_ALREADY`, or :data:`TOO_OLD` for a form made before the newest one this
        session has forgotten (whether it acted can no longer be told)."""
        if nonce in self.spent:
            return SENT_ALREADY
        if number_of(nonce) <= self.forgotten_through:
            return TOO_OLD
        self.spent[nonce] = None
        if len(self.spent) > SPENT_KEPT:
            forgotten, _ = self.spent.popitem(last=False)
            self.forgotten_through = max(self.forgotten_through, number_of(forgotten))
        return None

    def unspend(self, nonce: str) -> None:
        """Let the form of ``nonce`` be sent again: it was refused before it did anything (its
        fields were not valid), and bound nothing."""
        self.spent.pop(nonce, None)

    def csrf_matches(self, given: str | None) -> bool:
        """Whether ``given`` is this session's CSRF token (compared in constant time)."""
        if given is None or not given.isascii():
            return False
        return hmac.compare_digest(given.encode(), self.csrf.encode())


SENT_ALREADY: Final = "That form was sent already; it is not done twice."
TOO_OLD: Final = (
    "That form is older than the last forms this session sent, too old to tell whether it "
    "was sent already: nothing was done. Load the page again and send it from there."
)

_numbers: Final = itertools.count()


PAGES_SAID_TO: Final = 32
"""Pages a session keeps messages (or typed fields) for at once, not yet shown; past it, the
oldest are dropped (a bound on memory: forms whose pages were never loaded)."""


def _for_page(kept: OrderedDict[str, Any], page: str, new: Callable[[], Any]) -> Any:
    """What ``kept`` holds for ``page``, made with ``new`` if nothing yet (the most recent)."""
    if page not in kept:
        kept[page] = new()
        while len(kept) > PAGES_SAID_TO:
            kept.popitem(last=False)
    return kept[page]


def valid_nonce(nonce: str | None) -> bool:
    """A nonce as the console makes them (:func:`new_nonce`): its number in hexadecimal, a
    dot, URL-safe base64 text; of a bounded length."""
    if nonce is None or not 0 < len(nonce) <= MAX_NONCE or not nonce.isascii():
        return False
    number, dot, rest = nonce.partition(".")
    return (
        bool(dot and number and rest)
        and all(c in "0123456789abcdef" for c in number)
        and all(c.isalnum() or c in "-_" for c in rest)
    )


def new_nonce() -> str:
    """A form's nonce: its number, in the order this process made them (a session lives no
    longer than the process), and 128 random bits."""
    return f"{next(_numbers):x}.{secrets.token_urlsafe(16)}"


def number_of(nonce: str) -> int:
    """The number of a :func:`valid_nonce`."""
    return int(nonce.partition(".")[0], 16)


def idempotency_key(nonce: str) -> str:
    """The Idempotency-Key of the shop operation a form with ``nonce`` asks for."""
    return f"admin-console-{nonce}"


class SessionStore:
    """The open sessions, on ``clock`` (a test's virtual clock moves them to their end)."""

    def __init__(
        self,
        clock: Clock,
        *,
        idle_s: float = IDLE_S,
        absolute_s: float = ABSOLUTE_S,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self._clock = clock
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        self._max = max_sessions
        self._open: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def open(self) -> Session:
        """A new session (after a sign-in with the admin token)."""
        now = self._clock.now()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        self._open[session.id] = session
        while len(self._open) > self._max:
            self._open.popitem(last=False)
        return session

    def find(self, session_id: str | None, *, used: bool = True) -> Session | None:
        """The open session of this id, marked used (unless not ``used``: a page's own polling
        is no one using it); None if there is none, or it is over (then it is forgotten)."""
        if not session_id:
            return None
        session = self._open.get(session_id)
        if session is None:
            return None
        now = self._clock.now()
        if now - session.seen >= self.idle_s or now - session.started >= self.absolute_s:
            del self._open[session_id]
            return None
        if used:
            session.seen = now
            self._open.move_to_end(session_id)
        return session

    def close(self, session_id: str) -> None:
        """End the session (sign-out)."""
        self._open.pop(session_id, None)
