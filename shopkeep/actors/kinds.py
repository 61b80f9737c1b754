"""Binding the order's kinds to the shop's settings and payment gateway.

Actor kinds are classes the runtime instantiates per address, so their dependencies cannot be
passed to a constructor. Instead of a module-level registry (hidden global state, and one per
process), the composition root makes subclasses with the dependencies as class attributes:

    gateway = SandboxGateway(secret, clock)
    kinds = [*asset_kinds, *order_kinds(config, gateway)]
    async with open_runtime(path, kinds=kinds, clock=clock) as rt: ...

Two shops in one process (tests do this) each get their own bound classes.
"""

from __future__ import annotations

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.fulfilment import WarehouseActor
from shopkeep.actors.gateway import Gateway
from shopkeep.actors.order import OrderActor
from shopkeep.actors.order_stats import OrderStats
from shopkeep.actors.refund import RefunderActor
from shopkeep.runtime import Actor


def order_kinds(
    config: ShopConfig, gateway: Gateway, stats: OrderStats | None = None
) -> list[type[Actor]]:
    """The ``order``, ``warehouse`` and ``refunder`` kinds, bound to ``config`` and
    ``gateway`` (and the order's to ``stats``, where it counts what it decides: a new
    :class:`OrderStats` when not given). Register them with the asset kinds (user, goods,
    coupon, assets)."""
    bound = {"config": config, "gateway": gateway, "__slots__": ()}
    counted = {**bound, "stats": OrderStats() if stats is None else stats}
    order: type[Actor] = type("OrderActor", (OrderActor,), counted)
    refunder: type[Actor] = type("RefunderActor", (RefunderActor,), dict(bound))
    return [order, WarehouseActor, refunder]
