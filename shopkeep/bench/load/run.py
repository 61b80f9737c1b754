"""One bench run, start to end: set up, drive the mix, wait for quiet, audit.

1. Setup (not measured): ``SHOPPERS_PER_WORKER`` users per worker, each with a wallet balance
   and two coupons; ``PLENTIFUL_GOODS`` goods with stock that never runs out, and one scarce
   goods that does (so the run proves, under load, that the last units are sold once).
2. The run: ``concurrency`` workers, each with its own shoppers and its own seeded random
   picks, start journeys (as :mod:`.schedule` says: closed or paced, ramped) through the
   warm-up and ``duration``, and finish the ones under way. Orders parked for a late callback
   are then awaited (each is due before the end of the run). A worker whose journey could not
   reach the server (``connection_error``: it was stopped, or killed), or that the server
   asked to slow down (``rate_limited``), pauses before its next one, :data:`FIRST_PAUSE_S`
   doubling up to :data:`LONGEST_PAUSE_S`, until a journey gets through: a server that is down
   or throttling is not hammered, and its errors count in tens, not in tens of thousands.
   Meanwhile the shop's resident memory is sampled every interval, and the process's CPU time
   is measured against the wall time (``client_cpu``: near 1.0 means the harness itself, one
   Python process, was the limit; in embedded mode the shop shares that process and its CPU).
3. Quiet and audit: releases and refunds drain through the shop's outbox after the answers
   went out, so the audit is asked again, every :data:`AUDIT_PAUSE_S`, until it is ok with
   nothing in flight, or ``settle`` seconds have passed; the last answer is the verdict.

A stop (Ctrl-C) ends the run at once: journeys under way and parked ones are cancelled, and
the audit is asked once, without waiting for quiet. A stop during the setup ends it there
(:class:`SetupInterrupted`): there is no run to report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from shopkeep.bench.load.journeys import OPENING_BALANCE, Catalog, Journeys, Shopper
from shopkeep.bench.load.progress import show_progress
from shopkeep.bench.load.recorder import Recorder
from shopkeep.bench.load.schedule import Schedule
from shopkeep.bench.load.target import Refused, Target
from shopkeep.bench.load.thresholds import Threshold

T = TypeVar("T")

SHOPPERS_PER_WORKER = 2
PLENTIFUL_GOODS = 20
PLENTY = 10**9
SCARCE_PER_WORKER = 5
COUPONS_PER_SHOPPER = 2
COUPON_VALUE = 200
AUDIT_PAUSE_S = 0.5
AUDIT_ANSWER_S = 10.0
"""The least time an audit is waited for (past --settle too): a large shop's takes seconds."""
GONE_AFTER_S = 10.0
"""How long audits that cannot reach the server (nothing listens) end the wait for quiet
before --settle does: a server stopped for good is not waited for 30 s, one a supervisor
starts again within seconds still is."""
PARKED_BOUND_S = 40.0
PAUSING = frozenset({"connection_error", "rate_limited"})
"""The refusals after which a worker pauses (see the module): the server could not be
reached, or it asks its client to slow down (429, whose Retry-After is a second at most)."""
FIRST_PAUSE_S = 0.05
LONGEST_PAUSE_S = 1.0


def next_pause(last_s: float) -> float:
    """How long a worker pauses after a journey that could not reach the server, having
    paused ``last_s`` after the one before (0: that one got through)."""
    return min(LONGEST_PAUSE_S, max(FIRST_PAUSE_S, 2 * last_s))


@dataclass(frozen=True)
class BenchOptions:
    """What ``shopkeep bench`` was told (see its ``--help``)."""

    duration_s: float
    concurrency: int
    mix: dict[str, int]
    seed: int
    url: str | None = None
    admin_token: str | None = None
    gateway_secret: str | None = None
    embedded_db: str | None = None
    order_timeout_s: float = 5.0
    max_error_rate: float = 0.0
    settle_s: float = 30.0
    interval_s: float = 1.0
    rate_per_s: float | None = None
    """Journeys started per second, across all workers (None: no pacing)."""
    warmup_s: float = 0.0
    """Journeys run before ``duration_s`` whose figures are left out."""
    ramp_s: float = 0.0
    """From the start, how long the concurrency (or the rate) takes to reach its target."""
    thresholds: tuple[Threshold, ...] = ()
    left_out: tuple[str, ...] = ()
    """Journeys of the default mix left out, for want of the gateway secret."""


@dataclass
class Outcome:
    """What a run measured, before it is turned into figures."""

    recorder: Recorder
    elapsed_s: float
    cpu_s: float
    memory_start: float | None
    memory_end: float | None
    audit: dict[str, Any]
    audit_attempts: int
    audit_wait_s: float
    quiet: bool
    setup_s: float
    started_at: float
    """When the run (its warm-up included) started: Unix seconds."""
    interrupted: bool = False
    """Ended early by Ctrl-C or SIGTERM."""
    cpu_wall_s: float | None = None
    """The wall time ``cpu_s`` was spent over: the whole run, its warm-up included (None: the
    measured time, ``elapsed_s``)."""


async def populate(
    target: Target, options: BenchOptions, pick: random.Random
) -> tuple[list[Shopper], Catalog]:
    """Create the shoppers, their coupons and the goods, ``concurrency`` requests at a time."""
    batch = max(1, options.concurrency)
    shoppers: list[Shopper] = []
    total = options.concurrency * SHOPPERS_PER_WORKER
    for start in range(0, total, batch):
        made = await asyncio.gather(
            *(
                target.create_user(f"bench shopper {n}", OPENING_BALANCE)
                for n in range(start, min(total, start + batch))
            )
        )
        shoppers += [Shopper(customer) for customer in made]
    owners = [s for s in shoppers for _ in range(COUPONS_PER_SHOPPER)]
    for start in range(0, len(owners), batch):
        chunk = owners[start : start + batch]
        coupons = await asyncio.gather(
            *(target.create_coupon(s.customer.id, COUPON_VALUE) for s in chunk)
        )
        for shopper, coupon in zip(chunk, coupons, strict=True):
            shopper.coupons.append(coupon)
    plentiful = await asyncio.gather(
        *(
            target.create_goods(f"bench goods {n}", pick.randrange(1_000, 6_000), PLENTY)
            for n in range(PLENTIFUL_GOODS)
        )
    )
    scarce = await target.create_goods(
        "bench scarce goods", 2_500, SCARCE_PER_WORKER * options.concurrency
    )
    return shoppers, Catalog(list(plentiful), scarce)


def setup_plan(options: BenchOptions) -> str:
    """What is said before the setup: what the harness adds to the shop, and how; and the
    journeys of the default mix left out (``left_out``), and why."""
    users = options.concurrency * SHOPPERS_PER_WORKER
    where = options.url or "an embedded shop"
    how = "its HTTP API" if options.url else "its Python API"
    plan = (
        f"bench: adding {users} users, {PLENTIFUL_GOODS + 1} goods and "
        f"{users * COUPONS_PER_SHOPPER} coupons to {where} through {how}, then its orders"
    )
    if options.left_out:
        plan += (
            f"\nbench: journeys {', '.join(options.left_out)} left out: they send callbacks "
            "of their own, signed (give --gateway-secret, the server's, to run them)"
        )
    return plan


async def sample_memory(target: Target, recorder: Recorder) -> None:
    """Sample the shop's resident memory once an interval, until cancelled."""
    while True:
        recorder.memory(await target.resident_memory())
        await asyncio.sleep(recorder.interval_s)


async def await_parked(journeys: Journeys, recorder: Recorder, stop: asyncio.Event) -> None:
    """Wait for the orders parked for a late callback (each is due before the end of the
    run), at most :data:`PARKED_BOUND_S`; at ``stop`` (or past the bound) they are cancelled."""
    stopper = asyncio.create_task(stop.wait())
    deadline = time.perf_counter() + PARKED_BOUND_S
    try:
        while journeys.parked and not stop.is_set():
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            await asyncio.wait(
                set(journeys.parked) | {stopper}, timeout=left,
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
    finally:
        stopper.cancel()
    late = list(journeys.parked)
    for task in late:
        if not stop.is_set():
            recorder.failed("callback_late", "never_due")
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)


class SetupInterrupted(Exception):
    """The operator stopped the bench (Ctrl-C) before the setup was done: nothing was run.
    What the setup had added to the shop (users, goods, coupons) stays there."""


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T:
    """``work``'s result; SetupInterrupted (``work`` cancelled) if ``stop`` is set first."""
    working = asyncio.ensure_future(work)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({working, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not working.done():
            working.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await working
    if working.cancelled():
        raise SetupInterrupted("interrupted during the setup: nothing was run")
    return working.result()


async def drive(
    target: Target,
    options: BenchOptions,
    stop: asyncio.Event | None = None,
    say: Callable[[str], None] | None = None,
    running: asyncio.Event | None = None,
) -> Outcome:
    """Set up, run the mix, wait for quiet and audit; see the module docstring. ``stop`` ends
    the run early (Ctrl-C): one audit follows, without waiting for quiet. ``say`` is told
    what the setup adds to the shop, before it starts; ``running`` is set once the setup is
    done (a stop before it ends the setup, :class:`SetupInterrupted`)."""
    stop = stop or asyncio.Event()
    pick = random.Random(options.seed)
    # a target that cannot run the journeys is refused before the plan is said, and so is a
    # shop whose audit fails before the run: the run's own audit could not tell its doing
    await unless_stopped(target.ready(), stop)
    await unless_stopped(audited_before(target), stop)
    if say is not None:
        say(setup_plan(options))
    setup_started = time.perf_counter()
    shoppers, catalog = await unless_stopped(populate(target, options, pick), stop)
    setup_s = time.perf_counter() - setup_started
    if running is not None:
        running.set()
    memory_start = await target.resident_memory()
    recorder = Recorder(
        options.interval_s, warmup_s=options.warmup_s, duration_s=options.duration_s
    )
    started_at = time.time()  # the wall time of the recorder's start
    ends_at = options.warmup_s + options.duration_s
    journeys = Journeys(target, recorder, catalog, f"bench-{secrets.token_hex(4)}", ends_at)
    names = list(options.mix)
    weights = [options.mix[name] for name in names]
    choosers = [random.Random(f"{options.seed}-{n}") for n in range(options.concurrency)]
    pauses = [0.0] * options.concurrency  # each worker's last pause (see PAUSING)

    async def run_one(number: int, start: int | None) -> None:
        choose = chooser_of(options.seed, start, choosers[number])
        mine = shoppers[number * SHOPPERS_PER_WORKER : (number + 1) * SHOPPERS_PER_WORKER]
        name = choose.choices(names, weights)[0]
        recorder.started_journey(name)
        try:
            await journeys.by_name[name](choose.choice(mine), choose)
        except Refused as refused:
            # counted where it happened; it ends the journey, not the worker
            if refused.code in PAUSING:
                pauses[number] = next_pause(pauses[number])
                await asyncio.sleep(pauses[number])  # a stop cancels it with the journey
            return
        pauses[number] = 0.0

    schedule = Schedule(
        recorder, run_one, concurrency=options.concurrency, ends_at=ends_at,
        ramp_s=options.ramp_s, rate=options.rate_per_s, stop=stop,
    )  # fmt: skip
    cpu_started = time.process_time()
    watchers = [
        asyncio.create_task(sample_memory(target, recorder)),
        asyncio.create_task(
            show_progress(recorder, options.duration_s, lambda: len(journeys.parked))
        ),
    ]
    try:
        await schedule.run()
        await await_parked(journeys, recorder, stop)
    finally:
        for task in watchers:
            task.cancel()
        for task in watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    elapsed = recorder.measured()
    cpu_s = time.process_time() - cpu_started  # since the start: over the warm-up too
    cpu_wall_s = recorder.now()
    interrupted = stop.is_set()
    settle_started = time.perf_counter()
    audit, attempts, quiet = await settle(target, 0.0 if interrupted else options.settle_s, stop)
    interrupted = stop.is_set()  # a stop while it waited for quiet ended that wait
    audit_wait_s = time.perf_counter() - settle_started
    memory_end = await memory_within(target, AUDIT_ANSWER_S)
    return Outcome(
        recorder=recorder,
        elapsed_s=elapsed,
        cpu_s=cpu_s,
        memory_start=memory_start,
        memory_end=memory_end,
        audit=audit,
        audit_attempts=attempts,
        audit_wait_s=audit_wait_s,
        quiet=quiet,
        setup_s=setup_s,
        started_at=started_at,
        interrupted=interrupted,
        cpu_wall_s=cpu_wall_s,
    )


def chooser_of(seed: int, start: int | None, worker: random.Random) -> random.Random:
    """The random picks of one journey: a paced start's own, by its number (the same whichever
    worker is free to take it), else its ``worker``'s, in turn."""
    return worker if start is None else random.Random(f"{seed}@{start}")


def checks_in_flight(report: dict[str, Any]) -> list[str]:
    """The audit's checks that count something still in flight (a release, a refund, a
    placement), by name."""
    return [check["name"] for check in report["checks"] if "in flight" in check["detail"]]


def in_flight(report: dict[str, Any]) -> bool:
    """Whether a check counts something still in flight."""
    return bool(checks_in_flight(report))


async def settle(
    target: Target, bound_s: float, stop: asyncio.Event | None = None
) -> tuple[dict[str, Any], int, bool]:
    """The audit once the shop is quiet (ok, nothing in flight), or the last one after
    ``bound_s`` (or at ``stop``); with the number of audits asked and whether quiet was
    reached."""
    deadline = time.perf_counter() + bound_s
    attempts = 0
    unreachable_since: float | None = None
    report: dict[str, Any] = {"ok": False, "checks": []}
    while True:
        attempts += 1
        # an audit is waited for until the bound, AUDIT_ANSWER_S at least: a server that
        # hangs holds the run no longer (a request's own timeout is a minute)
        waits = max(deadline - time.perf_counter(), AUDIT_ANSWER_S)
        try:
            report = await asyncio.wait_for(target.audit(), waits)
        except (Refused, TimeoutError) as refused:
            said = f"refused: {refused}" if isinstance(refused, Refused) else (
                f"no answer in {waits:.1f} s"
            )
            if not (isinstance(refused, Refused) and refused.code == "connection_error"):
                unreachable_since = None
            elif unreachable_since is None:
                unreachable_since = time.perf_counter()
            report = {
                "ok": False,
                "answered": False,  # nothing is known of the invariants: not a failed audit
                "checks": [{"name": "answer", "ok": False, "detail": said}],
            }
        else:
            if report["ok"] and not in_flight(report):
                return report, attempts, True
            unreachable_since = None
        now = time.perf_counter()
        if now >= deadline or (stop is not None and stop.is_set()) or (
            unreachable_since is not None and now - unreachable_since >= GONE_AFTER_S
        ):
            return report, attempts, False
        await asyncio.sleep(AUDIT_PAUSE_S)


async def memory_within(target: Target, bound_s: float) -> float | None:
    """The shop's resident memory, or None when it does not say within ``bound_s``: bounded as
    the audit is, so that a server that hangs holds the run no longer."""
    try:
        return await asyncio.wait_for(target.resident_memory(), bound_s)
    except TimeoutError:
        return None


async def audited_before(target: Target) -> None:
    """Refuse (:class:`Refused` ``audit_failed_before``) a shop whose audit fails before the
    run: what a run then finds broken, it did not break, and its audit could not say so."""
    report = await target.audit()
    if not report["ok"]:
        broken = "; ".join(
            f"{check['name']}: {check['detail']}" for check in report["checks"] if not check["ok"]
        )
        raise Refused(
            "audit_failed_before",
            f"the shop fails its audit before the run ({broken[:300]}): a run could not tell "
            "what it broke; mend it first (shopkeep audit names every violation)",
        )


@asynccontextmanager
async def open_target(
    options: BenchOptions, say: Callable[[str], None] | None = None
) -> AsyncIterator[Target]:
    """The target of ``options``: the server at ``url`` (``say`` told when it waits for the
    server to listen), or a fresh embedded shop."""
    if options.url is not None:
        from shopkeep.bench.load.http_target import HttpTarget

        assert options.admin_token is not None
        target = HttpTarget(
            options.url, options.admin_token, options.gateway_secret, options.concurrency, say
        )
        try:
            yield target
        finally:
            await target.close()
        return

    from shopkeep.actors.config import ShopConfig
    from shopkeep.bench.load.embedded_target import EmbeddedTarget
    from shopkeep.shop import Shop

    secret = secrets.token_hex(32)
    config = ShopConfig(order_timeout_s=options.order_timeout_s)
    with contextlib.ExitStack() as stack:
        path = options.embedded_db
        if path is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="shopkeep-bench-"))
            path = os.path.join(folder, "shop.db")
        async with Shop.open(
            str(Path(path)), gateway="sandbox", config=config, gateway_secret=secret
        ) as shop:
            yield EmbeddedTarget(shop, secret)
