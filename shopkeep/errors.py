"""The one error the embedded API raises for a request it will not do, with a stable code.

Business refusals inside the actors are values (``protocol.Refusal``); at the API's edge they
become :class:`ShopError`, whose ``code`` the HTTP layer maps to a status in one place.
"""

from __future__ import annotations

from typing import Any, TypeVar

from shopkeep.actors.protocol import Refusal

T = TypeVar("T")


class ShopError(Exception):
    """The request was refused; nothing changed (except a failed placement's record).

    ``code`` is stable (validation_error, not_found, insufficient_stock, ...); ``detail``
    says what was wrong in words; ``order_id`` names the order recorded as placement_failed.
    """

    def __init__(self, code: str, detail: str, order_id: int | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.order_id = order_id

    @classmethod
    def of(cls, refusal: Refusal) -> ShopError:
        """The error for an actor's refusal."""
        return cls(refusal.code, refusal.detail, refusal.order_id)


class CallbackRejected(Exception):
    """A payment callback failed verification (signature, timestamp, body, payment, amount).

    The gateway's fault, or a forger's: nothing changed; HTTP answers 400.
    """


def answer(reply: Any, kind: type[T]) -> T:
    """An actor's answer as ``kind``, or its refusal raised as a ShopError."""
    if isinstance(reply, Refusal):
        raise ShopError.of(reply)
    if not isinstance(reply, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(reply).__name__}")
    return reply
