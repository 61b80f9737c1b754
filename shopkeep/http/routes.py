"""Every route of SPEC 7: a thin handler per operation, each one call of one Shop method.

A handler reads its inputs (``inputs.py``), calls the shop, and answers the converted view
(``conversion.py``); every refusal and error goes up to ``errors.py`` untouched (a refusal
replayed under its Idempotency-Key says so itself). Who may call each one,
and what it takes and answers, is said once, in ``catalog.py``.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from shopkeep.actors.order_state import PENDING
from shopkeep.errors import CallbackRejected, ShopError
from shopkeep.http import conversion as c
from shopkeep.http import schemas as s
from shopkeep.http.front_door import DOOR
from shopkeep.http.inputs import (
    body_bytes,
    body_of,
    buffered_body,
    caller_of,
    channel_of,
    cursor_of,
    decoded,
    idempotency_key_of,
    limit_of,
    no_body,
    path_id,
    reply,
    scope_of,
    shop_of,
    status_of,
)
from shopkeep.http.state import PRINCIPAL, SHOP
from shopkeep.payments.provider import PaymentProvider
from shopkeep.payments.signature import HEADER as SIGNATURE_HEADER
from shopkeep.refusals import NOT_FOUND
from shopkeep.shop_payments import TOO_LARGE, UNREADABLE

_HEALTHY = msgspec.json.encode(s.Health("ok"))


async def healthz(request: web.Request) -> web.Response:
    """Liveness: answers 200 ``{"status": "ok"}`` while the process serves, without a token;
    503 unavailable while the store has been at one commit for over
    :data:`~shopkeep.http.write_gate.STALLED_AFTER_S` (its disk stopped answering: writes are
    refused or wait, and a supervisor should know), while it refuses writes for its own sake
    (a full disk, within :data:`~shopkeep.http.write_gate.REFUSING_WITHIN_S` with no commit
    since), and once the server is stopping (writes are refused: a load balancer sends them
    elsewhere).

    It touches neither the actors nor the database, so it stays cheap and answers even when the
    shop is overloaded.
    """
    unhealthy = request.app[DOOR].gate.health()
    return unhealthy or web.Response(body=_HEALTHY, content_type="application/json")


# -- users ------------------------------------------------------------------------------------


async def create_user(request: web.Request) -> web.Response:
    """POST /v1/users."""
    key = idempotency_key_of(request)
    body = await body_of(request, s.CreateUserRequest)
    created = await shop_of(request).create_user(body.name, body.balance, idempotency_key=key)
    made = c.created_user_out(created.user, created.token)
    return reply(made, 201, f"/v1/users/{made.id}", key=key, secret=True)


async def get_user(request: web.Request) -> web.Response:
    """GET /v1/users/{user_id}."""
    return reply(c.user_out(await shop_of(request).get_user(path_id(request, "user_id"))))


async def get_me(request: web.Request) -> web.Response:
    """GET /v1/me."""
    user_id = caller_of(request).user_id
    assert user_id is not None  # Access.USER admits users only
    return reply(c.user_out(await shop_of(request).get_user(user_id)))


async def replace_token(request: web.Request) -> web.Response:
    """POST /v1/users/{user_id}/token: a new token; the old one stops working at once."""
    user_id = path_id(request, "user_id")
    await no_body(request)
    return reply(s.TokenOut(await shop_of(request).replace_token(user_id)), secret=True)


async def credit_wallet(request: web.Request) -> web.Response:
    """POST /v1/users/{user_id}/wallet/credit."""
    user_id, key = path_id(request, "user_id"), idempotency_key_of(request)
    body = await body_of(request, s.CreditRequest)
    user = await shop_of(request).credit_wallet(user_id, body.amount, idempotency_key=key)
    return reply(c.user_out(user), key=key)


# -- goods ------------------------------------------------------------------------------------


async def create_goods(request: web.Request) -> web.Response:
    """POST /v1/goods."""
    key = idempotency_key_of(request)
    body = await body_of(request, s.CreateGoodsRequest)
    made = await shop_of(request).create_goods(
        body.name, body.price, body.stock, idempotency_key=key
    )
    goods = c.goods_out(made)
    return reply(goods, 201, f"/v1/goods/{goods.id}", key=key)


async def update_goods(request: web.Request) -> web.Response:
    """PATCH /v1/goods/{goods_id}."""
    goods_id, key = path_id(request, "goods_id"), idempotency_key_of(request)
    body = await body_of(request, s.UpdateGoodsRequest)
    goods = await shop_of(request).update_goods(
        goods_id, price=body.price, restock=body.restock, idempotency_key=key
    )
    return reply(c.goods_out(goods), key=key)


async def list_goods(request: web.Request) -> web.Response:
    """GET /v1/goods."""
    page = await shop_of(request).list_goods(limit=limit_of(request), cursor=cursor_of(request))
    return reply(s.GoodsPage([c.goods_out(g) for g in page.items], page.next_cursor))


async def get_goods(request: web.Request) -> web.Response:
    """GET /v1/goods/{goods_id}."""
    return reply(c.goods_out(await shop_of(request).get_goods(path_id(request, "goods_id"))))


# -- coupons ----------------------------------------------------------------------------------


async def create_coupon(request: web.Request) -> web.Response:
    """POST /v1/coupons."""
    key = idempotency_key_of(request)
    body = await body_of(request, s.CreateCouponRequest)
    expires_at = None if body.expires_at is None else c.time_in(body.expires_at, "/expires_at")
    coupon = await shop_of(request).create_coupon(
        c.ref_in(body.user_id, "user"),
        body.value,
        min_order_amount=body.min_order_amount,
        expires_at=expires_at,
        idempotency_key=key,
    )
    return reply(c.coupon_out(coupon), 201, f"/v1/coupons/{coupon.id}", key=key)


async def list_coupons(request: web.Request) -> web.Response:
    """GET /v1/coupons: the caller's own."""
    user_id = caller_of(request).user_id
    assert user_id is not None  # Access.USER admits users only
    page = await shop_of(request).list_coupons(
        user_id, limit=limit_of(request), cursor=cursor_of(request)
    )
    return reply(s.CouponPage([c.coupon_out(one) for one in page.items], page.next_cursor))


async def get_coupon(request: web.Request) -> web.Response:
    """GET /v1/coupons/{coupon_id}: a user's own, any for the admin."""
    coupon_id = path_id(request, "coupon_id")
    return reply(
        c.coupon_out(await shop_of(request).get_coupon(coupon_id, user_id=scope_of(request)))
    )


# -- orders -----------------------------------------------------------------------------------


async def place_order(request: web.Request) -> web.Response:
    """POST /v1/orders: 201 placed (or paid), 202 pending with ``?wait=false`` or when the
    placement runs longer than the shop waits (it goes on: poll the order)."""
    # the caller and the shop read here, not by caller_of and shop_of, ?wait= read without
    # query_value, and the body decoded from buffered_body, not by the coroutines of body_of
    # and body_bytes: five calls fewer on the path of every placement
    user_id = request[PRINCIPAL].user_id
    assert user_id is not None  # Access.USER admits users only
    # ?wait=false: 202 at once; else (true, the default) answer the placed order
    wait = not request.query_string or request.query.get("wait") != "false"
    key = idempotency_key_of(request)
    raw = buffered_body(request)
    # a body still coming is read by body_bytes, which checks the token again once it is in
    shop = request.app[SHOP]
    body = decoded(
        raw if raw is not None else await body_bytes(request), s.PlaceOrderRequest, shop.config
    )
    items = [(c.ref_in(item.goods_id, "goods"), item.quantity) for item in body.items]
    coupon_id = None if body.coupon_id is None else c.ref_in(body.coupon_id, "coupon")
    order = await shop.place_order(
        user_id,
        items,
        coupon_id=coupon_id,
        use_balance=body.use_balance,
        expected_total=body.expected_total,
        idempotency_key=key,
        wait=wait,
    )
    # pending: accepted (?wait=false), or still running past the shop's wait; a retry under
    # the key answers as its first answer did, whatever its own ?wait=
    status = 202 if order.status == PENDING else 201
    return reply(c.order_out(order), status, f"/v1/orders/{order.id}", key=key)


async def list_orders(request: web.Request) -> web.Response:
    """GET /v1/orders: a user's own, or all for the admin."""
    page = await shop_of(request).list_orders(
        user_id=scope_of(request),
        status=status_of(request),
        limit=limit_of(request),
        cursor=cursor_of(request),
    )
    return reply(s.OrderPage([c.order_out(o) for o in page.items], page.next_cursor))


async def get_order(request: web.Request) -> web.Response:
    """GET /v1/orders/{order_id}."""
    order_id = path_id(request, "order_id")
    return reply(c.order_out(await shop_of(request).get_order(order_id, user_id=scope_of(request))))


async def order_history(request: web.Request) -> web.Response:
    """GET /v1/orders/{order_id}/history."""
    order_id = path_id(request, "order_id")
    page = await shop_of(request).order_history(
        order_id, user_id=scope_of(request), limit=limit_of(request), cursor=cursor_of(request)
    )
    return reply(s.HistoryList([c.history_out(e) for e in page.items], page.next_cursor))


async def start_payment(request: web.Request) -> web.Response:
    """POST /v1/orders/{order_id}/payment: 201 a new payment, 200 the open one again."""
    order_id, key = path_id(request, "order_id"), idempotency_key_of(request)
    await no_body(request)
    started = await shop_of(request).start_payment(
        order_id, user_id=scope_of(request), idempotency_key=key, channel=channel_of(request)
    )
    payment = started.payment
    if not started.created:  # the open payment again: nothing created
        return reply(c.payment_out(payment), key=key, secret=True)
    return reply(c.payment_out(payment), 201, f"/v1/payments/{payment.id}", key=key, secret=True)


async def get_payment(request: web.Request) -> web.Response:
    """GET /v1/payments/{payment_id}."""
    payment_id = path_id(request, "payment_id")
    return reply(
        c.payment_out(await shop_of(request).get_payment(payment_id, user_id=scope_of(request))),
        secret=True,
    )


async def cancel_order(request: web.Request) -> web.Response:
    """POST /v1/orders/{order_id}/cancel."""
    order_id, key = path_id(request, "order_id"), idempotency_key_of(request)
    await no_body(request)
    # the cancel reason follows from the caller: the user's with their id, else the admin's
    order = await shop_of(request).cancel_order(
        order_id, user_id=caller_of(request).user_id, idempotency_key=key
    )
    return reply(c.order_out(order), key=key)


async def ship_order(request: web.Request) -> web.Response:
    """POST /v1/orders/{order_id}/ship."""
    order_id, key = path_id(request, "order_id"), idempotency_key_of(request)
    await no_body(request)
    return reply(c.order_out(await shop_of(request).ship(order_id, idempotency_key=key)), key=key)


async def deliver_order(request: web.Request) -> web.Response:
    """POST /v1/orders/{order_id}/deliver."""
    order_id, key = path_id(request, "order_id"), idempotency_key_of(request)
    await no_body(request)
    order = await shop_of(request).deliver(order_id, idempotency_key=key)
    return reply(c.order_out(order), key=key)


async def request_return(request: web.Request) -> web.Response:
    """POST /v1/orders/{order_id}/returns: 201 a new request, 200 the open one again."""
    order_id, key = path_id(request, "order_id"), idempotency_key_of(request)
    body = await body_of(request, s.ReturnRequest, optional=True)
    made = await shop_of(request).request_return(
        order_id, body.reason, user_id=scope_of(request), idempotency_key=key
    )
    if not made.created:  # the order's open request again: nothing created
        return reply(c.return_out(made), key=key)
    return reply(c.return_out(made), 201, f"/v1/returns/{made.id}", key=key)


async def get_return(request: web.Request) -> web.Response:
    """GET /v1/returns/{return_id}."""
    return_id = path_id(request, "return_id")
    return reply(
        c.return_out(await shop_of(request).get_return(return_id, user_id=scope_of(request)))
    )


async def approve_return(request: web.Request) -> web.Response:
    """POST /v1/returns/{return_id}/approve."""
    return_id, key = path_id(request, "return_id"), idempotency_key_of(request)
    await no_body(request)
    approved = await shop_of(request).approve_return(return_id, idempotency_key=key)
    return reply(c.return_out(approved), key=key)


async def order_refunds(request: web.Request) -> web.Response:
    """GET /v1/orders/{order_id}/refunds."""
    order_id = path_id(request, "order_id")
    page = await shop_of(request).refunds(
        order_id, user_id=scope_of(request), limit=limit_of(request), cursor=cursor_of(request)
    )
    return reply(s.RefundList([c.refund_out(r) for r in page.items], page.next_cursor))


# -- the gateway, the audit -------------------------------------------------------------------


async def payment_callback(request: web.Request) -> web.Response:
    """POST /v1/payments/callback, the sandbox gateway's (SPEC 7): the raw bytes go to the
    shop, which checks the signature over exactly them (a re-encoded body would not match). A
    shop that takes payments through a provider answers 404 here, as on another provider's
    route: its notifications have a route of their own, and an answer of their own."""
    shop = shop_of(request)
    _served_by(shop.provider, request.path)
    raw = await _callback_bytes(request)
    await shop.handle_callback(raw, request.headers.get(SIGNATURE_HEADER))
    return reply(s.CallbackReceived(True))


async def _callback_bytes(request: web.Request) -> bytes:
    """A callback's raw body. One larger than the server takes, sent in chunks (its size
    unannounced, so the door let it in), is counted refused ``too_large`` as the door counts
    one whose size it announced; one whose body does not read as its headers say (gzip that
    does not inflate, a coding this server does not decode), ``unreadable``. Either is
    answered as any request's would be."""
    try:
        return await body_bytes(request)
    except web.HTTPRequestEntityTooLarge:
        shop_of(request).reject_unread_callback(TOO_LARGE)
        raise
    except (web.RequestPayloadError, ShopError):  # the ShopError: a coding not decoded
        shop_of(request).reject_unread_callback(UNREADABLE)
        raise


def _served_by(provider: PaymentProvider, path: str) -> None:
    """ShopError not_found unless ``path`` is the callback route of the shop's provider."""
    if path != provider.callback_path:
        raise ShopError(NOT_FOUND, f"this shop takes payments through {provider.name}")


async def provider_notify(request: web.Request) -> web.Response:
    """POST /v1/payments/alipay/notify, /v1/payments/wechatpay/notify,
    /v1/payments/stripe/webhook: the raw bytes and headers go to the shop, which has its
    provider verify them; the answer is the one that provider expects (SPEC 10: Alipay the
    plain text ``success``, WeChat Pay 204, Stripe 200), or its refusal. A route of a provider
    the shop is not configured for is 404."""
    shop = shop_of(request)
    provider = shop.provider
    _served_by(provider, request.path)
    raw = await _callback_bytes(request)
    try:
        await shop.handle_callback(raw, request.headers)
        said = provider.answer(True)
    except CallbackRejected as rejected:
        said = provider.answer(False, str(rejected))
    return web.Response(
        status=said.status, body=said.body or None, content_type=said.content_type
    )


async def run_audit(request: web.Request) -> web.Response:
    """GET /v1/audit."""
    return reply(await shop_of(request).audit())
