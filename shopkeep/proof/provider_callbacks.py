"""Group 4 with the real providers: the adversarial stream against each provider's local fake.

For ``alipay``, ``wechatpay`` and ``stripe`` in turn (:mod:`shopkeep.proof.provider_world`: the
fake on 127.0.0.1, the provider built as ``serve`` builds it, the shop's HTTP API), orders are
placed and their payments started; the customer pays most of them at the provider. Then, drawn
from one seed, notifications reach the shop's notify route over HTTP: each paid order's genuine
notification, duplicates of it (the same bytes again), and forgeries of every kind the provider
has (signed with another key, a byte altered, an authentic one naming a wrong amount, a wrong
currency, another merchant, a payment the shop never started, a signature too old). The orders
left unpaid are paid at the provider as the customer cancels them, their notifications coming
after the cancel: late payments, which must be refunded (once: the cancel's query of the
payment finds it too).

Figures per provider: forged accepted (must be 0), double credits (an order applied twice: must
be 0), duplicates acknowledged (must be 100%), late payments refunded (must be 100%), genuine
refused (must be 0), and the audit.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shopkeep.proof.provider_world import PROVIDERS, ProviderWorld, provider_world
from shopkeep.runtime import VirtualClock

ORDERS = 40
"""Orders per provider in ``make test``'s bounded run."""
FORGERIES: dict[str, tuple[str, ...]] = {
    "alipay": ("forged", "altered", "amount", "merchant", "unknown"),
    "wechatpay": ("forged", "altered", "amount", "currency", "merchant", "unknown", "stale"),
    "stripe": ("forged", "altered", "amount", "currency", "unknown", "stale"),
}
"""The kinds of forgery each provider's scheme can be tried with (Alipay signs no time and
names no currency; a Stripe webhook names no merchant)."""
CHANGES: dict[str, dict[str, dict[str, Any]]] = {
    "alipay": {"amount": {"total_amount": "0.01"}, "merchant": {"app_id": "2021999999999999"},
               "unknown": {"out_trade_no": "999"}},
    "wechatpay": {
        "amount": {"amount": {"total": 1, "payer_total": 1, "currency": "CNY",
                              "payer_currency": "CNY"}},
        "currency": {"amount": {"total": 12_000, "payer_total": 12_000, "currency": "USD",
                                "payer_currency": "USD"}},
        "merchant": {"mchid": "1999999999"}, "unknown": {"out_trade_no": "999"},
    },
    "stripe": {"amount": {"amount_received": 1}, "currency": {"currency": "eur"},
               "unknown": {"metadata": {"payment_id": "999", "order_id": "998"}}},
}


@dataclass
class ProviderFigures:
    """One provider's figures."""

    provider: str
    sent: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    forged: int = 0
    forged_accepted: int = 0
    duplicates: int = 0
    duplicates_acknowledged: int = 0
    genuine_refused: int = 0
    double_credits: list[str] = field(default_factory=list)
    late: int = 0
    late_refunded: int = 0
    audit_ok: bool = False

    @property
    def ok(self) -> bool:
        """Whether every figure is what it must be."""
        return (
            self.forged_accepted == 0 and not self.double_credits
            and self.duplicates_acknowledged == self.duplicates
            and self.late_refunded == self.late and self.genuine_refused == 0 and self.audit_ok
        )

    def line(self) -> str:
        """The one-line figure."""
        return (
            f"callbacks via {self.provider}: {self.sent} sent, {self.forged} forged, forged "
            f"accepted {self.forged_accepted}, double credits {len(self.double_credits)}, "
            f"duplicates acknowledged {_percent(self.duplicates_acknowledged, self.duplicates)} "
            f"({self.duplicates_acknowledged}/{self.duplicates}), late payments refunded "
            f"{_percent(self.late_refunded, self.late)} ({self.late_refunded}/{self.late}), "
            f"genuine refused {self.genuine_refused}, audit {'ok' if self.audit_ok else 'FAILED'}"
        )


def _percent(part: int, whole: int) -> str:
    return "n/a" if whole == 0 else f"{100 * part / whole:.0f}%"


async def stream(world: ProviderWorld, rng: random.Random, orders: int) -> ProviderFigures:
    """The module's stream through ``world``; its figures."""
    figures = ProviderFigures(world.name)
    paid: list[tuple[dict[str, Any], dict[str, Any]]] = []
    late: list[tuple[dict[str, str], dict[str, Any], dict[str, Any]]] = []
    for _ in range(orders):
        customer = await world.customer()
        order = await world.placed(customer)
        payment = await world.start_payment(customer, order)
        if rng.random() < 0.2:
            late.append((customer, order, payment))
        else:
            await world.pay(payment, notify=False)
            paid.append((order, payment))
    for _order, payment in paid:
        sends: list[tuple[str, bytes, dict[str, str]]] = []
        body, headers = world.notification(payment)
        sends.append(("genuine", body, headers))
        for _ in range(rng.randint(0, 2)):
            sends.append(("duplicate", body, headers))
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(FORGERIES[world.name])
            sends.append((kind, *forgery(world, payment, kind, body)))
        rng.shuffle(sends)
        # the genuine one first or not: a duplicate before it is the genuine one's first try
        seen_genuine = False
        for kind, raw, sent in sends:
            if kind in ("genuine", "duplicate"):
                kind, seen_genuine = ("duplicate" if seen_genuine else "genuine"), True
            status, answer = await world.post(raw, sent)
            acknowledged = world.acknowledged(status, answer)
            figures.sent += 1
            figures.kinds[kind] += 1
            if kind == "genuine":
                figures.genuine_refused += not acknowledged
            elif kind == "duplicate":
                figures.duplicates += 1
                figures.duplicates_acknowledged += acknowledged
            else:
                figures.forged += 1
                figures.forged_accepted += acknowledged
    for customer, order, payment in late:
        await world.pay(payment, notify=False)  # a canceled order's payment cannot be made
        await world.call("POST", f"/v1/orders/{order['id']}/cancel", customer)
        body, headers = world.notification(payment)
        status, answer = await world.post(body, headers)
        figures.sent += 1
        figures.kinds["late"] += 1
        figures.late += 1
        figures.genuine_refused += not world.acknowledged(status, answer)
    await world.shop.runtime.system.quiet()
    for _, order, _payment in late:
        refunds = await world.refunds(order["id"])
        figures.late_refunded += any(
            r["kind"] == "late_payment" and r["status"] == "refunded" for r in refunds
        )
    rows = await world.shop.reader.fetchall(
        "SELECT order_id, count(*) FROM payment_log WHERE action = 'applied' GROUP BY order_id "
        "HAVING count(*) > 1", (),
    )
    figures.double_credits = [f"order {row[0]} applied {row[1]} times" for row in rows]
    await world.shop.runtime.system.quiet()
    report = await world.shop.audit()
    figures.audit_ok = report.ok
    return figures


def forgery(
    world: ProviderWorld, payment: dict[str, Any], kind: str, genuine: bytes
) -> tuple[bytes, dict[str, str]]:
    """A forged notification of ``kind`` about ``payment``."""
    if kind == "forged":
        return world.notification(payment, forged=True)
    if kind == "altered":
        body, headers = world.notification(payment)
        altered = body.replace(b"total_amount=", b"total_amount=1").replace(
            b'"id": "', b'"id": "X'
        )
        return altered, headers
    if kind == "stale":
        return world.notification(payment, at=time.time() - 3600)
    return world.notification(payment, **CHANGES[world.name][kind])


async def run_provider(name: str, folder: Path, orders: int, seed: int) -> ProviderFigures:
    """The stream against ``name``'s fake, in ``folder``."""
    async with provider_world(name, folder, clock=VirtualClock(start=time.time())) as world:
        return await stream(world, random.Random(seed), orders)


async def run_all(folder: Path, orders: int = ORDERS, seed: int = 0) -> list[ProviderFigures]:
    """Every provider's stream, each in a folder of its own."""
    figures = []
    for name in PROVIDERS:
        place = folder / name
        place.mkdir()
        figures.append(await run_provider(name, place, orders, seed))
    return figures
