"""What a journey needs from a shop, whether it is reached over HTTP or embedded.

:class:`Target` is the one interface; ids are strings on both (as on the wire), times are Unix
seconds. Every operation either answers or raises :class:`Refused` with the stable code of
the problem (``insufficient_stock``, ``invalid_state``, ...), or a code of the harness's own
for what never reached the shop as a business answer (``connection_error``, ``timeout``,
``http_500``): the recorder decides which codes are expected refusals and which are errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from shopkeep.actors.order_state import PLACEMENT_FAILED


class Refused(Exception):
    """An operation did not do what was asked; ``code`` says why (see the module docstring)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Customer:
    """A user the harness created: their id and their API token (unused when embedded)."""

    id: str
    token: str


@dataclass(frozen=True)
class Order:
    """The fields of an order a journey looks at."""

    id: str
    status: str
    pay_amount: int
    coupon_id: str | None
    cancel_reason: str | None
    confirmed_at: float | None
    expires_at: float | None


def failure_in(history: Iterable[tuple[str, str]]) -> str:
    """The code an order's history (its entries' operations and remarks) says its placement
    failed with: the ``placement_failed`` entry's remark begins with it (``insufficient_stock:
    ...``); ``placement_failed`` when no entry says one."""
    for operation, remark in history:
        if operation == PLACEMENT_FAILED:
            return remark.partition(":")[0].strip() or operation
    return PLACEMENT_FAILED


@dataclass(frozen=True)
class Payment:
    """A started payment."""

    id: str
    order_id: str
    amount: int


class Target(Protocol):
    """A shop to drive: a server over HTTP, or a :class:`~shopkeep.shop.Shop` in process."""

    async def ready(self) -> None:
        """Refused (before anything is created) when the journeys cannot run: the shop does
        not answer (``connection_error``), does not take the admin token (``unauthorized``),
        or does not pay through the sandbox gateway, which the journeys complete payments
        with (``not_sandbox``)."""
        ...

    async def create_user(self, name: str, balance: int) -> Customer:
        """A new user with an opening wallet balance (admin)."""
        ...

    async def create_goods(self, name: str, price: int, stock: int) -> str:
        """A new goods; its id (admin)."""
        ...

    async def create_coupon(self, user_id: str, value: int) -> str:
        """A new coupon for ``user_id``; its id (admin)."""
        ...

    async def place_order(
        self,
        customer: Customer,
        items: list[tuple[str, int]],
        *,
        coupon_id: str | None,
        use_balance: int,
        key: str,
        wait: bool,
    ) -> Order:
        """Place an order (``wait=False``: answered pending at once)."""
        ...

    async def get_order(self, customer: Customer, order_id: str) -> Order:
        """The order as it is now."""
        ...

    async def placement_failure(self, customer: Customer, order_id: str) -> str:
        """The code an order's failed placement was refused with, as its history names it
        (``insufficient_stock``, ...; ``placement_failed`` when it names none)."""
        ...

    async def start_payment(self, customer: Customer, order_id: str) -> Payment:
        """Start (or get again) the payment of an order awaiting payment."""
        ...

    async def complete_payment(self, payment_id: str, result: str) -> None:
        """Pay (or fail to) through the sandbox gateway, which then calls the shop back."""
        ...

    async def send_callback(self, raw_body: bytes, signature: str) -> None:
        """Deliver a signed payment callback as the gateway would; refused unless handled."""
        ...

    def sign(self, raw_body: bytes, timestamp: int) -> str:
        """The ``Shopkeep-Signature`` header value for ``raw_body`` (needs the secret)."""
        ...

    @property
    def signs(self) -> bool:
        """Whether :meth:`sign` can sign: the gateway secret is known."""
        ...

    async def cancel_order(self, customer: Customer, order_id: str) -> Order:
        """Cancel as the user."""
        ...

    async def ship(self, order_id: str) -> Order:
        """Ship (admin)."""
        ...

    async def deliver(self, order_id: str) -> Order:
        """Deliver (admin)."""
        ...

    async def request_return(self, customer: Customer, order_id: str) -> str:
        """Ask to return a delivered order; the return's id."""
        ...

    async def approve_return(self, return_id: str) -> None:
        """Approve a return (admin)."""
        ...

    async def refund_kinds(self, customer: Customer, order_id: str) -> list[str]:
        """The kinds of the order's after-sale records (``cancel``, ``late_payment``, ...)."""
        ...

    async def audit(self) -> dict[str, Any]:
        """The audit: ``{"ok": bool, "checks": [{"name", "ok", "detail"}]}``."""
        ...

    async def resident_memory(self) -> float | None:
        """The shop's resident memory in bytes, when it can be read."""
        ...

    async def close(self) -> None:
        """Release connections (the embedded shop is closed by whoever opened it)."""
        ...
