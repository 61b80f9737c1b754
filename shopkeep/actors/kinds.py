"""Binding the order's kinds to the shop's settings and payment provider.

Actor kinds are classes the runtime instantiates per address, so their dependencies cannot be
passed to a constructor. Instead of a module-level registry (hidden global state, and one per
process), the composition root makes subclasses with the dependencies as class attributes:

    provider = SandboxProvider(SandboxGateway(secret, clock), secret)
    kinds = [*asset_kinds, *order_kinds(config, provider)]
    async with open_runtime(path, kinds=kinds, clock=clock) as rt: ...

Two shops in one process (tests do this) each get their own bound classes.
"""

from __future__ import annotations

from collections import Counter

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.fulfilment import WarehouseActor
from shopkeep.actors.order import OrderActor
from shopkeep.actors.order_stats import OrderStats
from shopkeep.actors.payment_query import PaymentQueryActor
from shopkeep.actors.refund import RefunderActor
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.payments.provider import PaymentProvider
from shopkeep.payments.sandbox import SandboxProvider
from shopkeep.runtime import Actor


def as_provider(gateway: PaymentProvider | SandboxGateway, currency: str) -> PaymentProvider:
    """``gateway`` as a provider: an in-process sandbox gateway is wrapped in its adapter."""
    if isinstance(gateway, SandboxGateway):
        return SandboxProvider(gateway, gateway.secret, currency=currency)
    return gateway


def order_kinds(
    config: ShopConfig,
    provider: PaymentProvider | SandboxGateway,
    queries: Counter[str] | None = None,
    stats: OrderStats | None = None,
) -> list[type[Actor]]:
    """The ``order``, ``warehouse``, ``refunder`` and ``payment_query`` kinds, bound to
    ``config`` and ``provider`` (a bare sandbox gateway is wrapped); ``queries`` counts the
    active queries by outcome, and the order counts what it decides in ``stats`` (a new
    :class:`OrderStats` when not given). Register them with the asset kinds (user, goods,
    coupon, assets)."""
    bound = {
        "config": config,
        "provider": as_provider(provider, config.currency),
        "outcomes": Counter() if queries is None else queries,
        "__slots__": (),
    }
    counted = {**bound, "stats": OrderStats() if stats is None else stats}
    order: type[Actor] = type("OrderActor", (OrderActor,), counted)
    refunder: type[Actor] = type("RefunderActor", (RefunderActor,), dict(bound))
    query: type[Actor] = type("PaymentQueryActor", (PaymentQueryActor,), counted)
    return [order, WarehouseActor, refunder, query]
