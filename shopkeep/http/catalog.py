"""The catalog: every route of SPEC 7, who may call it, what it takes and what it answers.

The factory registers each entry's handler behind its access check and the OpenAPI document
is rendered from the same entries, so neither can drift from the other. Entries without a
handler are served by another module (the sandbox gateway's route, ``/metrics``): they are
documented only when the factory is actually given a route for them.
"""

from __future__ import annotations

from typing import Any, Final

from shopkeep.actors.key_rules import KEY_RETENTION_S
from shopkeep.http import routes
from shopkeep.http import schemas as s
from shopkeep.http.auth import Access
from shopkeep.http.inputs import (
    CHANNEL_SCHEMA,
    CURSOR_SCHEMA,
    IDEMPOTENCY_HEADER,
    KEY_SCHEMA,
    STATUS_SCHEMA,
    WAIT_SCHEMA,
)
from shopkeep.http.openapi import docs_page, openapi_json
from shopkeep.http.operations import NativeRefusal, Operation, Param
from shopkeep.http.sandbox import FIRST_TRY_WAIT_S
from shopkeep.paging import DEFAULT_LIMIT, MAX_LIMIT
from shopkeep.payments.names import CALLBACK_PATHS, SANDBOX
from shopkeep.payments.provider import TOLERANCE_S
from shopkeep.payments.signature import HEADER as SIGNATURE_HEADER
from shopkeep.payments.signature import HEADER_PATTERN as SIGNATURE_PATTERN
from shopkeep.refusals import (
    COUPON_UNAVAILABLE,
    IDEMPOTENCY_CONFLICT,
    INSUFFICIENT_BALANCE,
    INSUFFICIENT_STOCK,
    INVALID_STATE,
    PRICE_CHANGED,
    TOO_MANY_UNPAID_ORDERS,
)

CHANNEL_TEXT = (
    "Alipay only: `qr` answers a `qr_code` (alipay.trade.precreate) instead of the page-pay "
    "`gateway_url`; other providers have one channel and ignore it. Asked again, the payment "
    "answers what it was given before, and, asked for the channel it was not started with, "
    "that channel's link beside it (the customer may pay by either). Under one "
    "Idempotency-Key, Alipay's other channel is another request (409 idempotency_conflict)."
)
_TEXT: Final = {"type": "string"}
NOTIFY_ROUTES = (
    (CALLBACK_PATHS["alipay"], "alipayNotify",
     "Alipay's asynchronous notification: form-encoded, RSA2-signed; answered with the plain "
     "text `success` once handled (duplicates included), anything else makes Alipay resend",
     {200: str}, "text/plain",
     NativeRefusal("text/plain", {**_TEXT, "enum": ["fail"]},
                   "Refused (Alipay's own answer, the text `fail`): Alipay sends it again")),
    (CALLBACK_PATHS["wechatpay"], "wechatpayNotify",
     "WeChat Pay API v3's notification: `Wechatpay-Signature` over `timestamp\nnonce\nbody\n`, "
     "the resource AEAD_AES_256_GCM-encrypted; answered 204 once handled, 4xx refused",
     {204: None}, "application/json",
     NativeRefusal("application/json", {
         "type": "object", "required": ["code", "message"],
         "properties": {"code": {**_TEXT, "enum": ["FAIL"]}, "message": _TEXT},
     }, "Refused (WeChat Pay's own answer, `code` FAIL): WeChat Pay sends it again")),
    (CALLBACK_PATHS["stripe"], "stripeWebhook",
     f"Stripe's webhook: `Stripe-Signature` ({TOLERANCE_S} s tolerance); "
     "`payment_intent.succeeded` / "
     "`payment_intent.payment_failed`, other events acknowledged and ignored; 200 once handled",
     {200: s.CallbackReceived}, "application/json",
     NativeRefusal("application/json", {
         "type": "object", "required": ["error"], "properties": {"error": _TEXT},
     }, "Refused (what failed, in `error`): Stripe sends the event again")),
)
"""The providers' own callback routes (SPEC 10): no bearer token, each verified by its
provider's scheme and answered in that provider's format (their 400 is no problem+json: the
provider reads it); a route of a provider the server is not configured for answers 404."""
PLACEMENT_REFUSALS = (
    INSUFFICIENT_STOCK,
    COUPON_UNAVAILABLE,
    INSUFFICIENT_BALANCE,
    PRICE_CHANGED,
    TOO_MANY_UNPAID_ORDERS,
    IDEMPOTENCY_CONFLICT,
)
_KEPT = f"Kept {KEY_RETENTION_S / 3600:g} hours."
KEY_TEXT = (
    "Optional: retry safely. The same key with the same request (path ids and body) answers "
    "the first answer again, as it was then (even if the resource changed since), with "
    "`Idempotent-Replayed: true`, and does nothing again: a success, or a refusal (409, or a "
    "404 of the resource's own rules), even once its obstacle is gone; with another request, "
    "409 idempotency_conflict. A first attempt that did nothing binds nothing and the retry "
    "runs afresh: a 503, a 422, or a 404 for an id that names nothing of the caller's (in "
    "the path, or a coupon's `user_id`: the retry may name another). Each caller's keys are "
    f"their own. {_KEPT}"
)
PLACE_KEY_TEXT = (
    "Optional: retry safely. The same key with the same body (whatever its `wait`) answers "
    "the first answer again with `Idempotent-Replayed: true`: the order as it was placed (or "
    "accepted, pending: 202), "
    "or the refusal of a placement (with its `order_id` when its order was recorded), even "
    "once its obstacle is gone; with another body, 409 idempotency_conflict. A placement that "
    "failed overloaded, unavailable or interrupted did nothing (everything was given back), "
    f"nor did a 422: the retry places afresh. {_KEPT}"
)
USER_KEY_TEXT = (
    f"{KEY_TEXT} A replay answers the user the first answer made with a new token: only a "
    "token's hash is kept, so the first answer's token, which only that answer showed, "
    "stops working (the retry is that of a caller who did not get the first answer)."
)
KEY = Param(IDEMPOTENCY_HEADER, "header", KEY_SCHEMA, KEY_TEXT)
SANDBOX_COMPLETE = ("POST", "/sandbox/payments/{payment_id}/complete")
SANDBOX_CHECKOUT = ("GET", "/sandbox/payments/{payment_id}")
METRICS = ("GET", "/metrics")


PAGE_PARAMS: Final = (
    Param(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "default": DEFAULT_LIMIT},
        f"Items per page, at least 1; capped: more than {MAX_LIMIT} is taken as {MAX_LIMIT}.",
    ),
    Param("cursor", "query", CURSOR_SCHEMA, "The `next_cursor` of the previous page."),
)
"""``?limit=`` and ``?cursor=`` of every paged list."""


def catalog() -> list[Operation]:
    """Every operation, in the order of SPEC 7's table."""
    paged = PAGE_PARAMS
    op = Operation
    owner, admin, user = Access.OWNER, Access.ADMIN, Access.USER
    notify_ops = [
        op("POST", path, name, summary, Access.PUBLIC, routes.provider_notify, answers,
           content_type=content_type, native_refusal=refusal, extra_problems=(404,),
           body_required=False)
        for path, name, summary, answers, content_type, refusal in NOTIFY_ROUTES
    ]
    order_ops = [
        op("POST", "/v1/orders", "placeOrder", "Place an order", user, routes.place_order,
           {201: s.OrderOut, 202: s.OrderOut}, body=s.PlaceOrderRequest,
           params=(
               Param(IDEMPOTENCY_HEADER, "header", KEY_SCHEMA, PLACE_KEY_TEXT),
               Param("wait", "query", WAIT_SCHEMA,
                     "false: answer 202 at once with the pending order, and poll it "
                     "(a refusal ends it canceled placement_failed). What is refused before "
                     "any order is recorded (the unpaid cap, a key bound to another body) "
                     "answers its 409 at once, as without it. A placement still running "
                     "when the server stops waiting (its ask timeout) answers 202 pending "
                     "too: it goes on, poll it. ?wait= is not part of the request an "
                     "Idempotency-Key names: a retry under the key of a placement first "
                     "answered 202 answers that 202 again, with or without it (GET the "
                     "order for where it stands now)."),
           ),
           refusals=PLACEMENT_REFUSALS, extra_problems=(404,)),  # a goods or coupon
        op("GET", "/v1/orders", "listOrders", "List orders (a user's own; all for the admin)",
           owner, routes.list_orders, {200: s.OrderPage},
           params=(Param("status", "query", STATUS_SCHEMA, "Only orders in this status."),
                   *paged)),
        op("GET", "/v1/orders/{order_id}", "getOrder", "Get an order", owner, routes.get_order,
           {200: s.OrderOut}),
        op("GET", "/v1/orders/{order_id}/history", "getOrderHistory",
           "An order's status changes, oldest first", owner, routes.order_history,
           {200: s.HistoryList}, params=paged),
        op("POST", "/v1/orders/{order_id}/payment", "startPayment",
           "Start paying an order (200: the same open payment again)", user,
           routes.start_payment, {201: s.PaymentOut, 200: s.PaymentOut},
           params=(KEY, Param("channel", "query", CHANNEL_SCHEMA, CHANNEL_TEXT)),
           refusals=(INVALID_STATE, IDEMPOTENCY_CONFLICT), extra_problems=(502,)),
        op("GET", "/v1/payments/{payment_id}", "getPayment", "Get a payment", owner,
           routes.get_payment, {200: s.PaymentOut}),
        op("POST", "/v1/orders/{order_id}/cancel", "cancelOrder",
           "Cancel an order, answered with its stock, coupon and wallet amount back (the "
           "gateway's refund follows); again: 200, unchanged", owner, routes.cancel_order,
           {200: s.OrderOut}, params=(KEY,), refusals=(INVALID_STATE, IDEMPOTENCY_CONFLICT)),
        op("POST", "/v1/orders/{order_id}/ship", "shipOrder",
           "Ship a paid order; again: 200, unchanged", admin,
           routes.ship_order, {200: s.OrderOut}, params=(KEY,),
           refusals=(INVALID_STATE, IDEMPOTENCY_CONFLICT)),
        op("POST", "/v1/orders/{order_id}/deliver", "deliverOrder",
           "Deliver a shipped order; again: 200, unchanged", admin, routes.deliver_order,
           {200: s.OrderOut}, params=(KEY,), refusals=(INVALID_STATE, IDEMPOTENCY_CONFLICT)),
        op("POST", "/v1/orders/{order_id}/returns", "requestReturn",
           "Ask to return a delivered order (200: its open request again, whatever the "
           "reason given)", user, routes.request_return,
           {201: s.ReturnOut, 200: s.ReturnOut}, body=s.ReturnRequest, body_required=False,
           params=(KEY,), refusals=(INVALID_STATE, IDEMPOTENCY_CONFLICT)),
        op("GET", "/v1/returns/{return_id}", "getReturn", "Get a return", owner,
           routes.get_return, {200: s.ReturnOut}),
        op("POST", "/v1/returns/{return_id}/approve", "approveReturn",
           "Approve a return, answered with its stock, coupon and wallet amount back and its "
           "points taken back (the gateway's refund follows); again: 200, unchanged", admin,
           routes.approve_return, {200: s.ReturnOut}, params=(KEY,),
           refusals=(INVALID_STATE, IDEMPOTENCY_CONFLICT)),
        op("GET", "/v1/orders/{order_id}/refunds", "listRefunds",
           "An order's refunds, oldest first", owner, routes.order_refunds,
           {200: s.RefundList}, params=paged),
    ]
    return [
        op("POST", "/v1/users", "createUser", "Create a user (the answer has their token)",
           admin, routes.create_user, {201: s.CreatedUserOut}, body=s.CreateUserRequest,
           params=(Param(IDEMPOTENCY_HEADER, "header", KEY_SCHEMA, USER_KEY_TEXT),),
           refusals=(IDEMPOTENCY_CONFLICT,)),
        op("GET", "/v1/users/{user_id}", "getUser", "Get a user", admin, routes.get_user,
           {200: s.UserOut}),
        op("GET", "/v1/me", "getMe", "The calling user", user, routes.get_me,
           {200: s.UserOut}),
        op("POST", "/v1/users/{user_id}/token", "replaceToken",
           "Give a user a new token (the old one stops working at once)", admin,
           routes.replace_token, {200: s.TokenOut}),
        op("POST", "/v1/users/{user_id}/wallet/credit", "creditWallet",
           "Credit a user's wallet", admin, routes.credit_wallet, {200: s.UserOut},
           body=s.CreditRequest, params=(KEY,), refusals=(IDEMPOTENCY_CONFLICT,)),
        op("POST", "/v1/goods", "createGoods", "Create a goods (SKU)", admin,
           routes.create_goods, {201: s.GoodsOut}, body=s.CreateGoodsRequest, params=(KEY,),
           refusals=(IDEMPOTENCY_CONFLICT,)),
        op("PATCH", "/v1/goods/{goods_id}", "updateGoods", "Change a price, add stock", admin,
           routes.update_goods, {200: s.GoodsOut}, body=s.UpdateGoodsRequest, params=(KEY,),
           refusals=(IDEMPOTENCY_CONFLICT,)),
        op("GET", "/v1/goods", "listGoods", "List goods, newest first", Access.ANY,
           routes.list_goods, {200: s.GoodsPage}, params=paged),
        op("GET", "/v1/goods/{goods_id}", "getGoods", "Get a goods", Access.ANY,
           routes.get_goods, {200: s.GoodsOut}),
        op("POST", "/v1/coupons", "createCoupon", "Give a user a coupon", admin,
           routes.create_coupon, {201: s.CouponOut}, body=s.CreateCouponRequest, params=(KEY,),
           refusals=(IDEMPOTENCY_CONFLICT,), extra_problems=(404,)),  # a user nobody is
        op("GET", "/v1/coupons", "listCoupons", "The calling user's coupons", user,
           routes.list_coupons, {200: s.CouponPage}, params=paged),
        op("GET", "/v1/coupons/{coupon_id}", "getCoupon",
           "Get a coupon (a user's own; any for the admin)", owner, routes.get_coupon,
           {200: s.CouponOut}),
        *order_ops,
        op("POST", CALLBACK_PATHS[SANDBOX], "paymentCallback",
           "The sandbox gateway's signed callback (404 on a shop of another provider)",
           Access.PUBLIC, routes.payment_callback,
           {200: s.CallbackReceived}, body=s.CallbackRequest,
           params=(Param(SIGNATURE_HEADER, "header",
                         {"type": "string", "pattern": SIGNATURE_PATTERN},
                         "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.\" + raw body>`",
                         required=True),),
           extra_problems=(400, 404)),  # 404: a shop of another provider
        *notify_ops,
        op(*SANDBOX_CHECKOUT, "sandboxCheckout",
           "Sandbox only: the page a sandbox payment's `gateway_url` links to: the payment (for "
           "a browser, `Accept: text/html`, a page whose buttons complete it)",
           Access.PUBLIC, None, {200: s.PaymentOut}, page_for_browsers=True),
        op(*SANDBOX_COMPLETE, "sandboxCompletePayment",
           "Sandbox only: finish paying; the sandbox gateway then calls back, signed, "
           "retrying until acknowledged. The 202 comes once the first call back has an outcome "
           f"(at most {FIRST_TRY_WAIT_S:g} s later): with the default callback URL, the "
           "payment is then applied, and a crash after the 202 loses nothing (the sandbox's "
           "own books are memory), unless the shop refused that call back (503: a full disk), "
           "which is retried in memory. 409 `invalid_state` for a payment paid already (succeeded "
           "or refunded, or its success being called back): as a real provider, the sandbox "
           "takes a payment once, so a complete sent twice collects nothing more; a failed one "
           "may still be paid. 503 `unavailable` once the server is stopping: complete it "
           "after the restart",
           Access.PUBLIC, None, {202: None}, body=s.SandboxCompleteRequest,
           refusals=(INVALID_STATE,)),
        op("GET", "/v1/audit", "audit", "Check the invariants now", admin, routes.run_audit,
           {200: s.AuditOut}),
        op("GET", "/healthz", "healthz", "Liveness", Access.PUBLIC, routes.healthz,
           {200: s.Health}, touches_shop=False, extra_problems=(503,)),  # a stalled store
        op(*METRICS, "metrics", "Prometheus metrics", Access.PUBLIC, None, {200: str},
           touches_shop=False, content_type="text/plain"),
        op("GET", "/openapi.json", "openapi", "This document", Access.PUBLIC, openapi_json,
           {200: dict[str, Any]}, touches_shop=False),
        op("GET", "/docs", "docs", "This document as a page", Access.PUBLIC, docs_page,
           {200: str}, touches_shop=False, content_type="text/html"),
    ]
