"""The console's pages (GET): each reads through the shop's embedded API and renders a template.

No page writes anything; the forms on them post to :mod:`shopkeep.admin.actions`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from shopkeep.actors.order_messages import OrderView
from shopkeep.actors.order_state import CANCELED, DELIVERED, SHIPPED, STATUSES, TRANSITIONS
from shopkeep.admin import dashboard
from shopkeep.admin.app import LIVE, PREFIX, SESSION, SIGN_IN, console_of
from shopkeep.admin.formatting import explain
from shopkeep.back_office import check_status
from shopkeep.errors import ShopError
from shopkeep.paging import Page, page_bounds
from shopkeep.refusals import NOT_FOUND, VALIDATION_ERROR
from shopkeep.requests import (
    LATEST_TIME,
    MAX_ID,
    OUTSIDE_YEARS,
    Problems,
    in_the_years,
    refused_parameter,
)
from shopkeep.shop import Shop

routes = web.RouteTableDef()
ID = "{id:[0-9]{1,19}}"
"""A path's id: digits, at most 64 bits' worth (a longer one is no route: 404)."""


def render(
    request: web.Request,
    template: str,
    *,
    fragment: bool = False,
    status: int = 200,
    **values: Any,
) -> web.Response:
    """``template`` with ``values`` and what every page shows (the session's CSRF token and
    notices, the time), answered with ``status``. A ``fragment`` of a page (htmx's polling)
    shows no notices, so it leaves them for the page a form leads to."""
    session = request.get(SESSION)
    values.setdefault("now", console_of(request).shop.system.clock.now())
    values["session"] = session
    values["csrf"] = "" if session is None else session.csrf
    values["notices"] = [] if session is None or fragment else session.take_notices(request.path)
    values["typed"] = {} if session is None or fragment else session.take_typed(request.path)
    values["path"] = request.path
    return aiohttp_jinja2.render_template(template, request, values, status=status)


def shop_of(request: web.Request) -> Shop:
    """The shop the console shows."""
    return console_of(request).shop


def whole_id(request: web.Request) -> int:
    """The path's id; ShopError not_found past 64 bits (nineteen digits may be), as the API
    answers an id no int64 can be."""
    number = int(request.match_info["id"])
    if number > MAX_ID:
        raise ShopError(NOT_FOUND, f"{number} names nothing: no id is that large")
    return number


@routes.get(SIGN_IN.removeprefix(PREFIX))
async def sign_in_page(request: web.Request) -> web.StreamResponse:
    """The sign-in form (a signed-in browser goes to the dashboard)."""
    if SESSION in request:
        raise web.HTTPSeeOther(PREFIX)
    return render(request, "sign_in.html", problem=None)


@routes.get("")
async def dashboard_page(request: web.Request) -> web.StreamResponse:
    """The dashboard, whose live part refreshes itself (``/admin/live``)."""
    return render(request, "dashboard.html", **await dashboard.live(console_of(request)))


@routes.get("/")
async def slash(request: web.Request) -> web.StreamResponse:
    """``/admin/`` is the dashboard's address with a slash."""
    raise web.HTTPSeeOther(PREFIX)


@routes.get(LIVE.removeprefix(PREFIX))
async def live_fragment(request: web.Request) -> web.StreamResponse:
    """The dashboard's live part alone, for htmx's polling."""
    live = await dashboard.live(console_of(request))
    return render(request, "_live.html", fragment=True, **live)


def whole_text(text: str) -> int | None:
    """``text`` as a whole number of at most 19 digits, or None: ASCII digits only, since
    ``str.isdigit`` also takes ``²`` (which ``int`` refuses) and ``١`` (which it reads as 1),
    and the API takes neither."""
    if text.isascii() and text.isdigit() and len(text) <= 19:
        return int(text)
    return None


LAST_INSTANT_S = 1e-6
"""The orders' times are kept to the microsecond: a span's last instant is this before its end."""


def _time(request: web.Request, name: str, *, to_its_end: bool = False) -> float | None:
    """A query's time (``2026-12-02T16:30``, UTC, as a datetime-local input sends it); with
    ``to_its_end``, a time names the last instant of what it was given to: a day, an hour, a
    minute or a second (a bound "until 16:30" takes what was made at 16:30:37)."""
    text = request.query.get(name, "").strip()
    if not text:
        return None
    try:
        when = time_in_years(text)
    except ValueError as refused:
        detail = refused.args[0] if isinstance(refused, OutsideYears) else (
            "not a time like 2026-12-02T16:30"
        )
        raise refused_parameter(name, f"{name} is {detail}") from None
    span = span_named(text)
    if to_its_end and span:
        when += span - LAST_INSTANT_S
    # the API's times end at 9999's last whole second: its last fraction of a second too
    return min(when, LATEST_TIME)


class OutsideYears(ValueError):
    """A typed time outside the years the API's times take; its one argument says so."""


def time_in_years(text: str) -> float:
    """A typed time (:func:`typed_time`) in the years the API's times take, 1 to 9999 in UTC,
    at or before :data:`LATEST_TIME` (9999's last fraction of a second is its last whole
    second, and a float rounds its last microsecond up to the second after it); ValueError
    for no time, OutsideYears for one an offset took outside those years."""
    taken = in_the_years(typed_time(text))
    if taken is None:
        raise OutsideYears(OUTSIDE_YEARS)
    return taken


DAY_S: Final = 86_400.0
"""What a day alone names (:func:`span_named`)."""


def span_named(text: str) -> float:
    """How long the time ``text`` names, in seconds: a day (``2026-12-02``), an hour, a minute,
    a second (``16:30:37``), or an instant (0: a fraction of a second)."""
    written = text.upper()  # ISO 8601 takes a "t" and a "z" as well
    date_and_clock = written.replace(" ", "T", 1) if "T" not in written else written
    _, given, clock = date_and_clock.partition("T")
    if not given:
        return DAY_S
    clock = re.split(r"[Z+-]", clock, maxsplit=1)[0]  # its offset, if any, apart
    if "." in clock or "," in clock:
        return 0.0
    return (3_600.0, 60.0, 1.0)[min(clock.count(":"), 2)]


_EXTENDED_TIME: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([Tt ][0-9]{2}(:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?"
)
"""ISO 8601's extended form, which :func:`span_named` reads: ``fromisoformat`` takes the
basic form too (``20261205T2229``, a minute it would take for an hour), a comma fraction
(``T22,5``, half an hour it reads as half a second) and a day with an offset
(``2026-12-02+08:00``, read as 08:00 of that day in UTC): an offset comes after a time."""


def typed_time(text: str) -> float:
    """A time as a datetime-local input sends it (``2026-12-02T16:30``: UTC, as the console
    shows times), or with an offset of its own, in Unix seconds; ValueError for no time, or
    one not in ISO 8601's extended form."""
    if _EXTENDED_TIME.fullmatch(text) is None:
        raise ValueError(f"{text[:40]!r} is not YYYY-MM-DDTHH:MM[:SS] (and an offset, or Z)")
    when = datetime.fromisoformat(text.upper())  # Python 3.11's takes a "t", not a "z"
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC).timestamp()
    return when.timestamp()


def _number(request: web.Request, name: str) -> int | None:
    text = request.query.get(name, "").strip()
    if not text:
        return None
    number = whole_text(text)
    if number is None or number > MAX_ID:
        raise refused_parameter(name, f"{name} is not an id")
    return number


ORDERS_A_PAGE: Final = 50
ORDER_FILTERS: Final = ("status", "user", "since", "until")
"""The query parameters the orders page filters by."""


@routes.get("/orders")
async def orders_page(request: web.Request) -> web.StreamResponse:
    """Orders, newest first, filtered by status, user and time of creation, a page at a time.
    A filter that is none (a user id that is no number, a time that is none) is said above
    the filter form, filled as it was typed to be corrected, and lists no order (422)."""
    # the next page's link carries the filters this page used, and nothing else it was sent
    filters = {name: value for name in ORDER_FILTERS if (value := request.query.get(name))}
    status = request.query.get("status") or None
    try:
        with Problems() as each:  # every filter that is none, at once, as the API lists them
            user_id = each(_number, request, "user")
            since = each(_time, request, "since")
            until = each(_time, request, "until", to_its_end=True)
            each(check_status, status)
            cursor = request.query.get("cursor") or None
            each(page_bounds, ORDERS_A_PAGE, cursor)  # a cursor that is none, with the rest
        page = await shop_of(request).find_orders(
            status=status, user_id=user_id, since=since, until=until, limit=ORDERS_A_PAGE,
            cursor=cursor,
        )
    except ShopError as refused:
        if refused.code != VALIDATION_ERROR:
            raise
        request[SESSION].notify(request.path, "error", explain(refused))
        return render(request, "orders.html", status=422, page=NO_ORDERS, statuses=STATUSES,
                      filters=filters)  # fmt: skip
    return render(request, "orders.html", page=page, statuses=STATUSES, filters=filters)


NO_ORDERS: Final = Page[OrderView]([], None)
"""The orders page's list when its filters are refused."""



def list_links(
    name: str, cursors: Mapping[str, str | None], next_cursor: str | None
) -> tuple[str | None, str | None]:
    """The links of one of a page's lists that pages by a cursor of its own, ``name``: to
    its next page (None on its last) and back to its first (None on it), each keeping where
    the page's other lists are (``cursors``: every list's cursor now, by name)."""
    kept = {other: at for other, at in cursors.items() if other != name and at}
    later = f"?{urlencode({**kept, name: next_cursor})}" if next_cursor else None
    first = f"?{urlencode(kept)}" if cursors.get(name) else None
    return later, first


ORDER_ENTRIES_A_PAGE: Final = 200
"""How many entries of an order's history, and how many of its refunds, its page shows at
once; each list pages on by a cursor of its own (``?history=``, ``?refunds=``)."""


@routes.get(f"/orders/{ID}")
async def order_page(request: web.Request) -> web.StreamResponse:
    """An order: its items and amounts, its history as a timeline, payments, refunds,
    returns, and the actions its status allows. An order with more history entries or
    refunds than a page shows (a provider that paid it again and again) links to the next."""
    shop, order_id = shop_of(request), whole_id(request)
    order = await shop.get_order(order_id)
    cursors = {name: request.query.get(name) or None for name in ("history", "refunds")}
    history = await shop.order_history(
        order_id, limit=ORDER_ENTRIES_A_PAGE, cursor=cursors["history"]
    )
    refunds = await shop.refunds(order_id, limit=ORDER_ENTRIES_A_PAGE, cursor=cursors["refunds"])
    # a refund still refunding as the refunds page lists it: the provider's words beside one
    # it failed (the staff's to pay back another way), the last word of its log beside others
    in_flight = {refund.id: refund for refund in await shop.refunds_in_flight(order_id)}
    return render(
        request,
        "order.html",
        order=order,
        actions=[(what, label) for what, label, to in _ORDER_ACTIONS
                 if to in TRANSITIONS[order.status]],
        history=history.items,
        history_links=list_links("history", cursors, history.next_cursor),
        payments=await shop.payments(order_id),
        refunds=[in_flight.get(refund.id, refund) for refund in refunds.items],
        refunds_links=list_links("refunds", cursors, refunds.next_cursor),
        returns=await shop.order_returns(order_id),
        goods={item.goods_id: await _goods_name(shop, item.goods_id) for item in order.items},
    )


_ORDER_ACTIONS = (("ship", "Ship", SHIPPED), ("deliver", "Deliver", DELIVERED),
                  ("cancel", "Cancel", CANCELED))
"""The order page's buttons: each its route's last word, its label, and the status it moves
the order to, shown only where the order's state machine allows that move."""


async def _goods_name(shop: Shop, goods_id: int) -> str:
    try:
        return (await shop.get_goods(goods_id)).name
    except ShopError:
        return f"goods {goods_id}"


@routes.get("/goods")
async def goods_page(request: web.Request) -> web.StreamResponse:
    """Goods, newest first, with their price and stock."""
    page = await shop_of(request).list_goods(limit=50, cursor=request.query.get("cursor"))
    return render(request, "goods.html", page=page)


@routes.get(f"/goods/{ID}")
async def goods_item_page(request: web.Request) -> web.StreamResponse:
    """A goods: price and restock forms, and its stock ledger."""
    shop, goods_id = shop_of(request), whole_id(request)
    goods = await shop.get_goods(goods_id)
    ledger = await shop.stock_ledger(goods_id, limit=50, cursor=request.query.get("cursor"))
    return render(request, "goods_item.html", goods=goods, ledger=ledger)


@routes.get("/users")
async def users_page(request: web.Request) -> web.StreamResponse:
    """Users, newest first, with their wallet and points."""
    page = await shop_of(request).list_users(limit=50, cursor=request.query.get("cursor"))
    return render(request, "users.html", page=page)


LEDGER_ENTRIES_A_PAGE: Final = 50
"""How many movements of a user's wallet, and of their points, their page shows at once;
each ledger pages on by a cursor of its own (``?wallet=``, ``?points=``)."""


@routes.get(f"/users/{ID}")
async def user_page(request: web.Request) -> web.StreamResponse:
    """A user: wallet and points, a credit form, token replacement, their coupons, their
    latest orders, and the ledgers of their wallet and points (why each balance is what it
    is: every movement, its order and reason, newest first)."""
    shop, user_id = shop_of(request), whole_id(request)
    user = await shop.get_user(user_id)
    coupons = await shop.list_coupons(user_id, limit=50)
    orders = await shop.find_orders(user_id=user_id, limit=10)
    cursors = {name: request.query.get(name) or None for name in ("wallet", "points")}
    wallet = await shop.wallet_ledger(
        user_id, limit=LEDGER_ENTRIES_A_PAGE, cursor=cursors["wallet"]
    )
    points = await shop.points_ledger(
        user_id, limit=LEDGER_ENTRIES_A_PAGE, cursor=cursors["points"]
    )
    ledgers = [
        ("Wallet ledger", wallet, "money", list_links("wallet", cursors, wallet.next_cursor)),
        ("Points ledger", points, "count", list_links("points", cursors, points.next_cursor)),
    ]
    return render(
        request, "user.html", user=user, coupons=coupons.items,
        coupons_more=coupons.next_cursor is not None, orders=orders.items, ledgers=ledgers,
    )  # fmt: skip


@routes.get("/coupons")
async def coupons_page(request: web.Request) -> web.StreamResponse:
    """The form that issues a coupon, and a user's coupons when one is named."""
    user_id = _number(request, "user")
    if user_id is None:
        return render(request, "coupons.html", user_id=None, coupons=None)
    shop = shop_of(request)
    await shop.get_user(user_id)  # a user who does not exist is not found, as on their page
    page = await shop.list_coupons(user_id, cursor=request.query.get("cursor"))
    return render(
        request, "coupons.html", user_id=user_id, coupons=page.items, page=page,
        filters={"user": user_id},
    )  # fmt: skip


@routes.get("/refunds")
async def refunds_page(request: web.Request) -> web.StreamResponse:
    """Returns waiting for approval, and refunds not yet paid back."""
    shop = shop_of(request)
    return render(
        request,
        "refunds.html",
        returns=await shop.returns_waiting(),
        refunds=await shop.refunds_in_flight(),
        returns_total=await shop.returns_waiting_count(),
        refunds_total=await shop.refunds_in_flight_count(),
        settle_forms=True,  # here, not on the dashboard, whose polling would wipe a typed note
    )


@routes.get("/dead-letters")
async def dead_letters_page(request: web.Request) -> web.StreamResponse:
    """Messages that failed every try, newest first."""
    page = await shop_of(request).dead_letters(limit=50, cursor=request.query.get("cursor"))
    return render(request, "dead_letters.html", page=page)


@routes.get(f"/dead-letters/{ID}")
async def dead_letter_page(request: web.Request) -> web.StreamResponse:
    """A dead letter with its traceback, to retry or discard."""
    letter = await shop_of(request).dead_letter(whole_id(request))
    return render(request, "dead_letter.html", letter=letter)


@routes.get("/audit")
async def audit_page(request: web.Request) -> web.StreamResponse:
    """The invariants of SPEC 6, checked now."""
    report = await dashboard.audit_now(console_of(request))
    return render(request, "audit.html", report=report)
