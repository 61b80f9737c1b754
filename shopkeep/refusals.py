"""Why the shop said no: the stable problem codes and the refusal that carries one.

A business rule's refusal is a value (:class:`Refusal`), answered by the actor that applied the
rule; at the embedded API's edge it becomes :class:`~shopkeep.errors.ShopError`, and the HTTP
layer maps its ``code`` to a status (``shopkeep/http/codes.py``). Every layer may name a code,
so they are declared here, below the actors, the payments and the API that use them.
"""

from __future__ import annotations

import msgspec

INSUFFICIENT_STOCK = "insufficient_stock"
COUPON_UNAVAILABLE = "coupon_unavailable"
INSUFFICIENT_BALANCE = "insufficient_balance"
PRICE_CHANGED = "price_changed"
INVALID_STATE = "invalid_state"
TOO_MANY_UNPAID_ORDERS = "too_many_unpaid_orders"
IDEMPOTENCY_CONFLICT = "idempotency_conflict"
NOT_FOUND = "not_found"
VALIDATION_ERROR = "validation_error"
UNAVAILABLE = "unavailable"
"""Not now, nothing done: an asset actor failed to take a placement's step, a refund's
failure came before the shop learnt the refund's outcome (HTTP 503)."""
OVERLOADED = "overloaded"
"""Too busy to take it now, nothing done: an asset actor's mailbox was full for a placement's
step, or the runtime's for a request (HTTP 503)."""
PROVIDER_REFUSED = "provider_refused"
"""The payment provider refused to start a payment (HTTP 502)."""


class Refusal(msgspec.Struct, frozen=True, tag=True, gc=False):
    """A business rule said no. ``code`` is stable (it is the HTTP problem's ``code``)."""

    code: str
    detail: str
    order_id: int | None = None
    pointer: str | None = None
    """Where in the request a validation_error's problem is (a JSON Pointer into its body),
    when the rule that refused it knows (``/amount`` of a credit past the most a wallet holds)."""
