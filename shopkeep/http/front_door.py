"""The front door every request goes through: the steps around each route's handler, in the
order that makes each step right.

From the outside in:

1. the request id (``request_ids.py``): given the request, bound for the logs and the actors,
   and answered back in ``X-Request-Id``, problems and redirects included;
2. the metrics (``metrics.py``), when the app has them, and the access log: the time from here
   to the answer, with the answer's final status (problems included), 500 for an error
   nothing answered, and nothing for a request whose client went away (cancelled). The
   access log is one ``request`` line per answer (``shopkeep.logs``): method, route pattern,
   status, ``duration_ms``, ``request_id`` and ``user_id`` (a string, as the API writes ids;
   None for the admin and for a request without a valid token);
3. the mapping of errors to problem+json (``errors.py``), a validation_error completed with the
   problems of the request's parts not checked yet (``guard.py``: ``Guard.every_problem``),
   and the refusal of a body announced as too large before anything reads it;
4. authentication (``auth.py``): the caller's principal, or 401; and the caller's rate limit
   (``rate_limit.py``): a user by their id, a token nobody holds by its hash (one whose bucket
   is empty is refused before the read that would look it up); the admin and the public
   routes (no token) are not limited; a user's Idempotency-Keys kept in a day are limited
   too (``key_allowance.py``);
5. the route's guard (``guard.py``): whether this caller may call it (404 if not), and whether its
   query names only parameters the operation takes, each as its schema says (422 listing
   every problem if not);
6. a write while the store is stalled, or once the server is stopping, is refused 503
   ``unavailable`` with nothing done (``write_gate.py``: :attr:`FrontDoor.gate`).

Why around each handler, not as a middleware: an aiohttp app with one middleware anywhere in
its tree builds, for every request, a chain of partials and a coroutine of its own around
the handler, which cost a request about as much as the steps of 3 to 5 together. So each
route is added with its handler already behind the door (:meth:`FrontDoor.entrance`, one
:class:`Entrance` per route), and a request no route takes goes to the door's last route,
which answers 404 or 405 (with ``Allow``) as aiohttp would, through the same steps
(:meth:`FrontDoor.add_unmatched`). An app built with middlewares of the caller's own runs
them between steps 2 and 3: then the door is split, steps 1 and 2 in
:attr:`FrontDoor.middleware` and 3 to 5 in each entrance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import _default_expect_handler
from multidict import CIMultiDictProxy

from shopkeep.errors import ShopError
from shopkeep.http.auth import (
    ONE_TOKEN,
    is_public,
    recognize,
    unauthorized,
    user_of_hash,
)
from shopkeep.http.errors import Refusal, answer_error, too_large, too_large_for
from shopkeep.http.guard import Guard
from shopkeep.http.inputs import REPLAYED_KEY
from shopkeep.http.key_allowance import KeyAllowance
from shopkeep.http.latency import Series
from shopkeep.http.metrics import UNMATCHED
from shopkeep.http.rate_limit import RateLimiter
from shopkeep.http.request_ids import HEADER_KEY, bind
from shopkeep.http.state import PRINCIPAL, Principal
from shopkeep.http.write_gate import READS, WriteGate
from shopkeep.logs import ACCESS
from shopkeep.refusals import VALIDATION_ERROR
from shopkeep.shop_payments import TOO_LARGE

if TYPE_CHECKING:
    from shopkeep.http.metrics import Metrics
    from shopkeep.shop import Shop


class FrontDoor:
    """The steps of the module's docstring for one app: each route's :class:`Entrance` takes
    all of them, or, ``split`` around the caller's own middlewares, steps 3 to 5, with steps 1
    and 2 in :attr:`middleware`."""

    def __init__(
        self,
        shop: Shop,
        admin_hash: str | None,
        max_body_bytes: int,
        metrics: Metrics | None = None,
        limiter: RateLimiter | None = None,
        *,
        keys_limiter: RateLimiter | None = None,
        split: bool = False,
    ) -> None:
        self._shop = shop
        self._limiter = limiter
        self._admin_hash = admin_hash
        self.max_body_bytes = max_body_bytes
        """The largest body the app takes (larger: 413)."""
        self._metrics = metrics
        self.split = split
        """Whether steps 1 and 2 are :attr:`middleware`'s (the caller's middlewares run
        between), not each entrance's."""
        self.middleware: Middleware = self._around
        """Steps 1 and 2 (request id, metrics) around the caller's middlewares, when split."""
        self.gate = WriteGate(shop)
        """Which writes are taken now (step 6)."""
        self.keys = KeyAllowance(keys_limiter)
        """The Idempotency-Keys each user may have kept in a day (step 4)."""

    def entrance(
        self,
        method: str,
        handler: Handler,
        guard: Guard | None = None,
        *,
        public: bool = False,
        stops_itself: bool = False,
        too_large: Refusal | None = None,
    ) -> Handler:
        """``handler`` behind the door, to be added as the handler of its route of ``method``:
        checked by ``guard`` (None: a route of another module, which needs a token unless
        ``public``); with ``stops_itself``, a route that refuses its own writes while the
        server stops (``gate.stopping``), in its own words (the console, in a page); with
        ``too_large``, the answer to a body larger than the door takes is that one's (the
        console's page), not problem+json."""
        public = public or (guard is not None and guard.public)
        open_while_stopping = stops_itself or (guard is not None and guard.callback)
        if too_large is None and guard is not None and guard.callback:
            too_large = self._callback_too_large
        entrance = Entrance(
            self, method, handler, guard, public, open_while_stopping, too_large
        )
        return entrance.inner if self.split else entrance.whole

    def _callback_too_large(self, request: web.Request) -> web.Response:
        """413 for a callback's body larger than the door takes, counted as a refused
        callback (``too_large``): the provider retries it, and the staff see it refused."""
        self._shop.reject_unread_callback(TOO_LARGE)
        return too_large(self.max_body_bytes)

    def add_routes(
        self,
        router: web.UrlDispatcher,
        routes: Iterable[web.RouteDef],
        *,
        public: bool = False,
        stops_itself: bool = False,
        too_large: Refusal | None = None,
        guards: Mapping[tuple[str, str], Guard] | None = None,
    ) -> None:
        """Add ``routes`` (of another module than the catalog's) to ``router`` behind the door:
        each needs a token unless ``public`` or its path is public (``auth.is_public``), and
        is checked by its guard in ``guards`` (by method and path) when it has one there (the
        catalog documents it: its query is refused as any route's is); ``stops_itself`` and
        ``too_large`` as :meth:`entrance` says."""
        for route in routes:
            guard = None if guards is None else guards.get((route.method, route.path))
            handler = self.entrance(
                route.method, route.handler, guard, public=public or is_public(route.path),
                stops_itself=stops_itself, too_large=too_large,
            )
            given = {**route.kwargs, "expect_handler": continue_only}
            web.RouteDef(route.method, route.path, handler, given).register(router)

    def add_unmatched(
        self, router: web.UrlDispatcher, *, around: Callable[[Handler], Handler] | None = None
    ) -> None:
        """Add to ``router``, last, the route of every request its other routes do not take:
        404 not_found, or 405 method_not_allowed with ``Allow`` when the path is a route's by
        other methods, each through the door's steps (and ``around``'s, given a wrapper of
        the handlers of the other routes)."""
        handler = _unmatched if around is None else around(_unmatched)
        # named so that its answers are labelled ``unmatched`` (_route_of), not by its pattern
        entered = self.entrance("*", handler, public=True)
        # [\s\S], not ".": a path may hold a newline (%0A), which "." does not match
        router.add_route(
            "*", r"/{path:[\s\S]*}", entered, name=UNMATCHED, expect_handler=continue_only
        )
        # A sub-app's own prefix (``DELETE /admin``) is the empty path within it, which the
        # pattern above does not match: aiohttp answered it a plain-text 405 of its own.
        router.add_route("*", "", entered, name=_UNMATCHED_PREFIX, expect_handler=continue_only)

    def admit(
        self,
        request: web.Request,
        headers: CIMultiDictProxy[str],
        guard: Guard | None,
        public: bool,
    ) -> Principal | str | None:
        """Steps 4 and 5 (authenticate the caller by ``headers``, the request's, put them on the
        request as ``PRINCIPAL``, check the route's guard) as far as they go without awaiting,
        which is all the way for the admin and for a token the shop remembers: the caller
        (None on a public route); else the token's hash, which :meth:`admit_later` looks up."""
        principal = None
        if not public:
            given = headers.getall(hdrs.AUTHORIZATION, ())
            if len(given) > 1:
                raise unauthorized(ONE_TOKEN)
            found = recognize(self._shop, self._admin_hash, given[0] if given else None)
            limiter = self._limiter
            if isinstance(found, str):
                if limiter is not None:
                    limiter.check(found)  # counted once it is known whose it is
                return found
            if found is None:
                raise unauthorized()
            # known before the rate limit is asked: a 429's access line names its caller too
            request[PRINCIPAL] = principal = found
            if limiter is not None and found.user_id is not None:
                limiter.admit(found.user_id)
        if guard is not None:
            guard.check(request, principal)
            if guard.takes_key and principal is not None:
                self.keys.count(headers, principal)
        return principal

    async def invites_body(self, request: web.Request) -> bool:
        """Whether a request waiting for a 100 before it sends its body is sent one: not when
        the door refuses it on its headers alone, answered at once instead (RFC 9110, 10.1.1):
        a body larger than it takes (413), no token or one nobody holds on a route that needs
        one (401; a token the shop does not remember is looked up, as the door will). Nothing
        is counted here: the rate limit counts the request itself."""
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            return False
        entrance = getattr(request.match_info.route.handler, "__self__", None)
        if isinstance(entrance, Entrance) and not entrance.public:
            given = request.headers.getall(hdrs.AUTHORIZATION, ())
            found = recognize(self._shop, self._admin_hash, given[0]) if len(given) == 1 else None
            if isinstance(found, str):
                found = await user_of_hash(self._shop, found)
            if found is None:
                return False
        return True

    async def admit_later(
        self, request: web.Request, guard: Guard | None, token_hash: str
    ) -> Principal:
        """Steps 4 and 5 for a token the shop had to look up: the caller."""
        found = await user_of_hash(self._shop, token_hash)
        if found is not None:
            request[PRINCIPAL] = found
        if self._limiter is not None:
            self._limiter.admit(token_hash if found is None else found.user_id)
        if found is None:
            raise unauthorized()
        if guard is not None:
            guard.check(request, found)
            if guard.takes_key:
                self.keys.count(request.headers, found)
        return found

    @web.middleware
    async def _around(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter_ns()
        request_id = bind(request.headers.get(HEADER_KEY))
        method, route = request.method, _route_of(request)
        try:
            response = await handler(request)
        except web.HTTPException as error:
            self.answered(method, route, error.status, started, request_id, _caller(request))
            error.headers[HEADER_KEY] = request_id  # an exception that is an answer carries it too
            raise
        except Exception:
            self.answered(method, route, 500, started, request_id, _caller(request))
            raise
        self.answered(method, route, response.status, started, request_id, _caller(request))
        if not response.prepared:  # a streamed answer sent its headers already
            response.headers[HEADER_KEY] = request_id
        return response

    def answered(
        self,
        method: str,
        route: str,
        status: int,
        started: int,
        request_id: str,
        caller: Principal | None,
        series: dict[int, Series] | None = None,
    ) -> None:
        """Count the answer of ``status`` to a request of ``method`` on ``route`` (the route's
        pattern, as the metrics label it: no line names a route per order id) from ``caller``
        (None: not authenticated) in the metrics (its series kept in ``series`` by status,
        when given) and write its access-log line."""
        # whole microseconds, in integers: a float rounded to three decimals (round(x, 3))
        # costs more than the rest of the arithmetic here together
        micros = (time.perf_counter_ns() - started) // 1000
        if self._metrics is not None:
            found = None if series is None else series.get(status)
            if found is None:
                found = self._metrics.series(method, route, status)
                if series is not None:
                    series[status] = found
            found.observe(micros / 1_000_000)
        ACCESS.request(
            method,
            route,
            status,
            micros / 1000,
            request_id,
            None if caller is None else caller.logged_as,
        )


class Entrance:
    """One route's way in: the door's steps around its handler (:meth:`whole`), or steps 3 to
    5 only (:meth:`inner`) when the door is split."""

    __slots__ = (
        "_door", "_gate", "_guard", "_handler", "_method", "_open_while_stopping", "_public",
        "_series", "_too_large", "route",
    )

    def __init__(
        self,
        door: FrontDoor,
        method: str,
        handler: Handler,
        guard: Guard | None,
        public: bool,
        open_while_stopping: bool = False,
        too_large: Refusal | None = None,
    ) -> None:
        self._door = door
        self._gate = door.gate
        self._too_large = too_large
        self._method = method
        self._handler = handler
        self._guard = guard
        self._public = public
        self._open_while_stopping = open_while_stopping
        self._series: dict[int, Series] = {}
        self.route: str | None = None
        """The route's pattern (``/v1/orders/{order_id}``), learnt from its first request: a
        sub-app's routes get their prefix only once the sub-app is added."""

    @property
    def public(self) -> bool:
        """Whether the route takes requests without a token."""
        return self._public

    async def whole(self, request: web.Request) -> web.StreamResponse:
        """Every step around the handler."""
        door = self._door
        started = time.perf_counter_ns()
        headers = request.headers  # a property: read once
        request_id = bind(headers.get(HEADER_KEY))
        route = self.route or self._learn(request)
        # the series of the route's own method (not a HEAD a GET's route answers too, nor
        # any method of the unmatched route) by status: this entrance's to keep
        method = request.method
        series = self._series if method == self._method else None
        caller: Principal | str | None = None
        try:
            # the announced size from its header: request.content_length is the same int()
            # in twice the calls
            length = headers.get(hdrs.CONTENT_LENGTH)
            if length is not None and int(length) > door.max_body_bytes:
                response: web.StreamResponse = too_large_for(
                    request, door.max_body_bytes, self._too_large
                )
            else:
                # steps 3 to 5, as in inner, but inline: one coroutine fewer per request
                try:
                    caller = door.admit(request, headers, self._guard, self._public)
                    if isinstance(caller, str):  # a token's hash to look up
                        caller = await door.admit_later(request, self._guard, caller)
                    refused = None
                    if self._gate.refusing_writes and method not in READS:
                        refused = self._gate.write_refusal(self._open_while_stopping)
                    response = refused or await self._handler(request)
                    # a refusal's key is given back, and a replay's (looked for here: a call
                    # on every answer costs a placement a microsecond)
                    if refused is not None or REPLAYED_KEY in response.headers:
                        door.keys.give_back(request, self._guard, caller, response)
                except web.HTTPException as error:
                    response = _problem_or_raise(request, error)
                    door.keys.give_back(request, self._guard, caller, response)
                except Exception as error:
                    response = await self._answer_error(request, error)
                    door.keys.give_back(request, self._guard, caller, response)
        except web.HTTPException as error:
            door.answered(
                method, route, error.status, started, request_id, _caller(request), series
            )
            error.headers[HEADER_KEY] = request_id  # an exception that is an answer carries it too
            raise
        except Exception:
            door.answered(method, route, 500, started, request_id, _caller(request), series)
            raise
        # the caller admit found, or, refused after (by the guard) or on a public route, who
        # the request names if anyone
        if not isinstance(caller, Principal):
            caller = _caller(request)
        door.answered(method, route, response.status, started, request_id, caller, series)
        if not response.prepared:  # a streamed answer sent its headers already
            response.headers[HEADER_KEY] = request_id
        return response

    async def inner(self, request: web.Request) -> web.StreamResponse:
        """Steps 3 to 5 around the handler."""
        door = self._door
        headers = request.headers
        length = headers.get(hdrs.CONTENT_LENGTH)
        if length is not None and int(length) > door.max_body_bytes:
            return too_large_for(request, door.max_body_bytes, self._too_large)
        caller: Principal | str | None = None
        try:
            caller = door.admit(request, headers, self._guard, self._public)
            if isinstance(caller, str):  # a token's hash to look up
                caller = await door.admit_later(request, self._guard, caller)
            if self._gate.refusing_writes and request.method not in READS:
                refused = self._gate.write_refusal(self._open_while_stopping)
                if refused is not None:
                    door.keys.give_back(request, self._guard, caller, refused)
                    return refused
            response = await self._handler(request)
            if REPLAYED_KEY in response.headers:  # a replay's key is given back
                door.keys.give_back(request, self._guard, caller, response)
            return response
        except web.HTTPException as error:
            response = _problem_or_raise(request, error)
        except Exception as error:
            response = await self._answer_error(request, error)
        door.keys.give_back(request, self._guard, caller, response)
        return response

    async def _answer_error(self, request: web.Request, error: Exception) -> web.Response:
        """The problem+json answer to ``error``; a validation_error lists every problem of
        the request (:meth:`Guard.every_problem`)."""
        guard = self._guard
        if guard is not None and isinstance(error, ShopError) and error.code == VALIDATION_ERROR:
            try:
                error = await guard.every_problem(request, error)
            except (OSError, RuntimeError) as lost:  # its connection was closed meanwhile
                error = lost
        return answer_error(request, error, guard is None or guard.takes_key)

    def _learn(self, request: web.Request) -> str:
        self.route = _route_of(request)
        return self.route


async def continue_only(request: web.Request) -> None:
    """Every route's ``Expect`` handler: aiohttp's for ``100-continue`` (a 100 before the body
    is read), and any other expectation ignored, as RFC 9110 (10.1.1) lets a server do, so the
    request goes through the door and its route like any other. aiohttp's own answer to one is
    a plain-text 417 that repeats the header, made before the door: no request id, no access
    line, no metric. A body announced larger than the door takes is not invited: the door
    answers 413 before reading it, and a client that waited for the 100 sends nothing; nor is
    one the door refuses for its token (:meth:`FrontDoor.invites_body`)."""
    if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
        door = request.config_dict.get(DOOR)
        if door is None or await door.invites_body(request):
            await _default_expect_handler(request)  # aiohttp's own: a 100, for HTTP/1.1 only


DOOR: Final = web.AppKey("front_door", FrontDoor)
"""The API app's front door, for a module that adds routes behind it (the admin console)."""


def _caller(request: web.Request) -> Principal | None:
    """Who ``request`` was found to come from, if anyone."""
    return request.get(PRINCIPAL)


_UNMATCHED_PREFIX: Final = f"{UNMATCHED}-prefix"
_UNMATCHED_NAMES: Final = frozenset({UNMATCHED, _UNMATCHED_PREFIX})
"""The names of the routes :meth:`FrontDoor.add_unmatched` adds."""


def _route_of(request: web.Request) -> str:
    """The pattern of the route ``request`` matched (``unmatched`` for none)."""
    resource = request.match_info.route.resource
    if resource is None or resource.name in _UNMATCHED_NAMES:
        return UNMATCHED
    return resource.canonical


async def _unmatched(request: web.Request) -> web.StreamResponse:
    """The answer to a request no route takes: 405 with ``Allow`` when the path is a route's
    by other methods (a route of this request's app, the unmatched one aside), else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.name not in _UNMATCHED_NAMES:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def _problem_or_raise(request: web.Request, error: web.HTTPException) -> web.Response:
    """The problem+json answer to an HTTP error; one that is no error (a redirect, say) is an
    answer of its own, raised again."""
    if error.status < 400:
        raise error
    return answer_error(request, error)
