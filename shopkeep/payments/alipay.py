"""Alipay (open API, RSA2) as a payment provider (SPEC 10).

- Start: a signed page-pay URL (``alipay.trade.page.pay``, the customer's browser opens it), or
  with the ``qr`` channel the ``qr_code`` of ``alipay.trade.precreate``. ``out_trade_no`` is
  the payment id; ``passback_params`` carries the order id, which Alipay hands back in the
  notification; ``time_expire`` is the order's deadline.
- Notifications: form-encoded, RSA2 over the sorted parameters without ``sign``/``sign_type``,
  checked with Alipay's public key; ``app_id`` (and ``seller_id`` when configured) must be
  ours, and ``notify_time`` (the time Alipay sent it, at every retry: Beijing time to the
  second) within ``TOLERANCE_S`` of now. ``TRADE_SUCCESS``/``TRADE_FINISHED`` succeed,
  ``TRADE_CLOSED`` fails; a notification with refund fields (``refund_fee``, ``gmt_refund``,
  ``out_biz_no``) is about a refund and is acknowledged and ignored, so the ``TRADE_CLOSED``
  of a full refund, or a ``TRADE_FINISHED`` after a partial one, never reads as a payment
  result. A plain ``TRADE_FINISHED`` (the refund window ended) repeats a success the shop
  already counted: a duplicate, harmless.
- Refunds: ``alipay.trade.refund`` with ``out_request_no`` = refund id. ``fund_change=Y`` is
  done; ``N`` (a repeat, or still moving) is settled by ``alipay.trade.fastpay.refund.query``
  (``REFUND_SUCCESS``). Queries: ``alipay.trade.query``; ``ACQ.TRADE_NOT_EXIST`` means the
  buyer has not opened the cashier yet: still open. A trade open at the order's deadline is
  closed by ``alipay.trade.close``.

Every response is checked against Alipay's public key before it is believed; an HTTP 4xx
without Alipay's signed answer (a wrong ``--alipay-url``) is a refusal, not an outage. Amounts
are yuan strings, converted exactly (:mod:`shopkeep.payments.money`); Alipay's domestic trades
are CNY: a signed amount that is no amount of yuan (``123.450``) is refused ``wrong_amount``,
in a notification and in a query's answer alike.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import rsa

from shopkeep.payments import alipay_wire as wire
from shopkeep.payments.keys import load_private_key, load_public_key, verify_sha256_rsa
from shopkeep.payments.money import AmountError, from_decimal_string, to_decimal_string
from shopkeep.payments.names import CALLBACK_PATHS
from shopkeep.payments.provider import (
    BAD_SIGNATURE,
    MALFORMED,
    STALE,
    WRONG_AMOUNT,
    WRONG_APP,
    Checkout,
    ConfigurationError,
    GatewayError,
    GatewayRefused,
    HttpAnswer,
    Ignored,
    Notice,
    PaymentClosed,
    PaymentOpen,
    PaymentPaid,
    PaymentPaidRefused,
    PaymentRef,
    PaymentRequest,
    PaymentState,
    RefundDone,
    RefundMissing,
    RefundProcessing,
    RefundRequest,
    RefundState,
    Refused,
    RequestRefused,
    Verdict,
    failure_by_status,
    shop_id,
    signed_malformed,
    stale,
)
from shopkeep.payments.transport import CALL_TIMEOUT_S, Transport

NOTIFY_PATH: Final = CALLBACK_PATHS["alipay"]
CURRENCY: Final = "CNY"
PAID: Final = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
_UNCLOSABLE: Final = frozenset({
    "ACQ.TRADE_NOT_EXIST", "ACQ.TRADE_STATUS_ERROR", "ACQ.TRADE_HAS_SUCCESS",
    "ACQ.TRADE_HAS_CLOSE",
})
"""``alipay.trade.close``'s refusals of a trade that is not waiting for the buyer (never
opened, paid, closed): nothing left to close."""
FORM: Final = {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"}


class AlipayProvider:
    """Alipay through its open-API gateway at ``url`` (production, or a local fake).

    ``private_key`` is the app's (it signs requests); ``alipay_public_key`` checks Alipay's
    responses and notifications; ``notify_url`` is where Alipay posts notifications
    (``--public-url`` + :data:`NOTIFY_PATH`).
    """

    name = "alipay"
    callback_path = NOTIFY_PATH

    def __init__(
        self,
        *,
        app_id: str,
        private_key: rsa.RSAPrivateKey,
        alipay_public_key: rsa.RSAPublicKey,
        notify_url: str,
        url: str = wire.PRODUCTION_URL,
        seller_id: str | None = None,
        timeout_s: float = CALL_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not app_id:
            raise ConfigurationError("--alipay-app-id is required")
        self.app_id = app_id
        self._key = private_key
        self._alipay_key = alipay_public_key
        self.notify_url = notify_url
        self._url = url
        self._seller_id = seller_id
        self._clock = clock
        self._transport = Transport("alipay", timeout_s)

    @classmethod
    def from_files(
        cls, *, app_id: str | None, private_key_file: str | None,
        public_key_file: str | None, **options: Any,
    ) -> AlipayProvider:
        """Built from key files (SPEC 10's flags); ConfigurationError in one line if not."""
        if not app_id:
            raise ConfigurationError("--alipay-app-id is required")
        return cls(
            app_id=app_id,
            private_key=load_private_key(private_key_file, "--alipay-private-key-file"),
            alipay_public_key=load_public_key(public_key_file, "--alipay-public-key-file"),
            **options,
        )

    # -- requests -------------------------------------------------------------------------------

    def _params(self, method: str, biz: Mapping[str, Any], notify: bool) -> dict[str, str]:
        params = {
            "app_id": self.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": wire.beijing_time(self._clock()),
            "version": "1.0",
            "biz_content": wire.biz_content(biz),
        }
        if notify:
            params["notify_url"] = self.notify_url
        return wire.sign_params(params, self._key, wire.REQUEST_UNSIGNED)

    async def _call(
        self, method: str, biz: Mapping[str, Any], notify: bool = False
    ) -> dict[str, Any]:
        """Call ``method``; its verified response section, whatever its ``code``. Raises
        GatewayRefused for a 4xx without one (but ``provider.NOT_NOW``), GatewayError for any other
        answer without one, one Alipay did not sign, or a ``SYSTEM_ERROR``."""
        body = urllib.parse.urlencode(self._params(method, biz, notify)).encode()
        reply = await self._transport.call("POST", self._url, body=body, headers=FORM)
        text = reply.body.decode("utf-8", "replace")
        found = wire.signed_section(text, wire.response_key(method)) or wire.signed_section(
            text, "error_response"
        )
        if found is None:
            # no answer of Alipay's: a 4xx is a no all the same (a mistyped --alipay-url path:
            # 404), which asking again will not change; anything else (a proxy's page, a 408)
            # may pass
            said = f"alipay: {method} answered {reply.status}: {text[:200]!r}"
            raise failure_by_status(reply.status, said, of_the_request=True)
        section, signed = found
        sign = _sign_of(text)
        if not sign:
            if str(section.get("code")) == wire.APP_REFUSED_CODE:
                # Alipay signs every answer but its refusal of the app itself (an unknown
                # app_id, a request whose signature fails): a no, as WeChat Pay's unsigned 401
                # SIGN_ERROR is, which names what the operator must fix
                raise RequestRefused(
                    f"alipay: {method} was refused, unsigned: {_said(section)} (check"
                    " --alipay-app-id and --alipay-private-key-file)"
                )
            raise GatewayError(f"alipay: the answer to {method} is not signed: {text[:200]!r}")
        if not _signed_by(self._alipay_key, signed, sign):
            raise GatewayError(
                f"alipay: the answer to {method} is not signed by Alipay (its signature does"
                " not verify with the key of --alipay-public-key-file)"
            )
        code = str(section.get("code", ""))
        if code == "20000" or str(section.get("sub_code", "")).endswith("SYSTEM_ERROR"):
            raise GatewayError(f"alipay: {method}: {_said(section)}")
        return section

    async def start_payment(self, request: PaymentRequest) -> Checkout:
        """A page-pay URL, or a precreated QR code for the ``qr`` channel."""
        if request.currency != CURRENCY:
            raise GatewayRefused(f"alipay: takes CNY, not {request.currency}")
        biz = {
            "out_trade_no": str(request.payment_id),
            "total_amount": to_decimal_string(request.amount, CURRENCY),
            "subject": request.description[:256] or f"order {request.order_id}",
            "time_expire": wire.beijing_time(request.deadline),
            "passback_params": str(request.order_id),
        }
        if request.channel == "qr":
            section = await self._call("alipay.trade.precreate", biz, notify=True)
            if section.get("code") != wire.SUCCESS_CODE or not section.get("qr_code"):
                raise GatewayRefused(f"alipay: precreate: {_said(section)}")
            return Checkout(qr_code=str(section["qr_code"]))
        page = {**biz, "product_code": "FAST_INSTANT_TRADE_PAY"}
        params = self._params("alipay.trade.page.pay", page, notify=True)
        return Checkout(gateway_url=f"{self._url}?{urllib.parse.urlencode(params)}")

    async def refund(self, request: RefundRequest) -> RefundDone | RefundProcessing:
        """``alipay.trade.refund`` with ``out_request_no`` = the refund's key (Alipay closes
        no refund: a refund it has no word of is sent again under the same key)."""
        biz = _refund_biz(request) | {
            "refund_amount": to_decimal_string(request.amount, CURRENCY),
        }
        if request.gateway_txn_id:
            biz["trade_no"] = request.gateway_txn_id
        section = await self._call("alipay.trade.refund", biz)
        if section.get("code") != wire.SUCCESS_CODE:
            raise GatewayRefused(f"alipay: refund {request.refund_id}: {_said(section)}")
        if section.get("fund_change") == "Y":
            return RefundDone()
        # N: a repeat of a refund already made, or one still moving: the refund query says
        state = await self.query_refund(request)
        return RefundDone() if isinstance(state, RefundDone) else RefundProcessing()

    async def query_refund(self, request: RefundRequest) -> RefundState:
        """``alipay.trade.fastpay.refund.query``: done only on ``REFUND_SUCCESS``."""
        section = await self._call("alipay.trade.fastpay.refund.query", _refund_biz(request))
        if section.get("code") != wire.SUCCESS_CODE:
            if section.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
                return RefundMissing()
            raise GatewayRefused(f"alipay: refund query {request.refund_id}: {_said(section)}")
        if section.get("refund_status") == "REFUND_SUCCESS":
            return RefundDone()
        return RefundMissing()  # no status: not received (Alipay's words); send it again

    async def query_payment(self, payment: PaymentRef) -> PaymentState:
        """``alipay.trade.query`` by ``out_trade_no``."""
        section = await self._call(
            "alipay.trade.query", {"out_trade_no": str(payment.payment_id)}
        )
        if section.get("code") != wire.SUCCESS_CODE:
            if section.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
                return PaymentOpen(exists=False)
            raise GatewayRefused(f"alipay: query {payment.payment_id}: {_said(section)}")
        status = section.get("trade_status")
        if status in PAID:
            try:
                amount = from_decimal_string(str(section.get("total_amount")), CURRENCY)
            except AmountError as exc:
                # signed by Alipay, so no outage to ask about again (it answers the same):
                # refused as the notification saying it is
                return PaymentPaidRefused(WRONG_AMOUNT, f"total_amount: {exc}")
            txn_id = section.get("trade_no")
            if not txn_id:  # signed, so no outage: refused as its notification would be
                return PaymentPaidRefused(MALFORMED, "trade_no: missing from a paid trade")
            return PaymentPaid(
                amount=amount, currency=currency_named(section), gateway_txn_id=str(txn_id),
            )
        if status == "TRADE_CLOSED":
            return PaymentClosed("TRADE_CLOSED")
        return PaymentOpen()

    async def close_payment(self, payment: PaymentRef) -> PaymentClosed | None:
        """``alipay.trade.close`` by ``out_trade_no``: closed. A trade the buyer never opened
        (Alipay creates it at the cashier; past ``time_expire`` it cannot be), or one no
        longer waiting for the buyer (paid, closed), is no error: None, the query says which."""
        section = await self._call(
            "alipay.trade.close", {"out_trade_no": str(payment.payment_id)}
        )
        if section.get("code") == wire.SUCCESS_CODE:
            return PaymentClosed("TRADE_CLOSED")
        if section.get("sub_code") in _UNCLOSABLE:
            return None
        raise GatewayRefused(f"alipay: close {payment.payment_id}: {_said(section)}")

    # -- notifications --------------------------------------------------------------------------

    async def verify_callback(
        self, raw_body: bytes, headers: Mapping[str, str], now: float
    ) -> Verdict:
        """An asynchronous notification (form-encoded, RSA2-signed)."""
        try:
            pairs = urllib.parse.parse_qsl(
                raw_body.decode("utf-8"), keep_blank_values=True, strict_parsing=True
            )
        except (UnicodeDecodeError, ValueError):
            return Refused(MALFORMED, "not a form-encoded notification")
        params = dict(pairs)
        if len(params) != len(pairs):
            return Refused(MALFORMED, "a parameter given twice")
        if params.get("sign_type", "RSA2") != "RSA2" or not wire.verify_params(
            params, self._alipay_key, wire.NOTIFICATION_UNSIGNED
        ):
            return Refused(BAD_SIGNATURE, "the RSA2 signature does not verify")
        if params.get("app_id") != self.app_id:
            return Refused(WRONG_APP, f"app_id {params.get('app_id', '')[:40]!r} is not ours")
        if self._seller_id is not None and params.get("seller_id") != self._seller_id:
            return Refused(WRONG_APP, "seller_id is not ours")
        sent = params.get("notify_time", "")
        try:
            sent_at: float | None = wire.parse_beijing_time(sent)
        except ValueError:
            sent_at = None
        if stale(sent_at, now):
            return Refused(STALE, f"notify_time {sent[:20]!r}, now is {wire.beijing_time(now)}")
        return _classify(params)

    def answer(self, handled: bool, detail: str = "") -> HttpAnswer:
        """``success`` (exactly those 7 bytes) once handled; anything else makes Alipay retry."""
        if handled:
            return HttpAnswer(200, "text/plain", b"success")
        return HttpAnswer(400, "text/plain", b"fail")

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._transport.close()


def currency_named(fields: Mapping[str, Any]) -> str:
    """The currency a trade's notification or query answer names: yuan, unless its
    ``trans_currency`` or ``currency`` (a cross-border trade's pricing currency) names
    another, which the order then refuses as not the payment's."""
    for name in ("trans_currency", "currency"):
        named = fields.get(name)
        if named and str(named) != CURRENCY:
            return str(named)
    return CURRENCY


def _refund_notice(params: Mapping[str, str]) -> bool:
    """Whether a notification is of a refund: it names one (``gmt_refund``, ``out_biz_no``),
    or an amount refunded. A payment's own notification may carry ``refund_fee=0.00`` (Alipay's
    documented sample does): no refund, so the payment's news."""
    if params.get("gmt_refund") or params.get("out_biz_no"):
        return True
    fee = params.get("refund_fee", "")
    return bool(fee) and fee.strip("0.") != ""


def _classify(params: Mapping[str, str]) -> Verdict:
    """A verified notification's meaning (see the module docstring)."""
    status = params.get("trade_status", "")
    if _refund_notice(params):
        return Ignored(f"refund notification ({status})")
    if status not in PAID and status != "TRADE_CLOSED":
        return Ignored(f"trade status {status[:40]}")
    payment_id = shop_id(params.get("out_trade_no"))
    passback = params.get("passback_params", "")
    order_id = shop_id(passback) if passback else None
    if payment_id is None or (passback and order_id is None):
        return signed_malformed(
            "not a payment notification: out_trade_no or passback_params is no id"
        )
    try:
        amount = from_decimal_string(params.get("total_amount", ""), CURRENCY)
    except AmountError as exc:
        return Refused(WRONG_AMOUNT, f"total_amount: {exc}")
    txn_id = params.get("trade_no") or None
    if status in PAID and txn_id is None:
        return signed_malformed("a paid trade without trade_no")
    return Notice(
        payment_id=payment_id,
        order_id=order_id,
        amount=amount,
        currency=currency_named(params),
        status="succeeded" if status in PAID else "failed",
        gateway_txn_id=txn_id,
        event_id=params.get("notify_id"),
    )


def _refund_biz(request: RefundRequest) -> dict[str, str]:
    if request.payment_id is None:
        raise GatewayRefused(f"alipay: refund {request.refund_id} names no payment")
    return {"out_trade_no": str(request.payment_id), "out_request_no": request.key}


def _signed_by(key: rsa.RSAPublicKey, section: str, sign: str) -> bool:
    """Whether ``sign`` is Alipay's signature of the response ``section``: as it came, or, as
    Alipay's own PHP SDK also tries (``AopClient::checkResponseSign``), with its escaped
    slashes (``\\/``, which JSON may write for ``/``) read as the ``/`` they stand for."""
    if verify_sha256_rsa(key, section.encode("utf-8"), sign):
        return True
    return "\\/" in section and verify_sha256_rsa(
        key, section.replace("\\/", "/").encode("utf-8"), sign
    )


def _sign_of(body: str) -> str | None:
    """The top-level ``sign`` string of a response body."""
    try:
        value = json.loads(body).get("sign")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _said(section: Mapping[str, Any]) -> str:
    parts = (section.get(k) for k in ("code", "msg", "sub_code", "sub_msg"))
    return " ".join(str(p) for p in parts if p)
