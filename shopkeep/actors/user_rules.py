"""The rules of the ``user`` kind, with no IO: wallet, points, unpaid orders, Idempotency-Keys.

Each function takes what the actor knows (its account; for a compensation, the ledger rows
already written for the order, which the shell reads with ``ctx.query``) and returns the
decision: a :class:`Change` (the new account and at most one ledger row to write with it) or a
:class:`~shopkeep.actors.protocol.Refusal`. A ``Change`` without a move changes nothing: that is
how a repeated message is told it was already applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

import msgspec
from msgspec.structs import replace

from shopkeep.actors.config import MAX_HELD, MAX_POINTS
from shopkeep.actors.key_rules import conflict
from shopkeep.actors.protocol import (
    AwardPoints,
    BeginOrder,
    CreateUser,
    DebitWallet,
    OrderTicket,
    ReleaseWallet,
    RevokePoints,
    UserView,
)
from shopkeep.refusals import (
    INSUFFICIENT_BALANCE,
    TOO_MANY_UNPAID_ORDERS,
    VALIDATION_ERROR,
    Refusal,
)

RELEASE_REASONS = frozenset({"order_release", "refund"})
"""The wallet ledger reasons a ReleaseWallet may carry (money given back for an order)."""


class Account(msgspec.Struct, frozen=True, gc=False):
    """A user's balances as the actor holds them."""

    name: str
    balance: int
    points: int

    def view(self, user_id: int) -> UserView:
        """The user as the API shows it."""
        return UserView(user_id, self.name, self.balance, self.points)


class WalletMove(msgspec.Struct, frozen=True, gc=False):
    """One ``wallet_ledger`` row: ``amount`` is signed (a debit is negative)."""

    order_id: int | None
    reason: str
    amount: int


class PointsMove(msgspec.Struct, frozen=True, gc=False):
    """One ``points_ledger`` row: ``amount`` is signed (a revoke is negative)."""

    order_id: int
    reason: str
    amount: int


class Change(msgspec.Struct, frozen=True, gc=False):
    """The account after a message, and the ledger row that explains the difference."""

    account: Account
    move: WalletMove | PointsMove | None = None


class KeyUse(msgspec.Struct, frozen=True, gc=False):
    """What an Idempotency-Key was first used for: the request, and the order it placed (None
    when another route bound it), since ``created_at``."""

    request_hash: str
    order_id: int | None
    created_at: float


def open_account(msg: CreateUser) -> Change | Refusal:
    """A new account; an opening balance is written to the ledger like any other money."""
    if msg.balance < 0:
        return Refusal(VALIDATION_ERROR, f"an opening balance cannot be negative: {msg.balance}")
    if not msg.name:
        return Refusal(VALIDATION_ERROR, "a user needs a name")
    move = WalletMove(None, "opening", msg.balance) if msg.balance > 0 else None
    return Change(Account(msg.name, msg.balance, 0), move)


def credit(account: Account, amount: int) -> Change | Refusal:
    """An admin's credit to the wallet, up to :data:`MAX_HELD` in it."""
    if amount <= 0:
        return Refusal(VALIDATION_ERROR, f"a credit must be positive: {amount}")
    if account.balance + amount > MAX_HELD:
        return Refusal(
            VALIDATION_ERROR,
            f"a credit of {amount} would make the balance {account.balance + amount}, above "
            f"the most a wallet holds ({MAX_HELD})",
            pointer="/amount",
        )
    return Change(
        replace(account, balance=account.balance + amount), WalletMove(None, "credit", amount)
    )


def begin_order(
    user_id: int, unpaid: Set[int], seen: KeyUse | None, msg: BeginOrder
) -> OrderTicket | Refusal:
    """Admit an order under the unpaid-orders cap, or answer what its key was first used for.

    ``seen`` is the earlier use of ``msg.key`` (``None``: no key, or a new one). A key seen with
    the same request and the same order id is this very begin asked again (a saga resumed after a
    crash): it answers ``existing=False`` so that the placement carries on rather than stops. A
    key bound to ``msg.replaces`` (a placement that did nothing) is admitted as a new one.
    """
    if seen is not None:
        if seen.request_hash != msg.request_hash or seen.order_id is None:
            assert msg.key is not None  # seen only for a key
            return conflict(msg.key)
        if seen.order_id != msg.replaces:
            return OrderTicket(seen.order_id, existing=seen.order_id != msg.order_id)
    cap = msg.max_unpaid
    if cap is not None and msg.order_id not in unpaid and len(unpaid) >= cap:
        if msg.provisional:  # to be refused once priced, unless it pays nothing
            return OrderTicket(msg.order_id, existing=False, capped=True)
        return Refusal(
            TOO_MANY_UNPAID_ORDERS,
            f"user {user_id} already has {len(unpaid)} orders unpaid or being placed (at most "
            f"{cap} unpaid)",
        )
    return OrderTicket(msg.order_id, existing=False)


def debit(
    account: Account, user_id: int, msg: DebitWallet, already_debited: bool
) -> Change | Refusal:
    """Take ``msg.amount`` for the order, once; a repeat answers the balance unchanged."""
    if msg.amount < 0:
        return Refusal(VALIDATION_ERROR, f"a wallet amount cannot be negative: {msg.amount}")
    if already_debited or msg.amount == 0:
        return Change(account)
    if msg.amount > account.balance:
        return Refusal(
            INSUFFICIENT_BALANCE,
            f"user {user_id}: balance {account.balance}, the order would take {msg.amount}",
        )
    return Change(
        replace(account, balance=account.balance - msg.amount),
        WalletMove(msg.order_id, "order_debit", -msg.amount),
    )


def release(account: Account, msg: ReleaseWallet, ledger: Mapping[str, int]) -> Change:
    """Give money back for an order, once per reason, and never more than the order took.

    ``ledger`` maps reason to amount for the rows already written for (this user, the order).
    Why the cap covers both reasons: the wallet part of a refund and the release of a canceled
    order's debit are the same money, so whichever way the order gives it back, the wallet gets
    it once. A release for an order that never debited (its placement failed first) is a no-op.
    """
    if msg.reason not in RELEASE_REASONS:
        # a sender's bug, not a business case: raising parks the message as a dead letter
        raise ValueError(f"ReleaseWallet reason must be one of {sorted(RELEASE_REASONS)}")
    if msg.reason in ledger or msg.amount <= 0:
        return Change(account)
    given_back = sum(ledger.get(reason, 0) for reason in RELEASE_REASONS)
    amount = min(msg.amount, -ledger.get("order_debit", 0) - given_back)
    if amount <= 0:
        return Change(account)
    return Change(
        replace(account, balance=account.balance + amount),
        WalletMove(msg.order_id, msg.reason, amount),
    )


def award(account: Account, msg: AwardPoints, ledger: Mapping[str, int]) -> Change:
    """Add the points earned by a paid order, once, up to :data:`MAX_POINTS` in all; never after
    the order's revoke (durable messages can be delivered out of order after retries, so a
    revoke may come first)."""
    if msg.points <= 0 or "award" in ledger or "revoke" in ledger:
        return Change(account)
    points = min(msg.points, MAX_POINTS - account.points)  # the revoke takes back what was given
    if points <= 0:
        return Change(account)
    return Change(
        replace(account, points=account.points + points),
        PointsMove(msg.order_id, "award", points),
    )


def revoke(account: Account, msg: RevokePoints, ledger: Mapping[str, int]) -> Change:
    """Take back what the order awarded, once; the balance may go below zero if it was spent.

    A revoke that finds nothing awarded leaves a zero ``revoke`` row: a tombstone, so that an
    award for the same order delivered later is not applied.
    """
    if "revoke" in ledger:
        return Change(account)
    awarded = ledger.get("award", 0)
    return Change(
        replace(account, points=account.points - awarded),
        PointsMove(msg.order_id, "revoke", -awarded),
    )
