"""Group 5's probes under the HTTP clients, on raw sockets (:mod:`shopkeep.proof.raw_http`).

- Half-open connections (SPEC 7: a request must arrive within a bounded time): many
  connections each send part of a request and go silent, half of them inside the headers and
  half inside a body. The server must close every one within its read timeout (a margin
  allowed), and answer ``/healthz`` while they are open and after.
- Header bytes that are not ASCII (SPEC 7: a token or key header that is not printable ASCII
  is refused 401 / 422, never a 500): each probe sends one such header and must get its
  expected answer; any 5xx is a server error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from shopkeep.proof.raw_http import exchange, request_bytes, seconds_until_closed

HALF_OPEN_CONNECTIONS = 50
HALF_HEADERS = b"GET /v1/goods HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bea"
HALF_BODY = request_bytes("POST", "/v1/payments/callback", {}, b"{" + b" " * 99)[:-50]
CLOSE_MARGIN_S = 1.0
"""How much later than the read timeout a close may come (the loop's lateness, the timer's
granularity) before it counts as not bounded."""

HEADER_PROBES: list[tuple[str, str, str, bytes, int]] = [
    ("GET", "/v1/me", "Authorization", b"Bearer \xff\xfe", 401),
    ("GET", "/v1/goods", "Authorization", b"Bearer caf\xc3\xa9", 401),
    ("GET", "/v1/goods", "Authorization", b"Bearer tab\tinside", 401),
    ("POST", "/v1/orders", "Authorization", b"Bearer \xff", 401),
    ("POST", "/v1/goods", "Authorization", b"Bearer " + b"\xfe" * 600, 401),
    ("POST", "/v1/payments/callback", "Shopkeep-Signature", b"t=\xff,v1=\xfe", 400),
    ("GET", "/healthz", "X-Request-Id", b"id-\xff", 200),
]
"""(method, path, header, its raw value, the status expected): one header of strange bytes
each; a 401 must also be problem+json ``unauthorized``."""

KEY_PROBES: list[bytes] = [b"k\xff", b"caf\xc3\xa9", b"tab\tinside", b"k" * 256]
"""Idempotency-Keys that are not 1 to 255 printable ASCII characters, each sent with a user's
valid token on a placement: each must be refused 422 validation_error naming the header,
before anything is placed."""


@dataclass
class HalfOpen:
    """What the half-open connections saw."""

    bound_s: float
    connections: int = 0
    closed: int = 0
    slowest_s: float = 0.0
    answered_meanwhile: bool = False
    answered_after: bool = False

    @property
    def problems(self) -> list[str]:
        """Everything wrong, one line each."""
        found = []
        if self.closed < self.connections:
            found.append(f"half-open: {self.connections - self.closed} of {self.connections} "
                         f"connections still open after {self.limit_s:.0f} s")  # fmt: skip
        elif self.slowest_s > self.bound_s + CLOSE_MARGIN_S:
            found.append(f"half-open: closed after {self.slowest_s:.1f} s, "
                         f"bound {self.bound_s:g} s")  # fmt: skip
        if not self.answered_meanwhile:
            found.append("half-open: /healthz did not answer while they were open")
        if not self.answered_after:
            found.append("half-open: /healthz did not answer after")
        return found

    @property
    def limit_s(self) -> float:
        """How long the probe waits for the closes."""
        return 3 * self.bound_s + 5

    def text(self) -> str:
        """The figure."""
        return (
            f"half-open {self.connections} connections: {self.closed} closed by the server "
            f"within {self.slowest_s:.1f} s (read bound {self.bound_s:g} s), /healthz "
            f"answered {'meanwhile' if self.answered_meanwhile else 'NOT meanwhile'} and "
            f"{'after' if self.answered_after else 'NOT after'}"
        )


async def _healthy(host: str, port: int) -> bool:
    try:
        answer = await exchange(host, port, request_bytes("GET", "/healthz", {}))
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    return answer.status == 200


async def half_open(
    host: str, port: int, bound_s: float, connections: int = HALF_OPEN_CONNECTIONS
) -> HalfOpen:
    """Open ``connections``, each sending part of a request; await the server's closes."""
    seen = HalfOpen(bound_s)
    opened = [await asyncio.open_connection(host, port) for _ in range(connections)]
    seen.connections = len(opened)
    try:
        for index, (_, writer) in enumerate(opened):
            writer.write(HALF_HEADERS if index % 2 == 0 else HALF_BODY)
        closes = [
            asyncio.ensure_future(seconds_until_closed(reader, seen.limit_s))
            for reader, _ in opened
        ]
        seen.answered_meanwhile = await _healthy(host, port)
        waited = [s for s in await asyncio.gather(*closes) if s is not None]
    finally:
        for _, writer in opened:
            writer.close()
    seen.closed = len(waited)
    seen.slowest_s = max(waited, default=0.0)
    seen.answered_after = await _healthy(host, port)
    return seen


@dataclass
class HeaderBytes:
    """What the probes of strange header bytes got."""

    probes: int = 0
    server_errors: int = 0
    wrong: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Everything wrong, one line each."""
        return [f"header bytes: {wrong}" for wrong in self.wrong]

    def text(self) -> str:
        """The figure."""
        return (
            f"non-ASCII headers {self.probes} probes, {self.server_errors} server errors, "
            f"{len(self.wrong)} wrong answers"
        )


async def header_bytes(host: str, port: int, user_token: str, goods_id: str) -> HeaderBytes:
    """Send every probe of :data:`HEADER_PROBES`, then of :data:`KEY_PROBES` as the user of
    ``user_token`` placing one ``goods_id``; each must get its expected answer."""
    seen = HeaderBytes()
    probes: list[tuple[str, str, str, bytes, int, dict[str, bytes]]] = [
        (*probe, {}) for probe in HEADER_PROBES
    ]
    body = b'{"items": [{"goods_id": "%s", "quantity": 1}]}' % goods_id.encode()
    signed_in = {"Authorization": b"Bearer " + user_token.encode()}
    probes += [
        ("POST", "/v1/orders", "Idempotency-Key", key, 422, signed_in) for key in KEY_PROBES
    ]
    for method, path, name, value, expected, others in probes:
        seen.probes += 1
        headers = {**others, name: value}
        sent = body if name == "Idempotency-Key" else b""
        answer = await exchange(host, port, request_bytes(method, path, headers, sent))
        if answer.status >= 500:
            seen.server_errors += 1
        code = {401: "unauthorized", 422: "validation_error"}.get(expected)
        if answer.status != expected or (code and answer.problem_code() != code):
            seen.wrong.append(f"{method} {path} with {name}: {value[:20]!r}: {answer.status} "
                              f"{answer.body[:200]!r}")  # fmt: skip
    return seen
