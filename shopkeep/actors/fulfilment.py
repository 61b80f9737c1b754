"""Fulfilment: the ``warehouse`` kind, one actor per order id (SPEC 5).

The order hands itself to fulfilment by writing a shipments row (status ``awaiting``,
:data:`AWAIT_SQL`) in the unit that marks it paid; every statement on ``shipments`` is here.
The warehouse then answers two asks from the order: ``Intercept`` (do not ship: the order is
being canceled; refused once shipped) and ``Dispatch`` (ship it; refused once intercepted).
Both are idempotent. A missing row means awaiting: the order's unit that writes it is
committed before any ask it sends afterwards is handled.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shopkeep.refusals import INVALID_STATE, Refusal
from shopkeep.runtime import ActivationContext, Actor, Context

AWAITING = "awaiting"
INTERCEPTED = "intercepted"
SHIPPED = "shipped"

AWAIT_SQL = (
    f"INSERT OR IGNORE INTO shipments (order_id, status, updated_at) VALUES (?, '{AWAITING}', ?)"
)
"""The order's hand-over, in the unit that marks it paid (a row already there is kept)."""
UPSERT_SQL = (
    "INSERT INTO shipments (order_id, status, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, "
    "updated_at = excluded.updated_at"
)


def await_shipment(ctx: Context, order_id: int) -> None:
    """Hand the paid order ``order_id`` over to the warehouse, in ``ctx``'s unit
    (:data:`AWAIT_SQL`)."""
    ctx.execute(AWAIT_SQL, (order_id, ctx.now()))


class Intercept(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Do not ship this order (answer ShipmentView intercepted, or Refusal once shipped)."""


class Dispatch(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Ship this order (answer ShipmentView shipped, or Refusal once intercepted)."""


class GetShipment(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Answer the ShipmentView."""


WarehouseMessage = Intercept | Dispatch | GetShipment


class ShipmentView(msgspec.Struct, frozen=True, gc=False):
    """Where the order is in the warehouse: awaiting, intercepted or shipped."""

    order_id: int
    status: str


def decide(status: str, message: WarehouseMessage) -> str | Refusal:
    """The warehouse's rule: the status after ``message``, or why not."""
    match message:
        case Intercept():
            if status == SHIPPED:
                return Refusal(INVALID_STATE, "the order has shipped already")
            return INTERCEPTED
        case Dispatch():
            if status == INTERCEPTED:
                return Refusal(INVALID_STATE, "the order was intercepted")
            return SHIPPED
        case GetShipment():
            return status
    raise TypeError(f"unexpected message {message!r}")


class WarehouseActor(Actor):
    """The warehouse's view of one order."""

    __slots__ = ("status",)
    kind = "warehouse"
    messages = WarehouseMessage

    async def on_activate(self, ctx: ActivationContext) -> None:
        """Load the shipment's status (awaiting when there is no row yet)."""
        row = await ctx.reader.fetchone(
            "SELECT status FROM shipments WHERE order_id = ?", (self.address.id,)
        )
        self.status: str = str(row[0]) if row else AWAITING

    async def receive(self, ctx: Context, message: Any) -> Any:
        """Intercept, dispatch or answer the shipment."""
        outcome = decide(self.status, message)
        if isinstance(outcome, Refusal):
            return Refusal(outcome.code, outcome.detail, self.address.id)
        if outcome != self.status:
            self.status = outcome
            ctx.execute(UPSERT_SQL, (self.address.id, outcome, ctx.now()))
        return ShipmentView(self.address.id, self.status)
