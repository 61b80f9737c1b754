"""The one middleware every request goes through, in the order that makes each step right.

From the outside in:

1. the request id (``request_ids.py``): given the request, bound for the logs and the actors,
   and answered back in ``X-Request-Id``, problems and redirects included;
2. the metrics (``metrics.py``), when the app has them: the time from here to the answer, with
   the answer's final status (problems included), 500 for an error nothing answered, and
   nothing for a request whose client went away (cancelled);
3. the mapping of errors to problem+json (``errors.py``), and the refusal of a body announced
   as too large before anything reads it;
4. authentication (``auth.py``): the caller's principal, or 401.

They were four aiohttp middlewares; aiohttp wraps each one in a coroutine and a partial per
request, plus one of its own whenever an app has any, and those layers cost as much as the
steps themselves. So they are one coroutine here (:meth:`FrontDoor.middleware`). An app built
with middlewares of the caller's own runs them between steps 2 and 3, as before:
:meth:`FrontDoor.outer` is steps 1 and 2, :meth:`FrontDoor.inner` steps 3 and 4.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler

from shopkeep.http.auth import authenticate
from shopkeep.http.errors import answer_error, too_large
from shopkeep.http.request_ids import HEADER, enter, leave, request_id_of
from shopkeep.http.state import REQUEST_ID

if TYPE_CHECKING:
    from shopkeep.http.metrics import Metrics
    from shopkeep.shop import Shop


class FrontDoor:
    """The steps of the module's docstring for one app, as one middleware or as two."""

    def __init__(
        self,
        shop: Shop,
        admin_hash: str | None,
        max_body_bytes: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._shop = shop
        self._admin_hash = admin_hash
        self._max_body_bytes = max_body_bytes
        self._metrics = metrics

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every step, around ``handler``."""
        return await self._around(request, handler, True)

    @web.middleware
    async def outer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Steps 1 and 2 (request id, metrics), around ``handler``."""
        return await self._around(request, handler, False)

    @web.middleware
    async def inner(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Steps 3 and 4 (problems, authentication), around ``handler``."""
        refused = too_large(request, self._max_body_bytes)
        if refused is not None:
            return refused
        try:
            await authenticate(request, self._shop, self._admin_hash)
            return await handler(request)
        except web.HTTPException as error:
            if error.status < 400:  # an answer that is not a problem (a redirect, say)
                raise
            return answer_error(request, error)
        except Exception as error:
            return answer_error(request, error)

    async def _around(
        self, request: web.Request, handler: Handler, whole: bool
    ) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = request_id_of(request.headers.get(HEADER))
        request[REQUEST_ID] = request_id
        bound = enter(request_id)
        metrics = self._metrics
        try:
            if whole:
                response = await self.inner(request, handler)
            else:
                response = await handler(request)
        except web.HTTPException as error:
            if metrics is not None:
                metrics.observe(request, error.status, time.perf_counter() - started)
            error.headers[HEADER] = request_id  # an exception that is an answer carries it too
            raise
        except Exception:
            if metrics is not None:
                metrics.observe(request, 500, time.perf_counter() - started)
            raise
        finally:
            leave(bound)
        if metrics is not None:
            metrics.observe(request, response.status, time.perf_counter() - started)
        if not response.prepared:  # a streamed answer sent its headers already
            response.headers[HEADER] = request_id
        return response
