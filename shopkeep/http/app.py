"""The aiohttp application factory: the one place where routes are attached to the shop.

Handlers stay thin: they decode, call the shop, encode (``routes.py``). The shop and the HTTP
settings are typed app state (``SHOP``, ``CONFIG``); the factory neither opens nor closes the
shop: whoever opened it (``shopkeep serve``, a test) owns its lifetime and keeps it open while
the app serves.

Every request goes through one middleware (``middleware.py``): its request id, its metrics
(when the app is given a :class:`~shopkeep.http.metrics.Metrics`), the mapping of errors to
problem+json, authentication, then its operation's access check and check of the query.
Middlewares of the caller's own run inside the request id and
the metrics, outside the rest, so they see every answer with its final status, problems
included.
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
from shopkeep.http.metrics import Metrics
from shopkeep.http.middleware import FrontDoor, Guard
from shopkeep.http.openapi import publish
from shopkeep.http.operations import Operation
from shopkeep.http.rate_limit import RateLimiter
from shopkeep.http.state import CONFIG, SHOP
from shopkeep.shop import Shop

__all__ = ["CONFIG", "SHOP", "make_app"]

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
    limiter = None
    if config.rate_limit_per_s > 0:
        burst = max(1.0, config.rate_limit_per_s * config.rate_limit_burst_s)
        limiter = RateLimiter(config.rate_limit_per_s, burst, clock)
        if metrics is not None:
            metrics.watch(limiter)
    door = FrontDoor(
        shop, config.admin_hash(), config.max_body_bytes, metrics, limiter, split=bool(middlewares)
    )
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=(
            [door.middleware, *middlewares, door.inner] if middlewares else [door.middleware]
        ),
    )
    app[SHOP] = shop
    app[CONFIG] = config
    mounted = [
        route
        for route in extra_routes
        if config.sandbox or not route.path.startswith(SANDBOX_PREFIX)
    ]
    given = {(route.method, route.path) for route in mounted}
    served: list[Operation] = []
    for operation in catalog(config):
        if operation.handler is not None:
            guard = Guard.of(operation)
            # every GET answers HEAD too (its headers, no body), behind the same guard
            methods = ("GET", "HEAD") if operation.method == "GET" else (operation.method,)
            path = _DIGITS_ONLY.sub(r"{\1:[0-9]+}", operation.path)
            for method in methods:
                door.guard(app.router.add_route(method, path, operation.handler), guard)
            served.append(operation)
        elif (operation.method, operation.path) in given:
            served.append(operation)
    app.router.add_routes(mounted)
    publish(app, served)
    return app
