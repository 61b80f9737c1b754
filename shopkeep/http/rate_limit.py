"""The per-token rate limit (SPEC 7): too many requests from one token answer 429.

Each token has a bucket of ``burst`` requests that refills at ``per_second``; a request finding
its bucket empty is refused 429 rate_limited with ``Retry-After`` (the seconds until one
request's worth is back), and changes nothing. The bucket is kept as one number, the generic
cell rate algorithm's "theoretical arrival time": the moment the bucket will be full again,
pushed one interval (``1 / per_second``) later by each request admitted. A request is refused
when that moment would lie more than ``burst`` intervals ahead. So a token costs one float, and
a check is a dictionary lookup and three additions.

A bucket that is full again holds no information (it is the same as a new one), so memory is
bounded by forgetting: past ``tracked`` tokens, every full bucket is dropped, and if more than
half the room is still taken (that many distinct tokens busy at once), the oldest-tracked are
dropped down to half, which starts them afresh: under such a flood some tokens get their burst
again, and memory stays bounded. A sweep is paid for by the insertions that filled the room.

Who is counted is the front door's choice (``front_door.py``): a user by their id, a token
nobody holds by its hash, never the admin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Final

KEYS_PER_DAY: Final = 50_000
"""The Idempotency-Keys one user's token may have kept in a day by default
(``HttpConfig.keys_per_day``, ``serve --keys-per-day``)."""
TRACKED: Final = 100_000
"""How many tokens' buckets are kept at most (about 100 bytes each) before forgetting."""


def whole_seconds(wait_s: float | None) -> int:
    """A wait as ``Retry-After`` says it: whole seconds, at least one (none given: one)."""
    return max(1, math.ceil(wait_s or 1.0))


class RateLimited(Exception):
    """The caller's token has made more requests than its limit allows (the caller's fault):
    429 rate_limited, to retry after ``retry_after`` seconds, which its detail says as its
    ``Retry-After`` does (a detail of "0.001 s" beside a header of 1 told a client two things)."""

    def __init__(self, retry_after: float, said: str = "too many requests from this token") -> None:
        super().__init__(f"{said}; retry after {whole_seconds(retry_after)} s")
        self.retry_after = retry_after


class KeysLimited(RateLimited):
    """The caller's token has sent more Idempotency-Keys than its daily allowance
    (``HttpConfig.keys_per_day``): 429 rate_limited as any other rate, saying which."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after, "too many Idempotency-Keys kept for this token in a day")


class RateLimiter:
    """Token buckets by key (see the module's docstring); ``refused`` counts the 429s."""

    def __init__(
        self,
        per_second: float,
        burst: float,
        clock: Callable[[], float],
        *,
        tracked: int = TRACKED,
    ) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self._interval = 1.0 / per_second
        # a nanosecond's slack: sums of intervals in floating point drift by a few ulps, and
        # a bucket refilled exactly on time must not be a rounding error short of a request
        self._window = burst * self._interval + 1e-9
        self._clock = clock
        self._tracked = tracked
        self._full_at: dict[Hashable, float] = {}
        self.refused = 0
        """Requests refused since start."""

    def check(self, key: Hashable) -> None:
        """Raise RateLimited (and count the refusal) when one more request of ``key`` would
        be refused; count nothing else: for a caller who learns which key to count it under
        only later."""
        full_at = self._full_at.get(key)
        if full_at is not None:
            ahead = full_at + self._interval - self._clock()
            if ahead > self._window:
                self.refused += 1
                raise RateLimited(ahead - self._window)

    def admit(self, key: Hashable) -> None:
        """Count one request of ``key``, or raise RateLimited (not counted) when its bucket
        is empty."""
        now = self._clock()
        full_at = self._full_at.get(key, now)
        if full_at < now:
            full_at = now
        full_at += self._interval
        ahead = full_at - now
        if ahead > self._window:
            self.refused += 1
            raise RateLimited(ahead - self._window)
        buckets = self._full_at
        buckets[key] = full_at
        if len(buckets) > self._tracked:
            self._forget(now)

    def give_back(self, key: Hashable) -> None:
        """Un-count one request of ``key`` that :meth:`admit` counted (it turned out to cost
        nothing the limit guards)."""
        full_at = self._full_at.get(key)
        if full_at is not None:
            self._full_at[key] = full_at - self._interval

    def forget(self, key: Hashable) -> None:
        """Start ``key`` afresh, with its whole burst."""
        self._full_at.pop(key, None)

    @property
    def tracked(self) -> int:
        """Tokens whose buckets are kept now."""
        return len(self._full_at)

    def _forget(self, now: float) -> None:
        buckets = self._full_at
        for key in [key for key, full_at in buckets.items() if full_at <= now]:
            del buckets[key]
        excess = len(buckets) - self._tracked // 2
        if excess > 0:
            for key in list(buckets)[:excess]:  # the oldest tracked first (insertion order)
                del buckets[key]
