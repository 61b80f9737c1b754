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
- a placement's Idempotency-Key is answered from memory too: activation reads the user's keys
  once (up to :data:`KEYS_KNOWN`), the most recent :data:`KEYS_KEPT` are kept whole and the
  others as a hash, so a new key is known to be new without a read. Only a key whose hash
  matches one not kept whole (a retry of an old key, or a hash collision), a key kept longer
  than the retention (the sweep may have pruned it: the table says), or any key of a user with
  more keys than memory holds, is read from the table (the hit is kept): by the order before
  its one turn (a key found absent joins as such, ``BeginOrder.key_absent``), else here. Keys
  the user's other requests bound (in the order actors) are told here (KeySeen). A wallet
  credit's key is the admin's, not the user's: it is read from the table
  (``key_store.run_keyed``);
- durable compensations (ReleaseWallet, AwardPoints, RevokePoints) read the order's ledger rows
  with ``ctx.query`` (read-your-writes) and apply at most once per (order, reason), so a
  redelivery, or the same compensation sent twice under two message ids, changes nothing.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shopkeep.actors import key_store
from shopkeep.actors.key_rules import KeyUnknown, binds, expired
from shopkeep.actors.order_store import unpaid_orders
from shopkeep.actors.protocol import (
    AwardPoints,
    BeginOrder,
    CreateUser,
    CreditWallet,
    DebitWallet,
    GetUser,
    Keyed,
    KeySeen,
    OrderSettled,
    OrderTicket,
    Quote,
    ReleaseWallet,
    ReplaceToken,
    RevokePoints,
    UserMessage,
    UserView,
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
from shopkeep.refusals import INVALID_STATE, NOT_FOUND, Refusal
from shopkeep.runtime import Actor, Context
from shopkeep.runtime.actor import ActivationContext
from shopkeep.runtime.join import NotJoinable
from shopkeep.store.reader import Reader

LOAD_SQL = "SELECT name, balance, points FROM users WHERE id = ?"
# which of some orders this user's ledger debited (with the unpaid orders from order_store,
# what the hot path's memory needs); {} is a list of placeholders, at most DEBITS_READ_AT_ONCE
DEBITED_ORDERS_SQL = (
    "SELECT order_id FROM wallet_ledger WHERE user_id = ? AND reason = 'order_debit' "
    "AND order_id IN ({})"
)
DEBITS_READ_AT_ONCE = 500
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
TOKEN_SQL = "UPDATE users SET token_hash = ? WHERE id = ?"
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
KEYS_KNOWN = 1024
"""Keys a user actor knows of (as hashes, beyond the :data:`KEYS_KEPT` kept whole), loaded at
activation and added to as keys are used; a user with more is read from the table for every
new key. About 60 bytes a key: 1,024 bound a busy user to ~60 KiB."""


class UserActor(Actor):
    """One user: wallet balance, points, the unpaid-orders cap and Idempotency-Keys."""

    __slots__ = ("account", "debited", "key_hashes", "keys", "keys_complete", "unpaid")

    kind = "user"
    messages = UserMessage

    account: Account | None
    unpaid: set[int]
    debited: dict[int, bool]
    keys: dict[str, KeyUse]
    key_hashes: set[int]
    """``hash()`` of every other key the user has used (this process's hash: memory only)."""
    keys_complete: bool
    """Whether ``keys`` and ``key_hashes`` together cover every key the user has used."""

    async def on_activate(self, ctx: ActivationContext) -> None:
        """Load the users row (absent: not created yet) and the unpaid orders with their debits."""
        user_id = self.address.id
        self.unpaid = set()
        # order id -> whether it was debited, for the orders whose answer memory knows for sure
        self.debited = {}
        self.keys = {}
        self.key_hashes = set()
        self.keys_complete = True
        row = await ctx.reader.fetchone(LOAD_SQL, (user_id,))
        self.account = None if row is None else Account(str(row[0]), int(row[1]), int(row[2]))
        if row is None:
            return
        keys = await key_store.keys_of(ctx.reader, user_id, KEYS_KNOWN + 1)
        if len(keys) > KEYS_KNOWN:
            self.keys_complete = False
        else:
            self.key_hashes = {hash(key) for key in keys}
        unpaid = await unpaid_orders(ctx.reader, user_id)
        debited: set[int] = set()
        for start in range(0, len(unpaid), DEBITS_READ_AT_ONCE):
            some = unpaid[start:start + DEBITS_READ_AT_ONCE]
            sql = DEBITED_ORDERS_SQL.format(", ".join("?" * len(some)))
            debited.update(int(o) for (o,) in await ctx.reader.fetchall(sql, (user_id, *some)))
        for order_id in unpaid:
            self.unpaid.add(order_id)
            self.debited[order_id] = order_id in debited

    @property
    def absent(self) -> bool:
        """Nothing by this id (the runtime drops the activation once it is idle)."""
        return self.account is None

    async def receive(self, ctx: Context, message: Any) -> Any:
        """Handle one UserMessage; see :mod:`shopkeep.actors.protocol` for each answer."""
        user_id = self.address.id
        account = self.account
        if account is None:
            if isinstance(message, CreateUser):
                return self._create(ctx, message)
            if isinstance(message, Keyed) and isinstance(message.message, CreateUser):
                # the admin's create under an Idempotency-Key: its replay makes no second user
                return await key_store.run_keyed(ctx, message, self.receive)
            return Refusal(NOT_FOUND, f"user {user_id} does not exist")
        match message:
            case GetUser():
                return account.view(user_id)
            case Quote(asked):
                return self.check(asked)
            case CreateUser():
                return Refusal(INVALID_STATE, f"user {user_id} already exists")
            case CreditWallet(amount):
                decision = credit(account, amount)
                if isinstance(decision, Refusal):
                    return decision
                return self._apply(ctx, decision).view(user_id)
            case ReplaceToken(token_hash):
                ctx.execute(TOKEN_SQL, (token_hash, user_id))
                return account.view(user_id)
            case BeginOrder():
                return await self._begin(ctx, message)
            case DebitWallet(order_id):
                known = self.debited.get(order_id)
                if known is None:
                    known = bool(await ctx.query(DEBITED_SQL, (user_id, order_id)))
                decision = debit(account, user_id, message, known)
                if isinstance(decision, Refusal):
                    return decision
                if decision.move is not None and order_id in self.debited:
                    self.debited[order_id] = True  # kept only until the order settles
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
            case KeySeen(key):
                if key not in self.keys:
                    self._know_hash(key)
                return None
            case Keyed():
                return await key_store.run_keyed(ctx, message, self.receive)
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

    def check(self, message: Any) -> Any:
        """What BeginOrder or DebitWallet would answer now, for an order not yet begun.

        NotJoinable when memory cannot tell (a key whose use must be read from the table)."""
        account = self.account
        if account is None:
            return Refusal(NOT_FOUND, f"user {self.address.id} does not exist")
        match message:
            case BeginOrder(key=key):
                if key is not None and not (message.key_absent or self._surely_new(key)):
                    # a key seen before (a retry: rare), or one memory cannot tell: read
                    raise KeyUnknown(f"user {self.address.id} must look a key up")
                return begin_order(self.address.id, self.unpaid, None, message)
            case DebitWallet():
                # asked before the order's BeginOrder: a new order, debited of nothing yet
                decision = debit(account, self.address.id, message, False)
                return decision if isinstance(decision, Refusal) else decision.account.balance
        raise NotJoinable(f"user actors answer no check of {type(message).__name__}")

    async def _begin(self, ctx: Context, msg: BeginOrder) -> OrderTicket | Refusal:
        user_id = self.address.id
        key = msg.key
        seen = None if key is None or msg.key_absent else await self._key_use(ctx, key)
        answer = begin_order(user_id, self.unpaid, seen, msg)
        if isinstance(answer, Refusal):
            if key is not None and seen is None and binds(answer):
                # the key keeps the refusal (too many unpaid orders): key_rules
                self._bind(ctx, key, msg, None, answer)
            return answer
        if not answer.existing:
            if msg.max_unpaid is not None:  # None: paid in full at once, never unpaid
                self.unpaid.add(msg.order_id)
            # a new order cannot have been debited yet: its DebitWallet comes after this
            self.debited.setdefault(msg.order_id, False)
            rebound = seen is not None and seen.order_id == msg.replaces
            if key is not None and (seen is None or rebound):
                self._bind(ctx, key, msg, msg.replaces if rebound else None)
        return answer

    def _bind(
        self,
        ctx: Context,
        key: str,
        msg: BeginOrder,
        replaces: int | None,
        refusal: Refusal | None = None,
    ) -> None:
        """Bind ``key`` to ``msg``'s placement, in memory and in this unit: its row, with the
        user's own ``refusal`` if any, unless the order writes it whole (``row_by_order``: a
        placement decided in one turn, with its answer)."""
        self._keep_key(key, KeyUse(msg.request_hash, msg.order_id, ctx.now()))
        if refusal is not None or not msg.row_by_order:
            key_store.bind_placement(
                ctx, self.address.id, key, msg.request_hash, msg.order_id, replaces, refusal
            )

    async def _key_use(self, ctx: Context, key: str) -> KeyUse | None:
        """What ``key`` was first used for, from memory when it can tell, else from the table.

        A key kept longer than the retention is read again: the sweep may have pruned its row,
        and memory must not answer for a key the table no longer has (nor take one the table
        still has for new)."""
        use = self.keys.get(key)
        if use is not None and not expired(use.created_at, ctx.now()):
            return use
        if use is None and self._surely_new(key):
            return None
        kept = await key_store.find(ctx, self.address.id, key)
        if kept is None:
            self.keys.pop(key, None)
            return None
        use = KeyUse(kept.request_hash, kept.order_id, kept.created_at)
        self._keep_key(key, use)
        return use

    def _surely_new(self, key: str) -> bool:
        """Whether memory knows ``key`` was never used by this user."""
        return key not in self.keys and self.keys_complete and hash(key) not in self.key_hashes

    def _keep_key(self, key: str, use: KeyUse) -> None:
        """Remember ``key`` whole; the oldest beyond :data:`KEYS_KEPT` is kept as a hash (a
        key whose hash is known is read from the table again: the unit that inserted it is
        read-your-writes)."""
        self.keys.pop(key, None)  # kept in the order of use: the oldest first
        self.keys[key] = use
        if len(self.keys) > KEYS_KEPT:
            oldest = next(iter(self.keys))
            del self.keys[oldest]
            self._know_hash(oldest)

    def _know_hash(self, key: str) -> None:
        """Remember that ``key`` was used, as a hash; beyond :data:`KEYS_KNOWN` hashes memory
        stops being complete (every key not kept whole is read)."""
        if self.keys_complete:
            self.key_hashes.add(hash(key))
            if len(self.key_hashes) > KEYS_KNOWN:
                self.key_hashes = set()
                self.keys_complete = False

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


async def user_of_token_hash(reader: Reader, token_hash: str) -> int | None:
    """The user whose token hashes to ``token_hash``."""
    row = await reader.fetchone("SELECT id FROM users WHERE token_hash = ?", (token_hash,))
    return int(row[0]) if row else None


# -- reading for the back office (the admin console) ------------------------------------------

USERS_PAGE_SQL = (
    "SELECT id, name, balance, points FROM users WHERE id < ? ORDER BY id DESC LIMIT ?"
)


async def list_users(reader: Reader, below: int, count: int) -> list[UserView]:
    """Up to ``count`` users with an id below ``below``, newest first."""
    return [UserView(*row) for row in await reader.fetchall(USERS_PAGE_SQL, (below, count))]


LEDGER_PAGE_SQL = (
    "SELECT id, order_id, reason, amount, at FROM {} "
    "WHERE user_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
)
"""A page of one of a user's two ledgers (``wallet_ledger``, ``points_ledger``)."""
LEDGERS = ("wallet_ledger", "points_ledger")


class BalanceEntry(msgspec.Struct, frozen=True, gc=False):
    """One movement of a user's wallet (minor units) or points: ``amount`` signed (a debit,
    a revoke: negative), ``order_id`` the order that caused it (None: the wallet's opening
    balance or an admin's credit), ``reason`` as the ledger writes it (``opening``,
    ``credit``, ``order_debit``, ``order_release``, ``refund``; ``award``, ``revoke``)."""

    id: int
    order_id: int | None
    reason: str
    amount: int
    at: float


async def balance_ledger(
    reader: Reader, ledger: str, user_id: int, below: int, count: int
) -> list[BalanceEntry]:
    """Up to ``count`` rows of the user's ``ledger`` (one of :data:`LEDGERS`) with an id below
    ``below``, newest first."""
    if ledger not in LEDGERS:
        raise ValueError(f"no ledger {ledger!r}")
    rows = await reader.fetchall(LEDGER_PAGE_SQL.format(ledger), (user_id, below, count))
    return [BalanceEntry(*row) for row in rows]
