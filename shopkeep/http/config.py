"""The HTTP layer's settings, one frozen value given to :func:`shopkeep.http.app.make_app`."""

from __future__ import annotations

from dataclasses import dataclass

from shopkeep.http.rate_limit import KEYS_PER_DAY
from shopkeep.shop_accounts import hash_token


@dataclass(frozen=True)
class HttpConfig:
    """What the HTTP adapter needs beyond the shop itself.

    Where the admin token comes from (a flag, the environment, the database) is the composition
    root's choice. A server that keeps only the token's hash (``shopkeep.shop_accounts.hash_token``)
    gives ``admin_token_hash`` and an empty ``admin_token``; either way the adapter compares
    the SHA-256 of each bearer token with the admin's, in constant time.
    """

    admin_token: str
    """The bearer token that acts as admin: it sees and acts on everything."""
    admin_token_hash: str = ""
    """Instead of ``admin_token``: the SHA-256 (hex) of the admin token."""
    sandbox: bool = False
    """Mount the sandbox gateway's routes (``/sandbox/...``); off in production."""
    max_body_bytes: int = 64 * 1024
    """A request body larger than this is refused 413 payload_too_large, unread."""
    rate_limit_per_s: float = 200.0
    """Requests a second one token may make on average; more are refused 429 rate_limited
    with ``Retry-After`` (SPEC 7). Users' tokens and tokens nobody holds are limited; the
    admin's is not (the operator's own back office). 0 turns the limit off."""
    rate_limit_burst_s: float = 2.0
    """How many seconds' worth of requests a token may make at once (at the default rate,
    a burst of 400) before the rate applies."""
    keys_per_day: int = KEYS_PER_DAY
    """Idempotency-Keys one user's token may have kept in a day, on average, beyond a first
    day's worth at once; past it a keyed request is refused 429 rate_limited with
    ``Retry-After`` (an answer that kept no key, a 422 or a 503, is not counted). Each key is
    kept 24 hours with its answer, about 1 KB of the database, whether the request did
    anything or was refused: at the rate limit alone one customer's token could write some
    17 GB of them a day, here at most about 100 MB. The admin's is not limited. 0 turns the
    limit off."""

    def admin_hash(self) -> str | None:
        """The SHA-256 (hex) the admin's bearer token must hash to; None when there is no
        admin (neither field set)."""
        if self.admin_token_hash:
            return self.admin_token_hash
        return hash_token(self.admin_token) if self.admin_token else None
