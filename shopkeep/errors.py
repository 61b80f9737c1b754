"""The one error the embedded API raises for a request it will not do, with a stable code.

Business refusals inside the actors are values (:class:`~shopkeep.refusals.Refusal`); at the
API's edge they become :class:`ShopError`, whose ``code`` the HTTP layer maps to a status in one
place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypeVar

import msgspec

from shopkeep.refusals import VALIDATION_ERROR, Refusal

MAX_PROBLEMS: Final = 100
"""The most problems one validation error lists: a 64 KiB body of unknown fields, or of one
goods listed thousands of times, would otherwise be answered with thousands of them (an answer
four times the request's size)."""


class FieldError(msgspec.Struct, frozen=True, omit_defaults=True):
    """One problem of a refused request (SPEC 7's ``errors[]``): what, and where: a JSON
    Pointer into the request's body (RFC 6901: ``/items/0/quantity``; ``""`` is the body
    as a whole), or the name of a query parameter or header."""

    detail: str
    pointer: str | None = None
    parameter: str | None = None

    @property
    def where(self) -> str:
        """The parameter or the pointer (``""``: the whole body or request)."""
        return self.parameter if self.parameter is not None else self.pointer or ""

T = TypeVar("T")


class ShopError(Exception):
    """The request was refused; nothing changed (except a failed placement's record).

    ``code`` is stable (validation_error, not_found, insufficient_stock, ...); ``detail``
    says what was wrong in words; ``order_id`` names the order recorded as placement_failed;
    ``errors`` lists every problem a validation_error found, each with where it is;
    ``replayed`` is True when the refusal is the first answer to the same request under its
    Idempotency-Key, given again (HTTP: ``Idempotent-Replayed: true``).
    """

    replayed: bool = False

    def __init__(
        self,
        code: str,
        detail: str,
        order_id: int | None = None,
        errors: Sequence[FieldError] = (),
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.order_id = order_id
        self.errors = tuple(errors)

    @classmethod
    def invalid(cls, errors: Sequence[FieldError]) -> ShopError:
        """A validation_error listing ``errors`` (at least one; the first
        :data:`MAX_PROBLEMS`); its detail is the first. A finder that stops looking past
        :data:`MAX_PROBLEMS` gives one more, so that the detail does not miscount."""
        first = errors[0]
        detail = f"{first.detail} - at `{first.where}`" if first.where else first.detail
        if len(errors) > MAX_PROBLEMS:
            detail += f" (and more: the first {MAX_PROBLEMS} are in errors)"
        elif len(errors) > 1:
            detail += f" (and {len(errors) - 1} more: see errors)"
        return cls(VALIDATION_ERROR, detail, errors=errors[:MAX_PROBLEMS])

    @classmethod
    def of(cls, refusal: Refusal, *, replayed: bool = False) -> ShopError:
        """The error for an actor's refusal (``replayed``: kept with an Idempotency-Key)."""
        errors = () if refusal.pointer is None else (FieldError(refusal.detail, refusal.pointer),)
        error = cls(refusal.code, refusal.detail, refusal.order_id, errors)
        error.replayed = replayed
        return error


class CallbackRejected(Exception):
    """A payment callback failed verification (signature, timestamp, body, payment, amount).

    The gateway's fault, or a forger's: nothing changed; HTTP answers 400.
    """


def answer(reply: Any, kind: type[T], *, replayed: bool = False) -> T:
    """An actor's answer as ``kind``, or its refusal raised as a ShopError (``replayed``: a
    refusal kept with an Idempotency-Key, given again)."""
    if isinstance(reply, Refusal):
        # raised as made, never from a local: the traceback holds this frame, which would
        # hold the error, a cycle (frozen in flight by runtime/collector.py, never reclaimed)
        raise ShopError.of(reply, replayed=replayed)
    if not isinstance(reply, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(reply).__name__}")
    return reply
