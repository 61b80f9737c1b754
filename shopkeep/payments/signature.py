"""The payment callback's signature (SPEC 7): pure functions, no IO.

Header: ``Shopkeep-Signature: t=<unix seconds>,v1=<hex>``, where hex is HMAC-SHA256 with the
gateway secret over the bytes ``<t>.`` followed by the raw body. The header is parsed strictly
(exactly those two parts, in that order, decimal seconds, 64 lowercase hex digits): anything
else is refused as malformed rather than guessed at, so there is one way to be valid.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re

HEADER = "Shopkeep-Signature"
"""The HTTP header that carries the signature."""

HEADER_PATTERN = "^t=(0|[1-9][0-9]{0,11}),v1=([0-9a-f]{64})$"
"""What the header's value must match, whole (the OpenAPI document declares it too)."""

_HEADER_RE = re.compile(HEADER_PATTERN)

OK = "ok"
MISSING = "missing"
MALFORMED = "malformed"
STALE = "stale"
MISMATCH = "mismatch"


def _key(secret: bytes | str) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def digest(secret: bytes | str, timestamp: int, raw_body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.`` + ``raw_body``."""
    message = f"{timestamp}.".encode() + raw_body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign(secret: bytes | str, timestamp: int, raw_body: bytes) -> str:
    """The header value that signs ``raw_body`` at ``timestamp`` (whole Unix seconds)."""
    return f"t={timestamp},v1={digest(secret, timestamp, raw_body)}"


def verify(
    secret: bytes | str,
    header: str | None,
    raw_body: bytes,
    now: float,
    tolerance_s: float,
) -> tuple[bool, str]:
    """Check a callback's signature header: ``(True, "ok")`` or ``(False, reason)``.

    Reasons: ``missing`` (no header), ``malformed`` (not ``t=<digits>,v1=<64 hex>``),
    ``stale`` (signed more than ``tolerance_s`` away from ``now``: a replay or a bad clock),
    ``mismatch`` (wrong secret, or the body or timestamp was altered). The digest is compared
    in constant time.
    """
    if not header:
        return False, MISSING
    match = _HEADER_RE.fullmatch(header.strip())
    if match is None:
        return False, MALFORMED
    timestamp = int(match.group(1))
    # in whole seconds, as the header counts: 300 s ago is 300 s away, not 300.7
    if abs(math.floor(now) - timestamp) > tolerance_s:
        return False, STALE
    expected = digest(secret, timestamp, raw_body)
    if not hmac.compare_digest(expected, match.group(2)):
        return False, MISMATCH
    return True, OK
