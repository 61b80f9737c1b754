"""Fixtures of the admin console's tests: the console over a Shop on a virtual clock, spoken to
through aiohttp's test client (a browser's requests, cookies kept), and forms read off pages.

The browser tests (``test_in_the_browser.py``) have fixtures of their own: a real server and
headless Chromium.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from shopkeep.actors.order_messages import OrderView
from shopkeep.admin import mount
from shopkeep.admin.app import Console
from shopkeep.http.app import make_app
from shopkeep.http.config import HttpConfig
from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop
from shopkeep.shop_accounts import hash_token

ADMIN_TOKEN = "test-admin-token-of-the-console"
Client = TestClient[web.Request, web.Application]
HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


@dataclass
class Browser:
    """The console as a browser sees it: a client with its cookies, the shop behind it."""

    client: Client
    shop: Shop
    clock: VirtualClock
    console: Console

    async def sign_in(self, token: str = ADMIN_TOKEN) -> int:
        """Send the sign-in form; the answer's status (303 when signed in)."""
        async with self.client.post(
            "/admin/sign-in", data={"token": token}, allow_redirects=False
        ) as response:
            return response.status

    async def page(self, path: str) -> tuple[int, str]:
        """GET ``path`` without following redirects: its status and its text."""
        async with self.client.get(path, allow_redirects=False) as response:
            return response.status, await response.text()

    async def form_fields(self, path: str, action: str) -> dict[str, str]:
        """The hidden fields (csrf, nonce) of the form on ``path`` that posts to ``action``."""
        status, html = await self.page(path)
        assert status == 200, html
        start = html.index(f'action="{action}"')
        form = html[start : html.index("</form>", start)]
        return dict(HIDDEN.findall(form))

    async def user_form(self, action: str, balance: int = 100) -> tuple[int, str, dict[str, str]]:
        """A new user ``ann`` holding ``balance``, and the console signed in: the user's id,
        their page, and the hidden fields of its ``action`` form (``credit``, ``token``)."""
        made = await self.shop.create_user("ann", balance=balance)
        await self.sign_in()
        path = f"/admin/users/{made.user.id}"
        return made.user.id, path, await self.form_fields(path, f"{path}/{action}")

    async def order_form(self, action: str) -> tuple[OrderView, str, dict[str, str]]:
        """Ann's unpaid order of one tea, and the console signed in: the order, its page, and
        the hidden fields of its ``action`` form (``ship``, ``deliver``, ``cancel``)."""
        made = await self.shop.create_user("ann", balance=0)
        tea = await self.shop.create_goods("tea", price=500, stock=3)
        order = await self.shop.place_order(made.user.id, [(tea.id, 1)])
        await self.sign_in()
        path = f"/admin/orders/{order.id}"
        return order, path, await self.form_fields(path, f"{path}/{action}")

    async def send(self, action: str, fields: dict[str, str]) -> tuple[int, str]:
        """POST a form to ``action``: the status, and the Location (or the text of a page)."""
        async with self.client.post(action, data=fields, allow_redirects=False) as response:
            return response.status, response.headers.get("Location") or await response.text()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def shop(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[Shop]:
    async with Shop.open(str(tmp_path / "shop.db"), gateway="sandbox", clock=clock) as opened:
        yield opened


def console_app(shop: Shop, *, public_url: str = "") -> tuple[web.Application, Console]:
    """The API's app with the console mounted, as ``shopkeep serve`` builds it."""
    app = make_app(shop, HttpConfig(admin_token=ADMIN_TOKEN))
    console = mount(app, shop, hash_token(ADMIN_TOKEN), public_url=public_url)
    return app, console


@pytest.fixture
async def browser(aiohttp_client: AiohttpClient, shop: Shop, clock: VirtualClock) -> Browser:
    app, console = console_app(shop)
    return Browser(await aiohttp_client(app), shop, clock, console)
