"""The sandbox as one provider among four: an adapter over :class:`SandboxGateway`.

The sandbox's callbacks are SPEC 7's: a JSON :class:`CallbackBody` signed with
``Shopkeep-Signature`` (HMAC-SHA256 over ``<t>.`` + body). Verifying one here is what
``Shop.handle_callback`` did itself, with the same refusal reasons (``signature_missing``,
``signature_malformed``, ``signature_stale``, ``signature_mismatch``, ``malformed``), so the
rejected-callbacks metric keeps its labels. Refunds and queries read the sandbox's own books.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

import msgspec

from shopkeep.payments.gateway import SandboxGateway
from shopkeep.payments.names import CALLBACK_PATHS, DEFAULT_CURRENCY, OUTCOMES, SANDBOX
from shopkeep.payments.provider import (
    TOLERANCE_S,
    CallbackBody,
    Checkout,
    HttpAnswer,
    Notice,
    PaymentOpen,
    PaymentPaid,
    PaymentRef,
    PaymentRequest,
    PaymentState,
    RefundDone,
    RefundMissing,
    RefundRequest,
    RefundState,
    Refused,
    Verdict,
    header,
    signed_malformed,
)
from shopkeep.payments.signature import HEADER, verify
from shopkeep.requests import id_in_text

CALLBACK_PATH: Final = CALLBACK_PATHS[SANDBOX]


class SandboxProvider:
    """The sandbox gateway behind the provider interface.

    ``gateway`` is the in-process or HTTP sandbox; ``secret`` the one it signs callbacks with;
    ``currency`` the shop's (the sandbox collects whatever it is told, in that currency).
    """

    name = "sandbox"
    callback_path = CALLBACK_PATH

    def __init__(
        self,
        gateway: SandboxGateway,
        secret: bytes | str,
        *,
        currency: str = DEFAULT_CURRENCY,
        tolerance_s: float = TOLERANCE_S,
    ) -> None:
        self.gateway = gateway
        self._secret = secret
        self._currency = currency
        self._tolerance_s = tolerance_s

    async def start_payment(self, request: PaymentRequest) -> Checkout:
        """The sandbox page of the payment."""
        return Checkout(gateway_url=self.gateway.payment_url(request.payment_id))

    async def verify_callback(
        self, raw_body: bytes, headers: Mapping[str, str], now: float
    ) -> Verdict:
        """SPEC 7's checks: the signature and its time, then the body's shape."""
        verified, reason = verify(
            self._secret, header(headers, HEADER), raw_body, now, self._tolerance_s
        )
        if not verified:
            return Refused(f"signature_{reason}", f"signature: {reason}")
        try:
            body = msgspec.json.decode(raw_body, type=CallbackBody)
        except msgspec.DecodeError as exc:  # msgspec's words, which may quote the body: cut
            return signed_malformed(f"the body is not a payment callback: {str(exc)[:200]}")
        # ids as the shop writes them: " 7", "+7" or "007" is no payment's
        payment_id, order_id = id_in_text(body.payment_id), id_in_text(body.order_id)
        if not payment_id or not order_id:
            return signed_malformed(
                "the body is not a payment callback: payment_id and order_id are ids as the "
                "shop writes them (digits, no sign, no leading zero)"
            )
        if body.status not in OUTCOMES:
            return signed_malformed(f"unknown status {body.status[:40]!r}")
        if body.status == "succeeded" and not body.gateway_txn_id:
            # without it a retry that names the transaction would look like a second payment
            return signed_malformed("a successful payment needs its gateway_txn_id")
        return Notice(
            payment_id=payment_id,
            order_id=order_id,
            amount=body.amount,
            currency=body.currency,
            status="succeeded" if body.status == "succeeded" else "failed",
            gateway_txn_id=body.gateway_txn_id,
        )

    def answer(self, handled: bool, detail: str = "") -> HttpAnswer:
        """SPEC 7: 200 ``{"received": true}``, or a 400 problem with code invalid_callback."""
        if handled:
            return HttpAnswer(200, "application/json", b'{"received":true}')
        problem = {
            "type": "about:blank",
            "title": "Invalid callback",
            "status": 400,
            "code": "invalid_callback",
            "detail": detail or "the callback failed verification",
        }
        return HttpAnswer(400, "application/problem+json", json.dumps(problem).encode())

    async def refund(self, request: RefundRequest) -> RefundDone:
        """The sandbox's refund (raises GatewayError while its refunds are failing)."""
        await self.gateway.refund(request.refund_id, request.payment_id, request.amount)
        return RefundDone()

    async def query_refund(self, request: RefundRequest) -> RefundState:
        """Done if the sandbox's books have the refund."""
        if request.refund_id in self.gateway.refunded:
            return RefundDone()
        return RefundMissing()

    async def query_payment(self, payment: PaymentRef) -> PaymentState:
        """Paid if the sandbox collected the payment (its first transaction), else open."""
        for txn_id, amount in self.gateway.transactions(payment.payment_id).items():
            if txn_id is not None:
                return PaymentPaid(amount=amount, currency=self._currency, gateway_txn_id=txn_id)
        return PaymentOpen()

    async def close_payment(self, payment: PaymentRef) -> PaymentOpen:
        """Open still: the sandbox's payments are completed by whoever tests with it, late ones
        included on purpose (the load-testing harness sends them), so it closes none."""
        return PaymentOpen()

    async def close(self) -> None:
        """Stop the sandbox's callback retries."""
        await self.gateway.close()

