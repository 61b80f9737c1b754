"""Group 2's checks: what must hold after each SIGKILL and restart.

With the server down, the file is read as the kill left it (:func:`snapshot`): SQLite's
``PRAGMA integrity_check`` and the offline audit, the unpaid orders and their deadlines, and the
idempotency keys recorded. After the restart, :class:`Verifier` checks, in this order:

1. every deadline that passed while the server was down fires once: each such order ends
   canceled with reason timeout, and its history holds exactly one ``canceled_by_timeout``;
2. every unknown write, sent again as a client would (same key and body; a callback re-signed,
   as the gateway retries), is wholly applied or wholly absent: a placement whose key was
   recorded answers that same order, one whose key kept a refusal (its checks refused it before
   any order was recorded) answers that refusal again, one whose key was not is placed anew or
   refused, and so is one whose recorded order did nothing (cut, so undone at the start, or
   failed overloaded or unavailable: SPEC 7, such a first attempt does not bind its key);
3. no acknowledged write is lost (:class:`Acknowledged`, over every cycle so far);
4. no order is half done: each is out of ``pending``, and a live order holds its stock, coupon
   and wallet money while a canceled one holds none of them;
5. the online audit (``GET /v1/audit``) is ok.

Checks 3 and 4 read the file (read-only, beside the running server) until they hold, within a
bound: releases travel through the outbox after a cancel, so "eventually" is the contract.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from shopkeep.actors.audit import audit_file
from shopkeep.actors.key_rules import decode_answer
from shopkeep.actors.order_state import AWAITING_PAYMENT, DELIVERED, PAID, SHIPPED
from shopkeep.actors.placement import UNDONE_FAILURES
from shopkeep.proof.kill9_traffic import Fixture, Write, send, signed_headers
from shopkeep.refusals import Refusal
from shopkeep.store.writer_process import database_uri

LIVE = frozenset({AWAITING_PAYMENT, PAID, SHIPPED, DELIVERED})
SETTLE_S = 20.0
POLL_S = 0.05

# Aggregated once per table, then joined: correlated subqueries would scan the unindexed
# wallet ledger once per order, and a long run holds tens of thousands of orders.
ORDER_SHAPE_SQL = """
WITH units AS (SELECT order_id, SUM(quantity) AS n FROM order_items GROUP BY order_id),
     stock AS (SELECT order_id, SUM(quantity) AS n FROM stock_ledger GROUP BY order_id),
     money AS (SELECT order_id, SUM(amount) AS n FROM wallet_ledger
               WHERE order_id IS NOT NULL GROUP BY order_id),
     held AS (SELECT order_id, COUNT(*) AS n FROM coupons
              WHERE order_id IS NOT NULL GROUP BY order_id)
SELECT o.id, o.user_id, o.status, o.coupon_id, o.wallet_amount, COALESCE(units.n, 0),
       COALESCE(stock.n, 0), COALESCE(money.n, 0), COALESCE(held.n, 0)
FROM orders o
LEFT JOIN units ON units.order_id = o.id
LEFT JOIN stock ON stock.order_id = o.id
LEFT JOIN money ON money.order_id = o.id
LEFT JOIN held ON held.order_id = o.id
"""


def read_only(db: Path) -> sqlite3.Connection:
    """A read-only connection: it never checkpoints or changes the file the kill left."""
    return sqlite3.connect(database_uri(db.resolve(), "mode=ro"), uri=True)


@dataclass(frozen=True)
class Snapshot:
    """The file as the kill left it, read with the server down."""

    integrity: str
    audit_failures: tuple[str, ...]
    unpaid: dict[str, float]
    """Order id -> its deadline (Unix seconds), for every order awaiting payment."""
    keys: dict[tuple[str, str], str]
    """(user id, Idempotency-Key) -> the order id recorded with it."""
    orders: frozenset[str]
    """Every order recorded."""
    undone: frozenset[str] = frozenset()
    """The orders whose placement did nothing: pending (the start undoes them), or failed
    overloaded or unavailable."""
    refused: dict[tuple[str, str], str] = field(default_factory=dict)
    """(user id, Idempotency-Key) -> the code of the refusal kept with it, for placements
    refused before any order was recorded."""


def snapshot(db: Path) -> Snapshot:
    """Read what the kill left (the server must be down)."""
    with closing(read_only(db)) as conn:
        (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
        unpaid = conn.execute(
            "SELECT id, expires_at FROM orders WHERE status = 'awaiting_payment'"
        ).fetchall()
        keys = conn.execute(
            "SELECT principal, key, order_id, answer FROM idempotency_keys "
            "WHERE order_id IS NOT NULL"
        ).fetchall()
        orders = frozenset(str(i) for (i,) in conn.execute("SELECT id FROM orders"))
        codes = ", ".join(f"'{code}'" for code in sorted(UNDONE_FAILURES))
        undone = frozenset(str(i) for (i,) in conn.execute(
            "SELECT id FROM orders WHERE status = 'pending' OR (cancel_reason = "
            f"'placement_failed' AND failure_code IN ({codes}))"
        ))
    report = audit_file(str(db))
    failures = tuple(f"{c.name}: {c.detail}" for c in report.checks if not c.ok)
    return Snapshot(
        integrity=str(integrity),
        audit_failures=failures,
        unpaid={str(i): float(at) for i, at in unpaid if at is not None},
        keys={(str(u), str(k)): str(o) for u, k, o, _ in keys},
        orders=orders,
        undone=undone,
        refused={
            (str(u), str(k)): refusal.code
            for u, k, o, answer in keys
            if answer is not None and str(o) not in orders
            and isinstance(refusal := decode_answer(bytes(answer), dict), Refusal)
        },
    )


@dataclass
class Acknowledged:
    """Every acknowledged write so far, as facts the file must keep showing."""

    placed: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Order id -> (user id, units ordered)."""
    canceled: set[str] = field(default_factory=set)
    payments: dict[str, str] = field(default_factory=dict)
    """Payment id -> order id."""
    paid: set[str] = field(default_factory=set)
    """Payment ids whose success callback was acknowledged."""

    def learn(self, write: Write) -> None:
        """Remember what an ``ok`` write established."""
        if write.outcome != "ok":
            return
        answer: dict[str, Any] = write.answer
        if write.kind == "place":
            body = msgspec.json.decode(write.body)
            units = sum(item["quantity"] for item in body["items"])
            self.placed[str(answer["id"])] = (write.customer.id, units)
        elif write.kind == "pay_start":
            self.payments[str(answer["id"])] = str(answer["order_id"])
        elif write.kind == "cancel":
            self.canceled.add(str(answer["id"]))
        elif write.kind == "callback":
            body = msgspec.json.decode(write.body)
            if body["status"] == "succeeded":
                self.paid.add(str(body["payment_id"]))

    def lost(self, db: Path) -> list[str]:
        """The acknowledged writes the file does not show (now)."""
        with closing(read_only(db)) as conn:
            orders = {str(row[0]): row for row in conn.execute(ORDER_SHAPE_SQL)}
            payments = {
                str(i): (str(o), s)
                for i, o, s in conn.execute("SELECT id, order_id, status FROM payments")
            }
        problems = []
        for order_id, (user_id, units) in self.placed.items():
            row = orders.get(order_id)
            if row is None:
                problems.append(f"acknowledged order {order_id} is gone")
            elif (str(row[1]), row[5]) != (user_id, units) or row[2] == "pending":
                problems.append(f"acknowledged order {order_id} is now {row[1:3]}, {row[5]} units")
        problems += [
            f"acknowledged cancel of {o} lost: {orders[o][2] if o in orders else 'no order'}"
            for o in self.canceled
            if o not in orders or orders[o][2] != "canceled"
        ]
        for payment_id, order_id in self.payments.items():
            found = payments.get(payment_id)
            if found is None or found[0] != order_id:
                problems.append(f"acknowledged payment {payment_id} of {order_id} is {found}")
            elif payment_id in self.paid and found[1] not in ("succeeded", "refunded"):
                problems.append(f"acknowledged success of payment {payment_id} lost: {found[1]}")
        return problems


def half_done(db: Path) -> list[str]:
    """Orders that hold part of their assets (or are still being placed), now."""
    with closing(read_only(db)) as conn:
        rows = conn.execute(ORDER_SHAPE_SQL).fetchall()
    problems = []
    for order_id, _, status, coupon_id, wallet, units, stock, money, coupons in rows:
        live = status in LIVE
        if status == "pending":
            problems.append(f"order {order_id} still pending")
        elif (stock, money, coupons) != (
            (-units, -wallet, int(coupon_id is not None)) if live else (0, 0, 0)
        ):
            problems.append(
                f"order {order_id} {status}: stock {stock} of {units}, wallet {money} of "
                f"{wallet}, coupons held {coupons}"
            )
    return problems


async def eventually(check: Callable[[], list[str]], within: float = SETTLE_S) -> list[str]:
    """Run ``check`` until it finds no problem or ``within`` seconds pass; its last problems.

    A real server in another process gives no event to await, so this polls, with a bound.
    """
    deadline = time.monotonic() + within
    while True:
        problems = await asyncio.to_thread(check)
        if not problems or time.monotonic() > deadline:
            return problems
        await asyncio.sleep(POLL_S)


@dataclass
class Verdict:
    """What one cycle's checks found."""

    deadlines_fired: int = 0
    unknown_applied: int = 0
    unknown_absent: int = 0
    violations: list[str] = field(default_factory=list)


class Verifier:
    """The checks of the module's docstring against the restarted server at ``url``."""

    def __init__(self, db: Path, url: str, fixture: Fixture, acknowledged: Acknowledged) -> None:
        self.db = db
        self.url = url
        self.fixture = fixture
        self.acknowledged = acknowledged
        self.admin = {"Authorization": f"Bearer {fixture.admin}"}

    async def verify(
        self,
        session: aiohttp.ClientSession,
        writes: list[Write],
        before: Snapshot,
        restarted_at: float,
    ) -> Verdict:
        """Every check, in the module docstring's order (it matters: a replayed callback
        must not pay an order before its overdue deadline is seen to fire)."""
        verdict = Verdict()
        if before.integrity != "ok":
            verdict.violations.append(f"integrity_check after the kill: {before.integrity}")
        verdict.violations += [f"offline audit: {f}" for f in before.audit_failures]
        verdict.violations += [
            f"{w.kind} {w.path} answered {w.status}: {w.answer}"
            for w in writes
            if w.status is not None and w.status >= 500
        ]
        for write in writes:
            self.acknowledged.learn(write)
        await self.deadlines(session, before, restarted_at, verdict)
        for write in writes:
            if write.outcome == "unknown":
                await self.replay(session, write, before, verdict)
        verdict.violations += await eventually(lambda: self.acknowledged.lost(self.db))
        verdict.violations += await eventually(lambda: half_done(self.db))
        async with session.get(self.url + "/v1/audit", headers=self.admin) as response:
            audit = await response.json()
        verdict.violations += [
            f"audit: {c['name']}: {c['detail']}" for c in audit["checks"] if not c["ok"]
        ]
        return verdict

    async def deadlines(
        self,
        session: aiohttp.ClientSession,
        before: Snapshot,
        restarted_at: float,
        verdict: Verdict,
    ) -> None:
        """Orders whose deadline passed while the server was down are canceled by timeout
        once each."""
        overdue = [o for o, at in before.unpaid.items() if at < restarted_at]

        def not_yet() -> list[str]:
            marks = ",".join("?" * len(overdue))
            with closing(read_only(self.db)) as conn:
                rows = conn.execute(
                    f"SELECT id, status, cancel_reason FROM orders WHERE id IN ({marks})",
                    [int(o) for o in overdue],
                ).fetchall()
            return [f"overdue order {i} is {s} ({r})" for i, s, r in rows if r != "timeout"]

        if not overdue:
            return
        late = await eventually(not_yet)
        verdict.violations += late
        histories = await asyncio.gather(*(self.history(session, o) for o in overdue))
        for order_id, history in zip(overdue, histories, strict=True):
            fired = sum(1 for entry in history if entry["operation"] == "canceled_by_timeout")
            if fired != 1:
                verdict.violations.append(f"order {order_id}'s deadline fired {fired} times")
        verdict.deadlines_fired += len(overdue) - len(late)

    async def history(self, session: aiohttp.ClientSession, order_id: str) -> list[Any]:
        """The order's history, as the admin reads it."""
        path = f"{self.url}/v1/orders/{order_id}/history"
        async with session.get(path, headers=self.admin) as response:
            answer: dict[str, Any] = await response.json()
        items: list[Any] = answer["items"]
        return items

    async def replay(
        self, session: aiohttp.ClientSession, write: Write, before: Snapshot, verdict: Verdict
    ) -> None:
        """Send an unknown write again, as its client would, and judge the answer."""
        headers = write.headers
        if write.kind == "callback":
            headers = signed_headers(self.fixture.secret, write.body)
        again = await send(
            session,
            self.url,
            replace(write, headers=headers, outcome="failed", status=None, answer=None),
        )
        self.acknowledged.learn(again)
        answer = again.answer if isinstance(again.answer, dict) else {}
        said = f"{write.kind} {write.path} replayed: {again.status} {again.answer}"
        if write.kind != "place":
            expected = {"callback": (200,), "cancel": (200,), "pay_start": (200, 201, 409)}
            if again.status not in expected[write.kind]:
                verdict.violations.append(said)
            return
        key = write.headers["Idempotency-Key"]
        refused = before.refused.get((write.customer.id, key))
        if refused is not None:
            # refused before any order was recorded: the key keeps the refusal
            verdict.unknown_absent += 1
            if again.status != 409 or answer.get("code") != refused:
                verdict.violations.append(f"{said}; the key had kept the refusal {refused}")
            return
        recorded = before.keys.get((write.customer.id, key))
        same = str(answer.get("id", answer.get("order_id")))
        if recorded in before.orders:
            verdict.unknown_applied += 1
        else:
            verdict.unknown_absent += 1
        if recorded is not None and recorded not in before.undone:
            # a key kept names its order, recorded or not: the retry answers (or places) it
            if again.status not in (200, 201, 202, 409) or same != recorded:
                verdict.violations.append(f"{said}; the key had recorded order {recorded}")
        elif again.status not in (201, 202, 409) or answer.get("code") == "idempotency_conflict":
            verdict.violations.append(said)
