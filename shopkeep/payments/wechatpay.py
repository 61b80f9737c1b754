"""WeChat Pay API v3 as a payment provider (SPEC 10).

- Start: Native pay (``POST /v3/pay/transactions/native``) answers the ``code_url`` the customer
  scans; ``out_trade_no`` is the payment id, ``attach`` carries the order id (WeChat Pay hands
  it back in the notification), ``time_expire`` is the order's deadline. A 200 without a
  ``code_url`` (or not JSON) is no answer, as a 5xx is; a 4xx is a refusal.
- Notifications: ``Wechatpay-Signature`` over ``timestamp\\nnonce\\nbody\\n`` checked with the
  platform public key, the timestamp within 5 minutes of now (WeChat Pay's window for requests),
  then ``resource`` decrypted with the API v3 key; ``mchid`` and ``appid`` must be ours.
  ``TRANSACTION.SUCCESS`` succeeds; other events (refunds') are acknowledged and ignored. A
  ``WECHATPAY/SIGNTEST/`` probe fails verification like any bad signature. Answer 204, or a 4xx
  with ``{"code": "FAIL", ...}`` (a 200 with FAIL would not be retried).
- Refunds: ``POST /v3/refund/domestic/refunds``, ``out_refund_no`` = refund id (a repeat
  answers the same refund), queried by ``out_refund_no``. A refund CLOSED (a week in
  PROCESSING, no money moved) is sent again as ``<refund id>-<n>``, since its number names the
  closed one for good; an ABNORMAL one (the card refused it) is the merchant's to settle. An
  answer with none of these statuses (a 200 saying ``SYSTEM_ERROR``) is no answer: retried.
- Queries: by ``out_trade_no``; an order open at the deadline is closed (``.../close``) before
  the order is treated as unpaid, as WeChat Pay asks of a merchant whose customer paid late.

Every request is signed with the merchant key; every answer is checked with the platform key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import rsa

from shopkeep.payments import wechatpay_wire as wire
from shopkeep.payments.alipay_wire import BEIJING
from shopkeep.payments.keys import load_private_key, load_public_keys, read_secret
from shopkeep.payments.names import CALLBACK_PATHS
from shopkeep.payments.provider import (
    BAD_SIGNATURE,
    NOT_NOW,
    STALE,
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
    PaymentRef,
    PaymentRequest,
    PaymentState,
    RefundClosed,
    RefundDone,
    RefundFailed,
    RefundMissing,
    RefundProcessing,
    RefundRequest,
    RefundState,
    RefundTaken,
    Refused,
    RequestRefused,
    Verdict,
    failure_by_status,
    header,
    shop_id,
    signed_malformed,
    stale,
    whole_number,
)
from shopkeep.payments.transport import CALL_TIMEOUT_S, Transport

NOTIFY_PATH: Final = CALLBACK_PATHS["wechatpay"]
OPEN_STATES: Final = frozenset({"NOTPAY", "USERPAYING", "ACCEPT"})
PAID_STATES: Final = frozenset({"SUCCESS", "REFUND"})
_UNCLOSABLE: Final = frozenset({"ORDER_CLOSED", "ORDERPAID", "ORDER_NOT_EXIST"})
"""The close's refusals of an order that is not waiting for the customer: nothing to close."""
UNAUTHORIZED: Final = 401
"""WeChat Pay's answer to a request whose signature, merchant or serial it refuses."""


class WeChatPayProvider:
    """WeChat Pay for merchant ``mch_id`` and app ``app_id``, through the API at ``url``.

    ``private_key`` and ``cert_serial`` are the merchant's API key and its certificate's
    serial (they sign requests); ``apiv3_key`` (32 bytes) decrypts notifications;
    ``platform_keys`` check WeChat Pay's answers and notifications (one verifying is enough:
    while WeChat Pay rotates its key, the old one and the new).
    """

    name = "wechatpay"
    callback_path = NOTIFY_PATH

    def __init__(
        self,
        *,
        mch_id: str,
        app_id: str,
        private_key: rsa.RSAPrivateKey,
        cert_serial: str,
        apiv3_key: bytes,
        platform_keys: Sequence[rsa.RSAPublicKey],
        notify_url: str,
        url: str = wire.PRODUCTION_URL,
        timeout_s: float = CALL_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for value, setting in ((mch_id, "--wechatpay-mch-id"), (app_id, "--wechatpay-app-id"),
                               (cert_serial, "--wechatpay-cert-serial")):
            if not value:
                raise ConfigurationError(f"{setting} is required")
        if len(apiv3_key) != 32:
            raise ConfigurationError("--wechatpay-apiv3-key-file: the API v3 key is 32 bytes")
        self.mch_id = mch_id
        self.app_id = app_id
        self._key = private_key
        self._serial = cert_serial
        self._apiv3_key = apiv3_key
        if not platform_keys:
            raise ConfigurationError("--wechatpay-platform-public-key-file: no key")
        self._platform_keys = tuple(platform_keys)
        self.notify_url = notify_url
        self._url = url.rstrip("/")
        self._clock = clock
        self._transport = Transport("wechatpay", timeout_s)

    @classmethod
    def from_files(
        cls, *, mch_id: str | None, app_id: str | None, private_key_file: str | None,
        cert_serial: str | None, apiv3_key_file: str | None,
        platform_public_key_file: str | None, **options: Any,
    ) -> WeChatPayProvider:
        """Built from key files (SPEC 10's flags); ConfigurationError in one line if not."""
        return cls(
            mch_id=mch_id or "",
            app_id=app_id or "",
            cert_serial=cert_serial or "",
            private_key=load_private_key(private_key_file, "--wechatpay-private-key-file"),
            apiv3_key=read_secret(apiv3_key_file, "--wechatpay-apiv3-key-file").encode(),
            platform_keys=load_public_keys(
                platform_public_key_file, "--wechatpay-platform-public-key-file"
            ),
            **options,
        )

    # -- requests -------------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, payload: Mapping[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Send a signed request; the status and JSON of an answer signed by the platform.
        Raises GatewayRefused for an unsigned 4xx (but ``provider.NOT_NOW``), GatewayError for any
        other answer WeChat Pay did not sign, one that is not JSON, or a ``NOT_NOW`` signed."""
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Authorization": wire.authorization(
                mch_id=self.mch_id, serial=self._serial, key=self._key, method=method,
                path=path, body=body, timestamp=str(int(self._clock())), nonce=wire.new_nonce(),
            ),
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        reply = await self._transport.call(method, self._url + path, body=body or None,
                                           headers=headers)
        said = reply.headers
        if not wire.verify_signed(self._platform_keys, header(said, wire.TIMESTAMP),
                                  header(said, wire.NONCE), header(said, wire.SIGNATURE),
                                  reply.body):
            unsigned = (f"wechatpay: the answer to {method} {path} is not signed by WeChat Pay "
                        f"({reply.status}): {reply.body[:200].decode('utf-8', 'replace')!r}")
            # WeChat Pay signs only the answers to requests whose own signature it verified:
            # its 401 SIGN_ERROR (a wrong key or certificate serial) comes unsigned, as does a
            # 404 of a mistyped --wechatpay-url. A 4xx is a no, which asking again will not
            # change; trusted no further than a no is (a refusal moves no money).
            raise failure_by_status(reply.status, unsigned, of_the_request=True)
        try:
            answer = json.loads(reply.body) if reply.body else {}
        except ValueError:
            raise GatewayError(f"wechatpay: {method} {path}: not JSON") from None
        if reply.status == UNAUTHORIZED:  # SIGN_ERROR, signed: the merchant's key refused
            raise RequestRefused(f"wechatpay: {method} {path}: {reply.status} {_said(answer)}")
        if reply.status in NOT_NOW:  # signed or not, "not now": an outage, asked again
            raise GatewayError(f"wechatpay: {method} {path}: {reply.status} {_said(answer)}")
        return reply.status, answer if isinstance(answer, dict) else {}

    async def start_payment(self, request: PaymentRequest) -> Checkout:
        """Native pay: the ``code_url`` to show as a QR code."""
        deadline = datetime.fromtimestamp(request.deadline, BEIJING).isoformat(timespec="seconds")
        status, answer = await self._call("POST", "/v3/pay/transactions/native", {
            "appid": self.app_id,
            "mchid": self.mch_id,
            "description": request.description[:127] or f"order {request.order_id}",
            "out_trade_no": str(request.payment_id),
            "time_expire": deadline,
            "attach": str(request.order_id),
            "notify_url": self.notify_url,
            "amount": {"total": request.amount, "currency": request.currency},
        })
        code_url = answer.get("code_url")
        if not 200 <= status < 300:  # a 4xx (a 5xx is the transport's GatewayError)
            raise GatewayRefused(f"wechatpay: native pay answered {status}: {_said(answer)}")
        if not isinstance(code_url, str) or not code_url:
            # a 2xx without what it is for is no answer (as one that is not JSON): try again
            raise GatewayError(f"wechatpay: native pay answered {status} without a code_url: "
                               f"{_said(answer) or str(answer)[:200]}")
        return Checkout(code_url=code_url)

    async def refund(self, request: RefundRequest) -> RefundTaken:
        """A domestic refund, ``out_refund_no`` = the refund's key, of the transaction it gives
        back (``transaction_id``: a second transaction of one payment is refunded, not the
        payment's first), or of the payment (``out_trade_no``) when none is known."""
        if request.payment_id is None:
            raise GatewayRefused(f"wechatpay: refund {request.refund_id} names no payment")
        of = (
            {"transaction_id": request.gateway_txn_id}
            if request.gateway_txn_id
            else {"out_trade_no": str(request.payment_id)}
        )
        status, answer = await self._call("POST", "/v3/refund/domestic/refunds", {
            **of,
            "out_refund_no": request.key,
            "amount": {"refund": request.amount, "total": request.payment_amount,
                       "currency": request.currency},
        })
        if status != 200:
            raise GatewayRefused(f"wechatpay: refund {request.refund_id}: {status} "
                                 f"{_said(answer)}")
        return _refund_state(answer, f"refund {request.refund_id}")

    async def query_refund(self, request: RefundRequest) -> RefundState:
        """``GET /v3/refund/domestic/refunds/{out_refund_no}``."""
        status, answer = await self._call(
            "GET", f"/v3/refund/domestic/refunds/{request.key}"
        )
        if status == 404:
            return RefundMissing()
        if status != 200:
            raise GatewayRefused(f"wechatpay: refund query {request.refund_id}: {_said(answer)}")
        return _refund_state(answer, f"refund query {request.refund_id}")

    async def query_payment(self, payment: PaymentRef) -> PaymentState:
        """``GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=``."""
        path = f"/v3/pay/transactions/out-trade-no/{payment.payment_id}?mchid={self.mch_id}"
        status, answer = await self._call("GET", path)
        if status == 404:
            return PaymentOpen(exists=False)  # ORDER_NOT_EXIST
        if status != 200:
            raise GatewayRefused(f"wechatpay: query {payment.payment_id}: {_said(answer)}")
        state = answer.get("trade_state")
        if state in PAID_STATES:
            try:
                amount = answer["amount"]
                return PaymentPaid(amount=_whole(amount["total"]),
                                   currency=str(amount["currency"]),
                                   gateway_txn_id=str(answer["transaction_id"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise GatewayError(f"wechatpay: query {payment.payment_id}: {exc}") from None
        if state in OPEN_STATES:
            return PaymentOpen()
        return PaymentClosed(str(state))

    async def close_payment(self, payment: PaymentRef) -> PaymentClosed | None:
        """``POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close``: 204, closed. An
        order paid or closed already, one WeChat Pay has no word of, and one the customer is
        paying this moment (202 ``USER_PAYING``) are no error: None, the query says which."""
        path = f"/v3/pay/transactions/out-trade-no/{payment.payment_id}/close"
        status, answer = await self._call("POST", path, {"mchid": self.mch_id})
        if status == 204:
            return PaymentClosed("CLOSED")
        if status in (202, 404) or answer.get("code") in _UNCLOSABLE:
            return None
        raise GatewayRefused(f"wechatpay: close {payment.payment_id}: {status} {_said(answer)}")

    # -- notifications --------------------------------------------------------------------------

    async def verify_callback(
        self, raw_body: bytes, headers: Mapping[str, str], now: float
    ) -> Verdict:
        """An API v3 notification: signature, time, then the decrypted resource."""
        timestamp = header(headers, wire.TIMESTAMP)
        if not wire.verify_signed(self._platform_keys, timestamp, header(headers, wire.NONCE),
                                  header(headers, wire.SIGNATURE), raw_body):
            return Refused(BAD_SIGNATURE, "Wechatpay-Signature does not verify")
        signed_at = whole_number(timestamp)
        if stale(signed_at, now):
            return Refused(STALE, f"signed at {str(timestamp)[:20]}, now is {int(now)}")
        try:
            event = _object(_json(raw_body, "the body"), "the body")
            if event.get("event_type") != "TRANSACTION.SUCCESS":
                return Ignored(f"event {str(event.get('event_type'))[:40]}")
            resource = _object(event.get("resource"), "its resource")
            what = "its resource's plaintext"
            plain = _object(_json(wire.decrypt_resource(self._apiv3_key, resource), what), what)
        except ValueError as exc:
            return signed_malformed(f"not a payment notification: {exc}")
        if plain.get("mchid") != self.mch_id or plain.get("appid") != self.app_id:
            return Refused(WRONG_APP, "mchid or appid is not ours")
        return _notice(plain, str(event.get("id") or "") or None)

    def answer(self, handled: bool, detail: str = "") -> HttpAnswer:
        """204 once handled; 400 with ``{"code": "FAIL"}`` makes WeChat Pay send it again."""
        if handled:
            return HttpAnswer(204, None, b"")
        body = json.dumps({"code": "FAIL", "message": detail[:200] or "refused"}).encode()
        return HttpAnswer(400, "application/json", body)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._transport.close()


def _notice(plain: Mapping[str, Any], event_id: str | None) -> Verdict:
    try:
        if plain.get("trade_state") != "SUCCESS":
            return Ignored(f"trade state {str(plain.get('trade_state'))[:40]}")
        amount = _object(plain.get("amount"), "its amount")
        payment_id = shop_id(plain.get("out_trade_no"))
        if payment_id is None:
            raise ValueError("out_trade_no is no payment id")
        txn_id = plain.get("transaction_id")
        if not isinstance(txn_id, str) or not txn_id:
            # a success is a transaction of WeChat Pay's: without its id, a second notification
            # of the same payment would count as a second payment, and refund the only one
            raise ValueError("a successful transaction without transaction_id")
        return Notice(
            payment_id=payment_id,
            order_id=shop_id(plain.get("attach")),
            amount=_whole(amount.get("total")),
            currency=_text(amount.get("currency"), "its currency"),
            status="succeeded",
            gateway_txn_id=txn_id,
            event_id=event_id,
        )
    except ValueError as exc:
        return signed_malformed(f"not a payment notification: {exc}")


def _json(data: bytes, what: str) -> Any:
    """``data`` read as JSON; ValueError naming ``what`` when it is none (not UTF-8, not JSON,
    nested deeper than the parser goes, a number of more digits than Python reads)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise ValueError(f"{what} is not JSON") from None


def _object(value: object, what: str) -> Mapping[str, Any]:
    """``value`` when it is a JSON object; ValueError naming ``what`` it should have been."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    return value


def _text(value: object, what: str) -> str:
    """``value`` when it is a JSON string; ValueError naming ``what`` it should have been."""
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    return value


def _whole(value: object) -> int:
    """An amount in fen as JSON gives it: a whole number, never a float or a bool."""
    if type(value) is not int:
        raise ValueError(f"an amount is a whole number of fen, not {repr(value)[:40]}")
    return value


def _refund_state(answer: Mapping[str, Any], what: str) -> RefundTaken:
    """Where a refund stands by a signed 200 about it (``what`` names the call, for errors)."""
    status = answer.get("status")
    if status == "SUCCESS":
        return RefundDone()
    if status == "PROCESSING":
        return RefundProcessing()
    if status == "CLOSED":  # a week in PROCESSING and no money moved: send it again
        return RefundClosed(status)
    if status == "ABNORMAL":  # the card refused it, for the merchant to settle by hand
        return RefundFailed(status)
    # no status we know (a 200 saying SYSTEM_ERROR, a field missing) says nothing of the
    # refund: a failure would invite the staff to pay it back by hand while WeChat Pay may
    # still pay it out, twice then. No answer: asked again, under the same out_refund_no
    raise GatewayError(f"wechatpay: {what}: answered no known status ({str(status)[:40]}): "
                       f"{_said(answer)}")


def _said(answer: Mapping[str, Any]) -> str:
    return f"{answer.get('code', '')} {answer.get('message', '')}".strip()
