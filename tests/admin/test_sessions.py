"""Sessions, CSRF and expiry, through aiohttp's test client (no browser): fast, on a virtual
clock where time matters."""

from __future__ import annotations

import pytest
from pytest_aiohttp import AiohttpClient
from structlog.testing import capture_logs

from shopkeep.admin.app import WRONG_SIGN_INS_BURST, WRONG_SIGN_INS_PER_S
from shopkeep.admin.sessions import (
    ABSOLUTE_S,
    COOKIE,
    IDLE_S,
    PAGES_SAID_TO,
    SPENT_KEPT,
    TOO_OLD,
    Session,
    new_nonce,
)
from shopkeep.http.app import DOOR, make_app
from shopkeep.http.config import HttpConfig
from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop
from shopkeep.shop_accounts import hash_token
from tests.admin.conftest import ADMIN_TOKEN, Browser, console_app


async def test_a_page_without_a_session_redirects_to_the_sign_in_page(browser: Browser) -> None:
    for path in ("/admin", "/admin/orders", "/admin/users/1", "/admin/live"):
        status, _ = await browser.page(path)
        assert status == 303, path
    async with browser.client.get("/admin/orders", allow_redirects=False) as response:
        assert response.headers["Location"] == "/admin/sign-in"


async def test_htmx_without_a_session_is_told_to_load_the_sign_in_page(browser: Browser) -> None:
    async with browser.client.get("/admin/live", headers={"HX-Request": "true"}) as response:
        assert response.headers["HX-Redirect"] == "/admin/sign-in"


async def test_signing_in_sets_an_httponly_strict_cookie_that_holds_no_token(
    aiohttp_client: AiohttpClient, shop: Shop
) -> None:
    client = await aiohttp_client(console_app(shop)[0])
    async with client.post(
        "/admin/sign-in", data={"token": ADMIN_TOKEN}, allow_redirects=False
    ) as response:
        assert response.status == 303
        cookie = response.cookies[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/admin"
    assert not cookie["secure"]
    assert ADMIN_TOKEN not in cookie.value and len(cookie.value) >= 40


async def test_the_cookie_is_secure_when_the_public_url_is_https(
    aiohttp_client: AiohttpClient, shop: Shop
) -> None:
    client = await aiohttp_client(console_app(shop, public_url="https://shop.example")[0])
    async with client.post(
        "/admin/sign-in", data={"token": ADMIN_TOKEN}, allow_redirects=False
    ) as response:
        assert response.cookies[COOKIE]["secure"] is True


async def test_a_wrong_token_does_not_sign_in(browser: Browser) -> None:
    assert await browser.sign_in("not-the-admin-token") == 401
    assert await browser.sign_in("") == 401
    assert len(browser.console.sessions) == 0
    status, _ = await browser.page("/admin")
    assert status == 303


async def test_a_user_token_does_not_sign_in(browser: Browser) -> None:
    made = await browser.shop.create_user("mallory")
    assert await browser.sign_in(made.token) == 401


async def test_signed_in_the_dashboard_is_shown(browser: Browser) -> None:
    assert await browser.sign_in() == 303
    status, html = await browser.page("/admin")
    assert status == 200
    assert "Awaiting payment" in html and "Audit" in html


async def test_a_session_idle_too_long_is_over(browser: Browser) -> None:
    await browser.sign_in()
    await browser.clock.advance(IDLE_S - 1)
    assert (await browser.page("/admin"))[0] == 200  # used: idle again from now
    await browser.clock.advance(IDLE_S - 1)
    assert (await browser.page("/admin"))[0] == 200
    await browser.clock.advance(IDLE_S)
    assert (await browser.page("/admin"))[0] == 303
    assert len(browser.console.sessions) == 0


async def test_the_dashboards_polling_does_not_keep_an_idle_session_open(
    browser: Browser,
) -> None:
    await browser.sign_in()
    for _ in range(int(IDLE_S // 5) - 1):  # the page polls its live part every 5 s
        await browser.clock.advance(5)
        assert (await browser.page("/admin/live"))[0] == 200
    await browser.clock.advance(5)

    assert (await browser.page("/admin/live"))[0] == 303
    assert len(browser.console.sessions) == 0


async def test_a_session_ends_at_its_absolute_lifetime_however_busy(browser: Browser) -> None:
    await browser.sign_in()
    step = IDLE_S / 2
    used = 0.0
    while used + step < ABSOLUTE_S:
        await browser.clock.advance(step)
        used += step
        assert (await browser.page("/admin/goods"))[0] == 200
    await browser.clock.advance(step)
    assert (await browser.page("/admin/goods"))[0] == 303


async def test_signing_out_ends_the_session(browser: Browser) -> None:
    await browser.sign_in()
    fields = await browser.form_fields("/admin", "/admin/sign-out")
    status, location = await browser.send("/admin/sign-out", fields)
    assert (status, location) == (303, "/admin/sign-in")
    assert len(browser.console.sessions) == 0
    assert (await browser.page("/admin"))[0] == 303


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    browser: Browser,
) -> None:
    user_id, path, fields = await browser.user_form("credit")
    for csrf in (None, "", "wrong", fields["csrf"] + "x"):
        sent = {**fields, "amount": "5.00"}
        if csrf is None:
            del sent["csrf"]
        else:
            sent["csrf"] = csrf
        status, page = await browser.send(f"{path}/credit", sent)
        assert status == 403
        assert "CSRF token is missing or wrong" in page
    assert (await browser.shop.get_user(user_id)).balance == 100


async def test_a_form_from_the_public_urls_origin_is_taken(
    aiohttp_client: AiohttpClient, shop: Shop, clock: VirtualClock
) -> None:
    app, console = console_app(shop, public_url="http://shop.example/")
    client = await aiohttp_client(app)
    browser = Browser(client, shop, clock, console)
    made = await shop.create_user("ann", balance=100)
    await browser.sign_in()
    path = f"/admin/users/{made.user.id}"
    fields = {**await browser.form_fields(path, f"{path}/credit"), "amount": "5"}
    async with client.post(
        f"{path}/credit", data=fields, headers={"Origin": "http://shop.example"},
        allow_redirects=False,
    ) as response:
        assert response.status == 303
    assert (await shop.get_user(made.user.id)).balance == 600


@pytest.mark.parametrize(
    "says",
    [
        {"Origin": "https://evil.example"},
        # an older browser, without Origin, says it another way
        {"Sec-Fetch-Site": "cross-site"},
        {"Referer": "https://evil.example/page"},
        {"Referer": "http://[::1"},  # no URL at all: it answered 500, with a traceback logged
    ],
)
async def test_a_form_from_another_origin_is_refused(
    browser: Browser, says: dict[str, str]
) -> None:
    user_id, path, fields = await browser.user_form("credit")
    fields = {**fields, "amount": "5"}
    async with browser.client.post(f"{path}/credit", data=fields, headers=says) as response:
        assert response.status == 403
    assert (await browser.shop.get_user(user_id)).balance == 100


async def test_a_form_whose_referer_is_the_console_itself_is_taken(browser: Browser) -> None:
    user_id, path, fields = await browser.user_form("credit")
    fields = {**fields, "amount": "5"}
    referer = str(browser.client.make_url(path))
    async with browser.client.post(
        f"{path}/credit", data=fields,
        headers={"Referer": referer, "Sec-Fetch-Site": "same-origin"}, allow_redirects=False,
    ) as response:
        assert response.status == 303
    assert (await browser.shop.get_user(user_id)).balance == 600


async def test_the_same_form_sent_twice_acts_once(browser: Browser) -> None:
    user_id, path, fields = await browser.user_form("credit")
    fields = {**fields, "amount": "2.50"}
    for _ in range(2):
        status, location = await browser.send(f"{path}/credit", fields)
        assert (status, location) == (303, path)
    assert (await browser.shop.get_user(user_id)).balance == 350
    html = (await browser.page(path))[1]
    assert "2.50 credited" in html and "sent already" in html


async def test_a_refusal_of_the_shop_is_shown_with_its_code_and_changes_nothing(
    browser: Browser,
) -> None:
    order, path, fields = await browser.order_form("cancel")
    # shipping an unpaid order: the page offers no such button, a forged form is refused
    status, location = await browser.send(f"{path}/ship", fields)
    assert (status, location) == (303, path)
    html = (await browser.page(path))[1]
    assert "invalid_state" in html
    assert (await browser.shop.get_order(order.id)).status == "awaiting_payment"


async def test_every_page_is_shown_to_the_admin(browser: Browser) -> None:
    shop = browser.shop
    made = await shop.create_user("ann", balance=10_000)
    tea = await shop.create_goods("tea", price=500, stock=3)
    order = await shop.place_order(made.user.id, [(tea.id, 1)], use_balance=10_000)
    await shop.create_coupon(made.user.id, 300)
    await browser.sign_in()
    for path in (
        "/admin", "/admin/live", "/admin/orders", f"/admin/orders/{order.id}",
        f"/admin/orders?status=paid&user={made.user.id}&since=2020-01-01T00:00",
        "/admin/goods", f"/admin/goods/{tea.id}", "/admin/users", f"/admin/users/{made.user.id}",
        "/admin/coupons", f"/admin/coupons?user={made.user.id}", "/admin/refunds",
        "/admin/dead-letters", "/admin/audit",
    ):  # fmt: skip
        status, html = await browser.page(path)
        assert status == 200, (path, html)
    assert "all invariants hold" in (await browser.page("/admin/audit"))[1]


async def test_a_missing_order_or_a_bad_filter_is_a_page_saying_so(browser: Browser) -> None:
    await browser.sign_in()
    status, html = await browser.page("/admin/orders/12345")
    assert status == 404 and "not_found" in html
    status, html = await browser.page("/admin/orders?status=lost")
    assert status == 422 and "validation_error" in html


async def test_a_bad_filter_is_said_above_the_filter_form_filled_as_typed(browser: Browser) -> None:
    await browser.sign_in()

    status, html = await browser.page("/admin/orders?user=abc&since=2026-12-01")

    assert status == 422
    assert "user is not an id" in html and "No order matches." in html
    assert 'name="user" inputmode="numeric" value="abc"' in html
    assert 'value="2026-12-01"' in html


async def test_every_bad_filter_is_said_at_once(browser: Browser) -> None:
    # only the first was said: each fixed in turn, the page refused the next
    await browser.sign_in()

    status, html = await browser.page(
        "/admin/orders?status=lost&user=abc&since=soon&until=x&cursor=zz"
    )

    assert status == 422
    for said in ("status must be one of", "user is not an id", "since is not a time",
                 "until is not a time", "cursor is not one this server gave"):
        assert said in html, said


async def test_without_the_console_admin_is_not_found(
    aiohttp_client: AiohttpClient, shop: Shop
) -> None:
    client = await aiohttp_client(make_app(shop, HttpConfig(admin_token=ADMIN_TOKEN)))
    for path in ("/admin", "/admin/sign-in", "/admin/static/admin.css"):
        async with client.get(path, allow_redirects=False) as response:
            assert response.status == 404, path


async def test_money_is_typed_in_currency_units(browser: Browser) -> None:
    made = await browser.shop.create_user("ann", balance=0)
    await browser.sign_in()
    path = f"/admin/users/{made.user.id}"
    for typed in ("5", "0.5", "1.25", "1."):
        fields = {**await browser.form_fields(path, f"{path}/credit"), "amount": typed}
        assert (await browser.send(f"{path}/credit", fields))[0] == 303
    assert (await browser.shop.get_user(made.user.id)).balance == 500 + 50 + 125 + 100
    for typed, said in (("1.234", "amount has at most 2 decimals"),
                        ("-1", "amount must be between 0.01 and"),
                        ("abc", "amount is not an amount"), (".5x", "amount is not an amount"),
                        (".", "amount is not an amount")):
        fields = {**await browser.form_fields(path, f"{path}/credit"), "amount": typed}
        await browser.send(f"{path}/credit", fields)
        assert said in (await browser.page(path))[1], typed
    assert (await browser.shop.get_user(made.user.id)).balance == 775


async def test_wrong_tokens_past_the_burst_are_made_to_wait_even_the_right_one(
    browser: Browser,
) -> None:
    for _ in range(WRONG_SIGN_INS_BURST):
        assert await browser.sign_in("not-the-admin-token") == 401

    assert await browser.sign_in("not-the-admin-token") == 429
    assert await browser.sign_in() == 429  # nothing is compared while it waits
    await browser.clock.advance(1 / WRONG_SIGN_INS_PER_S)
    assert await browser.sign_in() == 303


async def test_a_form_sent_while_the_server_stops_is_refused_and_does_nothing(
    browser: Browser,
) -> None:
    # the API refused its writes while the server stopped; the console's forms still acted
    user_id, path, fields = await browser.user_form("credit")
    browser.client.app[DOOR].gate.stop_taking_writes()

    status, said = await browser.send(f"{path}/credit", {**fields, "amount": "5"})

    assert status == 503 and "the server is stopping" in said
    assert "<html" in said  # a page of the console, not the API's problem+json
    assert (await browser.shop.get_user(user_id)).balance == 100


def test_a_form_made_before_the_newest_one_forgotten_is_too_old_to_act() -> None:
    session = Session("id", "csrf", started=0.0, seen=0.0)
    sent, never_sent = new_nonce(), new_nonce()
    assert session.spend(sent) is None

    for _ in range(SPENT_KEPT + 1):  # the first of them, made after never_sent, forgotten too
        assert session.spend(new_nonce()) is None

    assert session.spend(sent) == TOO_OLD  # forgotten, and still not done again
    assert session.spend(never_sent) == TOO_OLD
    assert session.spend(new_nonce()) is None


async def test_a_token_form_sent_again_after_hundreds_of_others_gives_no_second_token(
    browser: Browser,
) -> None:
    user_id, path, fields = await browser.user_form("token", balance=0)
    assert await browser.send(f"{path}/token", fields) == (303, path)
    token = (await browser.page(path))[1].split("no longer works): ", 1)[1].split("<", 1)[0]
    for _ in range(SPENT_KEPT):  # each acts: the credit of 0.01, under a nonce of its own
        others = {**fields, "nonce": new_nonce(), "amount": "0.01"}
        assert await browser.send(f"{path}/credit", others) == (303, path)

    assert await browser.send(f"{path}/token", fields) == (303, path)

    assert "too old to tell" in (await browser.page(path))[1]
    assert await browser.shop.user_for_token_hash(hash_token(token.strip())) == user_id


def test_a_session_keeps_messages_for_a_bounded_number_of_pages_not_yet_shown() -> None:
    session = Session("id", "csrf", started=0.0, seen=0.0)
    for n in range(PAGES_SAID_TO + 1):
        session.notify(f"/admin/orders/{n}", "ok", f"order {n} shipped")

    assert session.take_notices("/admin/orders/0") == []  # the oldest, dropped
    assert session.take_notices("/admin/orders/1") == [("ok", "order 1 shipped")]
    assert session.take_notices("/admin/orders/1") == []  # shown once


async def test_the_staff_leave_a_trail_of_sign_ins_and_forms_without_a_token(
    browser: Browser,
) -> None:
    # who credited ten billion, and when: the log had access lines only
    made = await browser.shop.create_user("ann", balance=0)
    path = f"/admin/users/{made.user.id}"
    with capture_logs() as logs:
        assert await browser.sign_in("not-the-admin-token") == 401
        await browser.sign_in()
        credit = {**await browser.form_fields(path, f"{path}/credit"), "amount": "12.50"}
        await browser.send(f"{path}/credit", credit)
        token = await browser.form_fields(path, f"{path}/token")
        await browser.send(f"{path}/token", token)
    new_token = (await browser.page(path))[1].split("old one no longer works): ")[1][:40]

    trail = [(e["event"], e.get("form"), e.get("typed"), e.get("done")) for e in logs
             if e["event"].startswith("console_")]
    assert trail == [
        ("console_sign_in_refused", None, None, None),
        ("console_signed_in", None, None, None),
        ("console_action", f"{path}/credit", {"amount": "12.50"}, True),
        ("console_action", f"{path}/token", {}, True),
    ]
    assert new_token[:8] not in repr(logs)
