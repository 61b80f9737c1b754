"""HTTP to a provider's API: one client session, a bounded time per call, outages as errors.

A refused connection, a timeout or a 5xx/429 answer is a :class:`GatewayError` (try again
later, with the same idempotency key); the caller reads anything else itself, since what a
4xx means differs by provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import aiohttp

from shopkeep.payments.provider import GatewayError

CALL_TIMEOUT_S: Final = 10.0
"""How long one call to a provider may take before it counts as failed (and is retried)."""


class Reply:
    """A provider's answer: status, headers and the raw body (signatures cover raw bytes)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class Transport:
    """Calls one provider's API (``name`` for error messages) with a per-call timeout."""

    def __init__(self, name: str, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self._name = name
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def call(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request; GatewayError on an outage, a timeout, a 5xx or a 429."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(
                method, url, data=body, headers=dict(headers or {})
            ) as response:
                raw = await response.read()
                reply = Reply(response.status, response.headers, raw)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise GatewayError(
                f"{self._name}: {method} {url} failed: {type(exc).__name__} {exc}".rstrip()
            ) from None
        if reply.status >= 500 or reply.status == 429:
            raise GatewayError(
                f"{self._name}: {method} {url} answered {reply.status}: {raw[:200]!r}"
            )
        return reply

    async def close(self) -> None:
        """Close the client session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
