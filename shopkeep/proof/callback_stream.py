"""The stream of callbacks of group 4, and what each must lead to.

:class:`Stream` keeps one shop open and sends callbacks in rounds (see
:mod:`shopkeep.proof.callbacks`). Every callback is judged as it is answered: a genuine one must
be acknowledged (a duplicate or a replay within the tolerance as a duplicate, changing nothing),
a forged or stale one refused. The rest is judged at the end from the database and the gateway's
books (:meth:`Stream.double_credits`, :meth:`Stream.late_refunded`).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from shopkeep.actors.config import ShopConfig
from shopkeep.errors import CallbackRejected
from shopkeep.http.app import make_app
from shopkeep.http.config import HttpConfig
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.payments.provider import TOLERANCE_S
from shopkeep.payments.signature import HEADER
from shopkeep.proof.forgery import FORGERIES, forge
from shopkeep.proof.harness import SECRET, Life, audit_failures, settle
from shopkeep.runtime import VirtualClock

ROUND = 20
"""Orders placed per round."""
CONFIG = ShopConfig(max_unpaid_orders=1_000)
USERS = 5
KINDS = (
    ("valid success", 10),
    ("valid failure", 3),
    ("duplicate", 10),
    ("replay", 5),
    ("reordered failure", 4),
    ("second transaction", 3),
    ("forged", 25),
)
"""What is sent while the round's orders are open, and how often (weights)."""


@dataclass
class Payment:
    """A payment the gateway knows, and what it sent about it."""

    id: int
    order: int
    amount: int
    succeeded: bool = False
    sent: list[tuple[bytes, str]] = field(default_factory=list)
    """Every genuine callback delivered: (body, header), for replays."""
    successes: list[bytes] = field(default_factory=list)
    """The bodies of the successes among them, for duplicates."""


@dataclass
class Tally:
    """What was sent and how the shop answered."""

    total: int = 0
    http: int = 0
    forged: int = 0
    forged_accepted: int = 0
    duplicates: int = 0
    duplicates_acknowledged: int = 0
    late: int = 0
    stale_replays: int = 0
    genuine_refused: int = 0
    kinds: Counter[str] = field(default_factory=Counter)


class Stream:
    """One shop, its gateway, and the callbacks sent to it."""

    def __init__(
        self,
        life: Life,
        clock: VirtualClock,
        gateway: SandboxGateway,
        rng: random.Random,
        http_share: float,
        client: TestClient[web.Request, web.Application],
    ) -> None:
        self.life = life
        self.clock = clock
        self.gateway = gateway
        self.rng = rng
        self.http_share = http_share
        self.client = client
        self.tally = Tally()
        self.users: list[int] = []
        self.goods = 0
        self.txns = 0

    @classmethod
    async def open(cls, path: str, rng: random.Random, http_share: float) -> Stream:
        """A shop with users and goods, and the HTTP app over it."""
        clock = VirtualClock()
        # every payment's books are kept: the judge compares them payment by payment
        gateway = SandboxGateway(SECRET, clock, remember=None)
        life = await Life.open(path, clock, gateway, CONFIG)
        app = make_app(life.shop, HttpConfig(admin_token="proof-admin-token"))
        client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
        await client.start_server()
        stream = cls(life, clock, gateway, rng, http_share, client)
        shop = life.shop
        for n in range(USERS):
            stream.users.append((await shop.create_user(f"user {n}", 10**9)).user.id)
        stream.goods = (await shop.create_goods("tea", price=2_500, stock=10**9)).id
        return stream

    async def close(self) -> None:
        """Close the HTTP client and the shop."""
        await self.client.close()
        await self.life.close()

    # -- rounds ---------------------------------------------------------------------------------

    async def round(self, budget: int) -> None:
        """Open ``ROUND`` orders with their payments; send callbacks while they are open; let
        the unpaid ones time out; send their late successes. At most ``budget`` callbacks."""
        shop = self.life.shop
        payments: list[Payment] = []
        for n in range(ROUND):
            user = self.users[n % USERS]
            wallet = self.rng.choice([0, 0, 1_000])
            order = await shop.place_order(user, [(self.goods, 1 + n % 3)], use_balance=wallet)
            started = (await shop.start_payment(order.id)).payment
            payments.append(Payment(started.id, order.id, started.amount))
        open_phase = min(budget, ROUND * 4)
        names = [name for name, _ in KINDS]
        weights = [weight for _, weight in KINDS]
        for _ in range(open_phase):
            kind = self.rng.choices(names, weights)[0]
            await self.send(kind, self.rng.choice(payments))
        await self.clock.advance(CONFIG.order_timeout_s + 1)  # the unpaid ones time out
        await settle(shop)
        unpaid = [p for p in payments if not p.succeeded]
        late = [("late success", p) for p in unpaid]
        # what was captured on the wire half an hour ago, sent again: stale now, refused
        late += [("replay", p) for p in payments if p.sent and self.rng.random() < 0.25]
        for kind, payment in late[: max(0, budget - open_phase)]:
            await self.send(kind, payment)
        await settle(shop)

    async def send(self, kind: str, payment: Payment) -> None:
        """Send one callback of ``kind`` about ``payment`` and judge the answer."""
        tally = self.tally
        tally.total += 1
        if kind == "duplicate" and not payment.successes:
            kind = "valid success"
        if kind == "replay" and not payment.sent:
            kind = "valid failure"
        tally.kinds[kind] += 1
        match kind:
            case "valid success" | "second transaction" | "late success":
                await self._genuine(payment, self._success(payment), late=kind == "late success")
            case "valid failure" | "reordered failure":
                body = self.gateway.callback(
                    payment.id, payment.order, payment.amount, "failed", None
                )
                await self._genuine(payment, body)
            case "duplicate":
                body = self.rng.choice(payment.successes)
                self._judge_duplicate(await self.deliver(body, self.gateway.signature(body)))
            case "replay":
                body, header = self.rng.choice(payment.sent)
                stamp = int(header.split(",")[0].removeprefix("t="))
                answer = await self.deliver(body, header)
                if abs(self.clock.now() - stamp) > TOLERANCE_S:
                    tally.forged += 1  # outside the tolerance, a replay is refused
                    tally.stale_replays += 1
                    tally.forged_accepted += answer is not None
                elif body in payment.successes:
                    self._judge_duplicate(answer)  # within it, as the gateway's own resend
                elif answer is None:
                    tally.genuine_refused += 1
            case "forged":
                tally.forged += 1
                tally.forged_accepted += await self._forged(payment) is not None

    async def _forged(self, payment: Payment) -> dict[str, Any] | None:
        """A forgery made from one of the payment's genuine callbacks (or what one would be)."""
        how = self.rng.choice(FORGERIES)
        self.tally.kinds[f"forged: {how}"] += 1
        if payment.sent:
            genuine = self.rng.choice(payment.sent)[0]
        else:
            genuine = self.gateway.callback(
                payment.id, payment.order, payment.amount, "succeeded", "forged"
            )
        body, header = forge(self.rng, how, genuine, SECRET, self.clock.now())
        return await self.deliver(body, header)

    def _success(self, payment: Payment) -> bytes:
        self.txns += 1
        txn = f"txn-{self.txns}"
        self.gateway.collect(payment.id, txn, payment.amount)
        return self.gateway.callback(payment.id, payment.order, payment.amount, "succeeded", txn)

    def _judge_duplicate(self, answer: dict[str, Any] | None) -> None:
        """A success sent again must be acknowledged as a duplicate (and change nothing)."""
        self.tally.duplicates += 1
        if answer is not None and answer["duplicate"]:
            self.tally.duplicates_acknowledged += 1

    async def _genuine(self, payment: Payment, body: bytes, *, late: bool = False) -> None:
        header = self.gateway.signature(body)
        answer = await self.deliver(body, header)
        if answer is None:
            self.tally.genuine_refused += 1
            return
        payment.sent.append((body, header))
        if b'"succeeded"' in body:
            payment.successes.append(body)
        if answer["action"] == "applied":
            payment.succeeded = True
        if late:
            self.tally.late += 1

    async def deliver(self, body: bytes, header: str | None) -> dict[str, Any] | None:
        """Deliver one callback (through HTTP now and then): the acknowledgement's action and
        whether it was a duplicate, or None when it was refused."""
        if self.rng.random() < self.http_share:
            self.tally.http += 1
            headers = {} if header is None else {HEADER: header}
            async with self.client.post(
                "/v1/payments/callback", data=body, headers=headers
            ) as response:
                if response.status == 400:
                    return None
                assert response.status == 200, (response.status, await response.text())
                last = await self.life.shop.reader.fetchone(
                    "SELECT action, duplicate FROM payment_log ORDER BY id DESC LIMIT 1"
                )
                assert last is not None
                return {"action": str(last[0]), "duplicate": bool(last[1])}
        try:
            handled = await self.life.shop.handle_callback(body, header)
        except CallbackRejected:
            return None
        return {"action": handled.action, "duplicate": handled.duplicate}

    # -- the end --------------------------------------------------------------------------------

    async def settle(self) -> None:
        """Let every refund reach the gateway (refunds retry with back-off)."""
        for _ in range(3):
            await self.clock.advance(60)
            await settle(self.life.shop)

    async def audit_failures(self) -> list[str]:
        """The audit's failed checks."""
        return await audit_failures(self.life.shop)

    async def double_credits(self) -> list[str]:
        """Orders paid twice, points awarded twice, or money kept other than the pay amount."""
        reader = self.life.shop.reader
        problems = [
            f"order {row[0]} was paid {row[1]} times"
            for row in await reader.fetchall(
                "SELECT order_id, count(*) FROM order_history WHERE to_status = 'paid' "
                "AND from_status <> 'paid' GROUP BY order_id HAVING count(*) > 1"
            )
        ]
        problems += [
            f"order {row[0]} awarded points {row[1]} times"
            for row in await reader.fetchall(
                "SELECT order_id, count(*) FROM points_ledger WHERE reason = 'award' "
                "GROUP BY order_id HAVING count(*) > 1"
            )
        ]
        owner = {
            int(p): int(o) for p, o in await reader.fetchall("SELECT id, order_id FROM payments")
        }
        kept: Counter[int] = Counter()
        for (payment, _), amount in self.gateway.collected.items():
            kept[owner[payment]] += amount
        for payment_id, amount in self.gateway.refunded.values():
            assert payment_id is not None
            kept[owner[payment_id]] -= amount
        for order, status, pay_amount in await reader.fetchall(
            "SELECT id, status, pay_amount FROM orders"
        ):
            due = pay_amount if status in ("paid", "shipped", "delivered") else 0
            if kept[int(order)] != due:
                problems.append(
                    f"order {order} ({status}): the gateway kept {kept[int(order)]}, {due} due"
                )
        return problems

    async def late_refunded(self) -> int:
        """Late payments refunded in full."""
        row = await self.life.shop.reader.fetchone(
            "SELECT count(*) FROM refunds WHERE kind = 'late_payment' AND status = 'refunded'"
        )
        assert row is not None
        return int(row[0])
