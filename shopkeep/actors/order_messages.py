"""The messages of the ``order`` kind and the views it answers with.

Every message is a frozen, tagged msgspec Struct; :data:`OrderMessage` is their union (the
stored ones, the deadline timer's :class:`DeadlineReached` and the refunder's durable
:class:`RefundDone`, are decoded with it after a restart). Ids are ints here, times Unix
seconds; the HTTP layer turns them into strings and RFC 3339.

Answers (a :class:`~shopkeep.actors.protocol.Refusal` is always possible where a rule can say
no, and carries the order id):

=========================  ==================================================================
message                    answer
=========================  ==================================================================
Place                      OrderView (awaiting_payment, or paid), or Refusal (placement failed)
Accept                     OrderView (pending) at once; the placement runs after it (Run)
Run                        like Place (told by Accept to itself; harmless to tell again)
UndoPlacement              OrderView: a placement cut by a crash is undone (recovery)
GetOrder                   OrderView, or Refusal not_found
StartPayment               PaymentStarted(payment, created, deadline)
CheckoutReady              PaymentView, with what the customer needs to pay it
PaymentCallback            CallbackHandled(action, duplicate, order)
Cancel                     OrderView (canceled, or unchanged when canceled already)
DeadlineReached            OrderView, or None when there is no such order
Ship / Deliver             OrderView
RequestReturn              ReturnAsked (status requested; created False for the open one again)
ApproveReturn              ReturnView (status approved)
RefundDone                 None (durable, from the refunder)
RefundStuck                None (durable, from the refunder: a history row)
RefundTaken                None (durable, from the refunder: a history row)
SettleRefund               RefundView (refunded), or Refusal not_found / invalid_state (asked
                           by the refund's refunder, between its tries: see refund.py)
GetRefunds / GetPayments   tuple of RefundView / PaymentView
=========================  ==================================================================

Every struct here is declared ``gc=False``: immutable data that can never refer back to what
holds it, so it cannot be part of a reference cycle, and the cycle collector need not walk it
(a server holds hundreds of thousands of them: full collections walked them all, pausing the
event loop for up to ~180 ms).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from shopkeep.actors.order_state import OrderFields
from shopkeep.actors.protocol import BeginOrder
from shopkeep.payments.names import DEFAULT_CURRENCY

Items = tuple[tuple[int, int], ...]
"""(goods id, quantity) pairs, each goods once."""

# -- views ------------------------------------------------------------------------------------


class OrderItemView(msgspec.Struct, frozen=True, gc=False):
    """One item as SPEC 7 shows it (``unit_price`` None while the order is pending)."""

    goods_id: int
    quantity: int
    unit_price: int | None


class OrderView(OrderFields, frozen=True, gc=False, kw_only=True):
    """An order with exactly the fields of SPEC 7's Order: its own fields, and its items."""

    items: tuple[OrderItemView, ...]


class PaymentView(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A payment, its provider and currency, and what the customer needs to pay it (SPEC 10:
    ``gateway_url``, ``qr_code``, ``code_url`` or ``client_secret``, whichever the provider
    gives; all None until the provider answered). For the staff, the provider's ids of it:
    ``provider_ref`` (Stripe's PaymentIntent) and ``gateway_txn_id``, the transaction that
    collected it (what to look up in the provider's dashboard)."""

    id: int
    order_id: int
    amount: int
    status: str
    gateway: str = "sandbox"
    currency: str = DEFAULT_CURRENCY
    gateway_url: str | None = None
    qr_code: str | None = None
    code_url: str | None = None
    client_secret: str | None = None
    provider_ref: str | None = None
    gateway_txn_id: str | None = None

    @property
    def has_checkout(self) -> bool:
        """Whether the provider's answer is known (one of the four fields is set)."""
        return any((self.gateway_url, self.qr_code, self.code_url, self.client_secret))

    def with_checkout_of(self, other: PaymentView) -> PaymentView:
        """This payment as it is here, with what the provider answered ``other`` (the same
        payment, read later): a replayed start's first answer, its status as it was then."""
        return msgspec.structs.replace(
            self, gateway_url=other.gateway_url, qr_code=other.qr_code,
            code_url=other.code_url, client_secret=other.client_secret,
        )


class PaymentStarted(msgspec.Struct, frozen=True, gc=False):
    """The answer to StartPayment: ``created`` False when the open payment is answered again
    (HTTP 200 instead of 201); ``deadline`` the order's payment deadline (what the provider is
    told the payment expires at)."""

    payment: PaymentView
    created: bool
    deadline: float | None = None


class CallbackHandled(msgspec.Struct, frozen=True, gc=False):
    """A verified callback was handled (acknowledge it): ``action`` is what was done
    (applied, duplicate, late_payment_refund, duplicate_payment_refund, failed, ignored)."""

    action: str
    duplicate: bool
    order: OrderView | None


class RefundView(msgspec.Struct, frozen=True, gc=False):
    """An after-sale record as SPEC 7 shows it."""

    id: int
    order_id: int
    kind: str
    wallet_amount: int
    gateway_amount: int
    status: str
    created_at: float


class ReturnView(msgspec.Struct, frozen=True, gc=False):
    """A return request."""

    id: int
    order_id: int
    status: str


class ReturnAsked(ReturnView, frozen=True, gc=False):
    """The answer to RequestReturn: ``created`` False when the order's open request is
    answered again (HTTP 200 instead of 201)."""

    created: bool = True


# -- messages ---------------------------------------------------------------------------------


class Place(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Place the order synchronously: the answer is the confirmed (or paid) order, or the
    refusal that failed it. Asked again for an order that exists, it answers the placement's
    outcome and changes nothing.

    ``begin``: the sender minted this order id just now (above every id in the store, so the
    order's first activation reads nothing), and the order first asks the user this
    BeginOrder (the unpaid-orders cap, the Idempotency-Key). When the key names another order,
    the answer is :class:`PlacedBefore` and nothing is written. A placement asked again for an
    order the key named has no ``begin``."""

    user_id: int
    items: Items
    coupon_id: int | None = None
    use_balance: int = 0
    expected_total: int | None = None
    begin: BeginOrder | None = None


class Accept(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Place the order asynchronously: write it pending and answer at once; the actor tells
    itself Run, so the placement runs next, ahead of any message sent after the answer.
    ``begin`` as for :class:`Place`."""

    user_id: int
    items: Items
    coupon_id: int | None = None
    use_balance: int = 0
    expected_total: int | None = None
    begin: BeginOrder | None = None


class PlacedBefore(msgspec.Struct, frozen=True, gc=False):
    """Place's or Accept's answer when the Idempotency-Key was first used for ``order_id``."""

    order_id: int


class Run(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Run the placement of an accepted order (a no-op once it ran; Accept tells it).
    ``capped``: its user was at the unpaid-orders cap (``OrderTicket.capped``)."""

    expected_total: int | None = None
    capped: bool = False


class UndoPlacement(msgspec.Struct, frozen=True, tag=True, gc=False):
    """If the order is still pending with no placement running, undo it: release everything
    it may hold, canceled placement_failed (failure code interrupted). Otherwise a no-op."""


class GetOrder(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Answer the order."""


class StartPayment(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Start (or answer the open) payment of an order awaiting payment."""


class PaymentCallback(msgspec.Struct, frozen=True, tag=True, gc=False):
    """The gateway says ``payment_id`` succeeded or failed (signature and timestamp already
    verified by the caller; the order checks the payment is its own and the amount)."""

    payment_id: int
    status: Literal["succeeded", "failed"]
    amount: int
    gateway_txn_id: str | None = None
    currency: str | None = None
    """ISO 4217, as the provider said it (None: the sandbox's callback names none)."""
    via: str = "callback"
    """``callback``, or ``query`` when the active query found the payment (SPEC 10)."""
    answer_by: float | None = None
    """A query's: when the order stopped waiting for the deadline's answers (see
    :class:`DeadlineReached`)."""


class CheckoutReady(msgspec.Struct, frozen=True, tag=True, gc=False):
    """The provider answered what the customer needs to pay ``payment_id``: ``checkout`` is
    its :class:`~shopkeep.payments.provider.Checkout` as JSON. Kept with the payment (the
    first one kept wins: the provider answers the same payment the same). Answers
    PaymentStarted, ``created`` when this is the payment's first checkout."""

    payment_id: int
    checkout: str
    provider_ref: str | None = None


class KeepStartAnswer(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Keep ``answer`` (a PaymentStarted, as the key keeps it) as the answer of the payment
    start under ``key`` of ``principal``: what its caller was given once the provider had
    answered, which a replay gives again. Answers None."""

    principal: int
    key: str
    answer: bytes


class ForgetStartKey(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Free ``key`` of ``principal``, bound by a payment start whose provider then failed (its
    caller was answered 503 or 502, nothing given): the retry runs afresh, whatever it asks
    (SPEC 7). Answers None."""

    principal: int
    key: str


class Cancel(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Cancel the order, for the user or an admin (SPEC 5); with ``if_status``, only if the
    order is still in that status when its turn comes (or canceled already): a staff's page
    that showed it unpaid must not cancel, and refund, an order paid meanwhile."""

    by: Literal["user", "admin"] = "user"
    if_status: str | None = None


class DeadlineReached(msgspec.Struct, frozen=True, tag=True, gc=False):
    """The payment deadline passed (the durable timer, or the sweep): cancel if unpaid.

    An order with an open payment first has the provider asked about it (SPEC 10's active
    query, ``payment_query.py``): ``queried`` is True when that was done (or given up on), and
    ``outcome`` says what the provider answered, for the history; ``payment_id`` names the
    payment it answered for (None: the grace after the questions ran out); ``answer_by`` when
    the order stopped waiting for the answers of the question it answers (what an activation
    after a restart, which has no record of the questions, keeps as the end of the wait)."""

    queried: bool = False
    outcome: str = ""
    payment_id: int | None = None
    answer_by: float | None = None


class Ship(msgspec.Struct, frozen=True, tag=True, gc=False):
    """The warehouse ships the paid order."""


class Deliver(msgspec.Struct, frozen=True, tag=True, gc=False):
    """The shipped order was delivered."""


class RequestReturn(msgspec.Struct, frozen=True, tag=True, gc=False):
    """The user asks to return a delivered order."""

    reason: str = ""


class ApproveReturn(msgspec.Struct, frozen=True, tag=True, gc=False):
    """An admin approves the return ``return_id``: refund and stock back."""

    return_id: int


class RefundDone(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Durable, from the refunder: the gateway refunded ``refund_id``."""

    refund_id: int


class RefundTaken(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Durable, from the refunder: the provider took ``refund_id`` after it refused it (it is
    processing it now): the history, which said the refusal, says so."""

    refund_id: int


class RefundStuck(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Durable, from the refunder: the provider failed ``refund_id`` (``reason``, its words,
    kept on the refund's row for the staff, not in the history), or refused it and it is
    ``retried``; it stays refunding, for someone to act on, and the history says so. With
    ``after_done``, the provider failed it after it said it was done (Stripe's
    ``refund.failed``): a refund counted refunded is refunding again."""

    refund_id: int
    reason: str
    retried: bool = False
    after_done: bool = False


class SettleRefund(msgspec.Struct, frozen=True, tag=True, gc=False):
    """The admin: the provider failed ``refund_id`` and the shop's staff paid it back another
    way (``note``: how); mark it refunded. Asked of the refund's refunder, which asks the
    order once no try of it is under way and the provider has not taken it."""

    refund_id: int
    note: str


class GetRefunds(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Answer the order's refunds, oldest first."""


class GetPayments(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Answer the order's payments, oldest first."""


class KnowsOutcome(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Answer whether the order has applied what a callback of payment ``payment_id`` says
    (``status``, and for a success its ``txn_id``): a collection it accounted for, or a
    failure it recorded."""

    payment_id: int
    status: str
    txn_id: str | None = None


class AsUser(msgspec.Struct, frozen=True, gc=False):
    """``message`` on behalf of user ``user_id``: handled only if the order is theirs; any
    other user's order answers not_found, exactly as a missing one (SPEC 7). Asked, never
    stored. The admin's messages come unwrapped."""

    user_id: int
    message: Any


OrderMessage = (
    Place
    | Accept
    | Run
    | UndoPlacement
    | GetOrder
    | StartPayment
    | CheckoutReady
    | PaymentCallback
    | Cancel
    | DeadlineReached
    | Ship
    | Deliver
    | RequestReturn
    | ApproveReturn
    | RefundDone
    | RefundStuck
    | RefundTaken
    | SettleRefund
    | GetRefunds
    | GetPayments
    | KnowsOutcome
    | KeepStartAnswer
    | ForgetStartKey
)
