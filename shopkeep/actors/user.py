"""The ``user`` kind: one actor per user, holding its wallet, points, unpaid orders and keys.

The shell around :mod:`shopkeep.actors.user_rules`: it loads the state, gathers the facts a rule
needs, calls it, and writes the decision into the message's unit of work. Every balance change
writes the ``users`` row and exactly one ledger row in the same unit, so the ledgers add up to
the balances at every commit.

What memory answers and what needs a read:

- the placement's asks (BeginOrder, DebitWallet) are on the hot path and answered from memory:
  the unpaid orders and whether each was debited are loaded at activation and kept up to date;
  only a DebitWallet for an order this activation knows nothing about reads the ledger (and
  should memory ever be wrong, the unique index on (user, order, reason) refuses the second
  debit's commit: a failed ask, never money taken twice);
- an Idempotency-Key not yet in memory is looked up in ``idempotency_keys`` (one read per keyed
  placement; the hit is kept);
- durable compensations (ReleaseWallet, AwardPoints, RevokePoints) read the order's ledger rows
  with ``ctx.query`` (read-your-writes) and apply at most once per (order, reason), so a
  redelivery, or the same compensation sent twice under two message ids, changes nothing.
"""

from __future__ import annotations

from typing import Any

from shopkeep.actors.protocol import (
    INVALID_STATE,
    NOT_FOUND,
    AwardPoints,
    BeginOrder,
    CreateUser,
    CreditWallet,
    DebitWallet,
    GetUser,
    OrderSettled,
    OrderTicket,
    Refusal,
    ReleaseWallet,
    RevokePoints,
    UserMessage,
)
from shopkeep.actors.user_rules import (
    Account,
    Change,
    KeyUse,
    PointsMove,
    WalletMove,
    award,
    begin_order,
    credit,
    debit,
    open_account,
    release,
    revoke,
)
from shopkeep.runtime import Actor, Context
from shopkeep.runtime.actor import ActivationContext

LOAD_SQL = "SELECT name, balance, points FROM users WHERE id = ?"
# the unpaid orders, each with its debit if it has one (one read for the hot path's memory)
UNPAID_SQL = (
    "SELECT o.id, l.amount FROM orders o "
    "LEFT JOIN wallet_ledger l ON l.user_id = o.user_id AND l.order_id = o.id "
    "AND l.reason = 'order_debit' "
    "WHERE o.user_id = ? AND o.status IN ('pending', 'awaiting_payment')"
)
KEY_SQL = "SELECT request_hash, order_id FROM idempotency_keys WHERE user_id = ? AND key = ?"
DEBITED_SQL = (
    "SELECT 1 FROM wallet_ledger WHERE user_id = ? AND order_id = ? AND reason = 'order_debit'"
)
WALLET_ROWS_SQL = "SELECT reason, amount FROM wallet_ledger WHERE user_id = ? AND order_id = ?"
POINTS_ROWS_SQL = "SELECT reason, amount FROM points_ledger WHERE user_id = ? AND order_id = ?"

INSERT_USER_SQL = (
    "INSERT INTO users (id, name, token_hash, balance, points, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
UPDATE_USER_SQL = "UPDATE users SET balance = ?, points = ? WHERE id = ?"
INSERT_WALLET_SQL = (
    "INSERT INTO wallet_ledger (user_id, order_id, reason, amount, at) VALUES (?, ?, ?, ?, ?)"
)
INSERT_POINTS_SQL = (
    "INSERT INTO points_ledger (user_id, order_id, reason, amount, at) VALUES (?, ?, ?, ?, ?)"
)
KEYS_KEPT = 32
"""Idempotency keys a live user actor keeps in memory, the most recent; an older one reused is
read again from ``idempotency_keys``. A retry comes seconds after its first try, so a few
dozen cover it; every new key is looked up in the table anyway. Without a small bound a user
who places orders without pause (never idle long enough to be passivated) grows the actor by
every key: at 1,024 kept, the soak's 128 busy shoppers grew the server ~2.4 MiB a minute for
its whole ten minutes (about 250 bytes a key)."""

INSERT_KEY_SQL = (
    "INSERT INTO idempotency_keys (user_id, key, request_hash, order_id, created_at) "
    "VALUES (?, ?, ?, ?, ?)"
)


class UserActor(Actor):
    """One user: wallet balance, points, the unpaid-orders cap and Idempotency-Keys."""

    __slots__ = ("account", "debited", "keys", "unpaid")

    kind = "user"
    messages = UserMessage

    account: Account | None
    unpaid: set[int]
    debited: dict[int, bool]
    keys: dict[str, KeyUse]

    async def on_activate(self, ctx: ActivationContext) -> None:
        """Load the users row (absent: not created yet) and the unpaid orders with their debits."""
        user_id = self.address.id
        self.unpaid = set()
        # order id -> whether it was debited, for the orders whose answer memory knows for sure
        self.debited = {}
        self.keys = {}
        row = await ctx.reader.fetchone(LOAD_SQL, (user_id,))
        self.account = None if row is None else Account(str(row[0]), int(row[1]), int(row[2]))
        if row is None:
            return
        for order_id, debit_amount in await ctx.reader.fetchall(UNPAID_SQL, (user_id,)):
            self.unpaid.add(order_id)
            self.debited[order_id] = debit_amount is not None

    async def receive(self, ctx: Context, message: Any) -> Any:
        """Handle one UserMessage; see :mod:`shopkeep.actors.protocol` for each answer."""
        user_id = self.address.id
        account = self.account
        if account is None:
            if isinstance(message, CreateUser):
                return self._create(ctx, message)
            return Refusal(NOT_FOUND, f"user {user_id} does not exist")
        match message:
            case GetUser():
                return account.view(user_id)
            case CreateUser():
                return Refusal(INVALID_STATE, f"user {user_id} already exists")
            case CreditWallet(amount):
                decision = credit(account, amount)
                if isinstance(decision, Refusal):
                    return decision
                return self._apply(ctx, decision).view(user_id)
            case BeginOrder():
                return await self._begin(ctx, message)
            case DebitWallet(order_id):
                known = self.debited.get(order_id)
                if known is None:
                    known = bool(await ctx.query(DEBITED_SQL, (user_id, order_id)))
                decision = debit(account, user_id, message, known)
                if isinstance(decision, Refusal):
                    return decision
                if decision.move is not None and order_id in self.unpaid:
                    self.debited[order_id] = True  # kept only while the order is unpaid
                return self._apply(ctx, decision).balance
            case ReleaseWallet(order_id):
                ledger = await self._ledger(ctx, WALLET_ROWS_SQL, order_id)
                self._apply(ctx, release(account, message, ledger))
                return None
            case AwardPoints(order_id):
                ledger = await self._ledger(ctx, POINTS_ROWS_SQL, order_id)
                self._apply(ctx, award(account, message, ledger))
                return None
            case RevokePoints(order_id):
                ledger = await self._ledger(ctx, POINTS_ROWS_SQL, order_id)
                self._apply(ctx, revoke(account, message, ledger))
                return None
            case OrderSettled(order_id):
                # forgetting the debit too keeps memory bounded by the unpaid orders; a late
                # DebitWallet for a settled order reads the ledger instead
                self.unpaid.discard(order_id)
                self.debited.pop(order_id, None)
                return None
        raise TypeError(f"user actors do not handle {type(message).__name__}")

    def _create(self, ctx: Context, msg: CreateUser) -> Any:
        decision = open_account(msg)
        if isinstance(decision, Refusal):
            return decision
        account = decision.account
        ctx.execute(
            INSERT_USER_SQL,
            (self.address.id, account.name, msg.token_hash, account.balance, 0, ctx.now()),
        )
        self.account = account
        if decision.move is not None:
            self._write_move(ctx, decision.move)
        return account.view(self.address.id)

    async def _begin(self, ctx: Context, msg: BeginOrder) -> OrderTicket | Refusal:
        user_id = self.address.id
        seen: KeyUse | None = None
        if msg.key is not None:
            seen = self.keys.get(msg.key)
            if seen is None:
                rows = await ctx.query(KEY_SQL, (user_id, msg.key))
                if rows:
                    seen = KeyUse(str(rows[0][0]), int(rows[0][1]))
                    self._keep_key(msg.key, seen)
        answer = begin_order(user_id, self.unpaid, seen, msg)
        if isinstance(answer, OrderTicket) and not answer.existing:
            if msg.order_id not in self.unpaid:
                self.unpaid.add(msg.order_id)
                # a new order cannot have been debited yet: its DebitWallet comes after this
                self.debited.setdefault(msg.order_id, False)
            if msg.key is not None and seen is None:
                self._keep_key(msg.key, KeyUse(msg.request_hash, msg.order_id))
                ctx.execute(
                    INSERT_KEY_SQL, (user_id, msg.key, msg.request_hash, msg.order_id, ctx.now())
                )
        return answer

    def _keep_key(self, key: str, use: KeyUse) -> None:
        """Remember ``key``, forgetting the oldest beyond :data:`KEYS_KEPT` (a forgotten key
        is read from the table again: the unit that inserted it is read-your-writes)."""
        self.keys[key] = use
        if len(self.keys) > KEYS_KEPT:
            del self.keys[next(iter(self.keys))]

    async def _ledger(self, ctx: Context, sql: str, order_id: int) -> dict[str, int]:
        rows = await ctx.query(sql, (self.address.id, order_id))
        return {str(reason): int(amount) for reason, amount in rows}

    def _apply(self, ctx: Context, decision: Change) -> Account:
        """Write the decision's users row and ledger row (nothing when it changes nothing)."""
        if decision.move is None:
            assert self.account is not None
            return self.account
        account = self.account = decision.account
        ctx.execute(UPDATE_USER_SQL, (account.balance, account.points, self.address.id))
        self._write_move(ctx, decision.move)
        return account

    def _write_move(self, ctx: Context, move: WalletMove | PointsMove) -> None:
        sql = INSERT_WALLET_SQL if isinstance(move, WalletMove) else INSERT_POINTS_SQL
        ctx.execute(sql, (self.address.id, move.order_id, move.reason, move.amount, ctx.now()))
