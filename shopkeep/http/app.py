"""The aiohttp application factory: the one place where routes are attached to the runtime.

Handlers stay thin: they decode, call the shop, encode. The runtime they serve is typed app state
under ``RUNTIME``; the factory does not open or close it: whoever made it (``main.py serve`` with
``open_runtime``, or a test) owns its lifetime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec
from aiohttp import web

if TYPE_CHECKING:
    from shopkeep.bootstrap import Runtime

RUNTIME: Final[web.AppKey[Runtime]] = web.AppKey("runtime")
"""The runtime (actor system and store) the handlers of this app act on."""

_HEALTHY: Final = msgspec.json.encode({"status": "ok"})


async def healthz(request: web.Request) -> web.Response:
    """Liveness: answers 200 ``{"status": "ok"}`` while the process serves, without a token.

    It touches neither the actors nor the database, so it stays cheap and answers even when the
    shop is overloaded.
    """
    return web.Response(body=_HEALTHY, content_type="application/json")


def make_app(runtime: Runtime) -> web.Application:
    """Build the HTTP app over ``runtime``; the caller keeps the runtime open while it serves."""
    app = web.Application()
    app[RUNTIME] = runtime
    app.router.add_get("/healthz", healthz)
    return app
