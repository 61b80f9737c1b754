"""A local fake of WeChat Pay API v3, for tests and the proof harness.

It checks each request's ``Authorization`` (``WECHATPAY2-SHA256-RSA2048``) with the merchant's
public key, signs every answer and notification with its platform key (``Wechatpay-*``
headers), and encrypts notification resources with the API v3 key (AEAD_AES_256_GCM). Routes:
Native pay, the order query and the close by ``out_trade_no`` (an order waiting for the
customer only: a closed one cannot be paid, :class:`Unpayable`), domestic refunds (once per
``out_refund_no``: a repeat answers the same refund) and the refund query.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from shopkeep.payments import wechatpay_wire as wire
from shopkeep.payments.fakes.common import Delivery, FakeRefund, FakeServer, Unpayable
from shopkeep.payments.keys import verify_sha256_rsa

PLATFORM_SERIAL: Final = "PUB_KEY_ID_0000000000000001"


@dataclass
class Order:
    """An order at the fake: what the merchant asked for, and what happened to it."""

    out_trade_no: str
    appid: str
    amount: int
    currency: str
    attach: str
    notify_url: str
    trade_state: str = "NOTPAY"
    transaction_id: str = ""


class FakeWeChatPay(FakeServer):
    """WeChat Pay for merchant ``mch_id``: ``merchant_public_key`` checks the shop's requests,
    ``platform_key`` signs answers and notifications, ``apiv3_key`` encrypts resources."""

    name = "wechatpay"
    # the first try, then 15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h (Native pay)
    schedule = (0.0, 15.0, 15.0, 30.0, 180.0, 600.0, 1200.0, 1800.0, 1800.0, 1800.0, 3600.0,
                10800.0, 10800.0, 10800.0, 21600.0, 21600.0)

    def __init__(
        self, *, mch_id: str, merchant_public_key: rsa.RSAPublicKey,
        platform_key: rsa.RSAPrivateKey, apiv3_key: bytes, **options: Any,
    ) -> None:
        super().__init__(**options)
        self.mch_id = mch_id
        self._merchant_key = merchant_public_key
        self._platform_key = platform_key
        self._apiv3_key = apiv3_key
        self.orders: dict[str, Order] = {}
        self.other_transactions: dict[str, str] = {}
        """A second transaction of an order, collected too, by its id: the order's
        ``out_trade_no`` (WeChat Pay should never make one; a test may say it did)."""
        self.refund_answers: dict[str, dict[str, Any]] = {}
        routes = self.app.router
        routes.add_post("/v3/pay/transactions/native", self._native)
        routes.add_get("/v3/pay/transactions/out-trade-no/{no}", self._query)
        routes.add_post("/v3/pay/transactions/out-trade-no/{no}/close", self._close)
        routes.add_post("/v3/refund/domestic/refunds", self._refund)
        routes.add_get("/v3/refund/domestic/refunds/{no}", self._refund_query)

    # -- what the customer and the provider do --------------------------------------------------

    async def pay(self, out_trade_no: str, *, notify: bool = True) -> Delivery | None:
        """The customer pays the order; WeChat Pay notifies (unless ``notify`` is False)."""
        order = self.orders[out_trade_no]
        if order.trade_state == "CLOSED":
            raise Unpayable(f"order {out_trade_no} is closed")
        order.trade_state = "SUCCESS"
        order.transaction_id = order.transaction_id or self.next_id("4200")
        if not notify:
            return None
        body = self.notification(out_trade_no)
        return await self.deliver(
            order.notify_url, body, lambda: self.headers_for(body), _acknowledged
        )

    def begin_paying(self, out_trade_no: str) -> None:
        """The customer is paying the order this moment (entering the password): USERPAYING,
        which the close turns down (202 ``USER_PAYING``); :meth:`pay` ends it."""
        self.orders[out_trade_no].trade_state = "USERPAYING"

    def transaction(self, out_trade_no: str) -> dict[str, Any]:
        """The order as a ``transaction`` resource (the plaintext of a notification)."""
        order = self.orders[out_trade_no]
        return {
            "appid": order.appid, "mchid": self.mch_id, "out_trade_no": order.out_trade_no,
            "transaction_id": order.transaction_id, "trade_type": "NATIVE",
            "trade_state": order.trade_state, "trade_state_desc": order.trade_state,
            "attach": order.attach, "success_time": "2024-01-01T00:00:00+08:00",
            "payer": {"openid": "oFAKE"},
            "amount": {"total": order.amount, "payer_total": order.amount,
                       "currency": order.currency, "payer_currency": order.currency},
        }

    def notification(self, out_trade_no: str, /, **plain: Any) -> bytes:
        """The raw body of a TRANSACTION.SUCCESS notification; ``plain`` overrides fields of
        the transaction before it is encrypted."""
        resource = self.transaction(out_trade_no) | plain
        event = {
            "id": self.next_id("EV-"), "create_time": "2024-01-01T00:00:00+08:00",
            "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": wire.encrypt_resource(
                self._apiv3_key, json.dumps(resource).encode(), "transaction"
            ),
        }
        return json.dumps(event, ensure_ascii=False).encode()

    def headers_for(self, body: bytes, timestamp: int | str | None = None) -> dict[str, str]:
        """The platform's signature headers for ``body``, signed now by default (or at
        ``timestamp``: any text, as a header can carry)."""
        when = str(int(time.time()) if timestamp is None else timestamp)
        return {"Content-Type": "application/json",
                **wire.signed_headers(self._platform_key, PLATFORM_SERIAL, body, when)}

    # -- the API --------------------------------------------------------------------------------

    def _answer(self, status: int, payload: dict[str, Any] | None) -> web.Response:
        body = b"" if payload is None else json.dumps(payload).encode()
        return web.Response(status=status, body=body, headers=self.headers_for(body))

    async def _authorized(self, request: web.Request) -> bytes | None:
        """The request body if its Authorization verifies, else None."""
        body = await request.read()
        fields = wire.parse_authorization(request.headers.get("Authorization"))
        if fields is None or fields.get("mchid") != self.mch_id:
            return None
        message = wire.request_message(
            request.method, request.path_qs, fields.get("timestamp", ""),
            fields.get("nonce_str", ""), body,
        )
        if not verify_sha256_rsa(self._merchant_key, message, fields.get("signature")):
            return None
        return body

    async def _merchants(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The JSON body of a request signed by the merchant and naming it (``mchid``), or the
        answer that refuses it (401, 400)."""
        body = await self._authorized(request)
        if body is None:
            return self._answer(401, {"code": "SIGN_ERROR", "message": "bad signature"})
        asked: dict[str, Any] = json.loads(body)
        if asked.get("mchid") != self.mch_id:
            return self._answer(400, {"code": "PARAM_ERROR", "message": "mchid"})
        return asked

    async def _native(self, request: web.Request) -> web.Response:
        asked = await self._merchants(request)
        if isinstance(asked, web.Response):
            return asked
        no = str(asked["out_trade_no"])
        if no not in self.orders:
            self.orders[no] = Order(no, str(asked["appid"]), int(asked["amount"]["total"]),
                                    str(asked["amount"].get("currency", "CNY")),
                                    str(asked.get("attach", "")), str(asked["notify_url"]))
        return self._answer(200, {"code_url": f"weixin://wxpay/bizpayurl?pr=fake{no}"})

    async def _query(self, request: web.Request) -> web.Response:
        if await self._authorized(request) is None:
            return self._answer(401, {"code": "SIGN_ERROR", "message": "bad signature"})
        no = request.match_info["no"]
        if no not in self.orders:
            return self._answer(404, {"code": "ORDER_NOT_EXIST", "message": "no such order"})
        return self._answer(200, self.transaction(no))

    async def _close(self, request: web.Request) -> web.Response:
        asked = await self._merchants(request)
        if isinstance(asked, web.Response):
            return asked
        order = self.orders.get(request.match_info["no"])
        if order is None:
            return self._answer(404, {"code": "ORDER_NOT_EXIST", "message": "no such order"})
        if order.trade_state in ("SUCCESS", "REFUND"):
            return self._answer(400, {"code": "ORDERPAID", "message": "the order is paid"})
        if order.trade_state == "USERPAYING":
            return self._answer(202, {"code": "USER_PAYING", "message": "the customer is paying"})
        order.trade_state = "CLOSED"
        return self._answer(204, None)

    async def _refund(self, request: web.Request) -> web.Response:
        body = await self._authorized(request)
        if body is None:
            return self._answer(401, {"code": "SIGN_ERROR", "message": "bad signature"})
        asked = json.loads(body)
        key = str(asked.get("out_refund_no"))
        gated = await self.refund_gate(key)
        if gated is not None:
            return gated
        if key in self.refund_answers:
            return self._answer(200, self.refund_answers[key])
        # by transaction_id or out_trade_no, as WeChat Pay takes either; a second
        # transaction's refunds are counted against it, not the order's own
        txn = asked.get("transaction_id")
        if txn is None:
            order = self.orders.get(str(asked.get("out_trade_no")))
            paid = None if order is None else order.transaction_id
        else:
            paid = str(txn)
            order = self.orders.get(self.other_transactions.get(paid, "")) or next(
                (o for o in self.orders.values() if o.transaction_id == paid), None
            )
        if order is None or order.trade_state not in ("SUCCESS", "REFUND"):
            return self._answer(404, {"code": "RESOURCE_NOT_EXISTS", "message": "no such order"})
        own = paid not in self.other_transactions
        account = order.out_trade_no if own else str(paid)
        amount = int(asked["amount"]["refund"])
        if amount > order.amount - self.refunded(account):
            return self._answer(403, {"code": "NOT_ENOUGH", "message": "refund exceeds"})
        refund = self.record_refund(key, account, amount, "5030")
        if own:
            order.trade_state = "REFUND"
        answer = {"refund_id": refund.provider_id, "out_refund_no": key,
                  "transaction_id": paid, "out_trade_no": order.out_trade_no,
                  "status": "SUCCESS", "amount": {"refund": amount, "total": order.amount,
                                                  "currency": order.currency}}
        self.refund_answers[key] = answer
        return self._answer(200, answer)

    def closed(self, refund: FakeRefund) -> None:
        """WeChat Pay's word for a refund closed unpaid."""
        self.refund_answers[refund.key]["status"] = "CLOSED"

    async def _refund_query(self, request: web.Request) -> web.Response:
        if await self._authorized(request) is None:
            return self._answer(401, {"code": "SIGN_ERROR", "message": "bad signature"})
        answer = self.refund_answers.get(request.match_info["no"])
        if answer is None:
            return self._answer(404, {"code": "RESOURCE_NOT_EXISTS", "message": "no refund"})
        return self._answer(200, answer)


def _acknowledged(status: int, body: bytes) -> bool:
    return status in (200, 204)
