"""The payment gateway: the interface the shop needs, and an in-process sandbox of it.

The shop needs two things from a gateway: a link where the user pays a payment, and refunds.
Payment results come back the other way, as signed callbacks (SPEC 3, 7), which the gateway
retries until the shop acknowledges them. :class:`SandboxGateway` does all of that in process,
on the runtime's clock, and keeps what it collected and refunded, so tests and the load
generator can check the money side of the audit against the gateway's own books.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import msgspec
import structlog

from shopkeep.errors import CallbackRejected, ShopError
from shopkeep.payments.names import OUTCOMES
from shopkeep.payments.provider import CallbackBody, GatewayError, GatewayRefused
from shopkeep.payments.sandbox_books import PAYMENTS_REMEMBERED, SandboxBooks
from shopkeep.payments.signature import sign
from shopkeep.refusals import INVALID_STATE
from shopkeep.requests import check_amount, check_choice, check_id, check_instance
from shopkeep.runtime import Clock, ShuttingDown, WrongLoop

log = structlog.get_logger("shopkeep.gateway")

CallbackSink = Callable[[bytes, str], Awaitable[bool]]
"""Where callbacks go: ``(raw_body, signature_header) -> acknowledged``. The shop's
``handle_callback`` in process; an HTTP POST to ``/v1/payments/callback`` otherwise."""


PAID_AT_PROVIDER = frozenset({"succeeded", "refunded"})
"""A payment's statuses at the shop once its money was taken (and maybe given back)."""


class Gateway(Protocol):
    """What the shop needs from a payment gateway."""

    def payment_url(self, payment_id: int) -> str:
        """The link where the user pays ``payment_id``."""
        ...

    async def refund(self, refund_id: int, payment_id: int | None, amount: int) -> None:
        """Pay ``amount`` back for ``payment_id``. ``refund_id`` is the idempotency key: asking
        again with it refunds nothing more. Raises :class:`GatewayError` on failure."""
        ...


class SandboxGateway:
    """An in-process gateway: collects on :meth:`complete`, refunds on :meth:`refund`.

    ``collected`` maps (payment id, gateway transaction id) to the amount collected;
    ``refunded`` maps refund id to (payment id, amount); both of the most recent ``remember``
    payments and refunds (:mod:`shopkeep.payments.sandbox_books`: the totals are exact, older
    books are forgotten as a restart forgets them; None keeps everything). Callbacks are signed
    with ``secret`` and delivered through the sink given to :meth:`attach`, retried with
    back-off (on the runtime clock) until the sink acknowledges them.
    """

    def __init__(
        self,
        secret: bytes | str,
        clock: Clock,
        *,
        base_url: str = "https://sandbox.shopkeep.invalid/pay",
        retry_s: float = 1.0,
        retry_max_s: float = 60.0,
        remember: int | None = PAYMENTS_REMEMBERED,
    ) -> None:
        self._secret = secret
        self._clock = clock
        self._base_url = base_url.rstrip("/")
        self._retry_s = retry_s
        self._retry_max_s = retry_max_s
        self._sink: CallbackSink | None = None
        self._in_use = False  # attached, and not closed since: an open shop's
        self._loop: asyncio.AbstractEventLoop | None = None  # the shop's, once attached
        self._txn_ids = itertools.count(1)
        self._tasks: dict[asyncio.Task[bool], int] = {}  # callbacks on their way: payment ids
        self._paying: dict[asyncio.Task[bool], int] = {}  # those of successes: payment ids
        self._settling = False  # a graceful stop began: no new callback is taken on
        self._refunds_fail_until = float("-inf")
        self.refunds_failing = False
        self._books = SandboxBooks(remember)
        self.refund_attempts = 0
        self.deliveries = 0

    @property
    def secret(self) -> bytes | str:
        """The secret callbacks are signed with (the shop verifies them with it)."""
        return self._secret

    # -- the shop's side ------------------------------------------------------------------------

    def payment_url(self, payment_id: int) -> str:
        """The sandbox page of ``payment_id``."""
        return f"{self._base_url}/{payment_id}"

    async def refund(self, refund_id: int, payment_id: int | None, amount: int) -> None:
        """Refund once per ``refund_id``; fails while refunds are switched off.

        A refund of more than this sandbox collected for a payment is refused (a bug in the
        shop). A payment it has no record of is refunded on trust: an in-process sandbox
        forgets what it collected when the process restarts, and the shop's refunds of
        payments from before the restart must still go through.
        """
        WrongLoop.unless_on(self._loop)
        self.refund_attempts += 1
        if self.refunds_failing or self._clock.now() < self._refunds_fail_until:
            raise GatewayError("sandbox: refunds are failing")
        books = self._books
        if books.has_refund(refund_id):
            return  # the idempotency key: done already
        if books.remembers(payment_id) and amount > books.refundable(payment_id):
            # a definite no, as Stripe's "greater than unrefunded amount": said as a refusal
            raise GatewayRefused(
                f"sandbox: payment {payment_id} has {books.refundable(payment_id)} left to "
                f"refund, {amount} asked"
            )
        books.refund(refund_id, payment_id, amount)

    # -- books ----------------------------------------------------------------------------------

    @property
    def collected(self) -> Mapping[tuple[int, str | None], int]:
        """(payment id, gateway transaction id) -> the amount collected, of the payments
        remembered (read-only: record with :meth:`collect`)."""
        return self._books.collected

    def transactions(self, payment_id: int) -> Mapping[str | None, int]:
        """Transaction id -> the amount collected, of ``payment_id`` (empty when it is not
        remembered)."""
        return self._books.transactions(payment_id)

    @property
    def refunded(self) -> Mapping[int, tuple[int | None, int]]:
        """Refund id -> (payment id, amount), of the refunds remembered."""
        return self._books.refunded

    def collect(self, payment_id: int, txn_id: str | None, amount: int) -> bool:
        """Record that the user paid ``amount`` for ``payment_id`` in transaction ``txn_id``,
        once per transaction; whether it was new."""
        WrongLoop.unless_on(self._loop)
        return self._books.collect(payment_id, txn_id, amount)

    @property
    def total_collected(self) -> int:
        """Everything collected, forgotten payments included."""
        return self._books.total_collected

    @property
    def total_refunded(self) -> int:
        """Everything refunded, forgotten refunds included."""
        return self._books.total_refunded

    def refundable(self, payment_id: int | None) -> int:
        """What was collected for ``payment_id`` and not refunded yet (0 when not
        remembered)."""
        return self._books.refundable(payment_id)

    # -- switches for tests ---------------------------------------------------------------------

    def fail_refunds_until(self, when: float) -> None:
        """Make every refund call fail until the clock reaches ``when``."""
        WrongLoop.unless_on(self._loop)
        self._refunds_fail_until = when

    # -- callbacks ------------------------------------------------------------------------------

    def attach(self, sink: CallbackSink) -> None:
        """Deliver callbacks to ``sink`` (the composition root wires the shop in here), on the
        running loop: what changes the books or calls back is refused elsewhere (WrongLoop), as
        the shop refuses it (a complete from another thread's loop collected, then retried
        its callback for ever). Attached again, only on the loop it is bound to, or once that
        loop is closed (a program that opens a shop on it again, on a new loop)."""
        WrongLoop.unless_on(self._loop)
        self._sink = sink
        self._in_use = True
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio._get_running_loop()

    def claim(self) -> None:
        """Take it for a shop opening now, before anything is awaited (ValueError while an
        open shop, or one opening, has it): two shops opened with it at once would otherwise
        both attach, the second taking every callback."""
        if self._in_use:
            raise ValueError(
                "gateway: this SandboxGateway delivers to another open shop; give each its own"
            )
        self._in_use = True

    @property
    def in_use(self) -> bool:
        """Whether an open shop takes this gateway's callbacks (attached, not closed since):
        a second shop opened with it would take them instead, and the first hear of none."""
        return self._in_use

    def callback(
        self, payment_id: int, order_id: int, amount: int, status: str, txn_id: str | None
    ) -> bytes:
        """The raw JSON body of a callback (not signed: see :meth:`signature`)."""
        body = CallbackBody(str(payment_id), str(order_id), amount, status, txn_id)
        return msgspec.json.encode(body)

    def signature(self, raw_body: bytes, timestamp: int | None = None) -> str:
        """The ``Shopkeep-Signature`` header value for ``raw_body``, signed now by default."""
        when = int(self._clock.now()) if timestamp is None else timestamp
        return sign(self._secret, when, raw_body)

    async def complete(
        self,
        payment_id: int,
        order_id: int,
        amount: int,
        status: str,
        txn_id: str | None = None,
        first_try: asyncio.Future[bool] | None = None,
    ) -> bool:
        """The user finished paying: collect (on success) and call the shop back until it
        acknowledges (True). :meth:`close` cancels the retries of tasks from
        :meth:`complete_soon`. ``first_try``, when given, is set once the first call back
        has an outcome: whether the shop acknowledged it.

        A success without ``txn_id`` gets a new transaction id; passing one already used
        collects nothing more (it is the same transaction, called back again). ``status`` is
        "succeeded" or "failed". A callback the shop in this process
        refuses (CallbackRejected: an unknown payment, a wrong amount) is refused for good:
        it is raised here, and what it collected is taken back; so is ShuttingDown, from a
        shop that has closed. The ids and the amount are checked as the shop checks its own
        (ShopError validation_error), and so is ``status``.
        """
        WrongLoop.unless_on(self._loop)
        check_id("payment_id", payment_id)
        check_id("order_id", order_id)
        check_amount("amount", amount)
        if txn_id is not None:
            check_instance("txn_id", txn_id, str)
        check_choice("status", status, OUTCOMES)  # as the HTTP route's 422 at /result
        collected = False
        if status == "succeeded":
            if txn_id is None:
                txn_id = f"sbx-{payment_id}-{next(self._txn_ids)}"
            collected = self.collect(payment_id, txn_id, amount)
        body = self.callback(payment_id, order_id, amount, status, txn_id)
        self._books.payment(payment_id).last_body = body
        try:
            return await self.deliver(body, first_try)
        except (CallbackRejected, ShuttingDown):
            if collected:  # raised: nothing happened, at the shop or here
                self._books.uncollect(payment_id, txn_id)
            raise

    def check_payable(self, payment_id: int, status: str) -> None:
        """Refuse the user's completing ``payment_id`` (``status`` at the shop) once it was
        paid: a real provider takes a payment once (Alipay's trade, WeChat Pay's order,
        Stripe's PaymentIntent), so a complete sent twice (two tabs, a network's duplicate, a
        retry) must not collect twice. A failed payment may still be paid. Raises ShopError
        invalid_state. The test's own :meth:`complete` with a ``txn_id`` still collects
        again, to play a provider's second transaction (SPEC 3.4)."""
        # a success on its way may not have collected yet (its task has not run): a second
        # sent at the same moment would find the books empty
        paying = payment_id in self._paying.values() or self._books.transactions(payment_id)
        if status in PAID_AT_PROVIDER or paying:
            said = status if status in PAID_AT_PROVIDER else "being paid"
            raise ShopError(
                INVALID_STATE,
                f"payment {payment_id} is {said} already: the sandbox takes a payment once",
            )

    def complete_soon(
        self,
        payment_id: int,
        order_id: int,
        amount: int,
        status: str,
        txn_id: str | None = None,
    ) -> asyncio.Future[bool]:
        """:meth:`complete` in a task of its own; what is returned is set once the first call
        back has an outcome (whether the shop acknowledged it), which the sandbox HTTP route
        waits for, a while, before it answers 202.

        Raises ShuttingDown once :meth:`settle` has begun: a callback taken on then could not
        reach a shop that is closing, and the sandbox's books do not outlive the process. What
        the task raises in the end (the shop refused the callback, or closed) is logged."""
        WrongLoop.unless_on(self._loop)
        if self._settling:
            raise ShuttingDown("the sandbox is stopping: complete the payment after the restart")
        loop = asyncio.get_running_loop()
        first_try: asyncio.Future[bool] = loop.create_future()
        task = loop.create_task(
            self.complete(payment_id, order_id, amount, status, txn_id, first_try)
        )
        self._tasks[task] = payment_id
        if status == "succeeded":
            self._paying[task] = payment_id
        task.add_done_callback(functools.partial(self._completed, first_try))
        return first_try

    def _completed(self, first_try: asyncio.Future[bool], task: asyncio.Task[bool]) -> None:
        payment_id = self._tasks.pop(task)
        self._paying.pop(task, None)
        if not first_try.done():  # refused before any call back
            first_try.set_result(False)
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "sandbox_callback_refused", payment_id=str(payment_id),
                error=f"{type(task.exception()).__name__}: {task.exception()}",
            )

    async def resend(self, payment_id: int) -> bool:
        """Call back again with the last body sent for ``payment_id`` (a duplicate); a
        payment the books no longer remember (or never called back for) is a KeyError."""
        body = self._books.last_body(payment_id)
        if body is None:
            raise KeyError(f"sandbox: no callback of payment {payment_id} is remembered")
        return await self.deliver(body)

    async def deliver(
        self, raw_body: bytes, first_try: asyncio.Future[bool] | None = None
    ) -> bool:
        """Sign ``raw_body`` afresh on every try and deliver it until acknowledged;
        ``first_try``, when given, is set to the first try's outcome."""
        if self._sink is None:
            raise RuntimeError("attach() a callback sink first")
        WrongLoop.unless_on(self._loop)
        delay = self._retry_s
        while True:
            self.deliveries += 1
            acknowledged = False
            try:
                acknowledged = await self._sink(raw_body, self.signature(raw_body))
            except (asyncio.CancelledError, CallbackRejected, ShuttingDown, WrongLoop):
                raise  # refused in process, or its shop closed: trying again cannot help
            except Exception as exc:  # the shop failed: a real gateway just tries again
                log.info("sandbox_callback_failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                if first_try is not None and not first_try.done():
                    first_try.set_result(acknowledged)
            if acknowledged:
                return True
            await self._clock.sleep(delay)
            delay = min(self._retry_max_s, delay * 2)

    async def settle(
        self,
        within_s: float,
        known: Callable[[int, str, str | None], Awaitable[bool]] | None = None,
    ) -> None:
        """Take no more completes (:meth:`complete_soon` refuses them), and wait up to
        ``within_s`` for the callbacks on their way to be acknowledged: a graceful stop lets
        what the sandbox answered 202 to reach the shop, whose deadline's query could not find
        it after a restart (the sandbox's books are memory).

        What is still unacknowledged then is forgotten with the process, loudly, with the
        advice to complete it again, except a payment whose last callback ``known`` says the
        shop has applied already (its deadline's query found that collection): completed
        again, it would be collected twice, and refunded as a duplicate."""
        WrongLoop.unless_on(self._loop)
        self._settling = True
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=within_s)
        pending = sorted(set(self._tasks.values()))
        if known is not None:
            pending = [payment for payment in pending if not await self._known(payment, known)]
        if pending:  # loudly: what they collected is forgotten with this process
            log.warning(
                "sandbox_callbacks_abandoned",
                payments=[str(payment) for payment in pending],
                detail=f"not acknowledged within {within_s:g} s: complete them again after "
                "the restart (is the callback URL right?)",
            )

    async def _known(
        self, payment_id: int, known: Callable[[int, str, str | None], Awaitable[bool]]
    ) -> bool:
        body = self._books.last_body(payment_id)
        if body is None:
            return False
        said = msgspec.json.decode(body, type=CallbackBody)
        return await known(payment_id, said.status, said.gateway_txn_id)

    async def close(self) -> None:
        """Stop retrying callbacks still waiting for an acknowledgement; the shop it served is
        closing, and another may be opened with it."""
        WrongLoop.unless_on(self._loop)
        self._in_use = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        # what one raised instead (the shop refused it, or closed) is logged as it ends
        await asyncio.gather(*tasks, return_exceptions=True)
