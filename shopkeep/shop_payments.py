"""The payments' part of the embedded API: a payment started at its provider, read, and
settled by the provider's callbacks (SPEC 3, 7 and 10).

:class:`Payments` is a part of :class:`shopkeep.shop.Shop` (one of its base classes, as
:class:`~shopkeep.back_office.BackOffice` is), kept apart so that the money's way in reads in
one place: the order decides (its actor holds the payments), the provider is asked outside the
order's turn, and what it answers is kept with the payment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec
import structlog

from shopkeep.actors import order_store
from shopkeep.actors.config import ShopConfig
from shopkeep.actors.key_rules import ADMIN, encode_answer
from shopkeep.actors.order_messages import (
    CallbackHandled,
    CheckoutReady,
    ForgetStartKey,
    GetPayments,
    KeepStartAnswer,
    KnowsOutcome,
    PaymentCallback,
    PaymentStarted,
    PaymentView,
    StartPayment,
)
from shopkeep.actors.order_stats import OrderStats
from shopkeep.actors.payment_rules import CallbackAction
from shopkeep.actors.refund_rules import FailedAfterDone
from shopkeep.errors import CallbackRejected, ShopError, answer
from shopkeep.idempotency import IdempotencyKey, InFlight, Key, Once, key_of, to_its_end
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.payments.names import CHANNELS, OUTCOMES, QR_GATEWAYS, SANDBOX
from shopkeep.payments.provider import (
    AUTHENTIC_REFUSALS,
    GatewayError,
    GatewayRefused,
    Ignored,
    PaymentProvider,
    PaymentRequest,
    RefundFailedLater,
    Refused,
)
from shopkeep.payments.signature import HEADER as SIGNATURE_HEADER
from shopkeep.refusals import NOT_FOUND, PROVIDER_REFUSED, UNAVAILABLE, Refusal
from shopkeep.requests import (
    actor_of,
    check_choice,
    check_id,
    check_instance,
    check_scope,
    refused_parameter,
)
from shopkeep.runtime import ActorStopped, ActorSystem, Address, Overloaded
from shopkeep.store.reader import Reader

log = structlog.get_logger("shopkeep.shop")  # the Shop's log, whose part this is

TOO_LARGE: Final = "too_large"
"""The reason a callback larger than the server takes is counted refused for."""
UNREADABLE: Final = "unreadable"
"""The reason a callback whose body does not read as its headers say (gzip or deflate that
does not inflate, chunks that do not add up) is counted refused for."""


class Payments:
    """Payments started, read and called back, on a shop's system, reader and provider."""

    system: ActorSystem
    reader: Reader
    config: ShopConfig
    provider: PaymentProvider
    rejected_callbacks: Counter[str]
    order_stats: OrderStats
    gateway: SandboxGateway | None
    _once: Once
    _checkouts: InFlight
    _keyed_starts: InFlight

    if TYPE_CHECKING:  # the Shop's own

        async def _ask_order(self, order_id: int, user_id: int | None, message: Any) -> Any: ...

        def _check_open(self) -> None: ...

    async def start_payment(
        self,
        order_id: int,
        *,
        user_id: int | None = None,
        idempotency_key: Key = None,
        channel: Literal["page", "qr"] | None = "page",
    ) -> PaymentStarted:
        """Start the payment of an order awaiting payment (the same open one when asked
        again: ``created`` is False then, unless no answer gave it yet, the provider having
        failed the start; under a key, the first answer again), with what the
        customer needs to pay it (SPEC 10; ``channel="qr"``: Alipay's QR code). The provider
        is asked here, outside the order's turn, and its answer kept with the payment
        (CheckoutReady); a provider that does not answer is 503 unavailable, and asking again
        answers the same payment (under the same key, as a first answer: the 503 was the only
        one given). Under a key, the answer given once the provider answered is kept as the
        key's (``KeepStartAnswer``): a replay is that answer, whether it created the payment
        included. A ``channel`` of None is the page (the HTTP API's ``?channel=`` left out)."""
        if channel is None:
            channel = "page"
        check_choice("channel", channel, CHANNELS)
        if self.provider.name not in QR_GATEWAYS:
            channel = "page"  # the one it has: two starts of a payment ask it one at a time
        key = key_of(idempotency_key)
        if key is None:
            started = await self._start_payment(order_id, user_id, None, channel)
        else:
            # each to its end though its caller stops waiting (a task canceled): its answer is
            # kept, and a retry under the key is that answer again, not the payment it made
            # found open, "created" lost
            started = await to_its_end(self._keyed_start(order_id, user_id, key, channel))
        return msgspec.structs.replace(started, payment=self._linked_here(started.payment))

    def _linked_here(self, payment: PaymentView) -> PaymentView:
        """``payment`` with the sandbox's link at this shop's address now: its page is this
        server's own, and the link kept when the payment started named the address the server
        had then (another port, another ``--public-url``), where nothing answers once it moved.
        A provider's own link is kept as it gave it."""
        gateway = self.gateway
        if gateway is None or payment.gateway != SANDBOX or payment.gateway_url is None:
            return payment
        return msgspec.structs.replace(payment, gateway_url=gateway.payment_url(payment.id))

    async def _keyed_start(
        self,
        order_id: int,
        user_id: int | None,
        key: IdempotencyKey,
        channel: Literal["page", "qr"],
    ) -> PaymentStarted:
        # the same key's starts one at a time: a second replays the first's whole answer, its
        # checkout included, rather than meeting a payment whose provider has not answered yet
        async with self._keyed_starts.hold(ADMIN if user_id is None else user_id, key.value):
            return await self._start_payment(order_id, user_id, key, channel)

    async def _start_payment(
        self,
        order_id: int,
        user_id: int | None,
        key: IdempotencyKey | None,
        channel: Literal["page", "qr"],
    ) -> PaymentStarted:
        # Alipay's QR code is another request than its page (the default, as keys always had
        # it): the same key for both is a conflict, not the first channel's answer overwritten;
        # the other providers' starts are all "page" (start_payment)
        request: tuple[Any, ...] = ("start_payment", order_id)
        if channel != "page":
            request = (*request, channel)
        principal = ADMIN if user_id is None else user_id
        started = await self._once.ask(
            actor_of("order", order_id), StartPayment(), PaymentStarted, key, request, user_id
        )
        if started.payment.has_checkout and not self._other_channel(started.payment, channel):
            return started  # the first answer again, or the open payment as it is
        if key is not None and key.replayed:
            now = await self._payment_of(started.payment.order_id, started.payment.id)
            if now is not None and now.has_checkout and not self._other_channel(now, channel):
                # the key kept the payment before its provider answered, and the provider
                # answered it since: a first attempt cut before its answer was kept, or an
                # answer kept by a shopkeep of before KeepStartAnswer (its caller was given
                # this checkout): the first answer, with what the provider answered
                first = started.payment.with_checkout_of(now)
                return PaymentStarted(first, started.created, started.deadline)
            # its first attempt was answered 503 (the provider failed), or cut before the
            # provider answered: nothing kept its answer, so this one is the first given, not
            # a replay; the order is asked again, as a new start would be (it may have ended
            # since: refused, the provider not asked)
            key.replayed = False
            started = answer(
                await self._ask_order(order_id, user_id, StartPayment()), PaymentStarted
            )
        try:
            given = await self._checkout(started, channel)
        except ShopError:
            if key is not None:  # the caller is given nothing: its key binds nothing (SPEC 7)
                forget = ForgetStartKey(principal, key.value)
                await self.system.ask(Address("order", started.payment.order_id), forget)
            raise
        if key is not None:
            # what the caller is given, kept as the key's answer: a replay gives it again,
            # its checkout and whether it created the payment (201 or 200) included
            kept = KeepStartAnswer(principal, key.value, encode_answer(given))
            try:
                await self.system.ask(Address("order", started.payment.order_id), kept)
            except (Overloaded, ActorStopped):
                # the shop stops (or the order's mailbox is full) after the payment and its
                # checkout were committed: the caller is given them all the same, since an
                # error would say nothing was done; the key's retry finds the payment with
                # its checkout and gives it again (above), a replay of this answer
                log.info("payment_start_answer_not_kept", payment_id=str(given.payment.id),
                         order_id=str(given.payment.order_id))
        return given

    def _other_channel(self, payment: PaymentView, channel: Literal["page", "qr"]) -> bool:
        """Whether ``channel`` asks the open payment for what its provider has not given yet:
        the QR code of one started as a page, or the reverse (``QR_GATEWAYS``)."""
        if self.provider.name not in QR_GATEWAYS:
            return False
        return (payment.qr_code if channel == "qr" else payment.gateway_url) is None

    async def _checkout(
        self, started: PaymentStarted, channel: Literal["page", "qr"]
    ) -> PaymentStarted:
        """Ask the provider what the customer needs to pay, and keep it with the payment:
        ``created`` when the payment had no checkout before (the one answer that gives the
        customer the payment first, whichever request made it). A start that waited for
        another's answers what that one left, as the order answers it now: the payment with
        its checkout, or the refusal of an order that ended meanwhile (a cancel between the
        two starts: not the payment of a canceled order, handed out)."""
        order = Address("order", started.payment.order_id)
        async with self._checkouts.hold(started.payment.id, channel):
            now = answer(await self.system.ask(order, StartPayment()), PaymentStarted)
            if now.payment.id == started.payment.id:
                if now.payment.has_checkout and not self._other_channel(now.payment, channel):
                    return PaymentStarted(now.payment, False, now.deadline)
                return await self._ask_checkout(now, channel)
        # the payment failed meanwhile, and the order opened another for this start
        return await self._checkout(now, channel)

    async def _ask_checkout(
        self, started: PaymentStarted, channel: Literal["page", "qr"]
    ) -> PaymentStarted:
        payment = started.payment
        deadline = started.deadline
        if deadline is None:
            deadline = self.system.clock.now() + self.config.order_timeout_s
        request = PaymentRequest(
            payment_id=payment.id, order_id=payment.order_id, amount=payment.amount,
            currency=payment.currency, description=f"order {payment.order_id}",
            deadline=deadline, channel=channel,
        )
        try:
            checkout = await self.provider.start_payment(request)
        except GatewayError as exc:
            # what the provider said is the operator's to read (it names its URLs, its own
            # codes), not the customer's: a refusal is not an outage to try again after
            refused = isinstance(exc, GatewayRefused)
            log.warning("payment_start_failed", payment_id=payment.id, refused=refused,
                        error=str(exc))
            if refused:
                raise ShopError(
                    PROVIDER_REFUSED, "the payment provider refused to start this payment"
                ) from None
            raise ShopError(
                UNAVAILABLE, "the payment provider did not answer; try again"
            ) from None
        kept = CheckoutReady(
            payment.id, msgspec.json.encode(checkout).decode(), checkout.provider_ref
        )
        reply = await self.system.ask(Address("order", payment.order_id), kept)
        return answer(reply, PaymentStarted)

    async def payments(self, order_id: int, *, user_id: int | None = None) -> list[PaymentView]:
        """The order's payments, oldest first."""
        found = answer(await self._ask_order(order_id, user_id, GetPayments()), tuple)
        return [self._linked_here(payment) for payment in found]

    async def get_payment(self, payment_id: int, *, user_id: int | None = None) -> PaymentView:
        """A payment; with ``user_id``, only if its order is theirs."""
        user_id = check_scope(user_id)
        found = await order_store.payment(self.reader, check_id("payment_id", payment_id))
        if found is None or (user_id is not None and found.user_id != user_id):
            raise ShopError(NOT_FOUND, f"payment {payment_id} does not exist")
        view = await self._payment_of(found.order_id, payment_id)
        if view is None:
            raise ShopError(NOT_FOUND, f"payment {payment_id} does not exist")
        return self._linked_here(view)

    async def _refund_failed_later(self, failed: RefundFailedLater) -> None:
        """A refund the provider failed after it said it was done: the customer is owed the
        money, to be paid back another way. Its refunder keeps the provider's words on its
        row and has its order count it refunding again (the console's refunds page offers to
        settle it); answered once that is committed, so that a notification acknowledged is
        never lost. One of no refund of this shop's, or whose failure is known already,
        changes nothing. One the shop still has open with the provider is not acknowledged
        (503 unavailable): the provider sends it again, by when the shop's own try or query
        has its outcome."""
        told = await self.system.ask(
            Address("refunder", failed.refund_id),
            FailedAfterDone(failed.refund_id, failed.reason, failed.provider_refund),
        )
        if isinstance(told, Refusal):  # still open here: not acknowledged, sent again later
            # warned: the provider must send it again, once the shop's own try or query has
            # the refund's outcome, for its failure to be taken
            log.warning("refund_failure_early", provider=self.provider.name,
                        refund_id=failed.refund_id, provider_refund=failed.provider_refund,
                        reason=failed.reason,
                        detail="answered 503: taken when the provider sends it again")
            raise ShopError.of(told)
        if told is not True:
            log.info("refund_failure_known", provider=self.provider.name,
                     refund_id=failed.refund_id, provider_refund=failed.provider_refund)

    async def knows_outcome(self, payment_id: int, status: str, txn_id: str | None) -> bool:
        """Whether the shop has applied what a callback of payment ``payment_id`` says
        (``status``, and for a success its ``txn_id``), by that callback or by its deadline's
        query: a gateway still calling it back tells nothing new."""
        check_choice("status", status, OUTCOMES)
        if txn_id is not None:
            check_instance("txn_id", txn_id, str)
        found = await order_store.payment(self.reader, check_id("payment_id", payment_id))
        if found is None:
            return False
        knows = await self.system.ask(
            Address("order", found.order_id), KnowsOutcome(payment_id, status, txn_id)
        )
        return knows is True

    async def _payment_of(self, order_id: int, payment_id: int) -> PaymentView | None:
        """Payment ``payment_id`` as order ``order_id`` holds it now; None if it has none."""
        for view in await self.payments(order_id):
            if view.id == payment_id:
                return view
        return None

    async def handle_callback(
        self, raw_body: bytes, headers: Mapping[str, str] | str | None
    ) -> CallbackHandled:
        """Verify and apply a payment notification (SPEC 3, 7, 10) through the provider.

        ``headers`` are the request's (a str is the sandbox's ``Shopkeep-Signature`` alone).
        Raises CallbackRejected, having changed nothing, for what fails the provider's
        verification (signature, timestamp, body, app or merchant), an unknown payment, a
        wrong amount or currency. What fails verification is counted by reason
        (``rejected_callbacks``) and never stored: anyone can send it, and storing it would
        let anyone fill the disk (SPEC 7); one the provider signed all the same (for another
        app, or of no amount of the currency: ``AUTHENTIC_REFUSALS``) is logged as a warning
        too. An unknown payment, a wrong amount or currency, signed by the provider, is logged
        by its order. An authentic notification that is not about a payment's result
        (:class:`~shopkeep.payments.provider.Ignored`) is acknowledged, counted with the
        callbacks ``ignored`` and logged (``callback_ignored``, at info): the answer's action
        is ``ignored``, its order None.
        """
        self._check_open()  # a closed shop's answer, before any verdict on the callback
        check_instance("raw_body", raw_body, bytes)  # the bytes, as the provider signed them
        if headers is None:
            headers = {}
        elif isinstance(headers, str):
            headers = {SIGNATURE_HEADER: headers}
        elif not isinstance(headers, Mapping) or not all(
            isinstance(name, str) and isinstance(value, str) for name, value in headers.items()
        ):
            raise refused_parameter(
                "headers", "headers must be a mapping of str to str, or the signature's str"
            )
        verdict = await self.provider.verify_callback(raw_body, headers, self.system.clock.now())
        if isinstance(verdict, Refused):
            self._reject(verdict.reason)
            if verdict.signed or verdict.reason in AUTHENTIC_REFUSALS:
                # signed by the provider, yet for another app or merchant, of no amount of
                # the currency, or of a shape the shop does not take: a shop set up with the
                # wrong id refuses every payment's notification, a provider that adds a field
                # sends it again for days, the money may be at the provider: a person must
                # see why
                log.warning("callback_refused", reason=verdict.reason,
                            provider=self.provider.name, detail=verdict.detail)
            raise CallbackRejected(verdict.detail or verdict.reason)
        if isinstance(verdict, Ignored):
            # no order hears of it, so none counts it: counted here with the orders' verified
            # callbacks, or a provider's news the shop drops would show nowhere
            ignored = CallbackAction.IGNORED.value
            self.order_stats.callbacks[ignored] += 1
            log.info("callback_ignored", provider=self.provider.name, reason=verdict.reason)
            if verdict.refund_failed is not None:
                await self._refund_failed_later(verdict.refund_failed)
            return CallbackHandled(ignored, False, None)
        order_id = verdict.order_id
        if order_id is None:
            found = await order_store.payment(self.reader, verdict.payment_id)
            if found is None:
                # signed by the provider, yet no payment of this database's: a database restored
                # from a backup older than the payment, or another shop's notify URL. No order
                # logs it, and the money may be at the provider: a person looks (a warning).
                self._reject("unknown_payment")
                log.warning(
                    "callback_refused", reason="unknown_payment", provider=self.provider.name,
                    payment_id=str(verdict.payment_id), amount=verdict.amount,
                    status=verdict.status, gateway_txn_id=verdict.gateway_txn_id,
                )
                raise CallbackRejected(f"there is no payment {verdict.payment_id}")
            order_id = found.order_id
        message = PaymentCallback(
            verdict.payment_id, verdict.status, verdict.amount, verdict.gateway_txn_id,
            verdict.currency,
        )
        reply = await self.system.ask(Address("order", order_id), message)
        if isinstance(reply, Refusal):
            raise CallbackRejected(reply.detail)
        return answer(reply, CallbackHandled)

    async def acknowledge_callback(self, raw_body: bytes, signature: str) -> bool:
        """The in-process sandbox gateway's way in: True once the callback is handled
        (acknowledged); CallbackRejected when refused, which the gateway does not retry (in
        process the same callback is refused again: its payment or amount is wrong)."""
        await self.handle_callback(raw_body, signature)
        return True

    def _reject(self, reason: str) -> None:
        self.rejected_callbacks[reason] += 1

    def reject_unread_callback(self, reason: str) -> None:
        """Count a callback refused before its body was read, as every refused callback is
        counted: for its size (:data:`TOO_LARGE`, a body larger than the server takes, which no
        provider's notification comes near) or its coding (:data:`UNREADABLE`)."""
        self._reject(reason)

