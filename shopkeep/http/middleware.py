"""The one middleware every request goes through, in the order that makes each step right.

From the outside in:

1. the request id (``request_ids.py``): given the request, bound for the logs and the actors,
   and answered back in ``X-Request-Id``, problems and redirects included;
2. the metrics (``metrics.py``), when the app has them, and the access log: the time from here
   to the answer, with the answer's final status (problems included), 500 for an error
   nothing answered, and nothing for a request whose client went away (cancelled). The
   access log is one ``request`` line per answer (``shopkeep.logs``): method, route pattern,
   status, ``duration_ms``, ``request_id`` and ``user_id`` (a string, as the API writes ids;
   None for the admin and for a request without a valid token);
3. the mapping of errors to problem+json (``errors.py``), and the refusal of a body announced
   as too large before anything reads it;
4. authentication (``auth.py``): the caller's principal, or 401; and the caller's rate limit
   (``rate_limit.py``): a user by their id, a token nobody holds by its hash (one whose bucket
   is empty is refused before the read that would look it up); the admin and the public
   routes (no token) are not limited;
5. the route's :class:`Guard`: whether this caller may call it (404 if not), and whether its
   query names only parameters the operation takes, each as its schema says (422 listing
   every problem if not).

Why one: aiohttp wraps each middleware in a coroutine and a partial per request, plus one of
its own whenever an app has any, and those layers would cost as much as the steps themselves.
So the steps are one coroutine, :attr:`FrontDoor.middleware`, which awaits the handler itself.
An app built with middlewares of the caller's own runs them between steps 2 and 3: a split
:class:`FrontDoor`'s ``middleware`` is steps 1 and 2, its ``inner`` steps 3 to 5.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractRoute

from shopkeep.errors import FieldError, ShopError
from shopkeep.http.auth import Access, admit, authorize, is_public, recognize, user_of_hash
from shopkeep.http.errors import answer_error, too_large
from shopkeep.http.metrics import UNMATCHED
from shopkeep.http.operations import Operation
from shopkeep.http.rate_limit import RateLimiter
from shopkeep.http.request_ids import HEADER, enter, leave, request_id_of
from shopkeep.http.state import ADMIN, PRINCIPAL, REQUEST_ID, Principal
from shopkeep.http.validation import MAX_PROBLEMS, query_problem
from shopkeep.logs import ACCESS

if TYPE_CHECKING:
    from shopkeep.http.metrics import Metrics
    from shopkeep.shop import Shop


@dataclass(frozen=True)
class Guard:
    """What a route of the catalog checks before its handler runs: who may call it (None:
    anyone, no token needed) and which query parameters it takes."""

    access: Access | None
    query: dict[str, dict[str, Any]]
    """The query parameters the route takes, and the schema of each."""
    public: bool
    """Whether the route's path needs no token (``auth.is_public``), known once for all its
    requests: the public paths are fixed paths and a fixed prefix, which no path parameter
    can make or unmake."""
    admits_admin: bool
    admits_users: bool

    @classmethod
    def of(cls, operation: Operation) -> Guard:
        """The guard of ``operation``."""
        access = None if operation.access is Access.PUBLIC else operation.access
        query = {p.name: p.schema for p in operation.params if p.location == "query"}
        return cls(
            access,
            query,
            is_public(operation.path),
            operation.access.admits(ADMIN),
            operation.access.admits(Principal(0)),
        )

    def check(self, request: web.Request, principal: Principal | None) -> None:
        """Refuse the caller (404, or 401 without a token), or a query with a parameter the
        route does not take (a misspelt ``?limt=`` would otherwise be silently ignored, as an
        unknown body field would be) or not as its schema says: 422 listing every one."""
        # Access.admits decided once per route, for the admin and for any user; a refusal is
        # raised by authorize, whose answers they are
        if self.access is not None and (
            principal is None
            or not (self.admits_admin if principal.user_id is None else self.admits_users)
        ):
            authorize(principal, self.access)
        if request.query_string:  # most requests have no query: nothing to parse then
            found = []
            for name, raw in request.query.items():
                schema = self.query.get(name)
                problem = (
                    f"unknown query parameter {name!r}"
                    if schema is None
                    else query_problem(raw, schema)
                )
                if problem is not None:
                    found.append(FieldError(problem, parameter=name))
                    if len(found) == MAX_PROBLEMS:
                        break
            if found:
                raise ShopError.invalid(found)


class FrontDoor:
    """The steps of the module's docstring for one app: all of them in :attr:`middleware`, or,
    ``split`` around the caller's own middlewares, steps 1 and 2 in :attr:`middleware` and 3
    to 5 in :attr:`inner`."""

    def __init__(
        self,
        shop: Shop,
        admin_hash: str | None,
        max_body_bytes: int,
        metrics: Metrics | None = None,
        limiter: RateLimiter | None = None,
        *,
        split: bool = False,
    ) -> None:
        self._shop = shop
        self._limiter = limiter
        self._admin_hash = admin_hash
        self._max_body_bytes = max_body_bytes
        self._metrics = metrics
        self._whole = not split
        self._guards: dict[AbstractRoute, Guard] = {}
        # Bound methods, not partials of one with a keyword: aiohttp calls a middleware with
        # ``handler=`` by keyword, and a partial's keywords are merged into a new dictionary
        # on every call.
        self.middleware: Middleware = self._around
        """Every step around the handler; steps 1 and 2 (request id, metrics) when split."""
        self.inner: Middleware = self._inside
        """Steps 3 to 5 (problems, authentication, the guard), around the handler."""

    def guard(self, route: AbstractRoute, guard: Guard) -> None:
        """Check ``guard`` before ``route``'s handler."""
        self._guards[route] = guard

    @web.middleware
    async def _inside(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = too_large(request, self._max_body_bytes)
        if refused is not None:
            return refused
        try:
            if (token_hash := self._admit(request)) is not None:
                await self._admit_later(request, token_hash)
            return await handler(request)
        except web.HTTPException as error:
            return _problem_or_raise(request, error)
        except Exception as error:
            return answer_error(request, error)

    def _admit(self, request: web.Request) -> str | None:
        """Steps 4 and 5 (authenticate the caller, check the route's guard) as far as they go
        without awaiting, which is all the way for the admin and for a token the shop
        remembers; else the token's hash, which :meth:`_admit_later` looks up."""
        match_info = request.match_info
        guard = self._guards.get(match_info.route)
        if guard is None:  # another module's route, or none matched (404, 405)
            public = is_public(request.path) or match_info.http_exception is not None
        else:
            public = guard.public
        principal = None
        if not public:
            found = recognize(self._shop, self._admin_hash, request.headers.get("Authorization"))
            limiter = self._limiter
            if isinstance(found, str):
                if limiter is not None:
                    limiter.check(found)  # counted once it is known whose it is
                return found
            if limiter is not None and found is not None and found.user_id is not None:
                limiter.admit(found.user_id)
            principal = admit(request, found)
        if guard is not None:
            guard.check(request, principal)
        return None

    async def _admit_later(self, request: web.Request, token_hash: str) -> None:
        """Steps 4 and 5 for a token the shop had to look up."""
        found = await user_of_hash(self._shop, token_hash)
        if self._limiter is not None:
            self._limiter.admit(token_hash if found is None else found.user_id)
        principal = admit(request, found)
        guard = self._guards.get(request.match_info.route)
        if guard is not None:
            guard.check(request, principal)

    @web.middleware
    async def _around(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter_ns()
        request_id = request_id_of(request.headers.get(HEADER))
        request[REQUEST_ID] = request_id
        bound = enter(request_id)
        try:
            if not self._whole:
                response = await handler(request)
            elif (refused := too_large(request, self._max_body_bytes)) is not None:
                response = refused
            else:
                # steps 3 to 5, as in _inside, but inline: one coroutine fewer per request
                try:
                    if (token_hash := self._admit(request)) is not None:
                        await self._admit_later(request, token_hash)
                    response = await handler(request)
                except web.HTTPException as error:
                    response = _problem_or_raise(request, error)
                except Exception as error:
                    response = answer_error(request, error)
        except web.HTTPException as error:
            self._answered(request, error.status, started, request_id)
            error.headers[HEADER] = request_id  # an exception that is an answer carries it too
            raise
        except Exception:
            self._answered(request, 500, started, request_id)
            raise
        finally:
            leave(bound)
        self._answered(request, response.status, started, request_id)
        if not response.prepared:  # a streamed answer sent its headers already
            response.headers[HEADER] = request_id
        return response

    def _answered(self, request: web.Request, status: int, started: int, request_id: str) -> None:
        """Count the answer in the metrics and write its access-log line."""
        # whole microseconds, in integers: a float rounded to three decimals (round(x, 3))
        # costs more than the rest of the arithmetic here together
        micros = (time.perf_counter_ns() - started) // 1000
        if self._metrics is not None:
            self._metrics.observe(request, status, micros / 1_000_000)
        resource = request.match_info.route.resource
        try:
            user_id = request[PRINCIPAL].user_id
        except KeyError:  # not authenticated (a public route, or refused before)
            user_id = None
        # the route's pattern, as the metrics label it: no line names a route per order id
        ACCESS.request(
            request.method,
            UNMATCHED if resource is None else resource.canonical,
            status,
            micros / 1000,
            request_id,
            None if user_id is None else str(user_id),
        )


def _problem_or_raise(request: web.Request, error: web.HTTPException) -> web.Response:
    """The problem+json answer to an HTTP error; one that is no error (a redirect, say) is an
    answer of its own, raised again."""
    if error.status < 400:
        raise error
    return answer_error(request, error)
