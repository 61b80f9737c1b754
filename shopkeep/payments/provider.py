"""What the shop needs from a payment provider (SPEC 10), and the values that cross it.

Four providers implement :class:`PaymentProvider`: the sandbox, Alipay, WeChat Pay and Stripe.
The order and refund actors use the interface without knowing which one is behind it:

- :meth:`~PaymentProvider.start_payment` turns a payment into what the customer needs to pay
  (:class:`Checkout`: a page URL, a QR code, a ``weixin://`` code URL or a client secret);
- :meth:`~PaymentProvider.verify_callback` turns the raw bytes and headers of a notification
  into a :class:`Notice` (the shop's one callback shape, currency included), an
  :class:`Ignored` (authentic, but not about a payment: acknowledge it and do nothing) or a
  :class:`Refused` (failed verification: change nothing, count the reason);
  :meth:`~PaymentProvider.answer` is the HTTP answer each provider expects;
- :meth:`~PaymentProvider.refund` pays back with the refund id as the provider's idempotency
  key; :meth:`~PaymentProvider.query_payment` and :meth:`~PaymentProvider.query_refund` ask
  the provider when a notification never came.

Whether the amount and currency of a :class:`Notice` are the payment's is the shop's decision
(it knows the payment), never the provider's. Calls that may be retried raise
:class:`GatewayError` when the provider is down, slow or answers 5xx;
:class:`GatewayRefused` (a subclass, so a caller that retries everything still retries) when it
answered a definite no; :class:`RequestRefused` (a subclass of that) when the no is to the
request as such (the merchant's credentials, a URL that names no API), which says nothing of
the payment or refund it asked about.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, Protocol, runtime_checkable

import msgspec

from shopkeep.requests import id_in_text

__all__ = [
    "Checkout",
    "ConfigurationError",
    "GatewayError",
    "GatewayRefused",
    "HttpAnswer",
    "Ignored",
    "Notice",
    "PaymentClosed",
    "PaymentOpen",
    "PaymentPaid",
    "PaymentPaidRefused",
    "PaymentProvider",
    "PaymentRef",
    "PaymentRequest",
    "PaymentState",
    "RefundClosed",
    "RefundDone",
    "RefundFailed",
    "RefundFailedLater",
    "RefundMissing",
    "RefundProcessing",
    "RefundRequest",
    "RefundState",
    "RefundTaken",
    "Refused",
    "RequestRefused",
    "Verdict",
]

BAD_SIGNATURE: Final = "bad_signature"
"""A refusal reason: no signature, a malformed one, or one that does not verify."""
STALE: Final = "stale"
"""A refusal reason: signed too long ago (a replay, or a clock far off)."""
TOLERANCE_S: Final = 300
"""How far from now, either side, a notification may have been signed or sent (SPEC 3): a
replay of an older one, or one from a clock this far off, is refused ``STALE``."""
MALFORMED: Final = "malformed"
"""A refusal reason: authentic bytes that do not make a payment notification."""
WRONG_APP: Final = "wrong_app"
"""A refusal reason: authentic, but for another app, merchant or seller."""
WRONG_AMOUNT: Final = "wrong_amount"
"""A refusal reason: authentic, but its amount is no amount of the currency (Alipay's
``total_amount`` ``123.451``, or ``123.450``: more decimals than yuan has)."""
AUTHENTIC_REFUSALS: Final = (WRONG_APP, WRONG_AMOUNT)
"""The refusal reasons of notifications the provider did sign: the money may be at the
provider, or a shop set up wrong refuses every payment's news, so a person must see them (a
warning in the log). The other reasons (a bad signature, stale, malformed before the
signature is checked) are anyone's noise, only counted: logging them would let anyone fill
the log."""


class GatewayError(Exception):
    """The gateway did not do what it was asked (down, timed out, refused).

    Not the shop's fault, and not final: the caller retries later (refunds back off and retry
    until the gateway does them; the refund's idempotency key makes a retry safe).
    """


class GatewayRefused(GatewayError):
    """The provider answered a definite no (a 4xx, a business error code, the sandbox asked to
    refund more than it collected).

    Still a :class:`GatewayError`, so a refund keeps being retried (and logged) until someone
    looks; but a caller may tell it apart from an outage.
    """


class RequestRefused(GatewayRefused):
    """The request refused as such, not what it asked for: the merchant's credentials (Alipay's
    unsigned 40002 to an unknown app or a request it cannot verify, WeChat Pay's 401
    SIGN_ERROR), a URL that names no API (an unsigned 404). That says nothing of the payment
    or refund it named: a payment start is refused all the same, but a refund is tried again
    as after an outage, never offered to the staff to settle on its word (an earlier try whose
    answer was lost may have been taken)."""


class CallbackBody(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True,
                   omit_defaults=True):
    """The JSON body of a payment callback (SPEC 7). Ids are strings on the wire.

    ``currency`` is optional (the sandbox sends none): when a body names one, it must be the
    payment's (SPEC 10). A field not listed here makes the body one that does not parse."""

    payment_id: str
    order_id: str
    amount: int  # unbounded: an authentic callback of an amount no payment has is refused
    # by its order, logged and warned about, not taken for a malformed body
    status: str
    gateway_txn_id: str | None
    currency: str | None = None


class ConfigurationError(Exception):
    """A provider was chosen without its credentials, or with ones it cannot read.

    The operator's fault: ``str()`` is one line naming the setting, for ``serve`` to print.
    """


NOT_NOW: Final = frozenset({408, 409, 429})
"""The 4xx that mean "not now" rather than no (a request that timed out, a conflict with a
concurrent request under the same key, rate limiting): an outage, tried again, never a
:class:`GatewayRefused`, by every adapter."""


def failure_by_status(
    status: int | None, said: str, *, of_the_request: bool = False
) -> GatewayError:
    """The error of a call that got no answer the adapter could take (unsigned, unreadable,
    an error of the provider's), by the HTTP status it came with: a 4xx but :data:`NOT_NOW`
    is a no, which asking again will not change (:class:`GatewayRefused`; a no to the request
    as such, ``of_the_request``, as every 4xx a provider that signs its answers did not sign
    is: :class:`RequestRefused`); anything else (a 5xx, a 2xx not understood, no status at
    all) an outage, to try again."""
    if status is not None and 400 <= status < 500 and status not in NOT_NOW:
        return RequestRefused(said) if of_the_request else GatewayRefused(said)
    return GatewayError(said)


# -- starting a payment -----------------------------------------------------------------------


class PaymentRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A payment to start: amounts in integer minor units, ``currency`` ISO 4217 (``CNY``),
    ``deadline`` the order's payment deadline (Unix seconds), ``channel`` ``page`` or ``qr``
    (Alipay: page-pay URL or precreate QR code; the others have one channel)."""

    payment_id: int
    order_id: int
    amount: int
    currency: str
    description: str
    deadline: float
    channel: Literal["page", "qr"] = "page"


class Checkout(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the customer needs to pay (SPEC 10's table; one of the four fields is set).

    ``provider_ref`` is the provider's own id of the payment where it differs from the payment
    id (Stripe's PaymentIntent id): the shop keeps it with the payment, for queries and refunds.
    """

    gateway_url: str | None = None
    qr_code: str | None = None
    code_url: str | None = None
    client_secret: str | None = None
    provider_ref: str | None = None


# -- callbacks --------------------------------------------------------------------------------


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """A verified payment notification in the shop's one callback shape, with its currency.

    ``event_id`` is the provider's id of the notification (Alipay's ``notify_id``, WeChat
    Pay's and Stripe's event ``id``; None for the sandbox), for the logs. ``order_id`` is None
    when the provider did not carry it back: the shop looks the payment's order up.
    ``currency`` is None when the notice names none (the sandbox's callback may leave it out):
    the payment's own is taken; one named must be the payment's.
    """

    payment_id: int
    order_id: int | None
    amount: int
    currency: str | None
    status: Literal["succeeded", "failed"]
    gateway_txn_id: str | None
    event_id: str | None = None

    def callback_body(self) -> CallbackBody:
        """The same notice as the sandbox's callback body (SPEC 7); ``order_id`` must be
        known by then."""
        if self.order_id is None:
            raise ValueError(f"payment {self.payment_id}: the order is not known")
        return CallbackBody(
            str(self.payment_id), str(self.order_id), self.amount, self.status,
            self.gateway_txn_id, self.currency,
        )


class RefundFailedLater(msgspec.Struct, frozen=True):
    """One of the shop's refunds the provider failed after it said it was done (Stripe's
    ``refund.failed``: the card closed meanwhile): the shop's ``refund_id``, the provider's
    own id of it and its ``reason``."""

    refund_id: int
    provider_refund: str
    reason: str


class Ignored(msgspec.Struct, frozen=True):
    """An authentic notification that is not about a payment's result (a refund's, a Stripe
    event of another type, Alipay's ``TRADE_FINISHED`` after a refund): acknowledge it and
    change nothing. ``reason`` says which, for the logs. ``refund_failed``: a refund the
    provider failed after it said it was done, which the shop counts refunding again
    (``Payments._refund_failed_later``) before it acknowledges."""

    reason: str
    refund_failed: RefundFailedLater | None = None


class Refused(msgspec.Struct, frozen=True):
    """A notification that failed verification: answer it as refused and change nothing.
    ``reason`` is a stable word (``bad_signature``, ``stale``, ``malformed``, ``wrong_app``,
    ``wrong_amount``) for the rejected-callbacks metric; ``detail`` says more, for a log line.
    ``signed``: the provider's signature held, so the provider sent it (a body of a shape the
    shop does not take, say): a person must see it, as :data:`AUTHENTIC_REFUSALS`."""

    reason: str
    detail: str = ""
    signed: bool = False


def signed_malformed(detail: str) -> Refused:
    """The refusal of a notification the provider signed whose content the shop does not take
    (a field it does not know, a value of another type): malformed, and warned about."""
    return Refused(MALFORMED, detail, signed=True)


Verdict = Notice | Ignored | Refused
"""What :meth:`PaymentProvider.verify_callback` makes of a notification."""


class HttpAnswer(msgspec.Struct, frozen=True):
    """The HTTP answer a provider expects to a notification (status, media type, body)."""

    status: int
    content_type: str | None
    body: bytes


# -- refunds and queries ----------------------------------------------------------------------


class RefundRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Pay ``amount`` back of the payment ``payment_id`` (of ``payment_amount`` in all).

    :attr:`key` is the idempotency key (Alipay's ``out_request_no``, WeChat Pay's
    ``out_refund_no``, Stripe's ``Idempotency-Key``): the same request again refunds nothing
    more. ``issue`` counts the times the provider closed the refund without paying it out
    (:class:`RefundClosed`), each closing answered by the same refund sent again under a key
    of its own. ``gateway_txn_id`` is the transaction refunded when the shop knows it
    (Stripe: the PaymentIntent); ``provider_ref`` the one :class:`Checkout` gave.
    """

    refund_id: int
    payment_id: int | None
    amount: int
    currency: str
    payment_amount: int
    gateway_txn_id: str | None = None
    provider_ref: str | None = None
    issue: int = 0

    @property
    def key(self) -> str:
        """The refund's idempotency key at the provider: the refund id, then ``-<issue>`` once
        it was sent again after a closing (a closed refund's key names that closed refund for
        good)."""
        return str(self.refund_id) if self.issue == 0 else f"{self.refund_id}-{self.issue}"


class RefundDone(msgspec.Struct, frozen=True):
    """The provider refunded it (now, or before: a repeat of a done refund)."""


class RefundProcessing(msgspec.Struct, frozen=True):
    """The provider took the refund and has not finished it: query again later."""


class RefundFailed(msgspec.Struct, frozen=True):
    """The provider could not pay the refund out (WeChat Pay ABNORMAL: the card refused it;
    Stripe failed: the card is gone): sending it again would not help; someone must look."""

    reason: str


class RefundClosed(msgspec.Struct, frozen=True):
    """The provider closed the refund without paying it out (WeChat Pay CLOSED, after a week
    in PROCESSING; Stripe canceled): no money moved, and the refund is to be sent again under
    a new key (its :attr:`RefundRequest.issue` the next)."""

    reason: str


class RefundMissing(msgspec.Struct, frozen=True):
    """The provider has no such refund (it never arrived): send it again."""


RefundTaken = RefundDone | RefundProcessing | RefundClosed | RefundFailed
"""What :meth:`PaymentProvider.refund` answers: the provider took the refund, whatever came
of it (a refusal of the request, or an outage, is raised)."""

RefundState = RefundTaken | RefundMissing
"""What a refund query learns: also that the provider has no such refund."""


class PaymentRef(msgspec.Struct, frozen=True, kw_only=True):
    """A payment to ask the provider about."""

    payment_id: int
    order_id: int
    amount: int
    currency: str
    provider_ref: str | None = None


class PaymentPaid(msgspec.Struct, frozen=True, kw_only=True):
    """The provider collected ``amount`` (minor units, in ``currency``) in ``gateway_txn_id``:
    apply it as the success notification would be."""

    amount: int
    currency: str
    gateway_txn_id: str


class PaymentClosed(msgspec.Struct, frozen=True):
    """The payment can no longer be paid (closed, canceled, failed for good)."""

    reason: str


class PaymentOpen(msgspec.Struct, frozen=True):
    """Not paid yet, and still payable; ``exists`` False when the provider has no such payment
    (never opened by the customer: Alipay creates the trade only when the buyer opens the
    cashier; or never created), which nobody can pay once its deadline has passed."""

    exists: bool = True


class PaymentPaidRefused(msgspec.Struct, frozen=True):
    """The provider says it collected the payment, in an answer the shop refuses as it
    refuses the notification saying the same (``reason``: ``wrong_amount`` for Alipay's
    ``total_amount`` ``123.450``, no amount of yuan; ``malformed`` for a paid trade without its
    ``trade_no``). Nothing is applied, and asking again would hear the same: the order times
    out as if answered unpaid, its history saying why (``detail``)."""

    reason: str
    detail: str


PaymentState = PaymentPaid | PaymentPaidRefused | PaymentClosed | PaymentOpen
"""What :meth:`PaymentProvider.query_payment` learns."""


# -- the interface ----------------------------------------------------------------------------


@runtime_checkable
class PaymentProvider(Protocol):
    """A payment provider, as the shop uses it (SPEC 10). ``isinstance`` tells whether an
    object has every member named here (not their signatures).

    Each call to the provider must end in bounded time (the built-in ones give up after
    :data:`~shopkeep.payments.transport.CALL_TIMEOUT_S`, raising GatewayError): the shop
    waits for it, so a call that never returns holds its payment start, and every retry of
    that start under its key, as long."""

    name: str
    """``sandbox``, ``alipay``, ``wechatpay`` or ``stripe`` (the payment JSON's ``gateway``)."""

    callback_path: str
    """The route its notifications arrive on (``/v1/payments/alipay/notify``, ...)."""

    async def start_payment(self, request: PaymentRequest) -> Checkout:
        """What the customer needs to pay ``request``; asking again for the same payment
        answers the same (the provider's idempotency). Raises GatewayError."""
        ...

    async def verify_callback(
        self, raw_body: bytes, headers: Mapping[str, str], now: float
    ) -> Verdict:
        """Verify a notification's signature (on the raw bytes) and parse it. ``headers``
        may be any case; ``now`` (Unix seconds) bounds replays where the scheme signs a time."""
        ...

    def answer(self, handled: bool, detail: str = "") -> HttpAnswer:
        """The HTTP answer to a notification: acknowledged (handled, duplicates and ignored
        ones included), or refused (the provider will send it again)."""
        ...

    async def refund(self, request: RefundRequest) -> RefundTaken:
        """Ask for the refund, its :attr:`~RefundRequest.key` as idempotency key. Raises
        GatewayError on a 5xx, a timeout or a refused connection (retry later with the same
        request)."""
        ...

    async def query_refund(self, request: RefundRequest) -> RefundState:
        """Where the refund stands at the provider. Raises GatewayError."""
        ...

    async def query_payment(self, payment: PaymentRef) -> PaymentState:
        """Where the payment stands at the provider. Raises GatewayError."""
        ...

    async def close_payment(self, payment: PaymentRef) -> PaymentState | None:
        """Close the payment at the provider, so that it can no longer be paid: what the shop
        does with a payment found open at its order's deadline, before the order times out.
        Answers where it stands when the close says: closed (or open, from a provider that
        closes nothing); None when the close did not settle it (paid or closed meanwhile,
        never opened by the customer), which a query then tells. Raises GatewayError."""
        ...

    async def close(self) -> None:
        """Release the provider's connections."""
        ...


def header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` regardless of case (a plain dict from a test, or aiohttp's)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, found in headers.items():
        if key.lower() == wanted:
            return found
    return None


def whole_number(text: str | None) -> int | None:
    """``text`` (a notification's field or header) as the whole number its ASCII digits
    write, or None: ``str.isdigit`` also takes ``²``, which ``int`` refuses."""
    if text is not None and text.isascii() and text.isdigit():
        return int(text)
    return None


def shop_id(text: object) -> int | None:
    """A payment's or an order's id as a notification gives it back, or None: the shop sent
    it, so it is written as the shop writes ids (:func:`shopkeep.requests.id_in_text`);
    ``int`` would also take `` 7``, ``+7`` or ``007``, and ids past 64 bits no table holds."""
    return id_in_text(text) if isinstance(text, str) else None


def stale(at: float | None, now: float) -> bool:
    """Whether a notification signed or sent at ``at`` (Unix seconds; None: no time could be
    read from it) is further than :data:`TOLERANCE_S` from ``now``, either side."""
    return at is None or abs(now - at) > TOLERANCE_S
