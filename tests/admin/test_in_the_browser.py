"""The console in a real browser: headless Chromium (Debian's, at /usr/bin/chromium, driven by
Playwright) against ``shopkeep serve`` as it runs (:func:`shopkeep.http.server.running`, the
sandbox gateway, 127.0.0.1, any free port). The shop is set up through the HTTP API and its
embedded API; everything a person does, they do in the browser.

Skipped, saying why, only where there is no Chromium at /usr/bin/chromium (``make chromium``
installs it). Every wait is bounded (Playwright's 15 s, the test's timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import BrowserContext, ConsoleMessage, Dialog, Page, expect

from shopkeep.admin.screenshots import CHROMIUM, chromium, sign_in
from shopkeep.http.server import ServeOptions, Server, running

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no Chromium at {CHROMIUM}: `make chromium` installs Debian's chromium package",
    ),
    pytest.mark.timeout(120),
]

ADMIN_TOKEN = "browser-test-admin-token-0123456789"
PHONE_WIDTH = 390


@dataclass
class Shopfront:
    """The running server, spoken to over HTTP as a storefront and its admin would."""

    server: Server
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.server.url

    async def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        """One API call; its JSON answer (a 2xx is asserted)."""
        headers = {"Authorization": f"Bearer {token}"}
        async with self.http.request(method, self.url + path, json=body, headers=headers) as r:
            answer = await r.json()
            assert r.status < 300, answer
            return answer

    async def customer(self, balance: int = 0) -> tuple[str, str]:
        """A new user's id and token."""
        body = {"name": "ann", "balance": balance}
        made = await self.call("POST", "/v1/users", ADMIN_TOKEN, body)
        return made["id"], made["token"]

    async def goods(self, name: str = "tea", price: int = 1_200) -> str:
        made = await self.call(
            "POST", "/v1/goods", ADMIN_TOKEN, {"name": name, "price": price, "stock": 20}
        )
        return str(made["id"])

    async def order(self, token: str, goods_id: str) -> dict[str, Any]:
        """An order placed through the API (awaiting payment)."""
        return dict(
            await self.call(
                "POST", "/v1/orders", token, {"items": [{"goods_id": goods_id, "quantity": 2}]}
            )
        )

    async def paid_order(self) -> str:
        """An order placed and paid (the sandbox gateway called back): its id."""
        _, token = await self.customer()
        order = await self.order(token, await self.goods())
        payment = await self.call("POST", f"/v1/orders/{order['id']}/payment", token)
        gateway = self.server.gateway
        assert gateway is not None
        assert await gateway.complete(
            int(payment["id"]), int(order["id"]), payment["amount"], "succeeded"
        )
        return str(order["id"])


@pytest.fixture
async def shopfront(tmp_path: Path) -> AsyncIterator[Shopfront]:
    options = ServeOptions(
        db=str(tmp_path / "shop.db"), port=0, sandbox=True, writer="thread",
        admin_token=ADMIN_TOKEN,
    )  # fmt: skip
    async with running(options) as server, aiohttp.ClientSession() as http:
        yield Shopfront(server, http)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with chromium(tmp_path / "profile") as context:
        yield context


@pytest.fixture
async def page(browser: BrowserContext) -> Page:
    return await browser.new_page()


async def test_the_admin_signs_in_with_the_token_and_sees_the_dashboard(
    shopfront: Shopfront, page: Page
) -> None:
    await page.goto(f"{shopfront.url}/admin")
    await expect(page).to_have_url(f"{shopfront.url}/admin/sign-in")
    await page.fill("#token", "not-the-token")
    await page.click("button[type=submit]")
    await expect(page.get_by_role("alert")).to_contain_text("not the admin token")
    await sign_in(page, shopfront.url, ADMIN_TOKEN)
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    await expect(page.get_by_text("all invariants hold")).to_be_visible()
    cookies = await page.context.cookies()
    assert [c["name"] for c in cookies] == ["shopkeep_admin"]
    assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict"
    assert ADMIN_TOKEN not in cookies[0]["value"]
    assert ADMIN_TOKEN not in await page.evaluate("document.cookie + JSON.stringify(localStorage)")


async def test_the_dashboard_and_an_order_fit_a_phone(shopfront: Shopfront, page: Page) -> None:
    order_id = await shopfront.paid_order()
    await page.set_viewport_size({"width": PHONE_WIDTH, "height": 800})
    await sign_in(page, shopfront.url, ADMIN_TOKEN)
    for path in ("/admin", "/admin/orders", f"/admin/orders/{order_id}"):
        await page.goto(shopfront.url + path)
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE_WIDTH, path


async def test_an_order_placed_through_the_api_appears_on_the_dashboard(
    shopfront: Shopfront, page: Page
) -> None:
    problems: list[str] = []  # the page's own errors: a script or style the policy refused

    def said(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    page.on("console", said)
    await sign_in(page, shopfront.url, ADMIN_TOKEN)
    _, token = await shopfront.customer()
    order = await shopfront.order(token, await shopfront.goods())
    # no reload: the dashboard's live part polls (htmx, every 5 s)
    awaiting = page.locator("#live table").get_by_role("link", name=order["id"])
    await expect(awaiting).to_be_visible(timeout=15_000)
    await awaiting.click()
    await expect(page.get_by_role("heading", name=f"Order {order['id']}")).to_be_visible()
    assert problems == []


async def test_the_dashboards_refresh_leaves_the_keyboards_focus_where_it_was(
    shopfront: Shopfront, page: Page
) -> None:
    # the live part's swap every 5 s dropped the focus to the page's top: a keyboard user had
    # five seconds to reach a link of it and press Enter
    await sign_in(page, shopfront.url, ADMIN_TOKEN)
    await page.focus("#live-audit")
    swapped = page.evaluate(  # resolved by the next refresh's swap (bounded: 15 s)
        "() => new Promise(done => document.body.addEventListener("
        "'htmx:afterSwap', () => done(document.activeElement.id), {once: true}))"
    )

    assert await asyncio.wait_for(swapped, 15) == "live-audit"


async def test_the_keyboards_first_stop_skips_the_header_to_the_content(
    shopfront: Shopfront, page: Page
) -> None:
    await sign_in(page, shopfront.url, ADMIN_TOKEN)
    await page.keyboard.press("Tab")
    first = await page.evaluate("() => document.activeElement.textContent")
    await page.keyboard.press("Enter")

    assert first == "Skip to the content"
    assert await page.evaluate("() => document.activeElement.id") == "main"


async def test_times_typed_as_the_console_says_are_sent_as_typed(
    shopfront: Shopfront, page: Page
) -> None:
    # the time fields were datetime-local inputs: Chromium sent none of a day alone, a time to
    # the second or one with an offset, and said the field was incomplete
    user_id, _ = await shopfront.customer()
    await sign_in(page, shopfront.url, ADMIN_TOKEN)
    await page.goto(f"{shopfront.url}/admin/orders")
    await page.fill("input[name=since]", "2026-12-07T22:45:04")
    await page.fill("input[name=until]", "2026-12-08")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(
        f"{shopfront.url}/admin/orders?status=&user=&since=2026-12-07T22%3A45%3A04&until=2026-12-08"
    )
    await page.goto(f"{shopfront.url}/admin/coupons?user={user_id}")
    await page.fill("input[name=value]", "3")
    await page.fill("input[name=expires_at]", "2030-12-31T23:59+08:00")
    await page.get_by_role("button", name="Issue").click()
    await expect(page.get_by_role("status")).to_be_visible()

    [coupon] = (await shopfront.server.shop.list_coupons(int(user_id))).items
    assert coupon.expires_at == datetime(2030, 12, 31, 15, 59, tzinfo=UTC).timestamp()


async def test_shipping_an_order_from_its_page_adds_shipped_to_its_history(
    shopfront: Shopfront, page: Page
) -> None:
    order_id = await shopfront.paid_order()
    await sign_in(page, shopfront.url, ADMIN_TOKEN)
    await page.goto(f"{shopfront.url}/admin/orders/{order_id}")
    timeline = page.locator("ol.timeline li")
    await expect(timeline).to_have_count(3)  # placed, confirmed, paid
    await page.get_by_role("button", name="Ship").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Order {order_id} is shipped.")
    await expect(timeline).to_have_count(4)
    await expect(timeline.last).to_contain_text("shipped: paid → shipped")
    await expect(page.get_by_role("button", name="Deliver")).to_be_visible()
    order = await shopfront.call("GET", f"/v1/orders/{order_id}", ADMIN_TOKEN)
    assert order["status"] == "shipped"


async def test_canceling_a_paid_order_asks_first_and_a_no_leaves_it_paid(
    shopfront: Shopfront, page: Page
) -> None:
    order_id = await shopfront.paid_order()
    asked: list[str] = []
    answers = iter([False, True])

    async def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await (dialog.accept() if next(answers) else dialog.dismiss())

    page.on("dialog", answer)
    await sign_in(page, shopfront.url, ADMIN_TOKEN)
    await page.goto(f"{shopfront.url}/admin/orders/{order_id}")
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    assert (await shopfront.call("GET", f"/v1/orders/{order_id}", ADMIN_TOKEN))["status"] == "paid"

    await page.get_by_role("button", name="Cancel").click()

    await expect(page.get_by_role("status")).to_contain_text(f"Order {order_id} is canceled.")
    assert asked == [f"Cancel order {order_id}? What it was paid is refunded."] * 2


async def test_approving_a_return_refunds_the_order(shopfront: Shopfront, page: Page) -> None:
    order_id = await shopfront.paid_order()
    await shopfront.call("POST", f"/v1/orders/{order_id}/ship", ADMIN_TOKEN)
    await shopfront.call("POST", f"/v1/orders/{order_id}/deliver", ADMIN_TOKEN)
    shop = shopfront.server.shop
    asked = await shop.request_return(int(order_id), "too big")
    await sign_in(page, shopfront.url, ADMIN_TOKEN)
    await page.goto(f"{shopfront.url}/admin/refunds")
    await expect(page.get_by_text("too big")).to_be_visible()
    await page.get_by_role("button", name="Approve return").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Return {asked.id}")
    await expect(page.get_by_text("No return waits.")).to_be_visible()
    assert (await shop.get_return(asked.id)).status == "approved"
    await page.goto(f"{shopfront.url}/admin/orders/{order_id}")
    await expect(page.locator("table").filter(has_text="return").first).to_be_visible()


async def test_a_form_with_a_wrong_csrf_token_is_refused_and_changes_nothing(
    shopfront: Shopfront, page: Page
) -> None:
    order_id = await shopfront.paid_order()
    await sign_in(page, shopfront.url, ADMIN_TOKEN)
    await page.goto(f"{shopfront.url}/admin/orders/{order_id}")
    await page.eval_on_selector_all(
        "input[name=csrf]", "inputs => inputs.forEach(i => { i.value = 'forged' })"
    )
    await page.get_by_role("button", name="Ship").click()
    await expect(page.get_by_role("heading", name="Refused")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("CSRF token is missing or wrong")
    order = await shopfront.call("GET", f"/v1/orders/{order_id}", ADMIN_TOKEN)
    assert order["status"] == "paid"


async def test_a_goods_named_like_a_script_is_shown_as_text(
    shopfront: Shopfront, page: Page
) -> None:
    name = "<script>alert(1)</script>"
    goods_id = await shopfront.goods(name)
    dialogs: list[str] = []

    def opened(dialog: Dialog) -> None:
        dialogs.append(dialog.message)

    page.on("dialog", opened)
    await sign_in(page, shopfront.url, ADMIN_TOKEN)
    for path in ("/admin/goods", f"/admin/goods/{goods_id}"):
        await page.goto(shopfront.url + path)
        await expect(page.locator(".name").first).to_have_text(name)
    assert dialogs == []
    assert await page.locator("main script").count() == 0


async def test_a_name_of_stacked_accents_paints_over_nothing_around_it(
    shopfront: Shopfront, page: Page
) -> None:
    await shopfront.goods("tea")
    await sign_in(page, shopfront.url, ADMIN_TOKEN)
    await page.goto(shopfront.url + "/admin/goods")
    header, heading = page.locator(".top"), page.locator("main table thead")
    before = [await header.screenshot(), await heading.screenshot()]

    # a name of 200 characters, as the API allows: accents stacked far above and below it
    accented = await shopfront.goods("e" + "\u0301" * 100 + "\u0316" * 99)
    await page.goto(shopfront.url + "/admin/goods")  # newest first: right under the heading
    assert [await header.screenshot(), await heading.screenshot()] == before
    await page.goto(f"{shopfront.url}/admin/goods/{accented}")  # its name the page's heading
    assert await header.screenshot() == before[0]


async def test_a_credit_gone_back_to_is_not_typed_again_by_the_browser(
    shopfront: Shopfront, page: Page
) -> None:
    # Back refilled the amount on a fresh form: one more click credited the wallet again
    user_id, _ = await shopfront.customer()
    await sign_in(page, shopfront.url, ADMIN_TOKEN)
    await page.goto(f"{shopfront.url}/admin/users/{user_id}")
    amount = page.locator('input[name="amount"]')
    await amount.fill("1")
    await page.get_by_role("button", name="Credit").click()
    await expect(page.locator(".notice.ok")).to_contain_text("credited")

    await page.go_back()

    await expect(page.locator('input[name="amount"]')).to_have_value("")


async def test_without_a_session_every_page_leads_to_the_sign_in_page(
    shopfront: Shopfront, page: Page
) -> None:
    order_id = await shopfront.paid_order()
    for path in ("/admin", "/admin/orders", f"/admin/orders/{order_id}", "/admin/users"):
        await page.goto(shopfront.url + path)
        await expect(page).to_have_url(f"{shopfront.url}/admin/sign-in")
    await sign_in(page, shopfront.url, ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(f"{shopfront.url}/admin/sign-in")
    await page.goto(f"{shopfront.url}/admin/orders/{order_id}")
    await expect(page).to_have_url(f"{shopfront.url}/admin/sign-in")


async def test_the_sandbox_checkout_pays_its_payment_from_a_browser_under_its_page_policy(
    shopfront: Shopfront, page: Page
) -> None:
    # the page's own script and its fetch of /complete run under its Content-Security-Policy
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text))
    customer_id, token = await shopfront.customer()
    order = await shopfront.order(token, await shopfront.goods())
    payment = await shopfront.call("POST", f"/v1/orders/{order['id']}/payment", token)

    await page.goto(payment["gateway_url"])
    await page.get_by_role("button", name="Pay").click()

    await expect(page.locator("#said")).to_have_text("Done: the gateway now calls the shop back.")
    assert refused == []  # no Content-Security-Policy refusal said in the browser's console
    # answered 202 once its first call back was acknowledged: the order is paid already
    seen = await shopfront.call("GET", f"/v1/orders/{order['id']}", token)
    assert seen["status"] == "paid" and customer_id == seen["user_id"]
