"""A local fake of Alipay's open-API gateway (``/gateway.do``), for tests and the proof harness.

It speaks the documented wire format (:mod:`shopkeep.payments.alipay_wire`): it checks each
request's RSA2 signature with the app's public key and signs its answers and notifications with
its own key (the shop is configured with the public half, as with Alipay's real key). Methods:
``alipay.trade.page.pay`` (GET, the customer's browser: creates the trade),
``alipay.trade.precreate``, ``alipay.trade.query``, ``alipay.trade.close`` (a trade waiting for
the buyer only: a closed one cannot be paid, :class:`Unpayable`), ``alipay.trade.refund`` (once
per ``out_request_no``: a repeat answers ``fund_change=N``), ``alipay.trade.fastpay.refund.query``.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from shopkeep.payments import alipay_wire as wire
from shopkeep.payments.fakes.common import Delivery, FakeServer, Unpayable
from shopkeep.payments.money import from_decimal_string, to_decimal_string

PATH: Final = "/gateway.do"
SELLER_ID: Final = "2088000000000001"


@dataclass
class Trade:
    """A trade at the fake: what the shop asked for, and what happened to it."""

    out_trade_no: str
    amount: int
    subject: str
    passback: str
    notify_url: str
    status: str = "WAIT_BUYER_PAY"
    trade_no: str = ""


class FakeAlipay(FakeServer):
    """Alipay for ``app_id``: ``app_public_key`` checks the shop's requests, ``key`` signs."""

    name = "alipay"
    # the first try, then 4m, 10m, 10m, 1h, 2h, 6h, 15h: 8 notifications in about 25 h
    schedule = (0.0, 240.0, 600.0, 600.0, 3600.0, 7200.0, 21600.0, 54000.0)

    def __init__(
        self, *, app_id: str, app_public_key: rsa.RSAPublicKey, key: rsa.RSAPrivateKey,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.app_id = app_id
        self._app_key = app_public_key
        self._key = key
        self.trades: dict[str, Trade] = {}
        self.other_trades: dict[str, str] = {}
        """A second trade of a payment, collected too, by its ``trade_no``: the payment's
        ``out_trade_no`` (Alipay should never make one; a test may say it did)."""
        self.app.router.add_post(PATH, self._api)
        self.app.router.add_get(PATH, self._page)

    @property
    def gateway_url(self) -> str:
        """What the shop's ``--alipay-url`` is set to."""
        return self.url + PATH

    # -- what the customer and the provider do --------------------------------------------------

    async def pay(self, out_trade_no: str, *, notify: bool = True) -> Delivery | None:
        """The buyer pays the trade; Alipay notifies (unless ``notify`` is False: a dropped
        notification, which only a query finds)."""
        trade = self.trades[out_trade_no]
        if trade.status == "TRADE_CLOSED":
            raise Unpayable(f"trade {out_trade_no} is closed")
        trade.status = "TRADE_SUCCESS"
        trade.trade_no = trade.trade_no or self.next_id("2024")
        if not notify:
            return None
        return await self.notify(trade.notify_url, self.notification(out_trade_no))

    def notification(self, out_trade_no: str, /, **fields: str) -> bytes:
        """The signed form body Alipay would send about the trade now; ``fields`` override
        (or, set to ``""``, remove) parameters before signing."""
        return self._notification(out_trade_no, fields, signed_empty=False)

    def notification_signed_empty(self, out_trade_no: str, /, **fields: str) -> bytes:
        """:meth:`notification`, a field set to ``""`` sent empty and signed so (``key=``), as
        some of Alipay's SDKs check a notification."""
        return self._notification(out_trade_no, fields, signed_empty=True)

    def _notification(
        self, out_trade_no: str, fields: dict[str, str], *, signed_empty: bool
    ) -> bytes:
        trade = self.trades[out_trade_no]
        now = wire.beijing_time(time.time())
        params = {
            "notify_time": now, "notify_type": "trade_status_sync",
            "notify_id": self.next_id("nid"), "app_id": self.app_id, "charset": "utf-8",
            "version": "1.0", "sign_type": "RSA2", "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no, "trade_status": trade.status,
            "total_amount": to_decimal_string(trade.amount), "receipt_amount":
            to_decimal_string(trade.amount), "seller_id": SELLER_ID, "subject": trade.subject,
            "gmt_payment": now, "passback_params": trade.passback,
        }
        params = {k: v for k, v in (params | fields).items() if signed_empty or v != ""}
        signed = wire.sign_params(
            params, self._key, wire.NOTIFICATION_UNSIGNED, empty=signed_empty
        )
        return urllib.parse.urlencode(signed).encode()

    async def notify(self, url: str, body: bytes) -> Delivery:
        """Post a notification until the shop answers ``success``."""
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        return await self.deliver(url, body, headers, _says_success)

    # -- the API --------------------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.Response:
        """The cashier page of a page-pay URL: a valid signature opens the trade."""
        params = dict(request.query)
        if not wire.verify_params(params, self._app_key, wire.REQUEST_UNSIGNED):
            return web.Response(status=400, text="invalid-signature")
        self._open(params, json.loads(params["biz_content"]))
        return web.Response(text="<html>cashier</html>", content_type="text/html")

    async def _api(self, request: web.Request) -> web.Response:
        params = dict(urllib.parse.parse_qsl((await request.read()).decode("utf-8")))
        method = params.get("method", "")
        if params.get("app_id") != self.app_id:
            return _json(wire.unsigned_refusal(method, "isv.invalid-app-id"))
        if not wire.verify_params(params, self._app_key, wire.REQUEST_UNSIGNED):
            return _json(wire.unsigned_refusal(method, "isv.invalid-signature"))
        biz = json.loads(params.get("biz_content", "{}"))
        if method == "alipay.trade.refund":
            key = f"{biz.get('out_trade_no')}/{biz.get('out_request_no')}"
            gated = await self.refund_gate(key)
            if gated is not None:
                return gated
        handler = {
            "alipay.trade.precreate": self._precreate,
            "alipay.trade.query": self._query,
            "alipay.trade.close": self._close,
            "alipay.trade.refund": self._refund,
            "alipay.trade.fastpay.refund.query": self._refund_query,
        }.get(method)
        if handler is None:
            return self._answer(method, _error("40004", "isv.invalid-method"))
        return self._answer(method, handler(params, biz))

    def _answer(self, method: str, section: Mapping[str, Any]) -> web.Response:
        return _json(wire.signed_response(method, section, self._key))

    def _open(self, params: Mapping[str, str], biz: Mapping[str, Any]) -> Trade:
        out_trade_no = str(biz["out_trade_no"])
        trade = self.trades.get(out_trade_no)
        if trade is None:
            trade = self.trades[out_trade_no] = Trade(
                out_trade_no, from_decimal_string(str(biz["total_amount"])),
                str(biz.get("subject", "")), str(biz.get("passback_params", "")),
                params.get("notify_url", ""),
            )
        return trade

    def _precreate(self, params: Mapping[str, str], biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self._open(params, biz)
        return _ok(out_trade_no=trade.out_trade_no,
                   qr_code=f"https://qr.alipay.com/fake{trade.out_trade_no}")

    def _query(self, params: Mapping[str, str], biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self.trades.get(str(biz.get("out_trade_no")))
        if trade is None:
            return _error("40004", "ACQ.TRADE_NOT_EXIST")
        return _ok(out_trade_no=trade.out_trade_no, trade_no=trade.trade_no,
                   trade_status=trade.status, total_amount=to_decimal_string(trade.amount))

    def _close(self, params: Mapping[str, str], biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self.trades.get(str(biz.get("out_trade_no")))
        if trade is None:
            return _error("40004", "ACQ.TRADE_NOT_EXIST")
        if trade.status != "WAIT_BUYER_PAY":
            return _error("40004", "ACQ.TRADE_STATUS_ERROR")
        trade.status = "TRADE_CLOSED"
        return _ok(out_trade_no=trade.out_trade_no, trade_no=trade.trade_no)

    def _refund(self, params: Mapping[str, str], biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self.trades.get(str(biz.get("out_trade_no")))
        trade_no = str(biz.get("trade_no") or (trade.trade_no if trade else ""))
        other = self.other_trades.get(trade_no) == (trade.out_trade_no if trade else None)
        if trade is None or (trade_no != trade.trade_no and not other):
            # Alipay takes trade_no before out_trade_no: a refund of a trade it never made is
            # refused, not taken from the payment's own trade
            return _error("40004", "ACQ.TRADE_NOT_EXIST")
        if trade.status not in ("TRADE_SUCCESS", "TRADE_FINISHED"):
            return _error("40004", "ACQ.TRADE_STATUS_ERROR")
        key = f"{trade.out_trade_no}/{biz.get('out_request_no')}"
        if key in self.refunds:
            return _ok(trade_no=trade_no, fund_change="N")
        account = trade_no if other else trade.out_trade_no
        amount = from_decimal_string(str(biz.get("refund_amount")))
        if amount > trade.amount - self.refunded(account):
            return _error("40004", "ACQ.REASON_TRADE_REFUND_FEE_ERR")
        self.record_refund(key, account, amount, "rf")
        return _ok(trade_no=trade_no, fund_change="Y",
                   refund_fee=to_decimal_string(self.refunded(account)))

    def _refund_query(self, params: Mapping[str, str], biz: Mapping[str, Any]) -> dict[str, Any]:
        key = f"{biz.get('out_trade_no')}/{biz.get('out_request_no')}"
        refund = self.refunds.get(key)
        if refund is None:
            return _ok(out_trade_no=str(biz.get("out_trade_no")))
        return _ok(out_request_no=str(biz.get("out_request_no")), refund_status="REFUND_SUCCESS",
                   refund_amount=to_decimal_string(refund.amount))


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def _ok(**fields: str) -> dict[str, Any]:
    return {"code": wire.SUCCESS_CODE, "msg": "Success", **fields}


def _error(code: str, sub_code: str) -> dict[str, Any]:
    msg = "Business Failed" if code == "40004" else "Invalid Arguments"
    return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_code}


def _says_success(status: int, body: bytes) -> bool:
    return body == b"success"
