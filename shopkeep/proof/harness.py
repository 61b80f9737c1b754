"""What every proof group shares: a shop that can crash, and the views that must survive it.

A :class:`Life` is one incarnation of a :class:`~shopkeep.shop.Shop` on a database file, on the
store's inline mode (no threads) and a virtual clock, so a run depends on nothing but its inputs.
It ends in one of two ways:

- :meth:`Life.close`: the graceful stop a server does on SIGTERM (drain, flush, close);
- :meth:`Life.crash`: what ``kill -9`` leaves. Nothing is flushed: every unit of work not yet
  committed is lost, every task is cancelled mid-step, and the clock callbacks the incarnation
  scheduled (timers, back-off, sweeps) never run. Only the file survives, and the next
  incarnation must make sense of it.

The payment gateway outlives the shop (a real gateway does not forget), so its books (what it
collected and refunded) cover a whole run and can be checked against the shop's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import structlog

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.kinds import order_kinds
from shopkeep.actors.recovery import DeadlineSweep, recover_cut_placements, start_deadline_sweep
from shopkeep.bootstrap import Runtime
from shopkeep.errors import ShopError
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.runtime import Actor, ActorSystem, VirtualClock
from shopkeep.runtime.clock import Cancellable, sleep_by_callback
from shopkeep.shop import ASSET_KINDS, Shop
from shopkeep.store import Store, StoreConfig
from shopkeep.store.errors import CommitFailed

SECRET = "proof-gateway-secret"
"""The gateway secret of every proof shop (the forgers do not know it)."""


class Crashed(Exception):
    """The process is gone: raised by the database hook of a crashed incarnation."""


class _Call:
    """A clock callback of one incarnation: dropped once that incarnation has crashed."""

    __slots__ = ("callback", "clock", "handle")

    def __init__(self, clock: IncarnationClock, callback: Callable[[], None]) -> None:
        self.clock = clock
        self.callback = callback
        self.handle: Cancellable | None = None

    def __call__(self) -> None:
        if self.clock.alive:
            self.callback()

    def cancel(self) -> None:
        """Call the callback off."""
        if self.handle is not None:
            self.handle.cancel()


class IncarnationClock:
    """The shared virtual time, seen by one incarnation of the shop.

    Time goes on across crashes, but the callbacks a dead process scheduled must not run in the
    next one: :meth:`kill` makes every callback scheduled through this clock a no-op.
    """

    def __init__(self, base: VirtualClock) -> None:
        self.base = base
        self.alive = True

    def kill(self) -> None:
        """The incarnation is gone: none of its pending callbacks will run."""
        self.alive = False

    def now(self) -> float:
        """The shared virtual time."""
        return self.base.now()

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` at ``when``, unless the incarnation died first."""
        call = _Call(self, callback)
        call.handle = self.base.call_at(when, call)
        return call

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` after ``delay`` virtual seconds, unless the incarnation died first."""
        return self.call_at(self.base.now() + max(0.0, delay), callback)

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` virtual seconds (forever, if the incarnation dies meanwhile)."""
        await sleep_by_callback(self, delay)


class Life:
    """One incarnation of the shop on ``path``; open it with :meth:`open`.

    It is composed here rather than with ``Shop.open``, whose context manager would run its
    graceful exit when a crashed incarnation is garbage-collected: a dead process runs nothing.
    The pieces are the same ones, in the same order.
    """

    def __init__(self, shop: Shop, clock: IncarnationClock, sweep: DeadlineSweep) -> None:
        self.shop = shop
        self.clock = clock
        self._sweep = sweep
        self.ended = False

    @classmethod
    async def open(
        cls,
        path: str,
        clock: VirtualClock,
        gateway: SandboxGateway,
        config: ShopConfig | None = None,
    ) -> Life:
        """Open the shop on ``path`` (recovery of cut placements included), inline."""
        settings = config or ShopConfig()
        incarnation = IncarnationClock(clock)
        # synchronous=NORMAL: the crashes here are the process's, not the machine's
        store = await Store.open(StoreConfig(path, synchronous="NORMAL", inline=True))
        system = ActorSystem(store, clock=incarnation)
        kinds: list[type[Actor]] = [*ASSET_KINDS, *order_kinds(settings, gateway)]
        for kind in kinds:
            system.register(kind)
        await system.start()
        shop = Shop(Runtime(system, store), settings, gateway, SECRET)
        gateway.attach(shop.acknowledge_callback)
        await recover_cut_placements(system)
        return cls(shop, incarnation, start_deadline_sweep(system, settings))

    async def close(self) -> None:
        """Stop gracefully: drain the mailboxes, commit everything, close the file."""
        self.ended = True
        self._sweep.cancel()
        await self.shop.system.stop()
        await self.shop.runtime.store.close()

    async def crash(self) -> None:
        """Die as ``kill -9`` would: lose what is not committed, run nothing more, free the file.

        Every task but the caller's is cancelled (the shop's and the clients' alike), the
        database refuses every call from then on (so no cleanup code can commit anything),
        and the connections are closed without a flush.
        """
        if self.ended:
            return
        self.ended = True
        self.clock.kill()
        self._sweep.cancel()
        store = self.shop.runtime.store

        def refuse(operation: str) -> None:
            raise Crashed(f"the process crashed before {operation}")

        store.writer.fault = refuse
        me = asyncio.current_task()
        for _ in range(100):  # cancelled tasks may start others while they unwind
            others = [task for task in asyncio.all_tasks() if task is not me and not task.done()]
            if not others:
                break
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
        await store.reader.close()
        if store.point_reader is not store.reader:
            await store.point_reader.close()
        with contextlib.suppress(sqlite3.Error):
            store._conn.close()  # a crash closes what it finds, as the OS does
        store._lock.release()


@contextlib.contextmanager
def silenced_logs() -> Iterator[None]:
    """Drop every log line below CRITICAL while a proof runs (its faults make the shop log
    thousands of expected warnings, whose rendering would cost more than the proof), then
    restore the logging configuration as it was."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        yield
    finally:
        structlog.configure(**before)


def scratch_folder(prefix: str) -> Path:
    """A new temporary folder, in memory (``/dev/shm``) where there is one: a proof opens
    thousands of small databases, and their fsyncs would otherwise be most of its time."""
    memory = Path("/dev/shm")
    where = str(memory) if memory.is_dir() and os.access(memory, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=where))


def quiet_about_lost_units(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """An event loop exception handler that says nothing of the units that failed on purpose
    (nobody awaits a unit's own future: its failure reaches the asker through the reply, and
    asyncio would print each one); anything else goes to the default handler."""
    if isinstance(context.get("exception"), CommitFailed | Crashed):
        return
    loop.default_exception_handler(context)


class Hung(AssertionError):
    """Work that should have ended did not, however far time moved."""


async def drive(clock: VirtualClock, tasks: list[asyncio.Task[Any]], max_ticks: int) -> None:
    """Let ``tasks`` run to their end, moving time a second at a time while they wait on it (a
    restart's back-off, a retry, an ask's timeout). Raises :class:`Hung` after ``max_ticks``."""
    for _ in range(max_ticks):
        await clock.settle()
        if all(task.done() for task in tasks):
            return
        await clock.advance(1.0)
    raise Hung(f"still running after {max_ticks} virtual seconds")


async def settle(shop: Shop) -> None:
    """Let what a step started finish without moving time: messages handled, units committed,
    durable messages delivered."""
    await shop.runtime.system.quiet()


async def audit_failures(shop: Shop) -> list[str]:
    """The checks of the audit (SPEC 6) that fail now, as ``name: detail``; empty when ok."""
    report = await shop.audit()
    return [f"{check.name}: {check.detail}" for check in report.checks if not check.ok]


async def shop_views(shop: Shop) -> dict[str, Any]:
    """What the shop answers about everything it holds: every user, goods, coupon and order
    (with its payments and refunds), asked of the actors (their memory, when they are live)."""
    reader = shop.reader
    users = [int(r[0]) for r in await reader.fetchall("SELECT id FROM users ORDER BY id")]
    goods = [int(r[0]) for r in await reader.fetchall("SELECT id FROM goods ORDER BY id")]
    coupons = [int(r[0]) for r in await reader.fetchall("SELECT id FROM coupons ORDER BY id")]
    orders = [int(r[0]) for r in await reader.fetchall("SELECT id FROM orders ORDER BY id")]
    views: dict[str, Any] = {}
    for user in users:
        views[f"user {user}"] = await shop.get_user(user)
    for item in goods:
        views[f"goods {item}"] = await shop.get_goods(item)
    for coupon in coupons:
        views[f"coupon {coupon}"] = await shop.get_coupon(coupon)
    for order in orders:
        try:
            views[f"order {order}"] = (
                await shop.get_order(order),
                await shop.payments(order),
                await shop.refunds(order),
            )
        except ShopError as error:
            views[f"order {order}"] = error.code
    return msgspec.to_builtins(views)  # type: ignore[no-any-return]


def differences(live: dict[str, Any], reloaded: dict[str, Any]) -> list[str]:
    """Where two :func:`shop_views` disagree, one line each."""
    lines = []
    for key in sorted(set(live) | set(reloaded)):
        if live.get(key) != reloaded.get(key):
            lines.append(f"{key}: live {live.get(key)!r} != reloaded {reloaded.get(key)!r}")
    return lines
