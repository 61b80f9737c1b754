"""A refund the provider failed is shown with its reason on the refunds page, and settled there
by hand once the staff paid it back another way; the dashboard points to that page instead of
holding a form its polling would wipe."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from shopkeep.actors.refund_store import PROVIDER_FAILED_SQL, REFUND_LOG_SQL, TRIED_AGAIN
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.shop import Shop
from tests.admin.conftest import Browser


async def refund_in_flight(shop: Shop, use_balance: int = 0) -> tuple[int, int]:
    """A paid order (``use_balance`` of it from ann's wallet) canceled, its refund's tries
    failing (the provider down): (order id, refund id)."""
    assert isinstance(shop.gateway, SandboxGateway)
    shop.gateway.refunds_failing = True  # in flight, and the clock never moves to retry it
    tea = await shop.create_goods("tea", price=100, stock=10)
    user = (await shop.create_user("ann", balance=use_balance)).user.id
    order = await shop.place_order(user, [(tea.id, 1)], use_balance=use_balance)
    payment = (await shop.start_payment(order.id)).payment
    await shop.gateway.complete(payment.id, order.id, payment.amount, "succeeded")
    await shop.runtime.system.quiet()
    await shop.cancel_order(order.id)
    await shop.runtime.system.quiet()
    [refund] = (await shop.refunds(order.id)).items
    return order.id, refund.id


async def refund_the_provider_failed(
    shop: Shop, reason: str = "expired_or_canceled_card", use_balance: int = 0,
    *, refused: bool = False,
) -> tuple[int, int]:
    """A paid order canceled, its refund failed by the provider (by default "the card is
    gone"), or ``refused`` (tried again), as the refunder records it: (order id, refund id)."""
    order_id, refund_id = await refund_in_flight(shop, use_balance)
    event = TRIED_AGAIN if refused else "provider_failed"
    with closing(sqlite3.connect(shop.runtime.store.config.path)) as conn, conn:
        conn.execute(PROVIDER_FAILED_SQL, (reason, refund_id))
        conn.execute(REFUND_LOG_SQL, (refund_id, event, reason, shop.system.clock.now()))
    return order_id, refund_id


async def test_the_refunds_page_settles_a_refund_the_provider_failed(browser: Browser) -> None:
    order_id, refund_id = await refund_the_provider_failed(browser.shop)
    await browser.sign_in()
    path, action = "/admin/refunds", f"/admin/refunds/{refund_id}/settle"
    said = "The provider failed its gateway part, 11.00 (expired_or_canceled_card): it is not sent"
    assert said in (await browser.page(path))[1]
    fields = await browser.form_fields(path, action)

    answered = await browser.send(action, {**fields, "note": "bank transfer, ref 4411"})

    assert answered == (303, path)
    html = (await browser.page(path))[1]
    assert f"Refund {refund_id} of order {order_id} is refunded." in html
    assert "Every refund is paid back." in html
    [refund] = (await browser.shop.refunds(order_id)).items
    assert refund.status == "refunded"


async def test_a_refund_settled_in_another_tab_is_said_to_be_refunded_already(
    browser: Browser,
) -> None:
    order_id, refund_id = await refund_the_provider_failed(browser.shop)
    await browser.sign_in()
    path, action = "/admin/refunds", f"/admin/refunds/{refund_id}/settle"
    stale = await browser.form_fields(path, action)
    fresh = await browser.form_fields(path, action)

    await browser.send(action, {**fresh, "note": "bank transfer"})
    await browser.send(action, {**stale, "note": "cash at the counter"})

    html = (await browser.page(path))[1]
    said = f"Refund {refund_id} of order {order_id} was refunded already: nothing was done."
    assert said in html
    assert "Invalid state" not in html


async def test_a_providers_words_that_turn_text_around_turn_none_of_the_pages(
    browser: Browser,
) -> None:
    # a right-to-left override in what the provider said turned the console's own sentence
    # after it around ("...once it is paid back another way" read backwards)
    await refund_the_provider_failed(browser.shop, reason="no \u202eesrever")
    await browser.sign_in()

    html = (await browser.page("/admin/refunds"))[1]

    assert "no \ufffdesrever" in html
    assert "\u202e" not in html


async def test_a_settling_form_without_a_note_changes_nothing(browser: Browser) -> None:
    order_id, refund_id = await refund_the_provider_failed(browser.shop)
    await browser.sign_in()
    path, action = "/admin/refunds", f"/admin/refunds/{refund_id}/settle"
    fields = await browser.form_fields(path, action)

    await browser.send(action, {**fields, "note": "  "})

    assert "a note says how it was paid back" in (await browser.page(path))[1]
    [refund] = (await browser.shop.refunds(order_id)).items
    assert refund.status == "refunding"


async def test_a_failed_refunds_wallet_part_is_said_to_be_back_and_settling_keeps_it_once(
    browser: Browser,
) -> None:
    order_id, refund_id = await refund_the_provider_failed(browser.shop, use_balance=300)
    user_id = (await browser.shop.get_order(order_id)).user_id
    await browser.sign_in()
    path, action = "/admin/refunds", f"/admin/refunds/{refund_id}/settle"
    page = (await browser.page(path))[1]
    assert "its gateway part, 8.00" in page
    assert "its wallet part, 3.00, is back in the wallet already" in page
    fields = await browser.form_fields(path, action)

    await browser.send(action, {**fields, "note": "bank transfer, ref 4412"})

    assert (await browser.shop.get_user(user_id)).balance == 300


async def test_the_dashboard_points_to_the_refunds_page_for_a_failed_refund(
    browser: Browser,
) -> None:
    _, refund_id = await refund_the_provider_failed(browser.shop)
    await browser.sign_in()

    live = (await browser.page("/admin/live"))[1]

    said = "The provider failed its gateway part, 11.00 (expired_or_canceled_card): it is not sent"
    assert said in live
    assert f"/admin/refunds/{refund_id}/settle" not in live


async def test_a_refund_in_flight_shows_the_last_word_of_its_log(browser: Browser) -> None:
    # "refunding", and nothing else: why, and what comes next, only the refund_log table said
    _, refund_id = await refund_in_flight(browser.shop)
    await browser.sign_in()

    html = (await browser.page("/admin/refunds"))[1]

    row = html[html.index(f"<td>{refund_id}</td>") :]
    said = row[row.index('<tr class="said">') : row.index("</tr>", row.index('class="said"'))]
    assert "Last word, " in said and "try 1: " in said and "again in " in said


async def test_a_refund_the_provider_refused_is_said_to_be_sent_again_until_it_is_settled(
    browser: Browser,
) -> None:
    # one sentence said "failed or refused" of both, and the staff could not tell which
    await refund_the_provider_failed(browser.shop, "NOT_ENOUGH", refused=True)
    await browser.sign_in()

    page = (await browser.page("/admin/refunds"))[1]

    assert ("The provider refused its gateway part, 11.00 (NOT_ENOUGH): it is sent again, more "
            "and more seldom, until the provider takes it") in page


async def test_an_orders_page_says_its_refund_the_provider_failed_waits_for_the_staff(
    browser: Browser,
) -> None:
    # the order's page showed it "refunding" alone: staff arriving from a customer's
    # complaint were not told the provider will not pay it, nor where to settle it
    order_id, _ = await refund_the_provider_failed(browser.shop)
    await browser.sign_in()

    html = (await browser.page(f"/admin/orders/{order_id}"))[1]

    said = "The provider failed its gateway part, 11.00 (expired_or_canceled_card): it is not sent"
    assert said in html
    assert 'href="/admin/refunds">the refunds page</a>' in html  # settled there, not here
