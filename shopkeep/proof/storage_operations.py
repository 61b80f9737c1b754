"""The operations the storage-fault loops break, and the bench they run on.

Each :class:`Operation` prepares a fresh shop the same way every time (with a working disk),
then runs: what it runs is what the faulty disk sees, consequences included (a cancel's
durable release and gateway refund, a deadline's timer fire and release). The bench's
:func:`business_state` is what must be either untouched or fully done after a fault: it names
nothing by id, so a run and its fault-free reference compare equal when they did the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from shopkeep.actors.config import ShopConfig
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.proof.harness import SECRET, Life, audit_failures, drive
from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop

RECOVERY_ROUNDS = 10
"""Minutes given to the shop, disk repaired, to retry what a fault cut (refunds back off to
five minutes at most; every deadline but the timeout operation's is half an hour away)."""
QUIET_TICKS = 600


@dataclass
class Bench:
    """A shop on a fresh file, a clock, a gateway, and what the preparation left for the run."""

    path: str
    clock: VirtualClock
    gateway: SandboxGateway
    life: Life
    config: ShopConfig
    held: dict[str, Any] = field(default_factory=dict)

    @classmethod
    async def open(cls, path: str, config: ShopConfig | None = None) -> Bench:
        """A new shop on ``path``."""
        clock = VirtualClock()
        gateway = SandboxGateway(SECRET, clock)
        settings = config or ShopConfig()
        return cls(path, clock, gateway, await Life.open(path, clock, gateway, settings), settings)

    @property
    def shop(self) -> Shop:
        """The shop of the current incarnation."""
        return self.life.shop

    async def quiet(self) -> None:
        """Wait until the shop is quiet, moving time while it waits on it."""
        task = _spawn(self.shop.runtime.system.quiet())
        await drive(self.clock, [task], QUIET_TICKS)

    async def recover(self) -> None:
        """Give the shop a few minutes (disk working) to retry what a fault cut short."""
        for _ in range(RECOVERY_ROUNDS):
            await self.clock.advance(60)
            await self.quiet()

    async def audit_failures(self) -> list[str]:
        """The audit's failed checks now."""
        return await audit_failures(self.shop)

    async def reopen(self) -> None:
        """Stop gracefully and open a new process on the same file."""
        await self.life.close()
        self.life = await Life.open(self.path, self.clock, self.gateway, self.config)

    async def crash_and_reopen(self) -> None:
        """Die as ``kill -9`` would, and open a new process on the same file."""
        await self.life.crash()
        self.life = await Life.open(self.path, self.clock, self.gateway, self.config)

    async def close(self) -> None:
        """Stop gracefully."""
        await self.life.close()

    # -- the cast -------------------------------------------------------------------------------

    async def cast(self) -> None:
        """Alice (a wallet, a coupon), tea and cake (a little stock)."""
        shop = self.shop
        alice = (await shop.create_user("alice", balance=5_000)).user.id
        self.held["alice"] = alice
        self.held["tea"] = (await shop.create_goods("tea", price=1_500, stock=5)).id
        self.held["cake"] = (await shop.create_goods("cake", price=4_000, stock=3)).id
        self.held["coupon"] = (await shop.create_coupon(alice, 1_000)).id

    async def place(self, *, use_balance: int = 500) -> str:
        """Alice orders two teas and a cake with her coupon and some of her wallet."""
        held = self.held
        order = await self.shop.place_order(
            held["alice"],
            [(held["tea"], 2), (held["cake"], 1)],
            coupon_id=held["coupon"],
            use_balance=use_balance,
        )
        held["order"] = order.id
        return order.status

    async def pay_at_the_gateway(self) -> None:
        """Alice pays at the gateway: it collects; the callback is kept for the run."""
        started = await self.shop.start_payment(self.held["order"])
        payment = started.payment
        self.gateway.collect(payment.id, "txn-1", payment.amount)
        self.held["callback"] = self.gateway.callback(
            payment.id, payment.order_id, payment.amount, "succeeded", "txn-1"
        )

    async def callback(self) -> str:
        """The gateway calls back (signed now)."""
        body: bytes = self.held["callback"]
        handled = await self.shop.handle_callback(body, self.gateway.signature(body))
        return handled.action


def _spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(coro)


@dataclass(frozen=True)
class Operation:
    """One operation under fault: how to prepare it, how to run it, and on what settings."""

    name: str
    prepare: Callable[[Bench], Coroutine[Any, Any, None]]
    run: Callable[[Bench], Coroutine[Any, Any, str]]
    config: ShopConfig = field(default_factory=ShopConfig)
    changes: bool = True
    """False for an operation whose whole effect is undone by design (a refused placement)."""


SAGA = ShopConfig(one_turn_placement=False)
"""Every placement takes the saga of asks."""


async def _placed(bench: Bench) -> None:
    await bench.cast()
    await bench.place()


async def _paid(bench: Bench) -> None:
    await _placed(bench)
    await bench.pay_at_the_gateway()
    await bench.callback()


async def _payment_started(bench: Bench) -> None:
    await _placed(bench)
    await bench.pay_at_the_gateway()


async def _place(bench: Bench) -> str:
    status = await bench.place()
    await bench.shop.runtime.system.quiet()
    return status


async def _pay(bench: Bench) -> str:
    action = await bench.callback()
    await bench.shop.runtime.system.quiet()
    return action


async def _cancel(bench: Bench) -> str:
    order = await bench.shop.cancel_order(bench.held["order"])
    await bench.shop.runtime.system.quiet()  # the release and the refund, under fault too
    return order.status


async def _timeout(bench: Bench) -> str:
    await bench.clock.sleep(bench.config.order_timeout_s + 1)  # the deadline's timer fires
    await bench.shop.runtime.system.quiet()
    return "deadline passed"


async def _compensate(bench: Bench) -> str:
    """A placement refused at its last step (the wallet): stock and coupon were taken, and
    must be given back."""
    try:
        status = await bench.place(use_balance=4_000)  # more than is left after the first
    except Exception as error:
        code = getattr(error, "code", type(error).__name__)
        await bench.shop.runtime.system.quiet()
        return str(code)
    await bench.shop.runtime.system.quiet()
    return status


async def _one_order_already(bench: Bench) -> None:
    await bench.cast()
    held = bench.held
    # the first order takes 4,500 of alice's 5,000: the next one cannot have 4,000 more
    await bench.shop.place_order(held["alice"], [(held["tea"], 1)], use_balance=4_500)
    held["coupon"] = (await bench.shop.create_coupon(held["alice"], 1_000)).id


OPERATIONS = (
    Operation("place", Bench.cast, _place),
    Operation("place_saga", Bench.cast, _place, SAGA),
    Operation("pay", _payment_started, _pay),
    Operation("cancel", _paid, _cancel),
    Operation("timeout", _placed, _timeout, ShopConfig(order_timeout_s=10.0)),
    Operation("compensate", _one_order_already, _compensate, SAGA, changes=False),
)
"""Every operation the fault loops break. A placement in one turn writes one unit, and when it
is refused it writes nothing at all: the saga's steps and compensations (the path of a
placement whose participant is busy) are broken on their own (``SAGA``)."""


async def business_state(bench: Bench) -> dict[str, Any]:
    """What an operation changes, named by nothing that differs between two runs (ids)."""
    reader = bench.shop.reader

    async def rows(sql: str) -> list[tuple[Any, ...]]:
        return sorted(tuple(row) for row in await reader.fetchall(sql))

    return {
        "goods": await rows("SELECT name, stock FROM goods"),
        "users": await rows("SELECT name, balance, points FROM users"),
        "coupons": await rows("SELECT value, order_id IS NOT NULL FROM coupons"),
        "orders": await rows(
            "SELECT status, coalesce(cancel_reason, ''), pay_amount, wallet_amount FROM orders "
            "WHERE coalesce(cancel_reason, '') <> 'placement_failed'"
        ),
        "payments": await rows("SELECT amount, status FROM payments"),
        "refunds": await rows("SELECT kind, wallet_amount, gateway_amount, status FROM refunds"),
        "gateway": (bench.gateway.total_collected, bench.gateway.total_refunded),
    }
