"""The console's forms (POST): sign-in and sign-out, and each action through the shop's API.

Every action goes through the same :class:`~shopkeep.shop.Shop` method the HTTP API calls, with
an Idempotency-Key derived from the form's nonce where the method takes one, and acts once per
form (:meth:`~shopkeep.admin.sessions.Session.spend`). Its outcome is a notice on the page it
redirects to (POST, then redirect, then GET: a reload does not send the form again); a refusal
of the shop is shown as its title, code and detail, and changes nothing.
"""

from __future__ import annotations

import contextlib
import hmac
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from markupsafe import Markup
from multidict import MultiDictProxy

from shopkeep.actors.order_messages import OrderView
from shopkeep.actors.order_state import BY_ADMIN, CANCELED, DELIVERED, SHIPPED
from shopkeep.admin.app import (
    PREFIX,
    SESSION,
    SIGN_IN,
    console_of,
    forget_cookie,
    set_cookie,
    to,
)
from shopkeep.admin.formatting import explain, isolated, money, when
from shopkeep.admin.pages import (
    DAY_S,
    ID,
    OutsideYears,
    render,
    shop_of,
    span_named,
    time_in_years,
    whole_id,
    whole_text,
)
from shopkeep.admin.sessions import SENT_ALREADY, idempotency_key, valid_nonce
from shopkeep.errors import FieldError, ShopError
from shopkeep.http.rate_limit import RateLimited
from shopkeep.paging import MAX_LIMIT
from shopkeep.payments.money import exponent
from shopkeep.refusals import INVALID_STATE, NOT_FOUND, OVERLOADED, UNAVAILABLE, VALIDATION_ERROR
from shopkeep.requests import LATEST_TIME, MAX_AMOUNT, MAX_REASON, Problems, id_in_text
from shopkeep.shop import Shop
from shopkeep.shop_accounts import hash_token

routes = web.RouteTableDef()
Form = MultiDictProxy[Any]
log = structlog.get_logger("shopkeep.admin")
"""The staff's trail: sign-ins, sign-outs and every form acted on (what was typed, never a
token, and whether it was done: the notice itself may hold a new token)."""

Act = Callable[[Form, str], Awaitable[str]]
"""An action: given the form and its Idempotency-Key, does it and says what was done (or
raises :class:`NothingDone`)."""


class NothingDone(Exception):
    """An action that found its work done already (a stale page, another tab, a deadline):
    its one argument says how things stand; nothing was done."""


@routes.post(SIGN_IN.removeprefix(PREFIX))
async def sign_in(request: web.Request) -> web.StreamResponse:
    """The admin token in, a session out (the token is compared and forgotten)."""
    console = console_of(request)
    address = request.remote or ""
    try:
        console.wrong_sign_ins.check(address)
    except RateLimited as limited:
        wait = math.ceil(limited.retry_after)
        problem = f"Too many wrong tokens from here: try again in {wait} s."
        response = render(request, "sign_in.html", problem=problem)
        response.set_status(429)
        response.headers["Retry-After"] = str(wait)
        return response
    form = await request.post()
    token = form.get("token")
    expected = console.admin_hash
    if (
        not isinstance(token, str)
        or not token.strip().isascii()
        or expected is None
        or not hmac.compare_digest(hash_token(token.strip()), expected)
    ):
        with contextlib.suppress(RateLimited):  # refused at the next try, by check()
            console.wrong_sign_ins.admit(address)
        log.warning("console_sign_in_refused", address=address)
        response = render(request, "sign_in.html", problem="That is not the admin token.")
        response.set_status(401)
        return response
    console.wrong_sign_ins.forget(address)  # the wrong tokens counted are those in a row
    old = request.get(SESSION)
    if old is not None:
        console.sessions.close(old.id)  # a new id at each sign-in: no fixation
    session = console.sessions.open()
    log.info("console_signed_in", address=address)
    response = web.Response(status=303, headers={"Location": PREFIX})
    set_cookie(response, console, session)
    return response


@routes.post("/sign-out")
async def sign_out(request: web.Request) -> web.StreamResponse:
    """End the session, here and in the browser."""
    console = console_of(request)
    console.sessions.close(request[SESSION].id)
    log.info("console_signed_out", address=request.remote or "")
    response = web.Response(status=303, headers={"Location": SIGN_IN})
    forget_cookie(response, console)
    return response


SENT_AGAIN: Final = frozenset({VALIDATION_ERROR, NOT_FOUND, OVERLOADED, UNAVAILABLE})
"""The refusals of a form that did nothing and bound no key (SPEC 7: a 422, a 404 for an id
that names nothing, a 503): it may be sent again, corrected (a mistyped user id) or later."""


async def act(request: web.Request, back: str, action: Act) -> web.StreamResponse:
    """Run ``action`` once for the form's nonce; say what happened on ``back``."""
    session = request[SESSION]
    form = await request.post()
    nonce = form.get("nonce")
    page = urlsplit(back).path  # where the outcome is shown: the page the form leads to
    if not isinstance(nonce, str) or not valid_nonce(nonce):
        session.notify(page, "error", "The form had no nonce; nothing was done. Try again.")
    elif (unspendable := session.spend(nonce)) is not None:
        session.notify(page, "ok" if unspendable == SENT_ALREADY else "error", unspendable)
    else:
        typed = typed_fields(form)
        try:
            session.notify(page, "ok", await action(form, idempotency_key(nonce)))
        except NothingDone as found:
            log.info("console_action", form=request.path, typed=typed, done=False)
            session.notify(page, "ok", str(found))
        except ShopError as error:
            log.info("console_action", form=request.path, typed=typed, refused=error.code)
            if error.code in SENT_AGAIN:  # to be sent again, corrected: as it was typed
                session.unspend(nonce)
                session.keep_typed(page, request.path, typed)
            session.notify(page, "error", explain(error))
        else:
            log.info("console_action", form=request.path, typed=typed, done=True)
    raise to(back)


_NOT_TYPED: Final = frozenset({"csrf", "nonce", "back", "shown"})
"""A form's fields the console fills itself, never refilled from what was sent."""


def typed_fields(form: Form) -> dict[str, str]:
    """What a person typed into ``form`` (each field's last value, as long as the longest text
    a form takes at most)."""
    return {
        name: value[:MAX_REASON]
        for name, value in form.items()
        if isinstance(value, str) and name not in _NOT_TYPED
    }


def field(form: Form, name: str, *, required: bool = True) -> int | None:
    """A whole number from the form (money in minor units, an id), or ShopError
    validation_error naming the field."""
    raw = form.get(name)
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        if required:
            raise ShopError.invalid([FieldError(f"{name} is required", pointer=f"/{name}")])
        return None
    unsigned = text.removeprefix("-")
    digits = unsigned.isascii() and unsigned.isdigit()
    number = whole_text(unsigned.lstrip("0") or "0") if digits else None  # 007 is 7
    if number is None or unsigned != text:
        detail = (
            f"{name} is not a whole number" if not digits
            else f"{name} cannot be negative" if unsigned != text
            else f"{name} is too large"  # past 19 digits: no id, amount or count is
        )
        raise ShopError.invalid([FieldError(detail, pointer=f"/{name}")])
    return number


def amount(
    form: Form, name: str, places: int, *, required: bool = True, minimum: int = 0
) -> int | None:
    """Money typed as a person writes it (``12``, ``12.5``, ``12.34``: currency units, of a
    currency whose minor unit has ``places`` decimals), in minor units, from ``minimum`` to
    the shop's largest amount; or ShopError validation_error naming the field (the range
    written as it is typed: the shop's own refusal would give it in minor units)."""
    raw = form.get(name)
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        return field(form, name, required=required)
    # a sign or more digits than any amount has is an amount out of range, said so
    negative = text.startswith("-")
    whole, _, part = text.removeprefix("-").partition(".")
    significant = whole.lstrip("0")  # 0001 is 1: too long only past its leading zeros
    too_long = len(significant) > 16 and significant.isascii() and significant.isdigit()
    # a sign alone, a point alone, is no amount; "5." is 5, as ".5" is a half
    units = 0 if too_long else whole_text(significant or "0") if whole or part else None
    digits = part.rstrip("0")  # 1.230 is 1.23, and 5.0 yen 5
    fraction = whole_text(digits.ljust(places, "0") or "0") if len(digits) <= places else None
    if units is None or (part and not (part.isascii() and part.isdigit())):
        raise ShopError.invalid([FieldError(f"{name} is not an amount", pointer=f"/{name}")])
    if fraction is None:  # digits past the currency's minor unit
        decimals = f"at most {places} decimals" if places else "no decimals"
        raise ShopError.invalid([FieldError(f"{name} has {decimals}", pointer=f"/{name}")])
    scale: int = 10**places
    minor = units * scale + fraction
    if (negative and minor) or too_long or not minimum <= minor <= MAX_AMOUNT:
        detail = (
            f"{name} must be between {money(minimum, places)} and {money(MAX_AMOUNT, places)}"
        )
        raise ShopError.invalid([FieldError(detail, pointer=f"/{name}")])
    return minor


def _places(shop: Shop) -> int:
    """How many decimals the shop's currency has: what ``amount`` and ``money`` follow."""
    return exponent(shop.config.currency)


def _expiry(form: Form) -> float | None:
    """The coupon form's optional expiry, or ShopError validation_error naming it. A day
    alone (``2026-12-31``) is the coupon's last day: it expires as the next one begins."""
    raw = form.get("expires_at")
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        return None
    try:
        when = time_in_years(text)
        if span_named(text) == DAY_S:
            return min(when + DAY_S, LATEST_TIME)
        return when
    except ValueError as refused:
        detail = refused.args[0] if isinstance(refused, OutsideYears) else (
            "not a time like 2026-12-31T23:59"
        )
        raise ShopError.invalid(
            [FieldError(f"expires_at is {detail}", pointer="/expires_at")]
        ) from None


def _required(value: int | None) -> int:
    assert value is not None  # field(..., required=True) raised otherwise
    return value


def order_outcome(before: OrderView, after: OrderView) -> str:
    """What an order's form did, from the order before and after it: its status; for an
    order the form found that way already (a stale page, another tab, its deadline),
    :class:`NothingDone`: the shop answers such a form with the order as it is (SPEC 7), as
    it does the API's."""
    status = after.status.replace("_", " ")
    if before.status != after.status:
        return f"Order {after.id} is {status}."
    why = f" ({after.cancel_reason.replace('_', ' ')})" if after.cancel_reason else ""
    raise NothingDone(f"Order {after.id} was {status}{why} already: nothing was done.")


LEADS_TO: Final = {"ship": SHIPPED, "deliver": DELIVERED, "cancel": CANCELED}
"""The status each of an order's forms leads to."""


@routes.post(f"/orders/{ID}/{{what:ship|deliver|cancel}}")
async def order_action(request: web.Request) -> web.StreamResponse:
    """Ship, deliver or cancel the order (as the admin)."""
    shop, order_id = shop_of(request), whole_id(request)
    what = request.match_info["what"]

    async def action(form: Form, key: str) -> str:
        async with console_of(request).acting.hold(order_id, "order"):
            before = await shop.get_order(order_id)
            shown = form.get("shown")
            if not isinstance(shown, str) or not shown:  # a form of no page of the console's
                raise NothingDone(f"The form did not say what order {order_id} was on its "
                                  "page: nothing was done. Look at it again.")
            if before.status not in (shown, LEADS_TO[what]):
                # the page is stale: a cancel asked of an unpaid order would refund a paid one
                # (an order the form finds done already is said so by order_outcome)
                raise NothingDone(
                    f"Order {order_id} is {before.status.replace('_', ' ')} now, not "
                    f"{shown.replace('_', ' ')} as the page showed: nothing was done. Look at "
                    f"it again before you {what} it."
                )
            if what == "ship":
                order = await shop.ship(order_id, idempotency_key=key)
            elif what == "deliver":
                order = await shop.deliver(order_id, idempotency_key=key)
            else:
                # only as the page showed it: a payment since the look above is not refunded
                order = await shop.cancel_order(
                    order_id, by=BY_ADMIN, idempotency_key=key, if_status=before.status
                )
            return order_outcome(before, order)

    return await act(request, f"{PREFIX}/orders/{order_id}", action)


@routes.post(f"/returns/{ID}/approve")
async def approve_return(request: web.Request) -> web.StreamResponse:
    """Approve a return: the refund starts and the stock goes back."""
    shop, return_id = shop_of(request), whole_id(request)
    form = await request.post()
    back = form.get("back")
    where = back if isinstance(back, str) and back.startswith(f"{PREFIX}/") else PREFIX

    async def action(form: Form, key: str) -> str:
        async with console_of(request).acting.hold(return_id, "return"):
            before = await shop.get_return(return_id)
            approved = await shop.approve_return(return_id, idempotency_key=key)
        if before.status == approved.status:  # a stale page's, another tab's or staff's
            raise NothingDone(f"Return {approved.id} of order {approved.order_id} was "
                              f"{approved.status} already: nothing was done.")
        return f"Return {approved.id} of order {approved.order_id} is {approved.status}."

    return await act(request, where, action)


@routes.post(f"/refunds/{ID}/settle")
async def settle_refund(request: web.Request) -> web.StreamResponse:
    """Mark a refund the provider failed as paid back another way, as the note says."""
    shop, refund_id = shop_of(request), whole_id(request)

    async def action(form: Form, key: str) -> str:
        note = form.get("note")
        try:
            settled = await shop.settle_refund(
                refund_id, note.strip() if isinstance(note, str) else "", idempotency_key=key
            )
        except ShopError as refused:
            order_id = await _refunded_already(shop, refund_id, refused)
            if order_id is None:
                raise
            # a stale page's, or another tab's, as the order and return forms say it
            raise NothingDone(
                f"Refund {refund_id} of order {order_id} was refunded already: nothing was done."
            ) from None
        return f"Refund {settled.id} of order {settled.order_id} is {settled.status}."

    return await act(request, f"{PREFIX}/refunds", action)


async def _refunded_already(shop: Shop, refund_id: int, refused: ShopError) -> int | None:
    """The order of ``refund_id`` when the shop ``refused`` to settle it because it is
    refunded (settled in another tab, or paid by the provider after all); None otherwise."""
    if refused.code != INVALID_STATE or refused.order_id is None:
        return None
    refunds = (await shop.refunds(refused.order_id, limit=MAX_LIMIT)).items
    done = any(r.id == refund_id and r.status == "refunded" for r in refunds)
    return refused.order_id if done else None


@routes.post(f"/goods/{ID}")
async def update_goods(request: web.Request) -> web.StreamResponse:
    """A new price, and/or stock added."""
    shop, goods_id = shop_of(request), whole_id(request)

    async def action(form: Form, key: str) -> str:
        with Problems() as each:  # every problem of the form at once, as the API lists them
            price = each(amount, form, "price", _places(shop), required=False)
            restock = each(field, form, "restock", required=False)
        if price is None and restock is None:
            raise ShopError(VALIDATION_ERROR, "give a price, a restock, or both")
        async with console_of(request).acting.hold(goods_id, "goods"):
            shown = form.get("shown")  # the price its page showed
            if price is not None and isinstance(shown, str) and shown.isdigit():
                # a price from a page that showed another: another tab's change meanwhile
                # would be overwritten without a word (restocks add up, and are taken)
                now = await shop.get_goods(goods_id)
                if now.price != int(shown):
                    places = _places(shop)
                    raise NothingDone(
                        Markup("{}'s price is {} now, not {} as the page showed: nothing was "
                               "done. Look at it again before you change it.").format(
                            isolated(now.name), money(now.price, places),
                            money(int(shown), places))
                    )  # fmt: skip
            goods = await shop.update_goods(goods_id, price=price, restock=restock,
                                            idempotency_key=key)  # fmt: skip
        price_now = money(goods.price, _places(shop))
        return Markup("{}: price {}, {} in stock.").format(
            isolated(goods.name), price_now, goods.stock
        )

    return await act(request, f"{PREFIX}/goods/{goods_id}", action)


@routes.post(f"/users/{ID}/credit")
async def credit(request: web.Request) -> web.StreamResponse:
    """Credit the user's wallet."""
    shop, user_id = shop_of(request), whole_id(request)

    async def action(form: Form, key: str) -> str:
        places = _places(shop)
        added = _required(amount(form, "amount", places, minimum=1))
        user = await shop.credit_wallet(user_id, added, idempotency_key=key)
        return f"{money(added, places)} credited: the wallet holds {money(user.balance, places)}."

    return await act(request, f"{PREFIX}/users/{user_id}", action)


@routes.post(f"/users/{ID}/token")
async def replace_token(request: web.Request) -> web.StreamResponse:
    """A new API token for the user, shown once on the page the form leads to."""
    shop, user_id = shop_of(request), whole_id(request)

    async def action(form: Form, key: str) -> str:
        token = await shop.replace_token(user_id)
        return f"The new token (shown this once; the old one no longer works): {token}"

    return await act(request, f"{PREFIX}/users/{user_id}", action)


async def _user_exists(shop: Shop, user_id: int) -> bool:
    try:
        await shop.get_user(user_id)
    except ShopError:
        return False
    return True


@routes.post("/coupons")
async def issue_coupon(request: web.Request) -> web.StreamResponse:
    """Issue a coupon to a user."""
    shop = shop_of(request)
    form = await request.post()
    named = form.get("user_id")
    back = f"{PREFIX}/coupons"
    user_id = id_in_text(named.strip()) if isinstance(named, str) else None
    if user_id is not None and await _user_exists(shop, user_id):  # their coupons' page
        back += f"?user={user_id}"  # (a mistyped id comes back to the form, filled, to correct)

    async def action(form: Form, key: str) -> str:
        places = _places(shop)
        with Problems() as each:  # every problem of the form at once, as the API lists them
            owner = each(field, form, "user_id")
            value = each(amount, form, "value", places, minimum=1)
            least = each(amount, form, "min_order_amount", places, required=False)
            expires_at = each(_expiry, form)
        coupon = await shop.create_coupon(
            _required(owner), _required(value), min_order_amount=least or 0,
            expires_at=expires_at, idempotency_key=key,
        )
        worth = money(coupon.value, places)
        expiry = _expiry_said(coupon.expires_at, shop.system.clock.now())
        return f"Coupon {coupon.id} worth {worth} issued to user {coupon.user_id}{expiry}."

    return await act(request, back, action)


def _expiry_said(expires_at: float | None, now: float) -> str:
    """What an issued coupon's notice says of its expiry: the instant it expires (it is
    usable before it, not at it: "valid until" read as that instant included), and that it
    expired already when the time typed was past (issued all the same, as the API does)."""
    if expires_at is None:
        return ""
    if expires_at <= now:
        return f", but it expired at {when(expires_at)} UTC already: it cannot be used"
    return f", usable until it expires at {when(expires_at)} UTC"


@routes.post(f"/dead-letters/{ID}/{{what:retry|discard}}")
async def dead_letter_action(request: web.Request) -> web.StreamResponse:
    """Send a dead letter's message again, or discard it."""
    shop, letter_id = shop_of(request), whole_id(request)
    what = request.match_info["what"]

    async def action(form: Form, key: str) -> str:
        try:
            if what == "retry":
                await shop.retry_dead_letter(letter_id)
                return f"Dead letter {letter_id} was sent again."
            await shop.discard_dead_letter(letter_id)
        except ShopError as error:
            if error.code != NOT_FOUND:
                raise
            # a page open in two tabs, or two staff: the other's form went first
            raise NothingDone(f"Dead letter {letter_id} is not there (sent again or discarded "
                              "meanwhile?): nothing was done.") from None
        return f"Dead letter {letter_id} was discarded."

    return await act(request, f"{PREFIX}/dead-letters", action)
