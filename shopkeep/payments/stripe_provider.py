"""Stripe as a payment provider (SPEC 10), through the official ``stripe`` SDK.

- Start: a PaymentIntent (amount in minor units, the currency, ``metadata`` with the payment and
  order ids), created with the payment id as Idempotency-Key: asking again answers the same
  intent. The customer gets its ``client_secret``; the intent's id is the ``provider_ref``. A
  5xx Stripe replays under that key is reconciled: the intent found by its metadata, else one
  made under ``<payment id>-<n>`` (:meth:`StripeProvider.start_payment`).
- Webhooks: ``Stripe-Signature`` checked the way the SDK does it
  (``stripe.Webhook.construct_event``: every ``v1`` signature, 300 s tolerance), over the raw
  bytes; the SDK refuses a timestamp too far in the past only, and one too far in the future
  is refused too (SPEC 3: a window, as the sandbox's and WeChat Pay's are).
  ``payment_intent.succeeded`` succeeds with ``amount_received``,
  ``payment_intent.payment_failed`` fails; ``refund.failed`` of one of its refunds is
  acknowledged, naming the refund (:class:`RefundFailedLater`: the shop counts it refunding
  again, for its staff to pay back another way); other event
  types, and intents
  this shop did not create (no ``payment_id`` in their metadata), are acknowledged and
  ignored.
- Refunds: ``POST /v1/refunds`` with the refund id as Idempotency-Key; refund queries list the
  intent's refunds and find the one whose metadata names the refund id. A 5xx Stripe replays
  under that key is reconciled as a start's is: the refund found by its metadata, else made
  under a key of its own for that try (:meth:`StripeProvider.refund`). A refund Stripe
  canceled moved no money and is sent again under ``<refund id>-<n>``; a failed one (the card
  is gone) is the merchant's to settle. Payment queries retrieve the intent (or search by
  metadata when its id is not known); an intent open at the order's deadline is canceled
  (``abandoned``): a PaymentIntent has no expiry of its own, and one left open could still
  be paid, days later, only to be refunded, its fees lost.

Idempotency keys are the ids themselves, as SPEC 10 says (the payment id for the intent, the
refund id for the refund): Stripe keys share one space per account, and the shop's ids never
meet there, since one generator hands out every id of the shop. The SDK's own retries are
off: the shop's refund actor retries, with back-off, on :class:`GatewayError`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final

import msgspec
import stripe

from shopkeep.payments.keys import read_secret
from shopkeep.payments.names import CALLBACK_PATHS
from shopkeep.payments.provider import (
    BAD_SIGNATURE,
    MALFORMED,
    STALE,
    TOLERANCE_S,
    WRONG_AMOUNT,
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
    RefundFailedLater,
    RefundMissing,
    RefundProcessing,
    RefundRequest,
    RefundState,
    RefundTaken,
    Refused,
    Verdict,
    failure_by_status,
    header,
    shop_id,
    signed_malformed,
)
from shopkeep.payments.transport import CALL_TIMEOUT_S

RESOURCE_MISSING: Final = "resource_missing"
"""The ``code`` of Stripe's 404 for an object it does not have (a 404 without it: no API)."""
SCALED: Final = {"ISK": 100}
"""Currencies Stripe counts in another unit than ISO 4217's minor unit (the shop's), by how many
of Stripe's make one of the shop's: Stripe writes ISK as a two-decimal currency (``100`` is one
króna), taking whole krónur only; ISO 4217 has no minor unit for it."""
NOT_TAKEN: Final = {
    "MGA": "Stripe counts ariary whole, and the shop in hundredths (ISO 4217's minor unit)",
    **{code: "Stripe takes only amounts whose last digit is 0 (tens of the minor unit), and "
       "the shop's amounts may end in any digit"
       for code in ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND")},
}
"""Currencies whose every amount Stripe could not take as the shop counts it: ``--gateway
stripe`` refuses them at start (a payment or refund refused by Stripe after the order was
placed would leave it unpayable, or its money held)."""
WEBHOOK_PATH: Final = CALLBACK_PATHS["stripe"]
PRODUCTION_URL: Final = stripe.DEFAULT_API_BASE
SIGNATURE_HEADER: Final = "Stripe-Signature"


class Intent(msgspec.Struct, frozen=True):
    """The fields of a PaymentIntent the shop reads."""

    id: str
    amount: int
    currency: str
    status: str
    amount_received: int | None = None
    """What a succeeded one collected (None: the object carries none, a shape not Stripe's)."""
    metadata: dict[str, str] = {}


class StripeRefund(msgspec.Struct, frozen=True):
    """The fields of a Refund the shop reads from its ``refund.failed`` event."""

    id: str
    amount: int
    currency: str
    failure_reason: str | None = None
    metadata: dict[str, str] = {}


class Event(msgspec.Struct, frozen=True):
    """A webhook event: its id, type, and the object it is about (read per type)."""

    id: str
    type: str
    data: dict[str, Any]


API_KEY_PREFIXES: Final = {"sk_": "a secret key (sk_...)", "rk_": "a restricted key (rk_...)"}
"""The keys Stripe's API takes from a server, by how they begin."""
WEBHOOK_SECRET_PREFIXES: Final = {"whsec_": "a webhook signing secret (whsec_...)"}
"""How a webhook endpoint's signing secret begins (the dashboard's and the Stripe CLI's)."""
_OTHER_KEYS: Final = {"pk_": "a publishable key (pk_..., the browser's)"}


def _kind_of_key(secret: str) -> str:
    """What kind of Stripe key ``secret`` is, by how it begins, never the key itself."""
    for prefixes in (API_KEY_PREFIXES, WEBHOOK_SECRET_PREFIXES, _OTHER_KEYS):
        for prefix, kind in prefixes.items():
            if secret.startswith(prefix):
                return kind
    return "no Stripe key"


class StripeProvider:
    """Stripe with secret key ``api_key`` at ``api_base``; webhooks signed with
    ``webhook_secret``."""

    name = "stripe"
    callback_path = WEBHOOK_PATH

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        api_base: str = PRODUCTION_URL,
        timeout_s: float = CALL_TIMEOUT_S,
        tolerance_s: int = TOLERANCE_S,
    ) -> None:
        if not api_key:
            raise ConfigurationError("--stripe-api-key-file is required")
        if not webhook_secret:
            raise ConfigurationError("--stripe-webhook-secret-file is required")
        self._secret = webhook_secret
        self._tolerance_s = tolerance_s
        self._http = stripe.AIOHTTPClient(timeout=timeout_s)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")},
            http_client=self._http,
            max_network_retries=0,
        )

    @classmethod
    def from_files(
        cls, *, api_key_file: str | None, webhook_secret_file: str | None, **options: Any
    ) -> StripeProvider:
        """Built from secret files (SPEC 10's flags); ConfigurationError in one line if not,
        or if a file holds another kind of Stripe key than its flag takes (a publishable key,
        the two files swapped: every API call and every webhook would be refused)."""
        api_key = read_secret(api_key_file, "--stripe-api-key-file")
        webhook_secret = read_secret(webhook_secret_file, "--stripe-webhook-secret-file")
        wrong = [
            f"{flag}: holds {_kind_of_key(secret)}, not {' or '.join(wanted.values())}"
            for flag, secret, wanted in (
                ("--stripe-api-key-file", api_key, API_KEY_PREFIXES),
                ("--stripe-webhook-secret-file", webhook_secret, WEBHOOK_SECRET_PREFIXES),
            )
            if not secret.startswith(tuple(wanted))
        ]
        if wrong:  # both at once: two files swapped are each wrong
            raise ConfigurationError("; ".join(wrong))
        return cls(api_key=api_key, webhook_secret=webhook_secret, **options)

    # -- requests -------------------------------------------------------------------------------

    async def start_payment(self, request: PaymentRequest) -> Checkout:
        """A PaymentIntent, once per payment id; its client secret.

        Stripe keeps the first answer under an Idempotency-Key, a 500 included, and replays it
        for a day: a retry under the payment id alone would be refused as long. So a replayed
        5xx is reconciled (providers.md): the intent is looked for by its metadata, in case the
        first request made it after all; none found, one is made under a key of its own for
        this try. A customer who pays two intents of one payment is refunded the second, as a
        duplicate payment."""
        try:
            intent = await self._create_intent(request, str(request.payment_id))
        except _ReplayedFailure as replayed:
            found = await self._intent_of_payment(request.payment_id)
            if found is None:
                found = await self._create_intent(
                    request, f"{request.payment_id}-{replayed.retry_key}"
                )
            intent = found
        # read with defaults: a StripeObject raises AttributeError for a key it was not sent
        secret, intent_id = getattr(intent, "client_secret", None), getattr(intent, "id", None)
        if not secret or not isinstance(secret, str) or not isinstance(intent_id, str):
            raise GatewayError(f"stripe: the PaymentIntent answered has no client_secret or "
                               f"id: {str(intent)[:200]!r}")
        return Checkout(client_secret=secret, provider_ref=intent_id)

    async def _create_intent(self, request: PaymentRequest, key: str) -> Any:
        """``POST /v1/payment_intents`` under the Idempotency-Key ``key``; _ReplayedFailure when
        Stripe answers a failure it kept under that key (``Idempotent-Replayed``)."""
        what = f"create the PaymentIntent of payment {request.payment_id}"
        try:
            return await self._client.v1.payment_intents.create_async(
                {
                    "amount": to_stripe(request.amount, request.currency),
                    "currency": request.currency.lower(),
                    "description": request.description[:1000] or f"order {request.order_id}",
                    "metadata": {"payment_id": str(request.payment_id),
                                 "order_id": str(request.order_id)},
                },
                {"idempotency_key": key},
            )
        except stripe.StripeError as exc:
            if _replayed_failure(exc):
                raise _ReplayedFailure(time.time_ns()) from None
            raise _gateway_error(what, exc) from None

    async def _intent_of_payment(self, payment_id: int) -> Any | None:
        """The PaymentIntent whose metadata names ``payment_id``, if Stripe finds one."""
        async with _calling(f"find the PaymentIntent of payment {payment_id}"):
            query = f"metadata['payment_id']:'{payment_id}'"
            results = await self._client.v1.payment_intents.search_async({"query": query})
        return results.data[0] if results.data else None

    async def refund(self, request: RefundRequest) -> RefundTaken:
        """``POST /v1/refunds`` of the PaymentIntent, the refund's key as Idempotency-Key and
        in its metadata.

        A failure Stripe replays under that key (a 5xx, or a refusal whose cause may be gone:
        the intent paid since, the merchant's balance topped up) is reconciled, as a payment
        start's is: retried under the same key it would be answered the same for a day,
        though a 5xx's request may have made the refund. So the intent's refunds are looked
        through for the one whose metadata names the key, and its state answered; none found,
        the refund is made under a key of its own for this try (``<key>-<n>``, ``n`` the time
        in nanoseconds, which no closed refund's issue number reaches), its metadata still
        naming the key, so that the next reconciling or query finds it."""
        try:
            refund = await self._create_refund(request, request.key)
        except _ReplayedFailure as replayed:
            found = await self._refund_named(request)
            if found is None:
                found = await self._create_refund(
                    request, f"{request.key}-{replayed.retry_key}"
                )
            refund = found
        return _refund_state(refund)

    async def _create_refund(self, request: RefundRequest, key: str) -> Any:
        """``POST /v1/refunds`` under the Idempotency-Key ``key``; _ReplayedFailure when Stripe
        answers a failure it kept under that key (``Idempotent-Replayed``)."""
        try:
            return await self._client.v1.refunds.create_async(
                {
                    "payment_intent": _intent_of(request),
                    "amount": to_stripe(request.amount, request.currency),
                    "metadata": {"refund_id": request.key},
                },
                {"idempotency_key": key},
            )
        except stripe.StripeError as exc:
            if _replayed_failure(exc):
                raise _ReplayedFailure(time.time_ns()) from None
            raise _gateway_error(f"refund {request.refund_id}", exc) from None

    async def _refund_named(self, request: RefundRequest) -> Any | None:
        """The intent's refund whose metadata names the refund's key, if Stripe has one."""
        intent_id = _intent_of(request)
        async with _calling(f"list the refunds of {intent_id}"):
            refunds = await self._client.v1.refunds.list_async(
                {"payment_intent": intent_id, "limit": 100}
            )
        for refund in refunds.data:
            metadata = refund.metadata.to_dict() if refund.metadata else {}
            if metadata.get("refund_id") == request.key:
                return refund
        return None

    async def query_refund(self, request: RefundRequest) -> RefundState:
        """The intent's refund whose metadata names the refund's key, if any."""
        refund = await self._refund_named(request)
        return RefundMissing() if refund is None else _refund_state(refund)

    async def query_payment(self, payment: PaymentRef) -> PaymentState:
        """Retrieve the PaymentIntent (found by metadata when its id is not known)."""
        async with _calling(f"find the PaymentIntent of payment {payment.payment_id}"):
            found: Any
            if payment.provider_ref:
                found = await self._client.v1.payment_intents.retrieve_async(
                    payment.provider_ref
                )
            else:
                found = await self._intent_of_payment(payment.payment_id)
                if found is None:
                    return PaymentOpen(exists=False)
        intent = msgspec.convert(found.to_dict(), Intent)
        if intent.status == "succeeded":
            currency = intent.currency.upper()
            if intent.amount_received is None:
                raise GatewayError(f"stripe: PaymentIntent {intent.id}: no amount_received")
            try:
                amount = from_stripe(intent.amount_received, currency)
            except ValueError as exc:
                raise GatewayError(f"stripe: PaymentIntent {intent.id}: {exc}") from None
            return PaymentPaid(amount=amount, currency=currency, gateway_txn_id=intent.id)
        if intent.status == "canceled":
            return PaymentClosed("canceled")
        return PaymentOpen()

    async def close_payment(self, payment: PaymentRef) -> PaymentClosed | None:
        """Cancel the PaymentIntent (``cancellation_reason=abandoned``): canceled; one that
        succeeded or was canceled meanwhile cannot be (``payment_intent_unexpected_state``),
        and one never created needs nothing: None, the query says which."""
        intent_id = payment.provider_ref
        if not intent_id:
            found = await self._intent_of_payment(payment.payment_id)
            if found is None:
                return None
            intent_id = str(found.id)
        async with _calling(f"cancel the PaymentIntent of payment {payment.payment_id}"):
            try:
                canceled = await self._client.v1.payment_intents.cancel_async(
                    intent_id, {"cancellation_reason": "abandoned"}
                )
            except stripe.InvalidRequestError as exc:
                if exc.code != "payment_intent_unexpected_state":
                    raise
                return None
        if getattr(canceled, "status", None) != "canceled":
            # a 200 that does not say it is canceled (``{}``) is no answer: the intent may
            # still be paid, so it is asked about again, not taken for closed
            raise GatewayError(f"stripe: cancel {intent_id}: answered no canceled intent")
        return PaymentClosed("canceled")

    # -- webhooks -------------------------------------------------------------------------------

    async def verify_callback(
        self, raw_body: bytes, headers: Mapping[str, str], now: float
    ) -> Verdict:
        """A webhook event, its signature verified by the SDK (its clock is the system's), and
        not signed further ahead of ``now`` than the tolerance (which the SDK does not check).

        The SDK's ``Webhook.construct_event`` would also build its own event from the JSON and
        fail on JSON that is no object (``[]``) with an AttributeError: the signature is checked
        alone, and the event read here, where what is not a PaymentIntent event is refused."""
        signature = header(headers, SIGNATURE_HEADER)
        if signature is not None and not signature.isascii():
            # the SDK's comparison raises TypeError on any other character
            return Refused(BAD_SIGNATURE, "Stripe-Signature is not ASCII")
        try:
            stripe.WebhookSignature.verify_header(
                raw_body, signature, self._secret, self._tolerance_s
            )
        except stripe.SignatureVerificationError as exc:
            reason = STALE if "tolerance" in str(exc) else BAD_SIGNATURE
            return Refused(reason, str(exc).split(".")[0][:120])
        except ValueError:  # not UTF-8: the SDK decodes it before it looks at the signature,
            # so this is anyone's (a real event is UTF-8), no warning
            return Refused(MALFORMED, "the payload is not a JSON event")
        signed_at = signed_time(signature)
        if signed_at > now + self._tolerance_s:
            return Refused(STALE, f"Timestamp {signed_at} is ahead of the tolerance zone")
        try:
            event = msgspec.json.decode(raw_body, type=Event)
            if event.type == "refund.failed":
                return _refund_failed(msgspec.convert(event.data.get("object"), StripeRefund))
            if event.type not in ("payment_intent.succeeded", "payment_intent.payment_failed"):
                return Ignored(f"event {event.type[:60]}")
            intent = msgspec.convert(event.data.get("object"), Intent)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return signed_malformed(f"not a PaymentIntent or Refund event: {exc}")
        except RecursionError:  # signed, but nested deeper than the decoder goes
            return signed_malformed("not a PaymentIntent event: nested too deeply")
        payment_id = shop_id(intent.metadata.get("payment_id"))
        if payment_id is None:
            return Ignored(f"PaymentIntent {intent.id[:60]} is not one of this shop's")
        succeeded = event.type == "payment_intent.succeeded"
        currency = intent.currency.upper()
        received = intent.amount_received if succeeded else intent.amount
        if received is None:  # read as nothing received, it was refused as the wrong amount
            return signed_malformed("a payment_intent.succeeded without its amount_received")
        try:
            amount = from_stripe(received, currency)
        except ValueError as exc:
            return Refused(WRONG_AMOUNT, str(exc))
        return Notice(
            payment_id=payment_id,
            order_id=shop_id(intent.metadata.get("order_id")),
            amount=amount,
            currency=currency,
            status="succeeded" if succeeded else "failed",
            gateway_txn_id=intent.id,
            event_id=event.id,
        )

    def answer(self, handled: bool, detail: str = "") -> HttpAnswer:
        """200 once handled; a 400 makes Stripe send the event again."""
        if handled:
            return HttpAnswer(200, "application/json", b'{"received":true}')
        body = msgspec.json.encode({"error": detail[:200] or "refused"})
        return HttpAnswer(400, "application/json", body)

    async def close(self) -> None:
        """Close the SDK's HTTP session."""
        await self._http.close_async()  # type: ignore[no-untyped-call]  # untyped in the SDK


def to_stripe(amount: int, currency: str) -> int:
    """An amount in the shop's minor units, as Stripe counts it (:data:`SCALED`)."""
    return amount * SCALED.get(currency, 1)


def from_stripe(amount: int, currency: str) -> int:
    """An amount Stripe wrote, in the shop's minor units; ValueError when it is not a whole
    number of them (Stripe takes none such: a body not Stripe's, or a unit misread)."""
    whole, part = divmod(amount, SCALED.get(currency, 1))
    if part:
        raise ValueError(f"{amount} {currency} as Stripe counts it is not a whole number of the "
                         f"shop's units ({SCALED[currency]} of Stripe's each)")
    return whole


@asynccontextmanager
async def _calling(what: str) -> AsyncIterator[None]:
    """Stripe's errors as the provider interface's: outages retryable, the rest refusals."""
    try:
        yield
    except stripe.StripeError as exc:
        raise _gateway_error(what, exc) from None


def _gateway_error(what: str, exc: stripe.StripeError) -> GatewayError:
    """A Stripe error as the provider interface's: an outage retryable, the rest a refusal."""
    if isinstance(exc, stripe.APIConnectionError):
        return GatewayError(f"stripe: {what}: {exc.user_message or exc}")
    status = exc.http_status
    message = f"stripe: {what}: {status} {exc.user_message or exc}"
    # a 401 or 403 refuses the API key, a 404 of no object of Stripe's a URL (a mistyped
    # --stripe-api-base): the request as such, which says nothing of the intent or refund
    of_the_request = status in (401, 403) or (status == 404 and exc.code != RESOURCE_MISSING)
    # below 400: a 2xx whose body the SDK could not read (not JSON), no answer, not a no
    return failure_by_status(status, message, of_the_request=of_the_request)


def _replayed_failure(exc: stripe.StripeError) -> bool:
    """Whether ``exc`` is a failure Stripe kept under the Idempotency-Key and answered again:
    a 5xx, or a refusal once the request's execution began (a refund of an intent not paid
    yet, or of more than is left), which the same key would be answered for a day whatever
    changed meanwhile (providers.md)."""
    status = exc.http_status
    replayed = (exc.headers or {}).get("idempotent-replayed") == "true"
    return replayed and status is not None and status >= 400


class _ReplayedFailure(Exception):
    """Stripe replayed a failure it kept under the Idempotency-Key: reconcile, then try again
    under a key of its own (``retry_key`` makes it)."""

    def __init__(self, retry_key: int) -> None:
        super().__init__(f"a failure replayed; the next key ends -{retry_key}")
        self.retry_key = retry_key


def _intent_of(request: RefundRequest) -> str:
    intent = request.gateway_txn_id or request.provider_ref
    if not intent:
        raise GatewayRefused(f"stripe: refund {request.refund_id} names no PaymentIntent")
    return intent


def _refund_state(refund: Any) -> RefundTaken:
    """Where a Stripe refund object stands."""
    status = refund.status
    if status == "succeeded":
        return RefundDone()
    if status in ("pending", "requires_action"):
        return RefundProcessing()
    if status == "canceled":  # no money moved: send it again
        return RefundClosed(status)
    if status == "failed":
        # the card is gone, for the merchant to settle; its failure_reason (absent from the
        # object, not null, until then) says why
        reason = getattr(refund, "failure_reason", None)
        return RefundFailed(f"{status}: {reason}" if reason else status)
    # no status Stripe documents (null, a new one): no answer, asked again. A failure would
    # invite the staff to pay it back by hand while Stripe may still pay it out, twice then
    raise GatewayError(f"stripe: refund {getattr(refund, 'id', '?')}: no known status "
                       f"({str(status)[:40]})")


def signed_time(signature: str | None) -> int:
    """The ``t=`` of a ``Stripe-Signature`` the SDK has verified (so it has one, an integer),
    read as the SDK reads it: the first part named exactly ``t``, its value up to a second
    ``=`` (``t=<n>=x`` verifies as ``t=<n>``)."""
    for part in (signature or "").split(","):
        name, _, value = part.partition("=")
        if name == "t":
            return int(value.partition("=")[0])
    raise ValueError("a verified Stripe-Signature has a t=")


def _refund_failed(refund: StripeRefund) -> Ignored:
    """A ``refund.failed`` event: one of the shop's refunds (its metadata names the refund's
    key, ``<refund id>`` or ``<refund id>-<issue>``) failed, which the shop learns from no
    query once Stripe said it succeeded (it asks no more of a refund done): the refund named,
    for the shop to count it refunding again."""
    refund_id = shop_id(refund.metadata.get("refund_id", "").partition("-")[0])
    if refund_id is None:
        return Ignored(f"Refund {refund.id[:60]} is not one of this shop's")
    failed = RefundFailedLater(
        refund_id, refund.id[:60], (refund.failure_reason or "unknown")[:120]
    )
    return Ignored("event refund.failed", refund_failed=failed)
