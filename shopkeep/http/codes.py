"""The problem codes the HTTP layer answers with of its own (the shop's are in
:mod:`shopkeep.actors.protocol`): each declared once, its status and title in
``errors.PROBLEMS``."""

from __future__ import annotations

from typing import Final

UNAUTHORIZED: Final = "unauthorized"
FORBIDDEN: Final = "forbidden"
"""A valid token on a route of the other role (403)."""
METHOD_NOT_ALLOWED: Final = "method_not_allowed"
PAYLOAD_TOO_LARGE: Final = "payload_too_large"
INVALID_CALLBACK: Final = "invalid_callback"
BAD_REQUEST: Final = "bad_request"
RATE_LIMITED: Final = "rate_limited"
INTERNAL_ERROR: Final = "internal_error"
