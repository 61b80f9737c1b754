"""The README's pictures of the console: ``python -m shopkeep.admin.screenshots [DOCS_DIR]``.

Starts ``shopkeep serve`` (the sandbox gateway, a fresh database in a temporary folder,
127.0.0.1, any free port), fills the shop through its embedded API with an hour of orders in
every state, signs in with headless Chromium (Debian's ``/usr/bin/chromium``, driven by
Playwright; ``make chromium`` installs it) and writes ``admin-dashboard.png`` and
``admin-order.png`` into DOCS_DIR (``docs``). The browser tests launch Chromium the same way
(:func:`chromium`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

from shopkeep.runtime import RealClock
from shopkeep.runtime.clock import Cancellable

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

    from shopkeep.http.server import Server

CHROMIUM: Final = Path("/usr/bin/chromium")
"""Debian's Chromium: Playwright drives it, never a browser of its own (none is downloaded)."""
CHROMIUM_ARGS: Final = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip
"""Headless, and quiet: no update checks, sync or other traffic of the browser's own."""
ADMIN_TOKEN: Final = "screenshot-admin-token-0123456789"
HOUR: Final = 3600.0


class Rewound(RealClock):
    """Wall time less ``behind_s`` seconds, which :func:`fill` brings back to zero as it goes:
    an hour of orders placed in a few seconds, each at its own minute."""

    def __init__(self, behind_s: float) -> None:
        self.behind_s = behind_s

    def now(self) -> float:
        """This clock's time: wall time, ``behind_s`` ago."""
        return super().now() - self.behind_s

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` at this clock's ``when`` (its delay counted now)."""
        return self.call_later(when - self.now(), callback)


@asynccontextmanager
async def chromium(
    profile: Path, *, width: int = 1280, height: int = 900
) -> AsyncIterator[BrowserContext]:
    """Headless Chromium with a fresh profile in ``profile``, its pages ``width`` wide."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": width, "height": height},
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            await context.close()


async def sign_in(page: Page, url: str, token: str) -> None:
    """Sign in to the console at ``url`` (the server's base) with the admin ``token``."""
    await page.goto(f"{url}/admin")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{url}/admin")


async def fill(server: Server, clock: Rewound) -> int:
    """A small shop's last hour of orders, in every state (a few of the last half hour's
    still awaiting payment); the id of one to show (delivered, a return asked for)."""
    shop = server.shop
    names = ("Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret")
    users = [(await shop.create_user(name, balance=20_000)).user.id for name in names]
    goods = [
        (await shop.create_goods(name, price=price, stock=500)).id
        for name, price in (("Green tea 250 g", 1_200), ("Oolong 100 g", 2_450),
                            ("Teapot, cast iron", 8_900), ("Cups, set of 4", 3_200))
    ]  # fmt: skip
    shown = 0
    for i in range(36):
        clock.behind_s = HOUR * (1 - (i + 1) / 37)  # orders spread over the last hour
        user = users[i % len(users)]
        items = [(goods[i % len(goods)], 1 + i % 3)] + ([(goods[-1], 1)] if i % 4 == 0 else [])
        order = await shop.place_order(user, items, use_balance=500 if i % 3 == 0 else 0)
        if i % 5 != 4 or i < 20:  # a few of the last half hour's left awaiting payment
            payment = (await shop.start_payment(order.id)).payment
            assert server.gateway is not None
            await server.gateway.complete(payment.id, order.id, payment.amount, "succeeded")
            if i % 3 != 2:
                await shop.ship(order.id)
            if i == 7:
                shown = order.id
    clock.behind_s = 0.0
    await shop.deliver(shown)
    await shop.request_return(shown, "The lid does not fit.")
    return shown


async def take(docs: Path) -> None:
    """Serve, fill, and photograph the dashboard and an order's page into ``docs``."""
    from shopkeep.http.server import ServeOptions, running

    with tempfile.TemporaryDirectory() as folder:
        options = ServeOptions(
            db=str(Path(folder) / "shop.db"), port=0, sandbox=True, writer="thread",
            admin_token=ADMIN_TOKEN,
        )  # fmt: skip
        clock = Rewound(HOUR)
        async with running(options, clock=clock) as server:
            order_id = await fill(server, clock)
            async with chromium(Path(folder) / "profile") as browser:
                page = await browser.new_page()
                await sign_in(page, server.url, ADMIN_TOKEN)
                await page.screenshot(path=str(docs / "admin-dashboard.png"), full_page=True)
                await page.goto(f"{server.url}/admin/orders/{order_id}")
                await page.screenshot(path=str(docs / "admin-order.png"), full_page=True)


def parser() -> argparse.ArgumentParser:
    """The command's one argument, the folder the pictures go to."""
    made = argparse.ArgumentParser(
        prog="python -m shopkeep.admin.screenshots",
        description="Write the admin console's pictures, admin-dashboard.png and "
        "admin-order.png, from a sandbox shop filled with an hour of orders.",
    )
    made.add_argument(
        "docs", nargs="?", default="docs", metavar="DOCS_DIR",
        help="the folder to write them into (default: docs, of the current folder)",
    )  # fmt: skip
    return made


def main(argv: list[str]) -> int:
    """Write the screenshots; 2 for a usage error or when there is no Chromium to take them
    with."""
    made = parser()
    docs = Path(made.parse_args(argv).docs)
    if not CHROMIUM.exists():
        print(f"no Chromium at {CHROMIUM}: `make chromium` installs it", file=sys.stderr)
        return 2
    try:
        docs.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        made.error(f"DOCS_DIR {docs}: {error.strerror or error}")
    asyncio.run(take(docs))
    print(f"wrote {docs / 'admin-dashboard.png'} and {docs / 'admin-order.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
