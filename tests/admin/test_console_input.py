"""What the console takes from a person and how it answers: numbers in ASCII digits only, a form
refused for its fields sent again, the whole minute a time filter names, every answer with the
page headers, and wrong tokens counted only in a row.

So ``²`` in a number field is refused as a number (``str.isdigit`` takes it, ``int`` does
not), ``١٠`` credits nothing as the API refuses it, a refused form resent is never said to
have "acted once", the 403 page has the CSP, and a right token between wrong ones starts the
count again.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_messages import OrderView
from shopkeep.admin.app import WRONG_SIGN_INS_BURST
from shopkeep.admin.dashboard import AWAITING_SHOWN
from shopkeep.admin.formatting import when
from shopkeep.back_office import SHORT_LIST
from shopkeep.http.config import HttpConfig
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop
from tests.admin.conftest import Browser, console_app


@pytest.mark.parametrize("typed", ["²", "1.²", "١٠", "१"])
async def test_a_number_in_other_digits_is_refused_on_the_page_and_changes_nothing(
    browser: Browser, typed: str
) -> None:
    user_id, path, fields = await browser.user_form("credit")
    fields = {**fields, "amount": typed}

    assert await browser.send(f"{path}/credit", fields) == (303, path)
    html = (await browser.page(path))[1]
    assert "Validation error (validation_error): amount is not an amount" in html
    assert (await browser.shop.get_user(user_id)).balance == 100


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("0", "amount must be between 0.01 and 10,000,000,000.00"),
        ("10000000000.01", "amount must be between 0.01 and 10,000,000,000.00"),
        ("-5", "amount must be between 0.01 and 10,000,000,000.00"),  # a sign: out of range
        ("12345678901234567", "amount must be between 0.01 and 10,000,000,000.00"),
    ],
)
async def test_an_amount_out_of_range_is_refused_in_the_units_it_is_typed_in(
    browser: Browser, typed: str, said: str
) -> None:
    user_id, path, fields = await browser.user_form("credit")

    assert await browser.send(f"{path}/credit", {**fields, "amount": typed}) == (303, path)
    html = (await browser.page(path))[1]
    assert f"Validation error (validation_error): {said}" in html
    assert (await browser.shop.get_user(user_id)).balance == 100


@pytest.mark.parametrize("typed", ["0000000000000000001", "-0.00 "])
async def test_an_amount_with_leading_zeros_or_a_signed_zero_is_the_amount_it_names(
    browser: Browser, typed: str
) -> None:
    user_id, path, fields = await browser.user_form("credit")

    await browser.send(f"{path}/credit", {**fields, "amount": typed})

    credited = 100 if typed.startswith("0") else 0  # -0.00 is 0: below the least credit
    assert (await browser.shop.get_user(user_id)).balance == 100 + credited
    said = (await browser.page(path))[1]
    assert ("1.00 credited" in said) if credited else ("must be between 0.01 and" in said)


@pytest.mark.parametrize("filter_", ["user=²", "user=١٢"])
async def test_a_filter_in_other_digits_is_a_page_saying_so(
    browser: Browser, filter_: str
) -> None:
    await browser.sign_in()

    status, html = await browser.page(f"/admin/orders?{filter_}")

    assert status == 422 and "user is not an id" in html


async def test_a_form_refused_for_its_fields_can_be_sent_again_and_then_acts(
    browser: Browser,
) -> None:
    user_id, path, fields = await browser.user_form("credit")

    await browser.send(f"{path}/credit", {**fields, "amount": "abc"})
    await browser.send(f"{path}/credit", {**fields, "amount": "5"})

    assert (await browser.shop.get_user(user_id)).balance == 600
    html = (await browser.page(path))[1]
    assert "5.00 credited" in html and "sent already" not in html


async def test_a_form_sent_again_is_said_once_however_often(browser: Browser) -> None:
    user_id, path, fields = await browser.user_form("credit")
    fields = {**fields, "amount": "1"}

    for _ in range(4):
        await browser.send(f"{path}/credit", fields)

    html = (await browser.page(path))[1]
    assert html.count("sent already; it is not done twice") == 1
    assert (await browser.shop.get_user(user_id)).balance == 200


async def test_until_a_minute_takes_the_orders_made_in_that_minute(browser: Browser) -> None:
    made = await browser.shop.create_user("ann", balance=0)
    tea = await browser.shop.create_goods("tea", price=500, stock=3)
    now = browser.clock.now()
    await browser.clock.advance(60 - now % 60 + 37)  # 37 s into a minute
    order = await browser.shop.place_order(made.user.id, [(tea.id, 1)])
    minute = datetime.fromtimestamp(order.created_at, UTC)
    earlier = minute - timedelta(minutes=1)
    await browser.sign_in()

    at, before = f"{minute:%Y-%m-%dT%H:%M}", f"{earlier:%Y-%m-%dT%H:%M}"
    _, within_it = await browser.page(f"/admin/orders?since={at}&until={at}")
    _, until_before = await browser.page(f"/admin/orders?until={before}")

    assert f"/admin/orders/{order.id}" in within_it
    assert f"/admin/orders/{order.id}" not in until_before


async def orders_past_a_whole_second(browser: Browser) -> tuple[OrderView, OrderView]:
    """Two orders: one made an hour, two minutes, three seconds and three quarters past a whole
    second of the clock, the other two seconds after it."""
    made = await browser.shop.create_user("ann", balance=0)
    tea = await browser.shop.create_goods("tea", price=500, stock=3)
    now = browser.clock.now()
    await browser.clock.advance(1 - now % 1 + 3_723.75)
    first = await browser.shop.place_order(made.user.id, [(tea.id, 1)])
    await browser.clock.advance(2)
    return first, await browser.shop.place_order(made.user.id, [(tea.id, 1)])


@pytest.mark.parametrize("given", ["%Y-%m-%d", "%Y-%m-%dT%H", "%Y-%m-%dT%H:%M:%S"])
async def test_until_a_day_an_hour_or_a_second_takes_all_of_it(
    browser: Browser, given: str
) -> None:
    order, _ = await orders_past_a_whole_second(browser)
    at = datetime.fromtimestamp(order.created_at, UTC)
    await browser.sign_in()

    _, until_then = await browser.page(f"/admin/orders?until={at:{given}}")

    assert f"/admin/orders/{order.id}" in until_then


async def test_until_a_second_written_with_a_small_t_takes_that_second_only(
    browser: Browser,
) -> None:
    within, after = await orders_past_a_whole_second(browser)
    await browser.sign_in()

    at = datetime.fromtimestamp(within.created_at, UTC)
    _, until_then = await browser.page(f"/admin/orders?until={at:%Y-%m-%dt%H:%M:%S}")

    assert f"/admin/orders/{within.id}" in until_then
    assert f"/admin/orders/{after.id}" not in until_then


@pytest.mark.parametrize(
    "typed", ["%Y%m%dT%H%M", "%Y-%m-%dT%H%M", "%Y-%m-%dT%H,5", "%Y-%m-%d%%2B08:00"]
)
async def test_a_time_not_in_the_extended_form_is_a_page_saying_so(
    browser: Browser, typed: str
) -> None:
    # taken by fromisoformat, 20261205T2229 (a minute) was read as a whole hour, T22,5 (half
    # past) as half a second past 22:00: lists silently wrong
    order, _ = await orders_past_a_whole_second(browser)
    at = datetime.fromtimestamp(order.created_at, UTC)
    await browser.sign_in()

    status, page = await browser.page(f"/admin/orders?until={at:{typed}}")

    assert status == 422
    assert "until is not a time like 2026-12-02T16:30" in page


async def test_until_the_last_day_of_the_last_year_is_taken(browser: Browser) -> None:
    await browser.sign_in()
    for until in ("9999-12-31", "9999-12-31T23:59:59"):
        status, _ = await browser.page(f"/admin/orders?until={until}")
        assert status == 200, until


def test_a_time_of_the_first_years_is_shown_with_four_digits() -> None:
    assert when(datetime(1, 1, 1, 1, tzinfo=UTC).timestamp()) == "0001-01-01 01:00:00"


async def test_a_refused_form_and_a_redirect_carry_the_page_headers(browser: Browser) -> None:
    _, path, fields = await browser.user_form("credit")
    fields = {**fields, "amount": "1", "csrf": "x"}

    async with browser.client.post(f"{path}/credit", data=fields) as refused:
        assert refused.status == 403
        refused_headers = refused.headers
    browser.client.session.cookie_jar.clear()  # signed out: a page is a redirect
    async with browser.client.get("/admin", allow_redirects=False) as redirected:
        assert redirected.status == 303
        redirected_headers = redirected.headers

    for headers in (refused_headers, redirected_headers):
        assert headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/admin/static/admin.css", 200),
    ("GET", "/admin/static/nope.js", 404),
    ("GET", "/admin/nope", 404),
    ("PUT", "/admin/orders", 405),
    ("DELETE", "/admin", 405),
])
async def test_assets_and_routes_the_console_has_not_carry_the_page_headers(
    browser: Browser, method: str, path: str, status: int
) -> None:
    await browser.sign_in()

    async with browser.client.request(method, path, allow_redirects=False) as answered:
        assert answered.status == status
        assert answered.headers["X-Frame-Options"] == "DENY"
        assert answered.headers["X-Content-Type-Options"] == "nosniff"
        policy = answered.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "form-action 'self'" in policy
        assert "base-uri 'none'" in policy
        assert answered.headers["Cache-Control"] == "no-store"


async def test_a_right_token_starts_the_count_of_wrong_ones_again(browser: Browser) -> None:
    for _ in range(WRONG_SIGN_INS_BURST - 1):
        assert await browser.sign_in("not-the-admin-token") == 401
    assert await browser.sign_in() == 303

    for _ in range(WRONG_SIGN_INS_BURST - 1):
        assert await browser.sign_in("not-the-admin-token") == 401
    assert await browser.sign_in() == 303


@pytest.mark.parametrize(
    "path",
    ["/admin/orders/9999999999999999999", "/admin/users/9223372036854775808",
     "/admin/goods/9999999999999999999"],
)
async def test_an_id_past_64_bits_is_a_page_saying_not_found(browser: Browser, path: str) -> None:
    await browser.sign_in()

    status, html = await browser.page(path)

    assert status == 404 and "names nothing" in html


async def test_a_filter_past_64_bits_is_a_page_saying_so(browser: Browser) -> None:
    await browser.sign_in()

    status, html = await browser.page("/admin/orders?user=9999999999999999999")

    assert status == 422 and "user is not an id" in html


async def test_an_action_on_an_id_past_64_bits_changes_nothing_and_says_not_found(
    browser: Browser,
) -> None:
    _, _, fields = await browser.user_form("credit")
    too_large = "/admin/orders/9999999999999999999/ship"

    status, answer = await browser.send(too_large, fields)

    assert status == 404 and "names nothing" in answer


@pytest.mark.parametrize(("currency", "typed", "credited", "shown"), [
    ("JPY", "12", 12, "1,500"),  # a yen has no minor unit
    ("KWD", "1.5", 1_500, "1.500"),  # a dinar has a thousand fils
])
async def test_money_is_written_and_read_in_the_shops_currency(
    aiohttp_client: AiohttpClient, tmp_path: Path, clock: VirtualClock,
    currency: str, typed: str, credited: int, shown: str,
) -> None:
    config = ShopConfig(currency=currency)
    async with Shop.open(
        str(tmp_path / "shop.db"), gateway="sandbox", clock=clock, config=config
    ) as shop:
        app, console = console_app(shop)
        browser = Browser(await aiohttp_client(app), shop, clock, console)
        made = await shop.create_user("ann")
        tea = await shop.create_goods("tea", price=1_500, stock=3)
        await browser.sign_in()
        assert f"{shown}</td>" in (await browser.page("/admin/goods"))[1]
        coupon_form = (await browser.page("/admin/coupons"))[1]
        assert f'placeholder="{"500" if currency == "JPY" else "0.500"}"' in coupon_form
        price_form = (await browser.page(f"/admin/goods/{tea.id}"))[1]  # as typed: no commas
        assert f'placeholder="{"1500" if currency == "JPY" else "1.500"}"' in price_form
        path = f"/admin/users/{made.user.id}"
        fields = await browser.form_fields(path, f"{path}/credit")
        await browser.send(f"{path}/credit", {**fields, "amount": typed})
        assert (await shop.get_user(made.user.id)).balance == credited
        fields = await browser.form_fields(path, f"{path}/credit")
        await browser.send(f"{path}/credit", {**fields, "amount": "1.2345"})  # past its decimals
        assert (await shop.get_user(made.user.id)).balance == credited
        said = "amount has no decimals" if currency == "JPY" else "amount has at most 3 decimals"
        assert said in (await browser.page(path))[1]  # "not an amount", whatever was wrong
        assert (await shop.get_goods(tea.id)).price == 1_500


async def test_a_coupon_form_refused_for_a_user_that_does_not_exist_can_be_sent_corrected(
    browser: Browser,
) -> None:
    made = await browser.shop.create_user("ann")
    await browser.sign_in()
    fields = await browser.form_fields("/admin/coupons", "/admin/coupons")

    await browser.send("/admin/coupons", {**fields, "user_id": "12345", "value": "5"})
    await browser.send("/admin/coupons", {**fields, "user_id": str(made.user.id), "value": "5"})

    [coupon] = (await browser.shop.list_coupons(made.user.id)).items
    assert coupon.value == 500
    html = (await browser.page(f"/admin/coupons?user={made.user.id}"))[1]
    assert "sent already" not in html


async def test_the_dashboard_lists_the_orders_whose_deadlines_are_nearest(
    browser: Browser,
) -> None:
    shop = browser.shop
    tea = await shop.create_goods("tea", price=100, stock=100)
    users = [(await shop.create_user(f"u{n}")).user.id for n in range(3)]
    placed = []
    for n in range(AWAITING_SHOWN + 5):  # placed one after the other: the first are due first
        placed.append(await shop.place_order(users[n % 3], [(tea.id, 1)]))
        await browser.clock.advance(1)
    await browser.sign_in()

    html = (await browser.page("/admin/live"))[1]

    shown = [order.id for order in placed if f"/admin/orders/{order.id}" in html]
    assert shown == [order.id for order in placed[:AWAITING_SHOWN]]


async def test_refunds_in_flight_are_counted_all_though_the_oldest_fifty_are_listed(
    browser: Browser,
) -> None:
    shop = browser.shop
    assert isinstance(shop.gateway, SandboxGateway)
    shop.gateway.refunds_failing = True  # every refund stays in flight
    tea = await shop.create_goods("tea", price=100, stock=100)
    user = (await shop.create_user("ann")).user.id
    for _ in range(SHORT_LIST + 5):
        order = await shop.place_order(user, [(tea.id, 1)])
        payment = (await shop.start_payment(order.id)).payment
        await shop.gateway.complete(payment.id, order.id, payment.amount, "succeeded")
        await shop.runtime.system.quiet()
        await shop.cancel_order(order.id)
    await browser.sign_in()

    live = (await browser.page("/admin/live"))[1]
    listed = (await browser.page("/admin/refunds"))[1]

    assert f'<a id="live-refunds" href="/admin/refunds">{SHORT_LIST + 5}</a>' in live
    assert f"The oldest {SHORT_LIST} of {SHORT_LIST + 5}." in listed


async def test_a_users_coupons_are_paged_not_cut_off(browser: Browser) -> None:
    shop = browser.shop
    user = (await shop.create_user("ann")).user.id
    made = [(await shop.create_coupon(user, 100)).id for _ in range(60)]
    await browser.sign_in()

    first = (await browser.page(f"/admin/coupons?user={user}"))[1]
    older = first[first.index('class="pager"'):].split('href="', 1)[1].split('"', 1)[0]
    second = (await browser.page(f"/admin/coupons{older.replace('&amp;', '&')}"))[1]
    on_user_page = (await browser.page(f"/admin/users/{user}"))[1]

    shown = [coupon for coupon in made if f"<td>{coupon}</td>" in first + second]
    assert sorted(shown) == sorted(made)
    assert "All their coupons" in on_user_page


async def test_the_dashboards_polling_leaves_a_forms_notice_for_the_page_it_leads_to(
    browser: Browser,
) -> None:
    _, path, fields = await browser.user_form("token", balance=0)

    assert await browser.send(f"{path}/token", fields) == (303, path)
    await browser.page("/admin/live")  # a poll between the form and its page
    html = (await browser.page(path))[1]

    assert "The new token (shown this once" in html


async def test_a_forms_outcome_waits_for_its_page_while_another_tab_loads_another(
    browser: Browser,
) -> None:
    _, path, fields = await browser.user_form("token", balance=0)

    assert await browser.send(f"{path}/token", fields) == (303, path)
    other_tab = (await browser.page("/admin/goods"))[1]
    html = (await browser.page(path))[1]

    assert "The new token (shown this once" not in other_tab
    assert "The new token (shown this once" in html


async def test_a_refusal_of_an_action_on_what_is_not_there_is_shown_once(
    browser: Browser,
) -> None:
    _, _, fields = await browser.user_form("credit", balance=0)

    status, back = await browser.send("/admin/orders/42/cancel", fields)
    refused = (await browser.page(back))[1]
    next_page = (await browser.page("/admin/goods"))[1]

    assert (status, refused.count("order 42 does not exist")) == (303, 1)
    assert "order 42 does not exist" not in next_page


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"token=\xff\xfe", "application/x-www-form-urlencoded"),  # no UTF-8
        (b"token=x", "application/x-www-form-urlencoded; charset=no-such-charset"),
    ],
)
async def test_a_form_that_is_not_text_is_refused_on_a_page_before_sign_in(
    browser: Browser, body: bytes, content_type: str
) -> None:
    async with browser.client.post(
        "/admin/sign-in", data=body, headers={"Content-Type": content_type},
        allow_redirects=False,
    ) as response:  # fmt: skip
        assert response.status == 400
        assert "the form is not text in a charset it names" in await response.text()


async def test_a_signed_in_form_that_is_not_text_changes_nothing(browser: Browser) -> None:
    user_id, path, fields = await browser.user_form("credit")
    body = f"csrf={fields['csrf']}&nonce={fields['nonce']}&amount=".encode() + b"\xff\xfe"

    async with browser.client.post(
        f"{path}/credit", data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"}, allow_redirects=False,
    ) as response:  # fmt: skip
        assert response.status == 400

    assert (await browser.shop.get_user(user_id)).balance == 100


async def coupon_issued_expiring(browser: Browser, typed: str) -> tuple[int, str]:
    """A new user ``ann``, the console's coupon form sent for her with ``typed`` as the
    expiry: her id, and her coupons' page after it."""
    made = await browser.shop.create_user("ann")
    await browser.sign_in()
    fields = await browser.form_fields("/admin/coupons", "/admin/coupons")
    await browser.send(
        "/admin/coupons", {**fields, "user_id": str(made.user.id), "value": "5",
                           "expires_at": typed},
    )  # fmt: skip
    return made.user.id, (await browser.page(f"/admin/coupons?user={made.user.id}"))[1]


@pytest.mark.parametrize(
    ("typed", "expires_at"),
    [
        ("2030-01-01T00:00", datetime(2030, 1, 1, tzinfo=UTC)),  # a datetime-local field: UTC
        ("2030-01-01T08:00+08:00", datetime(2030, 1, 1, tzinfo=UTC)),  # its own offset kept
        # 9999's last microsecond: its last whole second, as the API keeps it
        ("9999-12-31T23:59:59.999999", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        # a day alone is the coupon's last day (it expired as that day began)
        ("2030-01-01", datetime(2030, 1, 2, tzinfo=UTC)),
        ("9999-12-31", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("", None),
    ],
)
async def test_a_coupon_is_issued_with_the_expiry_typed_and_listed_with_it(
    browser: Browser, typed: str, expires_at: datetime | None
) -> None:
    user_id, listed = await coupon_issued_expiring(browser, typed)

    [coupon] = (await browser.shop.list_coupons(user_id)).items
    expected = None if expires_at is None else expires_at.timestamp()
    assert coupon.expires_at == expected
    assert (f"{expires_at:%Y-%m-%d %H:%M:%S}</td>" in listed if expires_at else "–" in listed)


async def test_an_unused_coupon_past_its_expiry_is_listed_as_expired(
    browser: Browser, clock: VirtualClock
) -> None:
    in_an_hour = datetime.fromtimestamp(clock.now() + 3_600, UTC)
    user_id, listed = await coupon_issued_expiring(browser, f"{in_an_hour:%Y-%m-%dT%H:%M}")
    assert "unused (expired)" not in listed

    await clock.advance(3_600)
    await browser.sign_in()  # the session was idle past its end meanwhile

    assert "unused (expired)" in (await browser.page(f"/admin/coupons?user={user_id}"))[1]
    assert "unused (expired)" in (await browser.page(f"/admin/users/{user_id}"))[1]  # said unused


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        # "valid until 2030-01-02 00:00:00" read as that instant included, which it is not
        ("2030-01-01", "usable until it expires at 2030-01-02 00:00:00 UTC."),
        ("2020-01-01", "but it expired at 2020-01-02 00:00:00 UTC already: it cannot be used."),
    ],
)
async def test_an_issued_coupons_notice_says_when_it_expires_and_whether_it_has(
    browser: Browser, typed: str, said: str
) -> None:
    _, page = await coupon_issued_expiring(browser, typed)

    assert said in page


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("next week", "expires_at is not a time like 2026-12-31T23:59"),
        ("9999-12-31T23:59-08:00", "expires_at is outside the years 1 to 9999 in UTC"),
    ],
)
async def test_a_coupon_expiry_that_is_no_time_it_can_keep_is_refused_and_issues_nothing(
    browser: Browser, typed: str, said: str
) -> None:
    user_id, page = await coupon_issued_expiring(browser, typed)

    assert (await browser.shop.list_coupons(user_id)).items == []
    assert said in page


@pytest.mark.parametrize("path", ["/admin/orders/abc", "/admin/users/-1", "/admin/nonexistent"])
async def test_an_address_that_is_no_page_is_a_page_saying_so(browser: Browser, path: str) -> None:
    await browser.sign_in()

    async with browser.client.get(path, allow_redirects=False) as response:
        assert response.status == 404
        assert response.content_type == "text/html"
        assert "Content-Security-Policy" in response.headers
        assert f"no page of the console is at {path}" in await response.text()



async def test_a_form_too_large_for_the_front_door_is_a_page_with_the_page_headers(
    browser: Browser,
) -> None:
    user_id, path, fields = await browser.user_form("credit")
    fields = {**fields, "amount": "1", "note": "x" * (HttpConfig.max_body_bytes + 1)}

    async with browser.client.post(f"{path}/credit", data=fields) as refused:
        assert refused.status == 413
        assert refused.content_type == "text/html"  # a page, not the API's problem+json
        assert "the form is larger than the server takes" in await refused.text()
        assert refused.headers["X-Frame-Options"] == "DENY"
        assert refused.headers["Cache-Control"] == "no-store"
    assert (await browser.shop.get_user(user_id)).balance == 100


async def test_a_form_too_large_sent_in_chunks_is_a_page_too(browser: Browser) -> None:
    user_id, path, fields = await browser.user_form("credit")
    form = "&".join(f"{name}={value}" for name, value in {**fields, "amount": "1"}.items())
    body = (form + "&note=" + "x" * (HttpConfig.max_body_bytes + 1)).encode()

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with browser.client.post(f"{path}/credit", data=chunks(), headers=headers) as refused:
        assert refused.status == 413
        assert "the form is larger than the server takes" in await refused.text()
    assert (await browser.shop.get_user(user_id)).balance == 100


async def test_a_form_in_a_coding_the_server_does_not_read_is_refused_and_does_nothing(
    browser: Browser,
) -> None:
    # aiohttp passed the form on as it came: the credit was made
    user_id, path, fields = await browser.user_form("credit")
    headers = {"Content-Encoding": "bogus"}

    async with browser.client.post(
        f"{path}/credit", data={**fields, "amount": "7"}, headers=headers
    ) as refused:
        assert refused.status == 400
        assert "the form is in a coding the server does not read" in await refused.text()
    assert (await browser.shop.get_user(user_id)).balance == 100


async def test_a_form_that_does_not_inflate_is_a_page_saying_so(browser: Browser) -> None:
    # the API's problem+json answered it, where every other refused form is a page
    user_id, path, _ = await browser.user_form("credit")
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/x-www-form-urlencoded"}

    async with browser.client.post(
        f"{path}/credit", data=b"\x1f\x8b not gzip", headers=headers
    ) as refused:
        assert refused.status == 400 and refused.content_type == "text/html"
        assert "the form does not decode as its coding says" in await refused.text()
    assert (await browser.shop.get_user(user_id)).balance == 100


async def test_an_asset_the_console_has_not_is_a_page_saying_so(browser: Browser) -> None:
    async with browser.client.get("/admin/static/nope.js") as answered:
        assert answered.status == 404
        assert answered.content_type == "text/html"
        assert "no page of the console is at /admin/static/nope.js" in await answered.text()


async def test_the_next_pages_link_carries_the_filters_of_this_page_and_nothing_else(
    browser: Browser,
) -> None:
    # a parameter whose name held "&status=canceled" was copied into the link unencoded: the
    # next page was filtered as this one was not
    made = await browser.shop.create_user("ann", balance=0)
    tea = await browser.shop.create_goods("tea", price=100, stock=100)
    for _ in range(51):  # a page and one more, each canceled (the unpaid cap is 10)
        placed = await browser.shop.place_order(made.user.id, [(tea.id, 1)])
        await browser.shop.cancel_order(placed.id)
    await browser.sign_in()

    _, page = await browser.page(
        f"/admin/orders?x%3D1%26status%3Dcanceled%26a=1&user={made.user.id}"
    )

    [link] = re.findall(r'<a href="\?([^"]*)">Older', page)
    assert link.startswith(f"user={made.user.id}&amp;cursor=")
    assert "status" not in link


async def test_a_time_in_the_last_second_of_the_year_9999_is_taken(browser: Browser) -> None:
    await browser.sign_in()
    for query in ("until=9999-12-31T23:59:59.5", "since=9999-12-31T23:59:59.999999Z"):
        status, page = await browser.page(f"/admin/orders?{query}")
        assert status == 200, page


async def test_a_time_an_offset_takes_past_the_year_9999_is_a_page_saying_so(
    browser: Browser,
) -> None:
    await browser.sign_in()

    status, page = await browser.page("/admin/orders?since=9999-12-31T23:00-05:00")

    assert status == 422
    assert "since is outside the years 1 to 9999 in UTC" in page


async def test_signing_out_drops_the_cookie_with_the_flags_it_was_set_with(
    browser: Browser,
) -> None:
    await browser.sign_in()
    fields = await browser.form_fields("/admin", "/admin/sign-out")

    async with browser.client.post(
        "/admin/sign-out", data=fields, allow_redirects=False
    ) as answered:
        dropped = answered.headers["Set-Cookie"]

    assert "Max-Age=0" in dropped
    assert "HttpOnly" in dropped and "SameSite=Strict" in dropped


async def test_a_name_that_turns_text_around_is_isolated_in_headings_and_titles(
    browser: Browser,
) -> None:
    # a right-to-left override in a name turned the heading's own "user <id>" around: an
    # operator copying the id copied another number
    made = await browser.shop.create_user("\u202eSupport Team")
    await browser.sign_in()

    _, page = await browser.page(f"/admin/users/{made.user.id}")

    assert "<title>\u2068\ufffdSupport Team\u2069" in page  # no element in a title
    assert f'<h1 class="name"><bdi>\ufffdSupport Team</bdi> <small>user {made.user.id}' in page


@pytest.mark.parametrize("typed", ["2026-12-07T24:00", "2026-12-07T13:60", "2026-02-30T10:00"])
async def test_a_filter_time_of_the_pickers_shape_that_is_no_time_comes_back_as_text_to_correct(
    browser: Browser, typed: str
) -> None:
    # given back in a datetime-local input, which a browser empties of a time it cannot hold:
    # the typed text, which the page says to correct, was gone
    await browser.sign_in()

    status, page = await browser.page(f"/admin/orders?since={typed}")

    assert status == 422
    assert f'<input name="since" placeholder="2026-12-01T09:30" value="{typed}">' in page
