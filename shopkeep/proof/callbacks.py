"""Group 4, adversarial callbacks: thousands of payment callbacks, most of them trouble.

A shop with a few users and plenty of stock takes orders in rounds of twenty, each with its
payment started. Then the gateway (and whoever else can reach the callback URL) sends, drawn
from one seed: valid successes and failures; duplicates (the same callback signed again);
replays (the very same bytes and header, later); reordered ones (a failure arriving after the
success); second transactions for a paid order; and forgeries of every kind in
:mod:`shopkeep.proof.forgery` (a bit flipped in the body or the signature, the wrong key, a
timestamp outside the 300 s tolerance, a wrong amount, an unknown payment or order, a body that
is not a callback, a missing or malformed header). Then the round's unpaid orders time out, and
the gateway sends successes for them: late payments, which must be refunded.

Most go to ``Shop.handle_callback`` in process; some go through the HTTP app
(``POST /v1/payments/callback``) so that the header is read exactly as the server reads it.

Figures: forged callbacks accepted (must be 0); double credits (orders paid twice, points
awarded twice, or money kept for an order other than its pay amount, from the gateway's books:
must be 0); duplicates acknowledged (must be 100%); late payments refunded (must be 100%).
``python -m shopkeep.proof callbacks --count 50000`` runs a larger stream.

Then the same kinds of trouble go to each real provider's notify route, in its own wire format
and signature scheme, from its local fake (:mod:`shopkeep.proof.provider_callbacks`; ``--orders``
orders per provider, 40 by default), with the same figures per provider.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import time
from dataclasses import dataclass, field

from shopkeep.proof.callback_stream import Stream, Tally
from shopkeep.proof.harness import scratch_folder, silenced_logs
from shopkeep.proof.provider_callbacks import ORDERS, ProviderFigures, run_all

COUNT = 5_000
HTTP_SHARE = 0.06
"""The share of callbacks sent through the HTTP app (the rest go to the shop in process)."""


@dataclass
class Figures:
    """The group's figures, with the tally they come from."""

    tally: Tally
    double_credits: list[str] = field(default_factory=list)
    late_refunded: int = 0
    audit: list[str] = field(default_factory=list)
    seconds: float = 0.0
    providers: list[ProviderFigures] = field(default_factory=list)
    """The same stream's figures against each real provider's fake."""

    @property
    def ok(self) -> bool:
        """Whether every figure is what it must be."""
        t = self.tally
        return (
            t.forged_accepted == 0
            and not self.double_credits
            and t.duplicates_acknowledged == t.duplicates
            and self.late_refunded == t.late
            and t.genuine_refused == 0
            and not self.audit
            and all(provider.ok for provider in self.providers)
        )

    def line(self) -> str:
        """The one-line figure."""
        t = self.tally
        return (
            f"callbacks: {t.total} sent ({t.http} over HTTP), {t.forged} forged "
            f"({t.stale_replays} of them stale replays), "
            f"forged accepted {t.forged_accepted}, double credits {len(self.double_credits)}, "
            f"duplicates acknowledged {_percent(t.duplicates_acknowledged, t.duplicates)} "
            f"({t.duplicates_acknowledged}/{t.duplicates}), late payments refunded "
            f"{_percent(self.late_refunded, t.late)} ({self.late_refunded}/{t.late}), "
            f"genuine refused {t.genuine_refused}, audit {'ok' if not self.audit else 'FAILED'}; "
            f"{self.seconds:.1f} s"
        )


def _percent(part: int, whole: int) -> str:
    return "n/a" if whole == 0 else f"{100 * part / whole:.0f}%"


def run(
    count: int, seed: int = 0, http_share: float = HTTP_SHARE, orders: int = ORDERS
) -> Figures:
    """Send ``count`` callbacks drawn from ``seed`` to the sandbox, then the providers' stream
    of ``orders`` orders each (none: 0); the figures."""
    folder = scratch_folder("shopkeep-callbacks-")
    started = time.perf_counter()
    try:
        with silenced_logs():
            # a plain loop, not the seeded one: the seeded loop reorders the selector's own
            # socket callbacks too, which real sockets (the HTTP share) do not survive
            figures = asyncio.run(_run(str(folder / "shop.db"), count, seed, http_share))
            if orders:
                figures.providers = asyncio.run(run_all(folder, orders, seed))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    figures.seconds = time.perf_counter() - started
    return figures


async def _run(path: str, count: int, seed: int, http_share: float) -> Figures:
    stream = await Stream.open(path, random.Random(seed), http_share)
    try:
        while stream.tally.total < count:
            await stream.round(min(count - stream.tally.total, 1_000_000))
        await stream.settle()
        figures = Figures(stream.tally)
        figures.double_credits = await stream.double_credits()
        figures.late_refunded = await stream.late_refunded()
        figures.audit = await stream.audit_failures()
        return figures
    finally:
        await stream.close()


def main(argv: list[str]) -> int:
    """``python -m shopkeep.proof callbacks [--count N] [--seed S] [--http-share F]``."""
    parser = argparse.ArgumentParser(prog="python -m shopkeep.proof callbacks")
    parser.add_argument("--count", type=int, default=COUNT, help="callbacks to send")
    parser.add_argument("--seed", type=int, default=0, help="the seed of the stream")
    parser.add_argument(
        "--http-share", type=float, default=HTTP_SHARE, help="the share sent over HTTP"
    )
    parser.add_argument(
        "--orders", type=int, default=ORDERS,
        help="orders per real provider (Alipay, WeChat Pay, Stripe fakes); 0 skips them",
    )
    args = parser.parse_args(argv)
    figures = run(args.count, args.seed, args.http_share, args.orders)
    for problem in figures.double_credits + figures.audit:
        print(f"FAILED: {problem}")
    for kind, number in sorted(figures.tally.kinds.items()):
        print(f"{kind:>24}: {number}")
    for provider in figures.providers:
        for problem in provider.double_credits:
            print(f"FAILED ({provider.provider}): {problem}")
        print(provider.line())
    print(figures.line())  # the group's figure, last as every group's
    return 0 if figures.ok else 1
