"""What the console says a form did, and what it takes back as it shows it.

A form that finds its order or return that way already (a stale page, another tab, the
order's deadline) says so and does nothing; a name with a right-to-left override turns no
words of a notice around; a form lists every problem; an order's time, typed back as "since",
lists that order; a coupon for an id past 64 bits comes back to its form; a user who does not
exist has no coupons page; a "z" for UTC is taken as a "t" is. An order's page offers the
moves its state machine allows, and no other.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from shopkeep.actors.order_messages import OrderView, ReturnView
from shopkeep.admin import pages
from tests.admin.conftest import Browser
from tests.shop.conftest import sandbox
from tests.shop.test_back_office import park


async def paid_order(browser: Browser) -> OrderView:
    """Ann's order of one tea, paid."""
    shop = browser.shop
    made = await shop.create_user("ann", balance=0)
    tea = await shop.create_goods("tea", price=500, stock=3)
    order = await shop.place_order(made.user.id, [(tea.id, 1)])
    payment = (await shop.start_payment(order.id)).payment
    assert await sandbox(shop).complete(payment.id, order.id, payment.amount, "succeeded")
    return order


async def notice_after(browser: Browser, path: str, action: str, **typed: str) -> str:
    """The page ``action``'s form on ``path`` leads to, once sent with ``typed``."""
    fields = await browser.form_fields(path, action)
    status, back = await browser.send(action, {**fields, **typed})
    assert status == 303, back
    return (await browser.page(back))[1]


def buttons_of(html: str) -> list[str]:
    """The labels of the buttons of an order's actions (its forms above the amounts)."""
    actions = html[html.index('<div class="actions">') : html.index('<div class="grid">')]
    return re.findall(r'<button type="submit"[^>]*>([^<]+)</button>', actions)


async def test_an_orders_page_offers_only_the_moves_its_status_allows(browser: Browser) -> None:
    order = await paid_order(browser)
    await browser.sign_in()
    path = f"/admin/orders/{order.id}"
    paid = buttons_of((await browser.page(path))[1])
    await browser.shop.ship(order.id)
    shipped = buttons_of((await browser.page(path))[1])
    await browser.shop.deliver(order.id)
    delivered = buttons_of((await browser.page(path))[1])

    assert (paid, shipped, delivered) == (["Ship", "Cancel"], ["Deliver"], [])


async def test_an_orders_amounts_read_in_the_order_they_are_worked_out(browser: Browser) -> None:
    order = await paid_order(browser)
    await browser.sign_in()
    page = (await browser.page(f"/admin/orders/{order.id}"))[1]

    named = re.findall(r"<dt>([^<]+)</dt>", page)

    assert named[1:7] == [  # SPEC 2: goods + shipping, less the coupon and the wallet
        "Goods", "Shipping", "Order amount", "Coupon discount", "From the wallet",
        "Through the gateway",
    ]


async def test_every_card_holding_a_table_takes_the_keyboards_focus_to_scroll_it(
    browser: Browser,
) -> None:
    # a table wider than its card (the payments', on a desktop; every one on a phone) could
    # not be scrolled to with the keyboard
    order = await paid_order(browser)
    await browser.sign_in()
    _, html = await browser.page(f"/admin/orders/{order.id}")

    cards = re.split(r'(?=<(?:section|div) class="card[" ])', html)[1:]  # wide ones too
    with_tables = [card[: card.index(">") + 1] for card in cards if "<table" in card]
    assert len(with_tables) >= 2  # its items and payments, at least
    assert all('tabindex="0"' in tag for tag in with_tables), with_tables


async def test_every_focusable_element_of_the_live_part_has_an_id_the_refresh_keeps_focus_by(
    browser: Browser,
) -> None:
    # htmx puts the focus back on the element of the same id after a swap: without ids the
    # refresh every 5 s dropped a keyboard user's focus to the page's top
    await paid_order(browser)
    await browser.order_form("cancel")  # an order awaiting payment, listed in the live part
    _, live = await browser.page("/admin/live")

    focusable = re.findall(r"<(?:a|section|div)\b[^>]*(?:href=|tabindex=)[^>]*>", live)
    ids = [re.search(r'\bid="([^"]+)"', tag) for tag in focusable]
    without = [tag for tag, found in zip(focusable, ids, strict=True) if found is None]
    assert len(focusable) >= 5 and without == []
    named = [found.group(1) for found in ids if found]
    assert len(named) == len(set(named))


async def test_a_chart_tells_a_screen_reader_its_hour_in_words(browser: Browser) -> None:
    # its minutes were only in <title>s, which an image's reader does not read
    made = await browser.shop.create_user("ann", balance=0)
    tea = await browser.shop.create_goods("tea", price=500, stock=9)
    for _ in range(3):
        await browser.shop.place_order(made.user.id, [(tea.id, 1)])
    await browser.sign_in()

    _, live = await browser.page("/admin/live")

    [said] = re.findall(r'aria-label="(orders per minute[^"]*)"', live)
    assert said.startswith("orders per minute, the last hour: 3 in all, the most 3 at ")
    assert said.endswith(", 3 in the last minute")


async def test_an_unpaid_order_may_only_be_canceled_and_a_canceled_one_not_at_all(
    browser: Browser,
) -> None:
    order, path, _ = await browser.order_form("cancel")
    unpaid = buttons_of((await browser.page(path))[1])
    await browser.shop.cancel_order(order.id, by="admin")
    canceled = buttons_of((await browser.page(path))[1])

    assert (unpaid, canceled) == (["Cancel"], [])


async def test_an_order_shipped_from_another_tab_is_said_to_be_shipped_already(
    browser: Browser,
) -> None:
    order = await paid_order(browser)
    await browser.sign_in()
    path = f"/admin/orders/{order.id}"
    stale = await browser.form_fields(path, f"{path}/ship")

    first = await notice_after(browser, path, f"{path}/ship")
    await browser.send(f"{path}/ship", stale)
    second = (await browser.page(path))[1]

    assert f"Order {order.id} is shipped." in first
    assert f"Order {order.id} was shipped already: nothing was done." in second


async def test_a_cancel_sent_after_the_deadline_says_the_order_was_canceled_by_it(
    browser: Browser,
) -> None:
    order, path, stale = await browser.order_form("cancel")
    for _ in range(4):  # past the deadline, the session kept alive (30 min idle ends it)
        await browser.clock.advance(browser.shop.config.order_timeout_s / 4 + 1)
        await browser.page("/admin")

    await browser.send(f"{path}/cancel", stale)
    page = (await browser.page(path))[1]

    assert f"Order {order.id} was canceled (timeout) already: nothing was done." in page
    assert (await browser.shop.get_order(order.id)).cancel_reason == "timeout"


async def return_asked(browser: Browser) -> tuple[OrderView, ReturnView]:
    """Ann's paid order, delivered, and the return she asked for; the console signed in."""
    shop = browser.shop
    order = await paid_order(browser)
    await shop.ship(order.id)
    await shop.deliver(order.id)
    asked = await shop.request_return(order.id, "too big", user_id=order.user_id)
    await browser.sign_in()
    return order, asked


async def test_a_return_approved_through_the_api_is_said_to_be_approved_already(
    browser: Browser,
) -> None:
    shop = browser.shop
    order, asked = await return_asked(browser)
    path = f"/admin/orders/{order.id}"
    stale = await browser.form_fields(path, f"/admin/returns/{asked.id}/approve")
    await shop.approve_return(asked.id)

    _, back = await browser.send(f"/admin/returns/{asked.id}/approve", stale)
    page = (await browser.page(back))[1]

    assert f"Return {asked.id} of order {order.id} was approved already" in page


async def test_a_cancel_from_a_page_that_showed_the_order_unpaid_refunds_nothing_once_paid(
    browser: Browser,
) -> None:
    order, path, stale = await browser.order_form("cancel")
    payment = (await browser.shop.start_payment(order.id)).payment
    assert await sandbox(browser.shop).complete(payment.id, order.id, payment.amount, "succeeded")

    await browser.send(f"{path}/cancel", stale)
    page = (await browser.page(path))[1]

    assert (f"Order {order.id} is paid now, not awaiting payment as the page showed: nothing "
            "was done.") in page
    assert (await browser.shop.get_order(order.id)).status == "paid"
    assert (await browser.shop.refunds(order.id)).items == []


async def test_two_staff_canceling_one_paid_order_at_once_are_told_that_one_of_them_did(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = await paid_order(browser)
    await browser.sign_in()
    path = f"/admin/orders/{order.id}"
    forms = [await browser.form_fields(path, f"{path}/cancel") for _ in range(2)]
    read = browser.shop.get_order

    async def read_slowly(order_id: int, **kwargs: Any) -> OrderView:
        # the other form's turn comes between this one's look at the order and its cancel
        found = await read(order_id, **kwargs)
        for _ in range(50):
            await asyncio.sleep(0)
        return found

    monkeypatch.setattr(browser.shop, "get_order", read_slowly)

    with capture_logs() as logs:
        await asyncio.gather(*(browser.send(f"{path}/cancel", form) for form in forms))

    done = sorted(e["done"] for e in logs if e["event"] == "console_action")
    assert done == [False, True]  # one canceled it, the other was told it was canceled already
    assert len((await browser.shop.refunds(order.id)).items) == 1


async def test_a_cancel_from_a_page_that_showed_the_order_unpaid_refunds_no_payment_made_meanwhile(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the form looked (unpaid, as its page showed), then canceled: a payment between the two
    # was canceled and refunded, and the notice said only "is canceled"
    order, path, form = await browser.order_form("cancel")
    shop = browser.shop
    payment = (await shop.start_payment(order.id)).payment
    read = shop.get_order

    async def read_then_paid(order_id: int, **kwargs: Any) -> OrderView:
        found = await read(order_id, **kwargs)
        assert await sandbox(shop).complete(payment.id, order.id, payment.amount, "succeeded")
        return found

    monkeypatch.setattr(shop, "get_order", read_then_paid)
    await browser.send(f"{path}/cancel", form)
    monkeypatch.setattr(shop, "get_order", read)
    page = (await browser.page(path))[1]

    assert (await shop.get_order(order.id)).status == "paid"
    assert (await shop.refunds(order.id)).items == []
    assert f"order {order.id} is paid, not awaiting_payment: not canceled" in page


async def test_an_orders_form_that_does_not_say_what_its_page_showed_does_nothing(
    browser: Browser,
) -> None:
    order, path, form = await browser.order_form("cancel")
    del form["shown"]  # a form of no page of the console's

    await browser.send(f"{path}/cancel", form)
    page = (await browser.page(path))[1]

    assert f"The form did not say what order {order.id} was on its page: nothing" in page
    assert (await browser.shop.get_order(order.id)).status == "awaiting_payment"


async def test_two_staff_approving_one_return_at_once_are_told_that_one_of_them_did(
    browser: Browser,
) -> None:
    order, asked = await return_asked(browser)
    path = f"/admin/orders/{order.id}"
    action = f"/admin/returns/{asked.id}/approve"
    forms = [await browser.form_fields(path, action) for _ in range(2)]

    with capture_logs() as logs:
        await asyncio.gather(*(browser.send(action, form) for form in forms))

    done = sorted(e["done"] for e in logs if e["event"] == "console_action")
    assert done == [False, True]  # the staff's trail: one approved it, the other did nothing
    assert len((await browser.shop.refunds(order.id)).items) == 1


async def test_a_name_that_turns_text_around_is_isolated_in_a_forms_notice(
    browser: Browser,
) -> None:
    tea = await browser.shop.create_goods("rtl \u202eunclosed", price=100, stock=3)
    await browser.sign_in()
    path = f"/admin/goods/{tea.id}"

    page = await notice_after(browser, path, path, restock="1")

    assert "\u2068rtl \ufffdunclosed\u2069: price 1.00, 4 in stock." in page


async def test_a_name_closing_its_own_isolate_turns_no_words_around(browser: Browser) -> None:
    # a U+2069 of the name's own closed the isolate around it, and the override after it
    # turned the page's words, and the user's id, around
    made = await browser.shop.create_user("\u2069\u202emallory")
    tea = await browser.shop.create_goods("\u2069\u202eevil", price=100, stock=3)
    await browser.sign_in()

    _, user_page = await browser.page(f"/admin/users/{made.user.id}")
    path = f"/admin/goods/{tea.id}"
    notice = await notice_after(browser, path, path, restock="1")

    assert f"<bdi>\ufffd\ufffdmallory</bdi> <small>user {made.user.id}" in user_page
    assert "<title>\u2068\ufffd\ufffdmallory\u2069" in user_page
    assert "\u2068\ufffd\ufffdevil\u2069: price 1.00, 4 in stock." in notice


async def test_a_price_from_a_page_that_showed_another_changes_nothing(browser: Browser) -> None:
    # two staff on one goods' page: the second's price overwrote the first's without a word
    tea = await browser.shop.create_goods("tea", price=1_200, stock=40)
    await browser.sign_in()
    path = f"/admin/goods/{tea.id}"
    forms = [await browser.form_fields(path, path) for _ in range(2)]

    await browser.send(path, {**forms[0], "price": "20", "restock": "5"})
    await browser.send(path, {**forms[1], "price": "13", "restock": "5"})
    page = (await browser.page(path))[1]

    goods = await browser.shop.get_goods(tea.id)
    assert (goods.price, goods.stock) == (2_000, 45)  # the second form did nothing at all
    assert "price is 20.00 now, not 12.00 as the page showed: nothing was done" in page
    stale = {**await browser.form_fields(path, path), "shown": "1200"}
    await browser.send(path, {**stale, "restock": "5"})  # units to add, no price: taken
    assert (await browser.shop.get_goods(tea.id)).stock == 50


async def test_the_coupon_form_lists_every_problem_and_issues_nothing(browser: Browser) -> None:
    made = await browser.shop.create_user("ann")
    await browser.sign_in()

    page = await notice_after(
        browser, "/admin/coupons", "/admin/coupons",
        user_id=str(made.user.id), value="abc", min_order_amount="-1", expires_at="x",
    )  # fmt: skip

    assert "value is not an amount" in page
    assert "min_order_amount must be between 0.00 and" in page
    assert "expires_at is not a time" in page
    assert (await browser.shop.list_coupons(made.user.id)).items == []


async def test_a_refused_form_comes_back_filled_as_it_was_typed_once(browser: Browser) -> None:
    # every field came back empty, the good ones too: a coupon's minimum and expiry typed
    # again to correct its value
    made = await browser.shop.create_user("ann")
    tea = await browser.shop.create_goods("tea", price=100, stock=3)
    await browser.sign_in()
    typed = {"value": "5,00", "min_order_amount": "20", "expires_at": "2027-01-31T12:00Z"}

    coupons = await notice_after(
        browser, "/admin/coupons", "/admin/coupons", user_id=str(made.user.id), **typed
    )
    goods = await notice_after(
        browser, f"/admin/goods/{tea.id}", f"/admin/goods/{tea.id}", price="12.345", restock="5"
    )
    _, shown_again = await browser.page(f"/admin/goods/{tea.id}")

    off = 'autocomplete="off" inputmode'
    assert f'name="value" {off}="decimal" placeholder="5.00" value="5,00"' in coupons
    assert f'name="min_order_amount" {off}="decimal" placeholder="0.00" value="20"' in coupons
    assert '<input name="expires_at" placeholder="2026-12-31" value="2027-01-31T12:00Z">' in coupons
    assert 'value="12.345"' in goods and f'name="restock" {off}="numeric" value="5"' in goods
    assert 'value="12.345"' not in shown_again  # once: the next page is as it is


async def test_the_goods_form_lists_every_problem_and_changes_nothing(browser: Browser) -> None:
    tea = await browser.shop.create_goods("tea", price=100, stock=3)
    await browser.sign_in()
    path = f"/admin/goods/{tea.id}"

    page = await notice_after(browser, path, path, price="abc", restock="abc")

    assert "price is not an amount" in page and "restock is not a whole number" in page
    assert await browser.shop.get_goods(tea.id) == tea


@pytest.mark.parametrize(("restock", "said"), [
    ("-5", "restock cannot be negative"),  # both said "not a whole number"
    ("99999999999999999999", "restock is too large"),
])
async def test_the_goods_form_says_why_a_whole_number_is_refused(
    browser: Browser, restock: str, said: str
) -> None:
    tea = await browser.shop.create_goods("tea", price=100, stock=3)
    await browser.sign_in()
    path = f"/admin/goods/{tea.id}"

    page = await notice_after(browser, path, path, restock=restock)

    assert said in page
    assert await browser.shop.get_goods(tea.id) == tea


async def test_an_orders_time_as_shown_typed_back_as_since_lists_that_order(
    browser: Browser,
) -> None:
    made = await browser.shop.create_user("ann", balance=0)
    tea = await browser.shop.create_goods("tea", price=500, stock=3)
    now = browser.clock.now()
    await browser.clock.advance(1 - now % 1 + 0.6419816)
    order = await browser.shop.place_order(made.user.id, [(tea.id, 1)])
    shown = round(order.created_at, 6)
    assert shown > order.created_at  # what makes it a test: the float shown is above
    await browser.sign_in()

    at = f"{datetime.fromtimestamp(shown, UTC):%Y-%m-%dT%H:%M:%S.%f}Z"
    _, listed = await browser.page(f"/admin/orders?since={at}&until={at}")

    assert f"/admin/orders/{order.id}" in listed


async def test_the_filter_form_keeps_every_time_it_filtered_by_for_the_next_filtering(
    browser: Browser,
) -> None:
    # a datetime-local input shows a day alone, or a time with "Z", empty: filtering again
    # sent since= and until=, and the list widened without a word; the inputs are text
    await browser.sign_in()
    _, html = await browser.page("/admin/orders?since=2026-12-06&until=2026-12-06T23:59Z")
    _, seconds = await browser.page("/admin/orders?until=2026-12-06T10:30:00")

    field = r'<input name="(since|until)"( type="[\w-]+")? placeholder="[^"]*" value="([^"]*)"'
    inputs = re.findall(field, html)
    assert inputs == [("since", "", "2026-12-06"), ("until", "", "2026-12-06T23:59Z")]
    assert re.findall(field, seconds) == [("since", "", ""), ("until", "", "2026-12-06T10:30:00")]


async def test_a_time_in_utc_written_with_a_small_z_is_taken(browser: Browser) -> None:
    made = await browser.shop.create_user("ann", balance=0)
    tea = await browser.shop.create_goods("tea", price=500, stock=3)
    order = await browser.shop.place_order(made.user.id, [(tea.id, 1)])
    await browser.sign_in()

    at = f"{datetime.fromtimestamp(order.created_at, UTC):%Y-%m-%dT%H:%M:%S}z"
    status, listed = await browser.page(f"/admin/orders?until={at}")

    assert status == 200 and f"/admin/orders/{order.id}" in listed


async def test_a_coupon_for_an_id_past_64_bits_comes_back_to_the_form_saying_not_found(
    browser: Browser,
) -> None:
    await browser.sign_in()

    page = await notice_after(
        browser, "/admin/coupons", "/admin/coupons", user_id="9999999999999999999", value="5"
    )

    assert 'action="/admin/coupons"' in page
    assert "user 9999999999999999999 does not exist" in page


async def test_a_coupon_for_a_user_who_does_not_exist_comes_back_filled_to_correct_once(
    browser: Browser,
) -> None:
    # it led to that user's coupons page, a 404 with no form, and the typed fields turned up
    # later on another user's coupons page
    bob = (await browser.shop.create_user("bob")).user.id
    await browser.sign_in()

    page = await notice_after(
        browser, "/admin/coupons", "/admin/coupons", user_id="999998", value="7"
    )
    _, bobs = await browser.page(f"/admin/coupons?user={bob}")

    assert "user 999998 does not exist" in page
    assert 'name="user_id" inputmode="numeric" value="999998"' in page and 'value="7"' in page
    assert "999998" not in bobs and 'value="7"' not in bobs


async def test_the_coupons_of_a_user_who_does_not_exist_are_not_found(browser: Browser) -> None:
    await browser.sign_in()

    status, page = await browser.page("/admin/coupons?user=12345")

    assert status == 404 and "user 12345 does not exist" in page


async def test_a_return_reason_that_turns_text_around_turns_none_of_the_orders_page(
    browser: Browser,
) -> None:
    # a customer's reason with a right-to-left override turned the history's words after it
    order = await paid_order(browser)
    await browser.shop.ship(order.id)
    await browser.shop.deliver(order.id)
    await browser.shop.request_return(order.id, "broken \u202eesrever")
    await browser.sign_in()

    _, page = await browser.page(f"/admin/orders/{order.id}")

    assert "broken \ufffdesrever" in page
    assert "\u202e" not in page


async def test_a_dead_letter_discarded_from_another_tab_is_said_to_be_gone_not_missing(
    browser: Browser,
) -> None:
    letter_id = await park(browser.shop, b"kept")
    await browser.sign_in()
    path = f"/admin/dead-letters/{letter_id}"
    page = (await browser.page(path))[1]
    stale = await browser.form_fields(path, f"{path}/discard")

    first = await notice_after(browser, path, f"{path}/discard")
    with capture_logs() as logs:
        status, back = await browser.send(f"{path}/discard", stale)
    second = (await browser.page(back))[1]

    assert 'data-confirm="Discard dead letter' in page  # it cannot be undone
    assert f"Dead letter {letter_id} was discarded." in first
    assert status == 303  # it said "Not found (not_found)"
    assert (f"Dead letter {letter_id} is not there (sent again or discarded "
            "meanwhile?): nothing was done.") in second
    [action] = [e for e in logs if e["event"] == "console_action"]
    assert action["done"] is False  # the staff's trail says so too


async def test_a_dead_letter_whose_message_no_longer_decodes_is_refused_on_its_page(
    browser: Browser,
) -> None:
    letter_id = await park(browser.shop, b"x")  # a message of no kind this version knows
    await browser.sign_in()
    path = f"/admin/dead-letters/{letter_id}"
    form = await browser.form_fields(path, f"{path}/retry")

    status, back = await browser.send(f"{path}/retry", form)
    page = (await browser.page(back))[1]

    assert status == 303  # a page of the console, not the API's problem+json
    assert f"dead letter {letter_id} cannot be sent again: discard it" in page
    assert (await browser.shop.dead_letter(letter_id)).id == letter_id  # kept, to discard


async def test_an_orders_page_names_the_transaction_the_provider_collected_its_payment_by(
    browser: Browser,
) -> None:
    # what the staff look up in the provider's dashboard before settling a refund by hand
    order = await paid_order(browser)
    [payment] = await browser.shop.payments(order.id)
    await browser.sign_in()

    page = (await browser.page(f"/admin/orders/{order.id}"))[1]

    assert payment.gateway_txn_id
    assert f"<td>{payment.gateway_txn_id}</td>" in page


async def test_an_orders_page_pages_on_through_a_history_and_refunds_longer_than_it_shows(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a provider that collected a payment 205 times gave an order 417 entries: its page
    # showed the first 200 and nothing more, the admin's own cancel never among them
    monkeypatch.setattr(pages, "ORDER_ENTRIES_A_PAGE", 2)
    order = await paid_order(browser)
    shop = browser.shop
    [payment] = await shop.payments(order.id)
    assert await sandbox(shop).complete(payment.id, order.id, payment.amount, "succeeded", "again")
    await shop.cancel_order(order.id)
    await browser.sign_in()

    seen_entries, seen_refunds, path = [], [], f"/admin/orders/{order.id}"
    for _ in range(10):  # an order of a handful of entries: a few pages
        html = (await browser.page(path))[1]
        seen_entries += re.findall(r"<li><time>[^<]*</time> <strong>([^<]+)</strong>", html)
        later = re.search(r'href="(\?history=[0-9]+)"', html)
        if later is None:
            break
        path = f"/admin/orders/{order.id}{later[1]}"
    path = f"/admin/orders/{order.id}"
    for _ in range(10):
        html = (await browser.page(path))[1]
        refunds_card = html[html.index("<h2>Refunds</h2>"):]
        seen_refunds += re.findall(r"<tr><td>([0-9]+)</td><td><a id=\"refund-", refunds_card)
        later = re.search(r'href="(\?refunds=[0-9]+)"', html)
        if later is None:
            break
        path = f"/admin/orders/{order.id}{later[1]}"

    history = (await shop.order_history(order.id)).items
    refunds = (await shop.refunds(order.id)).items
    assert len(history) > 2 and len(refunds) == 2  # more of each than a page shows
    assert seen_entries == [entry.operation.replace("_", " ") for entry in history]
    assert seen_refunds == [str(refund.id) for refund in refunds]


def test_a_lists_links_page_it_on_and_back_keeping_where_the_pages_other_lists_are() -> None:
    # "Later entries" dropped the refunds' cursor, and no link led back to the first page
    assert pages.list_links("history", {"history": None, "refunds": "7"}, "12") == (
        "?refunds=7&history=12", None,
    )
    assert pages.list_links("refunds", {"history": "12", "refunds": "7"}, "9") == (
        "?history=12&refunds=9", "?history=12",
    )
    assert pages.list_links("history", {"history": "12", "refunds": None}, None) == (None, "?")


async def test_a_users_page_shows_why_their_wallet_and_points_are_what_they_are(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # only the balances were shown: why one changed took SQL
    monkeypatch.setattr(pages, "LEDGER_ENTRIES_A_PAGE", 2)
    shop = browser.shop
    made = await shop.create_user("ann", balance=1_000)
    tea = await shop.create_goods("tea", price=500, stock=3)
    order = await shop.place_order(made.user.id, [(tea.id, 1)], use_balance=300)
    payment = (await shop.start_payment(order.id)).payment
    assert await sandbox(shop).complete(payment.id, order.id, payment.amount, "succeeded")
    await shop.credit_wallet(made.user.id, 250)
    await browser.sign_in()

    def rows_of(html: str, title: str) -> list[tuple[str, str, str]]:
        card = html[html.index(f"<h2>{title}</h2>") :]
        card = card[: card.index("</section>")]
        return re.findall(
            r"<tr><td>[^<]+</td><td>([^<]+)</td><td>(?:<a [^>]+>)?([^<]+)(?:</a>)?</td>"
            r'<td class="num">([^<]+)</td></tr>', card,
        )

    path = f"/admin/users/{made.user.id}"
    first = (await browser.page(path))[1]
    older = re.search(r'href="(\?wallet=[0-9]+)"', first)
    assert older is not None and "?points=" not in first  # one award: one page of points
    second = (await browser.page(path + older[1]))[1]
    wallet = rows_of(first, "Wallet ledger") + rows_of(second, "Wallet ledger")
    points = rows_of(first, "Points ledger")

    user = await shop.get_user(made.user.id)
    assert wallet == [  # newest first, a page of two then the next
        ("credit", "–", "+2.50"), ("order debit", str(order.id), "-3.00"),
        ("opening", "–", "+10.00"),
    ]
    assert user.balance == 1_000 - 300 + 250
    assert points == [("award", str(order.id), f"+{user.points}")]
