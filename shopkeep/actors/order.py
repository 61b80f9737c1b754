"""The ``order`` kind: one actor per order id, the whole lifecycle of SPEC.md.

A thin shell: it loads the state (``order_store.load_order``), calls the pure rules
(``order_rules``, ``payment_rules``), asks other actors where a rule needs their answer
(the placement saga in ``placement.py``, the warehouse before a cancel or a ship), writes the
effects in the message's unit of work (their rows ``order_store.write``, their timers and
messages ``order_effects.carry_out``) and answers with views.
Messages and answers: ``order_messages.py``.

Because every message for one order goes through this one mailbox, a payment callback, the
deadline and a cancel never interleave: whichever comes first wins and the later ones see its
result. The kind is bound to the shop's settings and payment gateway by
:func:`shopkeep.actors.kinds.order_kinds`.
"""

from __future__ import annotations

from collections import Counter
from operator import attrgetter
from typing import Any, ClassVar

import msgspec
import structlog

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.fulfilment import Dispatch, Intercept
from shopkeep.actors.key_store import (
    forget_key,
    keep_answer_again,
    keep_placement_answer,
    run_keyed,
)
from shopkeep.actors.order_effects import carry_out
from shopkeep.actors.order_messages import (
    Accept,
    ApproveReturn,
    AsUser,
    CallbackHandled,
    Cancel,
    CheckoutReady,
    DeadlineReached,
    Deliver,
    ForgetStartKey,
    GetOrder,
    GetPayments,
    GetRefunds,
    KeepStartAnswer,
    KnowsOutcome,
    OrderItemView,
    OrderMessage,
    OrderView,
    PaymentCallback,
    PaymentStarted,
    PaymentView,
    Place,
    PlacedBefore,
    RefundDone,
    RefundStuck,
    RefundTaken,
    RefundView,
    RequestReturn,
    ReturnAsked,
    ReturnView,
    Run,
    SettleRefund,
    Ship,
    StartPayment,
    UndoPlacement,
)
from shopkeep.actors.order_rules import (
    CancelPlan,
    approve_return,
    cancel_paid,
    deadline_reached,
    deliver,
    new_order,
    placement_outcome,
    plan_cancel,
    request_return,
    ship,
    validate_request,
)
from shopkeep.actors.order_state import (
    AWAITING_PAYMENT,
    PENDING,
    VIEW_FIELDS,
    AskProvider,
    Effect,
    History,
    LogPayment,
    OrderState,
    Payment,
    Refund,
)
from shopkeep.actors.order_stats import OrderStats
from shopkeep.actors.order_store import (
    callback_body,
    load_order,
    log_rejected_callback,
    write,
)
from shopkeep.actors.payment_rules import (
    CallbackAction,
    ask_at_deadline,
    cancel_before_payment,
    closed_once_paid,
    collected_since,
    decide_callback,
    keep_checkout,
    knows_outcome,
    refund_done,
    refund_stuck,
    refund_taken,
    refund_undone,
    rejection_reason,
    settle_by_hand,
    start_payment,
)
from shopkeep.actors.placement import (
    UNDONE_FAILURES,
    placement_failure,
    run_placement,
    undo_cut_placement,
)
from shopkeep.actors.placement_turn import place_in_one_turn
from shopkeep.actors.protocol import BeginOrder, Keyed, OrderSettled, OrderTicket
from shopkeep.payments.provider import Checkout, PaymentProvider
from shopkeep.refusals import INVALID_STATE, NOT_FOUND, Refusal
from shopkeep.runtime import ActivationContext, Actor, Address, Context

log = structlog.get_logger("shopkeep.order")

# -- views ------------------------------------------------------------------------------------


_own_fields = attrgetter(*VIEW_FIELDS)


def order_view(state: OrderState) -> OrderView:
    """The order as SPEC 7 shows it: its own fields (``OrderFields``), and its items. A
    pending order shows no prices, as its amounts are none yet: the 202 answer's shape, which
    a list showing the row of a placement under way would otherwise contradict (its lines
    priced, its amounts still 0)."""
    pending = state.status == PENDING
    items = tuple(
        OrderItemView(x.goods_id, x.quantity, None if pending else x.unit_price)
        for x in state.lines
    )
    return OrderView(*_own_fields(state), items=items)


def payment_view(order_id: int, payment: Payment) -> PaymentView:
    """A payment as SPEC 10 shows it: with what the customer was given to pay it."""
    checkout = (
        Checkout() if payment.checkout is None
        else msgspec.json.decode(payment.checkout, type=Checkout)
    )
    return PaymentView(
        id=payment.id, order_id=order_id, amount=payment.amount, status=payment.status,
        gateway=payment.gateway, currency=payment.currency, gateway_url=checkout.gateway_url,
        qr_code=checkout.qr_code, code_url=checkout.code_url,
        client_secret=checkout.client_secret, provider_ref=payment.provider_ref,
        gateway_txn_id=payment.txn_id,
    )


def refund_view(order_id: int, refund: Refund) -> RefundView:
    """A refund as SPEC 7 shows it."""
    return RefundView(
        refund.id, order_id, refund.kind, refund.wallet_amount, refund.gateway_amount,
        refund.status, refund.created_at,
    )


# -- the actor --------------------------------------------------------------------------------


class OrderActor(Actor):
    """One order. ``config`` and ``provider`` are bound by ``kinds.order_kinds``."""

    __slots__ = ("placing", "querying", "state")
    kind = "order"
    messages = OrderMessage
    config: ClassVar[ShopConfig] = ShopConfig()
    provider: ClassVar[PaymentProvider]
    outcomes: ClassVar[Counter[str]] = Counter()
    stats: ClassVar[OrderStats] = OrderStats()

    async def on_activate(self, ctx: ActivationContext) -> None:
        """Load the order (None when it does not exist yet, or when it is being created)."""
        first = ctx.first_message
        self.state: OrderState | None = None
        if not (isinstance(first, Place | Accept) and first.begin is not None):
            self.state = await load_order(ctx.reader, self.address.id)
        # True only while this activation runs (or has queued) the order's placement: a
        # pending order loaded from the store is a placement cut short.
        self.placing = False
        # The payments whose active queries (the deadline's) this activation sent and has not
        # heard back from, with what those it heard from said; None: no such question.
        self.querying: Querying | None = None

    def commit(self, ctx: Context, state: OrderState, effects: list[Effect]) -> None:
        """Write ``state`` and ``effects`` into the unit and make ``state`` current."""
        write(ctx, self.state, state, effects)
        carry_out(ctx, state, effects)
        self.stats.decided(self.state, state, effects)
        self.state = state

    def payment_view(self, payment: Payment) -> PaymentView:
        """A payment with what the customer needs to pay it."""
        return payment_view(self.address.id, payment)

    @property
    def pinned(self) -> bool:
        """Live while the deadline's questions are out and the order still awaits payment:
        what their answers said so far, and which are still out, are this activation's alone
        (one loaded again asks them all again, within the same wait)."""
        state = self.state
        return (
            self.querying is not None and state is not None and state.status == AWAITING_PAYMENT
        )

    def view(self) -> OrderView:
        """The order as it is now (it must exist)."""
        assert self.state is not None
        return order_view(self.state)

    def _outcome(self) -> OrderView | Refusal:
        state = self.state
        assert state is not None
        return placement_outcome(state) or order_view(state)

    @property
    def absent(self) -> bool:
        """No such order (and none being placed): the runtime drops the activation."""
        return self.state is None and not self.placing

    async def receive(self, ctx: Context, message: Any) -> Any:
        """Dispatch one message (see ``order_messages`` for the answers)."""
        if isinstance(message, Place | Accept):
            return await self._place(ctx, message)
        state = self.state
        if isinstance(message, AsUser):
            if state is None or state.user_id != message.user_id:
                return Refusal(NOT_FOUND, f"order {self.address.id} does not exist")
            message = message.message
        if state is None:
            if isinstance(
                message,
                DeadlineReached | RefundDone | RefundStuck | RefundTaken | UndoPlacement | Run,
            ):
                return None
            if isinstance(message, PaymentCallback):
                said = LogPayment(message.payment_id, message.status, message.amount,
                                  message.gateway_txn_id, "rejected", False)
                body = callback_body(self.address.id, said)
                log_rejected_callback(ctx, self.address.id, message.payment_id, body,
                                      "unknown_payment")
                log.warning("callback_refused", order_id=str(self.address.id),
                            reason="unknown_payment", payment_id=str(message.payment_id),
                            detail=f"order {self.address.id} does not exist")
                self.stats.callbacks_rejected["unknown_payment"] += 1
            return Refusal(NOT_FOUND, f"order {self.address.id} does not exist")
        if state.status == PENDING:
            if isinstance(message, Run) and self.placing:
                return await self._run(ctx, message)
            if not self.placing:
                undo_cut_placement(self, ctx)
        return await self._handle(ctx, message)

    async def _handle(self, ctx: Context, message: Any) -> Any:
        state = self.state
        assert state is not None
        now = ctx.now()
        match message:
            case Keyed():
                # a user's or the admin's request under an Idempotency-Key: at most once
                return await run_keyed(ctx, message, self._handle)
            case GetOrder() | Run() | UndoPlacement():
                return order_view(state) if isinstance(message, GetOrder) else self._outcome()
            case StartPayment():
                # the provider is asked by the caller, outside this turn (CheckoutReady)
                started = start_payment(
                    state, ctx.new_id(), now, self.provider.name, self.config.currency
                )
                if isinstance(started, Refusal):
                    return started
                state, effects, payment, created = started
                self.commit(ctx, state, effects)
                return PaymentStarted(self.payment_view(payment), created, state.expires_at)
            case CheckoutReady(payment_id, checkout, provider_ref):
                kept = keep_checkout(state, payment_id, checkout, provider_ref)
                if isinstance(kept, Refusal):
                    return kept
                state, effects, handed = kept
                if effects:
                    self.commit(ctx, state, effects)
                if isinstance(handed, Refusal):
                    return handed
                payment, first = handed
                return PaymentStarted(self.payment_view(payment), first, state.expires_at)
            case PaymentCallback():
                return self._callback(ctx, message)
            case Cancel(by, if_status):
                return await self._cancel(ctx, by, if_status)
            case DeadlineReached(queried, outcome, payment_id, answer_by):
                if not queried and self._query_open_payment(ctx, state, now):
                    return self.view()
                if payment_id is not None and not self._answered(
                    ctx, state, payment_id, outcome, answer_by
                ):
                    return self.view()  # another of the deadline's questions is still out
                self._time_out(ctx, state, now, outcome)
                return self.view()
            case Ship():
                return await self._ship(ctx)
            case Deliver():
                delivered = deliver(state, now)
                if isinstance(delivered, Refusal):
                    return delivered
                if delivered is not None:
                    self.commit(ctx, *delivered)
                return self.view()
            case RequestReturn(reason):
                requested = request_return(state, ctx.new_id(), reason, now)
                if isinstance(requested, Refusal):
                    return requested
                state, effects, request = requested
                self.commit(ctx, state, effects)
                return ReturnAsked(request.id, state.id, request.status, created=bool(effects))
            case ApproveReturn(return_id):
                approved = approve_return(state, return_id, now, ctx.new_id())
                if isinstance(approved, Refusal):
                    return approved
                state, effects, request = approved
                self.commit(ctx, state, effects)
                return ReturnView(request.id, state.id, request.status)
            case RefundStuck(refund_id, _, retried, after_done):
                if after_done:
                    self.commit(ctx, *refund_undone(state, refund_id))
                else:
                    self.commit(ctx, *refund_stuck(state, refund_id, retried))
                return None
            case RefundTaken(refund_id):
                self.commit(ctx, *refund_taken(state, refund_id))
                return None
            case RefundDone(refund_id):
                done = refund_done(state, refund_id, now)
                if done is not None:
                    self.commit(ctx, *done)
                return None
            case SettleRefund(refund_id, note):
                settled = settle_by_hand(state, refund_id, note, now)
                if isinstance(settled, Refusal):
                    return settled
                self.commit(ctx, *settled)
                refund = settled[0].refund(refund_id)
                assert refund is not None
                return refund_view(state.id, refund)
            case GetRefunds():
                return tuple(refund_view(state.id, r) for r in state.refunds)
            case GetPayments():
                return tuple(self.payment_view(p) for p in state.payments)
            case KnowsOutcome(payment_id, status, txn_id):
                return knows_outcome(state, payment_id, status, txn_id)
            case KeepStartAnswer(principal, key, kept):
                keep_answer_again(ctx, principal, key, kept)
                return None
            case ForgetStartKey(principal, key):
                forget_key(ctx, principal, key)
                return None
        raise TypeError(f"unexpected message {message!r}")

    # -- placement ------------------------------------------------------------------------------

    async def _place(
        self, ctx: Context, message: Place | Accept
    ) -> OrderView | Refusal | PlacedBefore:
        if self.state is not None:
            if self.state.status == PENDING and not self.placing:
                undo_cut_placement(self, ctx)
            return self._outcome()
        if isinstance(message, Place) and message.begin and self.config.one_turn_placement:
            # the common path: one turn, one unit (placement_turn.py); else the saga below
            refusal = validate_request(
                message.items, message.use_balance, message.expected_total, self.config
            )
            if refusal is not None:
                return self._refused(refusal)
            begin = message.begin
            if begin.key is not None:
                begin = msgspec.structs.replace(begin, row_by_order=True)  # one unit: one row
            placed = await place_in_one_turn(self, ctx, message, begin)
            if isinstance(placed, OrderState):
                return self._keep_answer(ctx, message.user_id, begin, order_view(placed))
            if isinstance(placed, Refusal):
                return self._refused(placed)
            if placed is not None:
                return placed
        capped = False
        if message.begin is not None:
            # Asked from here, not by the caller beforehand: the user's unit (the key, the
            # unpaid count) becomes a commit dependency of the order's, so the placement waits
            # for no commit before it starts. An order its coupon or wallet may pay in full is
            # admitted at the cap provisionally: only its amounts tell (SPEC 2).
            begin = message.begin
            if message.coupon_id is not None or message.use_balance > 0:
                begin = msgspec.structs.replace(begin, provisional=True)
            try:
                ticket = await ctx.ask(Address("user", message.user_id), begin)
            except Exception as exc:
                code, detail = placement_failure(exc)
                return self._refused(Refusal(code, detail))
            if not isinstance(ticket, OrderTicket):
                return self._refused(Refusal(*placement_failure(ticket)))
            if ticket.existing:
                return PlacedBefore(ticket.order_id)
            capped = ticket.capped
        refusal = validate_request(
            message.items, message.use_balance, message.expected_total, self.config
        )
        if refusal is not None:
            # the caller's BeginOrder counted this order as unpaid: it never will be
            ctx.send(Address("user", message.user_id), OrderSettled(self.address.id))
            return self._refused(refusal)
        self.commit(ctx, *new_order(
            self.address.id, message.user_id, message.items, message.coupon_id,
            message.use_balance, ctx.now(), self.config.currency,
        ))
        self.placing = True
        if isinstance(message, Accept):
            # enqueued now, before the answer leaves: nothing the caller sends can overtake it
            ctx.tell(self.address, Run(message.expected_total, capped))
            return self._keep_answer(ctx, message.user_id, message.begin, self._outcome())
        ctx.checkpoint()
        answer = await self._run(ctx, Run(message.expected_total, capped))
        return self._keep_answer(ctx, message.user_id, message.begin, answer)

    def _refused(self, refusal: Refusal) -> Refusal:
        """Count a placement refused before any order was recorded (one that was is counted
        by its commit, as a cancel with its failure code)."""
        self.stats.refused[refusal.code] += 1
        return refusal

    def _keep_answer(
        self, ctx: Context, user_id: int, begin: BeginOrder | None, answer: OrderView | Refusal
    ) -> OrderView | Refusal:
        """Record the placement's answer with its Idempotency-Key, in this unit: the order, or
        the refusal of a placement that failed once its order was recorded, in its own words
        (rebuilt from the order, a replay said only "the placement failed"). Not one that did
        nothing (``UNDONE_FAILURES``): its key is free for the retry (see placing.py)."""
        if begin is not None and begin.key is not None and (
            isinstance(answer, OrderView) or answer.code not in UNDONE_FAILURES
        ):
            keep_placement_answer(ctx, begin, user_id, answer)
        return answer

    async def _run(self, ctx: Context, message: Run) -> OrderView | Refusal:
        try:
            placed = await run_placement(self, ctx, message.expected_total, message.capped)
        finally:
            self.placing = False
        return placed if isinstance(placed, Refusal) else order_view(placed)

    # -- payments -------------------------------------------------------------------------------

    def _callback(self, ctx: Context, message: PaymentCallback) -> CallbackHandled | Refusal:
        state = self.state
        assert state is not None
        outcome = decide_callback(
            state, message.payment_id, message.status, message.amount, message.gateway_txn_id,
            ctx.now(), ctx.new_id(), self.config, message.currency,
        )
        if isinstance(outcome, Refusal):
            said = LogPayment(message.payment_id, message.status, message.amount,
                              message.gateway_txn_id, "rejected", False)
            reason = rejection_reason(outcome.code)
            # authentic, yet not what was asked: the money may be at the provider, a person looks
            log.warning("callback_refused", order_id=str(state.id), reason=reason,
                        payment_id=str(message.payment_id), detail=outcome.detail)
            log_rejected_callback(
                ctx, state.id, message.payment_id, callback_body(state.id, said), reason
            )
            if message.via == "callback":  # the deadline's answers count as its own
                self.stats.callbacks_rejected[reason] += 1
            answer = f"payment {message.payment_id}: {message.status}, refused: {outcome.detail}"
            if message.via == "query" and self._answered(
                ctx, state, message.payment_id, answer, message.answer_by
            ):
                # the deadline's questions, the last answered with what the shop cannot take
                # (another currency, another amount): the order times out now, saying so
                self._time_out(ctx, state, ctx.now(), answer)
            return outcome
        effects = outcome.effects
        if message.via == "callback":  # the deadline's answers count as its own (outcomes)
            self.stats.callbacks[outcome.action.value] += 1
        else:  # SPEC 10's active query: the history says how it was
            status = state.status  # found, before what it changed
            effects = [*self._answers_before(message.payment_id, status),
                       History(status, status, "payment_queried",
                               f"payment {message.payment_id}: {message.status} "
                               f"({message.gateway_txn_id}), {outcome.action.value}"), *effects]
        if self.querying is None:  # else the deadline's questions close them already
            effects = [*effects, *closed_once_paid(state, outcome.state, self.provider.name)]
        self.commit(ctx, outcome.state, effects)
        duplicate = outcome.action is CallbackAction.DUPLICATE
        return CallbackHandled(outcome.action.value, duplicate, order_view(outcome.state))

    def _answered(
        self, ctx: Context, state: OrderState, payment_id: int, outcome: str,
        answer_by: float | None = None,
    ) -> bool:
        """One of the deadline's questions answered, not paid (``outcome``): whether the order
        may time out now, that answer the last one out (the answers, then, are what the history
        says). An answer to a question of an earlier activation (the shop restarted while they
        were out, and what this one knows of them went with it) has the questions asked again,
        all of them (one of the others may be paid), within the wait that question was asked
        in (``answer_by``): a restart does not make it longer."""
        querying = self.querying
        if querying is None:
            return not self._query_open_payment(ctx, state, ctx.now(), answer_by)
        if payment_id not in querying.out:
            return False  # answered already
        querying.out.discard(payment_id)
        if not collected_since(state, payment_id):
            querying.said.append(outcome)  # else asked before its callback paid: not news
        return not querying.out

    def _answers_before(self, payment_id: int, status: str) -> list[Effect]:
        """The deadline's other answers, for the history before this one's (``payment_id``,
        found paid), when it was the last out."""
        querying = self.querying
        if querying is None:
            return []
        querying.out.discard(payment_id)
        if querying.out:
            return []
        self.querying = None  # the last one out: nothing left to wait for
        if not querying.said:
            return []
        return [History(status, status, "payment_queried", "; ".join(querying.said))]

    def _time_out(self, ctx: Context, state: OrderState, now: float, outcome: str) -> None:
        """The deadline passed, every question to the provider answered (``outcome``, or what
        they all said, for the history) or given up on: the order times out, if it still awaits
        payment."""
        answers = self.querying.said if self.querying is not None else []
        if answers:
            outcome = "; ".join(answers)
        self.querying = None
        decision = deadline_reached(state, now)
        if decision is not None:
            state, effects = decision
            if outcome:
                effects = [History(AWAITING_PAYMENT, AWAITING_PAYMENT, "payment_queried",
                                   outcome), *effects]
            self.commit(ctx, state, effects)
        elif answers:  # paid meanwhile by another of the questions: these answers came after
            status = state.status
            self.commit(ctx, state, [History(status, status, "payment_queried", outcome)])

    def _query_open_payment(
        self, ctx: Context, state: OrderState, now: float, answer_by: float | None = None
    ) -> bool:
        """At the deadline, the provider asked about every payment it may still collect on
        before the order times out (``payment_rules.ask_at_deadline``), the answers waited for
        until ``answer_by`` (by default ``payment_query_grace_s`` from now): one found paid
        pays the order, and it times out once all have answered otherwise, or the re-armed
        deadline passed. False: nothing to ask, the order times out now."""
        if answer_by is None:
            answer_by = now + self.config.payment_query_grace_s
        asking = ask_at_deadline(state, now, self.provider.name, answer_by)
        if asking is None:
            return False
        if self.querying is None:
            # else asked already (the deadline sweep tells an overdue order again while the
            # answers are on the way): the answers, or the re-armed deadline, decide
            self.querying = Querying({e.payment_id for e in asking if type(e) is AskProvider})
            self.commit(ctx, state, asking)
        return True

    # -- cancels and fulfilment -----------------------------------------------------------------

    async def _cancel(self, ctx: Context, by: str, if_status: str | None) -> OrderView | Refusal:
        state = self.state
        assert state is not None
        plan = plan_cancel(state, if_status)
        if isinstance(plan, Refusal):
            return plan
        if plan is CancelPlan.UNPAID:
            self.commit(ctx, *cancel_before_payment(state, by, ctx.now(), self.provider.name))
        elif plan is CancelPlan.INTERCEPT:
            # SPEC 5: fulfilment is intercepted first, synchronously; shipped -> nothing changes
            intercepted = await ctx.ask(Address("warehouse", state.id), Intercept())
            if isinstance(intercepted, Refusal):
                return Refusal(INVALID_STATE, f"order {state.id} has shipped", state.id)
            self.commit(ctx, *cancel_paid(state, by, ctx.now(), ctx.new_id()))
        return self.view()

    async def _ship(self, ctx: Context) -> OrderView | Refusal:
        state = self.state
        assert state is not None
        shipped = ship(state, ctx.now())
        if isinstance(shipped, Refusal):
            return shipped
        if shipped is not None:
            dispatched = await ctx.ask(Address("warehouse", state.id), Dispatch())
            if isinstance(dispatched, Refusal):
                return Refusal(dispatched.code, dispatched.detail, state.id)
            self.commit(ctx, *shipped)
        return self.view()


class Querying:
    """The deadline's questions to the provider: the payments not answered yet (``out``), and
    what those answered said (``said``), for the history."""

    __slots__ = ("out", "said")

    def __init__(self, out: set[int]) -> None:
        self.out = out
        self.said: list[str] = []
