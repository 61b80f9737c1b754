"""The ``idempotency_keys`` table: every statement that reads or writes it (rules: key_rules.py).

One row per (principal, key) (a unique index): the request's hash, the order a placement bound
the key to, the first answer (msgpack), and when the key was bound. The rows are in the order
they were written (a rowid table), so a new key's row, answer and all, goes to the table's last
page and only its index entry to a random one: a commit writes fewer pages.

Written only by the actor whose unit of work holds the effect the key guards (or the refusal
it answered), in that same unit:

- the user actor binds a placement's key (``BeginOrder``), and the order actor adds the
  placement's answer in the unit that confirms (or accepts) the order; a placement decided in
  one turn, where both write into one unit, has the order write the row whole instead
  (``BeginOrder.row_by_order``): one insert, not an insert and an update of the same row. A
  placement refused by its checks in that turn has the order write the row with the refusal;
  one the user refuses in the saga (too many unpaid orders), the user;
- every other keyed request goes through :func:`run_keyed`, in the actor that does it (the
  user for a wallet credit, the goods for a PATCH, the order for a payment, a cancel, a ship, a
  delivery, a return or its approval).

Pruned by the ``key_sweep`` actor (``key_sweep.py``) once older than ``KEY_RETENTION_S``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog

from shopkeep.actors.key_rules import (
    ADMIN,
    KEY_SWEEP_BATCH,
    KeptKey,
    binds,
    encode_answer,
    replay,
)
from shopkeep.actors.protocol import BeginOrder, Keyed, KeySeen
from shopkeep.refusals import Refusal
from shopkeep.runtime import Address, Context, Overloaded
from shopkeep.store.reader import Reader

log = structlog.get_logger("shopkeep.keys")

FIND_SQL: Final = (
    "SELECT request_hash, order_id, answer, created_at FROM idempotency_keys "
    "WHERE principal = ? AND key = ?"
)
KEYS_OF_SQL: Final = "SELECT key FROM idempotency_keys WHERE principal = ? LIMIT ?"
KEYS_ORDER_IDS_SQL: Final = "SELECT max(order_id) FROM idempotency_keys"
"""The largest order id a key is bound to: a placement refused in one turn binds its key to
the order id it reserved, which no order has; the id generator must not hand it out again
after a restart whose clock has not moved on (a retry then found its key bound to a new
order's id, and was placed again instead of answered its refusal)."""
INSERT_SQL: Final = (
    "INSERT INTO idempotency_keys (principal, key, request_hash, order_id, answer, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
REBIND_SQL: Final = (
    "UPDATE idempotency_keys SET order_id = ?, answer = NULL, created_at = ? "
    "WHERE principal = ? AND key = ? AND order_id = ?"
)
ANSWER_SQL: Final = (
    "UPDATE idempotency_keys SET answer = ? WHERE principal = ? AND key = ? AND order_id = ?"
)
FORGET_SQL: Final = (
    "DELETE FROM idempotency_keys WHERE principal = ? AND key = ? AND order_id IS NULL"
)
REANSWER_SQL: Final = (
    "UPDATE idempotency_keys SET answer = ? WHERE principal = ? AND key = ? AND order_id IS NULL"
)
PLACEMENT_ANSWER_SQL: Final = (
    "SELECT answer FROM idempotency_keys WHERE principal = ? AND key = ? AND order_id = ?"
)
OLD_SQL: Final = (
    "SELECT count(*) FROM (SELECT 1 FROM idempotency_keys WHERE created_at <= ? LIMIT ?)"
)
PRUNE_SQL: Final = (
    "DELETE FROM idempotency_keys WHERE rowid IN "
    "(SELECT rowid FROM idempotency_keys WHERE created_at <= ? LIMIT ?)"
)


def _kept(row: tuple[Any, ...]) -> KeptKey:
    request, order_id, answer, created_at = row
    return KeptKey(
        str(request),
        None if order_id is None else int(order_id),
        None if answer is None else bytes(answer),
        float(created_at),
    )


async def find(ctx: Context, principal: int, key: str) -> KeptKey | None:
    """The key's record, read after this actor's own writes are committed; None if free."""
    rows = await ctx.query(FIND_SQL, (principal, key))
    return _kept(rows[0]) if rows else None


async def keys_of(reader: Reader, principal: int, most: int) -> list[str]:
    """Up to ``most`` keys of ``principal`` (a user actor's memory, at activation)."""
    return [str(key) for (key,) in await reader.fetchall(KEYS_OF_SQL, (principal, most))]


def bind_placement(
    ctx: Context,
    user_id: int,
    key: str,
    request_hash: str,
    order_id: int,
    replaces: int | None,
    refusal: Refusal | None = None,
) -> None:
    """Bind ``key`` to the placement of ``order_id`` (no answer yet, or the user's own
    ``refusal`` of it), in the user's unit; with ``replaces``, take it over from that order,
    whose placement did nothing."""
    if replaces is None:
        answer = None if refusal is None else encode_answer(refusal)
        ctx.execute(INSERT_SQL, (user_id, key, request_hash, order_id, answer, ctx.now()))
    else:
        ctx.execute(REBIND_SQL, (order_id, ctx.now(), user_id, key, replaces))


def keep_placement_answer(ctx: Context, begin: BeginOrder, user_id: int, answer: Any) -> None:
    """Record the placement's answer with its key (``begin.key``), in the unit that placed (or
    accepted) it, or refused it in one turn: in the key's row the user wrote, or, when the
    order writes the row (``begin.row_by_order``), in the row as it is inserted."""
    encoded = encode_answer(answer)
    if begin.row_by_order:
        row = (user_id, begin.key, begin.request_hash, begin.order_id, encoded, ctx.now())
        ctx.execute(INSERT_SQL, row)
    else:
        ctx.execute(ANSWER_SQL, (encoded, user_id, begin.key, begin.order_id))


def keep_answer_again(ctx: Context, principal: int, key: str, answer: bytes) -> None:
    """Keep ``answer`` as what the request under ``key`` answered, in place of the answer its
    actor gave (a payment start's, completed by the provider's checkout after it)."""
    ctx.execute(REANSWER_SQL, (answer, principal, key))


def forget_key(ctx: Context, principal: int, key: str) -> None:
    """Free ``key``: the request it was bound to answered its caller nothing (a payment start
    whose provider failed after its actor bound the key)."""
    ctx.execute(FORGET_SQL, (principal, key))


async def placement_answer(reader: Reader, user_id: int, key: str, order_id: int) -> bytes | None:
    """The answer recorded for the placement ``key`` bound to ``order_id``; None when none
    was (the placement is still running, failed, or was cut by a crash)."""
    row = await reader.fetchone(PLACEMENT_ANSWER_SQL, (user_id, key, order_id))
    return None if row is None or row[0] is None else bytes(row[0])


async def run_keyed(
    ctx: Context, keyed: Keyed, handle: Callable[[Context, Any], Awaitable[Any]]
) -> Any:
    """Answer ``keyed``: the first answer again, the conflict, or ``handle``'s answer to its
    message, recorded with the key in this same unit when it binds (key_rules.binds)."""
    decided = replay(await find(ctx, keyed.principal, keyed.key), keyed)
    if decided is not None:
        return decided
    answer = await handle(ctx, keyed.message)
    if binds(answer):
        ctx.execute(
            INSERT_SQL,
            (keyed.principal, keyed.key, keyed.request_hash, None, encode_answer(answer),
             ctx.now()),
        )
        user = Address("user", keyed.principal)
        if keyed.principal != ADMIN and ctx.address != user:
            # the user actor answers its placements' keys from memory: tell it of this one
            try:
                ctx.tell(user, KeySeen(keyed.key))
            except Overloaded:
                # it reads the key when placing under it, unless memory says surely new:
                # then the placement's commit is refused by the primary key, changing nothing
                log.warning("key_seen_not_told", user_id=keyed.principal)
    return answer


async def prune(ctx: Context, now: float, retention_s: float) -> bool:
    """Delete keys bound more than ``retention_s`` ago, a batch at most; answer whether the
    batch was full (more may be left)."""
    before = now - retention_s
    ((old,),) = await ctx.query(OLD_SQL, (before, KEY_SWEEP_BATCH))
    if old:
        ctx.execute(PRUNE_SQL, (before, KEY_SWEEP_BATCH))
    return int(old) >= KEY_SWEEP_BATCH
