"""The Idempotency-Keys a user's token may have kept in a day (``HttpConfig.keys_per_day``).

Every keyed request that binds its key keeps about a kilobyte for a day, a refusal or a
no-op included: without a bound one token at the rate limit writes gigabytes a day. A keyed
request is counted when the route's guard admits it (refused 429 ``rate_limited`` once the
day's keys are spent), and given back when its answer keeps no key: a 422, a 503, a body that
could not be read, or a replay (the first answer given again, under a key kept already: a
client retrying to learn an outcome was refused 429 once its retries had spent the day's
keys). The give-back is looked at only on the paths of those answers (an error mapped, a
write refused, an answer saying it is a replay), so that the answers that keep their key cost
nothing more. The admin is not counted; the count is in memory, per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from multidict import CIMultiDictProxy

from shopkeep.http.inputs import IDEMPOTENCY_KEY_HEADER, REPLAYED_KEY
from shopkeep.http.rate_limit import KeysLimited, RateLimited, RateLimiter
from shopkeep.http.state import Principal

if TYPE_CHECKING:
    from aiohttp import web

    from shopkeep.http.guard import Guard

KEPT_WITH_KEY: Final = frozenset({200, 201, 202, 404, 409})
"""The statuses of answers that keep their Idempotency-Key (``key_rules.binds``): a success, a
business refusal, a 404 of the actor that handled it (409 ``idempotency_conflict``, which keeps
none, counted too: it is rare). Not a 422, a 429 or a 503, which bind nothing."""


class KeyAllowance:
    """Each user's keys a day, counted by ``limiter`` (None: not counted)."""

    __slots__ = ("_limiter",)

    def __init__(self, limiter: RateLimiter | None) -> None:
        self._limiter = limiter

    def count(self, headers: CIMultiDictProxy[str], principal: Principal) -> None:
        """Count a request with ``headers``, admitted by a guard that takes a key, from
        ``principal`` when it carries a key; refuse it 429 when the day's are spent."""
        limiter = self._limiter
        user_id = principal.user_id
        if limiter is not None and user_id is not None and IDEMPOTENCY_KEY_HEADER in headers:
            try:
                limiter.admit(user_id)
            except RateLimited as error:
                raise KeysLimited(error.retry_after) from None

    def give_back(
        self,
        request: web.Request,
        guard: Guard | None,
        caller: Principal | str | None,
        answer: web.StreamResponse,
    ) -> None:
        """Give back the key ``request`` was counted for when its ``answer`` kept none: of a
        status that binds no key, or a replay. ``caller`` as admission left it: only a
        :class:`Principal` admitted by its ``guard`` was counted."""
        limiter = self._limiter
        if (
            limiter is not None
            and isinstance(caller, Principal)
            and caller.user_id is not None
            and guard is not None
            and guard.takes_key
            and IDEMPOTENCY_KEY_HEADER in request.headers
            and (answer.status not in KEPT_WITH_KEY or REPLAYED_KEY in answer.headers)
        ):
            limiter.give_back(caller.user_id)
