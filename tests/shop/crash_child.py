"""The process that ``test_shop_crash.py`` kills: a whole shop under a storm of clients.

Run as ``python -m tests.shop.crash_child DB --seed K --generation N [--finish --run-s S]``
from the repository root. It opens the :class:`~shopkeep.shop.Shop` on the file (the real
clock, 2 s payment deadlines and a sweep every 0.5 s, so deadlines fire within a life), which
runs the recovery of placements cut by the previous kill. Then it checks what the test wants
to know about the restart and prints it on one line::

    ready {"stale_pending": [...], "quiet": true, "audit_ok": true, "failed": [...], ...}

- ``stale_pending``: orders still pending that were created before this process started
  (after ``Shop.open`` returned and the writer was flushed): must be none;
- ``quiet`` and ``audit_ok``: the outbox drained and no order was pending within 10 s, and
  then ``shop.audit()`` was ok (``failed`` lists the checks that were not).

On its first life it creates the cast (users with wallet balances, goods with little stock,
coupons); later lives find it again in the database. Its even lives place every order by the
saga, its odd lives mostly in one turn. Then ``CLIENTS`` client loops run as fast
as they can: they place orders (sync and async, with coupons and wallet balance), pay them
through the sandbox gateway (successes, failures, duplicate callbacks, a second payment of a
paid order, late payments after the deadline), cancel unpaid and paid orders, ship, deliver and
return some, and leave others to time out. Business refusals (no stock, coupon taken, ...) are
expected and counted; anything else is printed to stderr as ``UNEXPECTED`` (the test looks).

Without ``--finish`` it runs until it is killed (or, if nobody does, gives up after
``--deadline`` seconds). With ``--finish`` the clients stop after ``--run-s`` seconds; the
child waits until the shop is quiet (outbox empty, nothing pending, no refund refunding, every
unpaid order timed out), audits, prints ``done {...}`` and stops gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_messages import OrderView, PaymentView
from shopkeep.errors import ShopError
from shopkeep.logs import configure_logging
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.shop import Shop

T = TypeVar("T")

USERS = 20
GOODS = 10
STOCK = 30
"""Units of each goods at creation: few, so insufficient_stock refusals happen."""
COUPONS = 12
OPENING_BALANCE = 20_000
CLIENTS = 16
SECRET = "shop-crash-test-gateway-secret"
CONFIG = ShopConfig(order_timeout_s=2.0, sweep_interval_s=0.5)
SAGA_CONFIG = replace(CONFIG, one_turn_placement=False)
"""The even lives' settings: every placement takes the saga, so kills cut sagas under way (in
the odd lives most placements are one turn, which no kill can leave half done)."""

QUIET_TIMEOUT_S = 10.0
"""How long the child waits for the outbox to drain before it audits."""
STEP_TIMEOUT_S = 15.0
"""The longest any one client operation may take (an ask, a callback acknowledged)."""
POLL_S = 0.01
LATE_BY_S = 0.5
"""A late payment is completed this long after its order's deadline (the sweep has run)."""

EXPECTED_REFUSALS = frozenset(
    {
        "insufficient_stock",
        "coupon_unavailable",
        "insufficient_balance",
        "too_many_unpaid_orders",
        "invalid_state",  # e.g. paying an order whose deadline fired a moment ago
    }
)

EXIT_DEADLINE = 2
EXIT_NOT_QUIET = 4


@dataclass
class Cast:
    """Who and what the clients play with (found in the database on later lives)."""

    users: list[int]
    goods: list[int]
    coupons: dict[int, list[int]]
    """Coupon ids by owner."""


@dataclass
class Late:
    """A payment the user completes after its order's deadline (a late callback)."""

    due: float
    order_id: int
    payment: PaymentView


@dataclass
class Shared:
    """What the clients of one life share."""

    shop: Shop
    cast: Cast
    stop: asyncio.Event
    stats: Counter[str] = field(default_factory=Counter)
    late: list[Late] = field(default_factory=list)


class Unexpected(Exception):
    """Something no client should ever see."""


# -- the cast -----------------------------------------------------------------------------------


async def find_or_create_cast(shop: Shop, rng: random.Random) -> Cast:
    """The users, goods and coupons in the database, after creating any that are missing
    (all of them on the first life; the rest, if the first life was cut during the setup)."""
    rows = await shop.reader.fetchall("SELECT id FROM users ORDER BY id")
    users = [int(row[0]) for row in rows]
    for n in range(len(users), USERS):
        created = await shop.create_user(f"customer {n}", balance=OPENING_BALANCE)
        users.append(created.user.id)
    rows = await shop.reader.fetchall("SELECT id FROM goods ORDER BY id")
    goods = [int(row[0]) for row in rows]
    for n in range(len(goods), GOODS):
        made = await shop.create_goods(f"goods {n}", price=rng.randrange(500, 6_000), stock=STOCK)
        goods.append(made.id)
    rows = await shop.reader.fetchall("SELECT count(*) FROM coupons")
    for _ in range(int(rows[0][0]), COUPONS):
        await new_coupon(shop, rng, rng.choice(users))
    coupons: dict[int, list[int]] = {user: [] for user in users}
    for coupon_id, owner in await shop.reader.fetchall("SELECT id, user_id FROM coupons"):
        coupons.setdefault(int(owner), []).append(int(coupon_id))
    return Cast(users, goods, coupons)


async def new_coupon(shop: Shop, rng: random.Random, user_id: int) -> int:
    """A coupon for ``user_id``; some have a minimum order amount."""
    minimum = rng.choice([0, 0, 5_000])
    coupon = await shop.create_coupon(
        user_id, rng.choice([300, 1_000, 2_500, 20_000]), min_order_amount=minimum
    )
    return coupon.id


# -- quiet and audit ----------------------------------------------------------------------------


async def counts(shop: Shop) -> dict[str, int]:
    """What is still moving, as committed."""
    await shop.runtime.store.writer.flush()
    row = await shop.reader.fetchone(
        "SELECT (SELECT count(*) FROM outbox), "
        "(SELECT count(*) FROM orders WHERE status = 'pending'), "
        "(SELECT count(*) FROM refunds WHERE status = 'refunding'), "
        "(SELECT count(*) FROM orders WHERE status = 'awaiting_payment'), "
        "(SELECT count(*) FROM orders)"
    )
    assert row is not None
    return dict(zip(("outbox", "pending", "refunding", "awaiting_payment", "orders"), row,
                    strict=True))


async def wait_until_quiet(shop: Shop, *, everything: bool, timeout: float) -> bool:
    """Poll until the outbox is empty and no order is pending; with ``everything``, also until
    no refund is refunding and every unpaid order has timed out (nothing is left that could
    move). False if that did not happen within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = await counts(shop)
        moving = now["outbox"] + now["pending"]
        if everything:
            moving += now["refunding"] + now["awaiting_payment"]
        if moving == 0:
            return True
        await asyncio.sleep(POLL_S * 5)
    return False


async def audit_summary(shop: Shop) -> dict[str, Any]:
    """The shop's audit, as JSON-ready values."""
    report = await shop.audit()
    return {
        "audit_ok": report.ok,
        "failed": [f"{c.name}: {c.detail}" for c in report.checks if not c.ok],
        "checks": {c.name: c.detail for c in report.checks},
    }


def sandbox(shop: Shop) -> SandboxGateway:
    """The shop's in-process sandbox gateway (``Shop.open`` makes one without a gateway)."""
    gateway = shop.gateway
    assert isinstance(gateway, SandboxGateway)
    return gateway


# -- the clients --------------------------------------------------------------------------------


async def step(what: str, awaitable: Awaitable[T]) -> T:
    """One operation, which must finish within STEP_TIMEOUT_S."""
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            return await awaitable
    except TimeoutError:
        raise Unexpected(f"{what} took longer than {STEP_TIMEOUT_S:g} s") from None


def refused(shared: Shared, what: str, error: ShopError) -> None:
    """Count a business refusal; anything but an expected one is a finding."""
    if error.code not in EXPECTED_REFUSALS:
        raise Unexpected(f"{what} refused with {error.code}: {error.detail}") from error
    shared.stats[f"refused {what} {error.code}"] += 1


async def client(shared: Shared, rng: random.Random) -> None:
    """One client: rounds until told to stop. A finding is printed, counted, and the client
    goes on (so one bug does not hide the others)."""
    while not shared.stop.is_set():
        try:
            await pay_a_late_payment(shared)
            await one_round(shared, rng)
        except Unexpected as exc:
            report_unexpected(shared, str(exc), exc)
        except Exception as exc:
            report_unexpected(shared, f"{type(exc).__name__}: {exc}", exc)
        await asyncio.sleep(0)


def report_unexpected(shared: Shared, what: str, exc: BaseException) -> None:
    """Print a finding to stderr (the test reads the logs) and count it."""
    shared.stats["unexpected"] += 1
    trace = "".join(traceback.format_exception(exc))
    print(f"crash_child: UNEXPECTED {what}\n{trace}", file=sys.stderr, flush=True)


async def pay_a_late_payment(shared: Shared) -> None:
    """Complete one payment whose order's deadline passed a while ago: a late success."""
    now = time.time()
    due = [late for late in shared.late if late.due <= now]
    if not due:
        return
    late = due[0]
    shared.late.remove(late)
    await complete(shared, late.order_id, late.payment, "succeeded")
    shared.stats["late payments"] += 1


async def one_round(shared: Shared, rng: random.Random) -> None:
    """Place one order and play its life out (or leave it to time out)."""
    order = await place(shared, rng)
    if order is None:
        return
    if order.status == "awaiting_payment":
        fate = rng.random()
        if fate < 0.12:
            shared.stats["left to time out"] += 1
            return
        if fate < 0.25:
            await cancel(shared, order.id, "unpaid")
            return
        order = await pay(shared, rng, order)
        if order is None or order.status != "paid":
            return
    if order.status == "paid":
        await after_paid(shared, rng, order.id)


async def place(shared: Shared, rng: random.Random) -> OrderView | None:
    """Place a random order, sync or async; the confirmed order, or None when refused."""
    shop, cast = shared.shop, shared.cast
    user = rng.choice(cast.users)
    chosen = rng.sample(cast.goods, rng.choice([1, 1, 2, 3]))
    lines = [(goods, rng.randint(1, 3)) for goods in chosen]
    coupon = None
    if cast.coupons.get(user) and rng.random() < 0.3:
        coupon = rng.choice(cast.coupons[user])
    use_balance = rng.choice([0, 0, 0, rng.randrange(1, 3_000), rng.randrange(3_000, 30_000)])
    wait = rng.random() < 0.7
    key = f"k{rng.getrandbits(64):x}" if rng.random() < 0.1 else None
    try:
        order = await step(
            "place",
            shop.place_order(
                user, lines, coupon_id=coupon, use_balance=use_balance, idempotency_key=key,
                wait=wait,
            ),
        )
    except ShopError as error:
        refused(shared, "place", error)
        await replenish(shared, rng, error, user)
        return None
    if key is not None:
        again = await step(
            "place again",
            shop.place_order(
                user, lines, coupon_id=coupon, use_balance=use_balance, idempotency_key=key,
                wait=wait,
            ),
        )
        if again.id != order.id:
            raise Unexpected(f"idempotency key {key}: order {order.id}, then {again.id}")
    if not wait:
        shared.stats["placed async"] += 1
        order = await settled(shared, order.id)
        if order.status == "canceled":
            shared.stats[f"async placement failed ({order.cancel_reason})"] += 1
            return None
    shared.stats[f"placed {order.status}"] += 1
    return order


async def settled(shared: Shared, order_id: int) -> OrderView:
    """Poll an async placement until it is no longer pending."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        order = await step("get order", shared.shop.get_order(order_id))
        if order.status != "pending":
            return order
        await asyncio.sleep(POLL_S)
    raise Unexpected(f"order {order_id} still pending after {STEP_TIMEOUT_S:g} s")


async def replenish(shared: Shared, rng: random.Random, error: ShopError, user: int) -> None:
    """Sometimes, after a refusal for want of something, the admin adds more of it."""
    shop = shared.shop
    if rng.random() > 0.3:
        return
    if error.code == "insufficient_stock":
        goods = rng.choice(shared.cast.goods)
        await step("restock", shop.update_goods(goods, restock=rng.randint(5, 20)))
        shared.stats["restocks"] += 1
    elif error.code == "insufficient_balance":
        await step("credit", shop.credit_wallet(user, rng.randrange(5_000, 20_000)))
        shared.stats["wallet credits"] += 1
    elif error.code == "coupon_unavailable":
        coupon_id = await step("coupon", new_coupon(shop, rng, user))
        shared.cast.coupons.setdefault(user, []).append(coupon_id)
        shared.stats["coupons created"] += 1


async def pay(shared: Shared, rng: random.Random, order: OrderView) -> OrderView | None:
    """Start a payment and have the sandbox complete it: success, failure (then maybe a second
    try), duplicates, a second payment; or keep it for a late callback. The order after it."""
    shop = shared.shop
    try:
        started = await step("start payment", shop.start_payment(order.id))
        if rng.random() < 0.1:
            again = await step("start payment again", shop.start_payment(order.id))
            if again.payment.id != started.payment.id or again.created:
                raise Unexpected(f"order {order.id}: a second open payment {again}")
    except ShopError as error:
        refused(shared, "start payment", error)
        return None
    payment = started.payment
    if rng.random() < 0.06 and order.expires_at is not None:
        shared.late.append(Late(order.expires_at + LATE_BY_S, order.id, payment))
        shared.stats["kept for a late payment"] += 1
        return None
    if rng.random() < 0.2:
        await complete(shared, order.id, payment, "failed")
        if rng.random() < 0.5:
            shared.stats["left to time out after a failure"] += 1
            return None
    await complete(shared, order.id, payment, "succeeded")
    if rng.random() < 0.3:
        if not await step("duplicate callback", sandbox(shop).resend(payment.id)):
            raise Unexpected(f"the duplicate callback of payment {payment.id} was not acknowledged")
        shared.stats["duplicate callbacks"] += 1
    if rng.random() < 0.05:
        await complete(shared, order.id, payment, "succeeded")  # another gateway transaction
        shared.stats["second transactions"] += 1
    return await step("get order", shop.get_order(order.id))


async def complete(shared: Shared, order_id: int, payment: PaymentView, result: str) -> None:
    """The sandbox collects (or not) and calls the shop back until it acknowledges."""
    acknowledged = await step(
        f"{result} callback",
        sandbox(shared.shop).complete(payment.id, order_id, payment.amount, result),
    )
    if not acknowledged:
        raise Unexpected(f"the {result} callback of payment {payment.id} was not acknowledged")
    shared.stats[f"payments {result}"] += 1


async def cancel(shared: Shared, order_id: int, what: str) -> None:
    """The user cancels (refused only if the order moved on meanwhile)."""
    try:
        order = await step("cancel", shared.shop.cancel_order(order_id))
    except ShopError as error:
        refused(shared, f"cancel {what}", error)
        return
    shared.stats[f"canceled {what} -> {order.status}"] += 1


async def after_paid(shared: Shared, rng: random.Random, order_id: int) -> None:
    """A paid order: canceled (refund), shipped and maybe delivered and returned, or kept."""
    shop = shared.shop
    fate = rng.random()
    if fate < 0.25:
        await cancel(shared, order_id, "paid")
        return
    if fate > 0.45:
        return
    try:
        await step("ship", shop.ship(order_id))
        shared.stats["shipped"] += 1
        if rng.random() < 0.3:
            await cancel(shared, order_id, "shipped")
        if rng.random() < 0.5:
            return
        await step("deliver", shop.deliver(order_id))
        shared.stats["delivered"] += 1
        if rng.random() < 0.5:
            return
        requested = await step("request return", shop.request_return(order_id, "too big"))
        if rng.random() < 0.7:
            await step("approve return", shop.approve_return(requested.id))
            shared.stats["returned"] += 1
    except ShopError as error:
        refused(shared, "fulfil", error)


# -- the process --------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    """One life of the process; its exit status (when it is not killed first)."""
    rng = random.Random(args.seed)
    started_at = time.time()
    config = SAGA_CONFIG if args.generation % 2 == 0 else CONFIG
    async with Shop.open(args.db, gateway="sandbox", config=config, gateway_secret=SECRET) as shop:
        await shop.runtime.store.writer.flush()
        rows = await shop.reader.fetchall(
            "SELECT id FROM orders WHERE status = 'pending' AND created_at < ?", (started_at,)
        )
        stale = [int(row[0]) for row in rows]
        quiet = await wait_until_quiet(shop, everything=False, timeout=QUIET_TIMEOUT_S)
        audited = await audit_summary(shop)
        cast = await find_or_create_cast(shop, rng)
        ready = {
            "generation": args.generation,
            "stale_pending": stale,
            "quiet": quiet,
            **audited,
            **await counts(shop),
            "users": len(cast.users),
            "goods": len(cast.goods),
        }
        print("ready " + json.dumps(ready), flush=True)

        shared = Shared(shop, cast, asyncio.Event())
        clients = [
            asyncio.create_task(client(shared, random.Random(rng.getrandbits(64))))
            for _ in range(CLIENTS)
        ]
        try:
            if not args.finish:
                await asyncio.sleep(args.deadline)  # the test kills this process before
                print(f"crash_child: nobody killed me in {args.deadline:g} s", file=sys.stderr)
                return EXIT_DEADLINE
            await asyncio.sleep(args.run_s)
        finally:
            shared.stop.set()
            async with asyncio.timeout(STEP_TIMEOUT_S * 2):
                await asyncio.gather(*clients)
        quiet = await wait_until_quiet(shop, everything=True, timeout=QUIET_TIMEOUT_S)
        done = {
            "quiet": quiet,
            **await audit_summary(shop),
            **await counts(shop),
            "stats": dict(sorted(shared.stats.items())),
        }
        print("done " + json.dumps(done), flush=True)
        return 0 if quiet else EXIT_NOT_QUIET


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m tests.shop.crash_child")
    parser.add_argument("db", help="the SQLite file")
    parser.add_argument("--seed", type=int, required=True, help="seed of the clients' choices")
    parser.add_argument("--generation", type=int, required=True, help="which life this is")
    parser.add_argument("--finish", action="store_true", help="stop the clients and audit")
    parser.add_argument("--run-s", type=float, default=3.0, help="with --finish: clients run")
    parser.add_argument("--deadline", type=float, default=60.0, help="give up after seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    """Entry point."""
    args = parse_args(argv)
    configure_logging(logging.WARNING, stream=sys.stderr)
    started = time.monotonic()
    status = asyncio.run(run(args))
    print(
        f"crash_child: generation {args.generation} exits {status} after "
        f"{time.monotonic() - started:.2f} s",
        file=sys.stderr,
    )
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
