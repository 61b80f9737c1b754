"""The aiohttp application factory: the one place where routes are attached to the shop.

Handlers stay thin: they decode, call the shop, encode (``routes.py``). The shop and the HTTP
settings are typed app state (``SHOP``, ``CONFIG``); the factory neither opens nor closes the
shop: whoever opened it (``shopkeep serve``, a test) owns its lifetime and keeps it open while
the app serves.

Every request goes through the front door (``front_door.py``), each route's handler
behind it: its request id, its metrics (when the app is given a
:class:`~shopkeep.http.metrics.Metrics`), the mapping of errors to problem+json,
authentication, then its operation's access check and check of the query; a request no route
takes is answered 404 or 405 through the same steps. Middlewares of the caller's own run
inside the request id and the metrics, outside the rest, so they see every answer with its
final status, problems included. Routes are added here, or by the door's
:meth:`~shopkeep.http.front_door.FrontDoor.add_routes` (the admin console's): one added to
the app another way would be served past the door (no token asked), so the app refuses to
start with one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from shopkeep.http.catalog import catalog
from shopkeep.http.config import HttpConfig
from shopkeep.http.front_door import DOOR, Entrance, FrontDoor, continue_only
from shopkeep.http.guard import Guard
from shopkeep.http.metrics import Metrics
from shopkeep.http.openapi import publish
from shopkeep.http.operations import Operation
from shopkeep.http.rate_limit import RateLimiter
from shopkeep.http.state import CONFIG, SHOP
from shopkeep.shop import Shop

__all__ = ["CONFIG", "DOOR", "SHOP", "make_app"]

SANDBOX_PREFIX: Final = "/sandbox/"
_DIGITS_ONLY: Final = re.compile(r"\{(\w+)\}")
"""A path parameter (an id, each of them) matches digits only: ``/v1/payments/callback`` is
not the payment ``callback``, and a path no id fits is no route (404 either way)."""


def make_app(
    shop: Shop,
    config: HttpConfig,
    *,
    extra_routes: Sequence[web.RouteDef] = (),
    middlewares: Sequence[Middleware] = (),
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    """Build the HTTP API over ``shop``; the caller keeps the shop open while it serves.

    ``extra_routes`` are routes other modules serve: ``GET /metrics`` and the sandbox
    gateway's ``POST /sandbox/payments/{payment_id}/complete`` are documented in
    ``/openapi.json`` when given. A route under ``/sandbox/`` is mounted only when
    ``config.sandbox`` is true, whoever passes it: the sandbox marks payments paid, and must
    never be reachable on a production server by mistake. Paths under ``/sandbox/`` and
    ``/metrics`` need no token; any other extra route needs one (admin or user).
    ``middlewares`` run inside the request id and the ``metrics`` (each request timed into
    them when given), outside the error mapping. ``clock`` is what the rate limit counts
    seconds with (a test's virtual clock).
    """
    limiter = keys_limiter = None
    if config.rate_limit_per_s > 0:
        burst = max(1.0, config.rate_limit_per_s * config.rate_limit_burst_s)
        limiter = RateLimiter(config.rate_limit_per_s, burst, clock)
    if config.keys_per_day > 0:  # a day's worth at once, then the day's rate
        keys_limiter = RateLimiter(config.keys_per_day / 86_400, config.keys_per_day, clock)
    if metrics is not None and (limiter is not None or keys_limiter is not None):
        metrics.watch(limiter, keys_limiter)
    door = FrontDoor(
        shop, config.admin_hash(), config.max_body_bytes, metrics, limiter,
        keys_limiter=keys_limiter, split=bool(middlewares),
    )
    app = web.Application(
        client_max_size=config.max_body_bytes,
        # none unless the caller has some: see front_door.py for why
        middlewares=[door.middleware, *middlewares] if middlewares else [],
    )
    app[SHOP] = shop
    app[CONFIG] = config
    app[DOOR] = door
    mounted = [
        route
        for route in extra_routes
        if config.sandbox or not route.path.startswith(SANDBOX_PREFIX)
    ]
    given = {(route.method, route.path) for route in mounted}
    served: list[Operation] = []
    for operation in catalog():
        if operation.handler is not None:
            guard = Guard.of(operation)
            # every GET answers HEAD too (its headers, no body), behind the same guard
            methods = ("GET", "HEAD") if operation.method == "GET" else (operation.method,)
            path = _DIGITS_ONLY.sub(r"{\1:[0-9]+}", operation.path)
            for method in methods:
                entered = door.entrance(method, operation.handler, guard)
                app.router.add_route(method, path, entered, expect_handler=continue_only)
            served.append(operation)
        elif (operation.method, operation.path) in given:
            served.append(operation)
    # the other modules' routes the catalog documents are checked as it says, as its own are
    guards = {(op.method, op.path): Guard.of(op) for op in served if op.handler is None}
    door.add_routes(app.router, mounted, guards=guards)
    door.add_unmatched(app.router)
    app.on_startup.append(_refuse_routes_past_the_door)
    app.on_startup.append(door.gate.start_watching)
    app.on_cleanup.append(door.gate.stop_watching)
    publish(app, served, shop.config)
    return app


async def _refuse_routes_past_the_door(app: web.Application) -> None:
    """Refuse to start an app with a route whose handler is not behind the front door."""
    for route in app.router.routes():  # a sub-app's too
        if not isinstance(getattr(route.handler, "__self__", None), Entrance):
            where = route.resource.canonical if route.resource is not None else "?"
            raise RuntimeError(
                f"{route.method} {where} is served past the front door (no token asked): "
                "add it with make_app's extra_routes, or the door's add_routes (app[DOOR])"
            )
