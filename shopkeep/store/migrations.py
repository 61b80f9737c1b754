"""Numbered schema migrations, applied in order at start; ``PRAGMA user_version`` is the version.

A migration is never edited once released: a change to the schema is a new migration. A database
whose version is higher than the last migration known here was written by a newer shopkeep and is
refused rather than guessed at.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shopkeep.store.errors import NOT_A_DATABASE, SchemaMismatch


@dataclass(frozen=True)
class Migration:
    """One step of the schema: ``sql`` is run in one transaction, then the version is set."""

    version: int
    name: str
    sql: str


RUNTIME_TABLES = Migration(
    1,
    "runtime: durable timers, outbox, dead letters, settings",
    """
    -- A durable timer (reminder). One per (actor, name): arming again replaces it. ``seq`` is
    -- unique and time-ordered, so (due_at, seq) pages through timers without ties.
    CREATE TABLE timers (
        kind     TEXT    NOT NULL,
        actor_id INTEGER NOT NULL,
        name     TEXT    NOT NULL,
        due_at   REAL    NOT NULL,
        seq      INTEGER NOT NULL,
        payload  BLOB    NOT NULL,
        PRIMARY KEY (kind, actor_id, name)
    ) WITHOUT ROWID;
    CREATE INDEX timers_by_due ON timers (due_at, seq);

    -- A message that must not be lost, written in the sender's transaction, deleted in the
    -- receiver's: its absence is the receiver's record that it was applied.
    CREATE TABLE outbox (
        id         INTEGER PRIMARY KEY,
        kind       TEXT    NOT NULL,
        actor_id   INTEGER NOT NULL,
        payload    BLOB    NOT NULL,
        created_at REAL    NOT NULL
    );

    -- A message that failed every retry, parked with its traceback for a person to look at.
    CREATE TABLE dead_letters (
        id        INTEGER PRIMARY KEY,
        kind      TEXT    NOT NULL,
        actor_id  INTEGER NOT NULL,
        message   TEXT    NOT NULL,
        payload   BLOB,
        error     TEXT    NOT NULL,
        traceback TEXT    NOT NULL,
        attempts  INTEGER NOT NULL,
        at        REAL    NOT NULL
    );

    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
)

SHOP_TABLES = Migration(
    2,
    "shop: users, goods, coupons, orders, payments, refunds, returns and their ledgers",
    """
    -- Money is integer minor units (cents); times are Unix seconds (REAL); ids are 64-bit.
    CREATE TABLE users (
        id         INTEGER PRIMARY KEY,
        name       TEXT    NOT NULL,
        token_hash TEXT    NOT NULL UNIQUE,
        balance    INTEGER NOT NULL CHECK (balance >= 0),
        points     INTEGER NOT NULL,
        created_at REAL    NOT NULL
    );
    -- Every change of a wallet balance. reason: opening, credit, order_debit, order_release,
    -- refund (a refund paid to the wallet). At most one row per (user, order, reason).
    CREATE TABLE wallet_ledger (
        id       INTEGER PRIMARY KEY,
        user_id  INTEGER NOT NULL,
        order_id INTEGER,
        reason   TEXT    NOT NULL,
        amount   INTEGER NOT NULL,
        at       REAL    NOT NULL
    );
    CREATE INDEX wallet_ledger_by_user ON wallet_ledger (user_id);
    CREATE UNIQUE INDEX wallet_ledger_once ON wallet_ledger (user_id, order_id, reason)
        WHERE order_id IS NOT NULL;
    -- Every change of a points balance. reason: award, revoke.
    CREATE TABLE points_ledger (
        id       INTEGER PRIMARY KEY,
        user_id  INTEGER NOT NULL,
        order_id INTEGER NOT NULL,
        reason   TEXT    NOT NULL,
        amount   INTEGER NOT NULL,
        at       REAL    NOT NULL
    );
    CREATE UNIQUE INDEX points_ledger_once ON points_ledger (user_id, order_id, reason);

    CREATE TABLE goods (
        id            INTEGER PRIMARY KEY,
        name          TEXT    NOT NULL,
        price         INTEGER NOT NULL CHECK (price >= 0),
        stock         INTEGER NOT NULL CHECK (stock >= 0),
        initial_stock INTEGER NOT NULL,
        restocked     INTEGER NOT NULL DEFAULT 0,
        created_at    REAL    NOT NULL
    );
    -- Every movement of stock caused by an order: take (negative), release or return
    -- (positive). At most one row per (goods, order, reason).
    CREATE TABLE stock_ledger (
        id       INTEGER PRIMARY KEY,
        goods_id INTEGER NOT NULL,
        order_id INTEGER NOT NULL,
        reason   TEXT    NOT NULL,
        quantity INTEGER NOT NULL,
        at       REAL    NOT NULL
    );
    CREATE UNIQUE INDEX stock_ledger_once ON stock_ledger (goods_id, order_id, reason);
    CREATE INDEX stock_ledger_by_order ON stock_ledger (order_id);

    CREATE TABLE coupons (
        id               INTEGER PRIMARY KEY,
        user_id          INTEGER NOT NULL,
        value            INTEGER NOT NULL CHECK (value > 0),
        min_order_amount INTEGER NOT NULL DEFAULT 0,
        expires_at       REAL,
        order_id         INTEGER,
        created_at       REAL    NOT NULL
    );
    CREATE INDEX coupons_by_user ON coupons (user_id);

    -- status: pending, awaiting_payment, paid, shipped, delivered, returned, canceled.
    -- cancel_reason: placement_failed, user, timeout, admin.
    CREATE TABLE orders (
        id              INTEGER PRIMARY KEY,
        user_id         INTEGER NOT NULL,
        status          TEXT    NOT NULL,
        cancel_reason   TEXT,
        failure_code    TEXT,
        coupon_id       INTEGER,
        use_balance     INTEGER NOT NULL DEFAULT 0,
        goods_amount    INTEGER NOT NULL DEFAULT 0,
        shipping_fee    INTEGER NOT NULL DEFAULT 0,
        order_amount    INTEGER NOT NULL DEFAULT 0,
        coupon_discount INTEGER NOT NULL DEFAULT 0,
        wallet_amount   INTEGER NOT NULL DEFAULT 0,
        pay_amount      INTEGER NOT NULL DEFAULT 0,
        points          INTEGER NOT NULL DEFAULT 0,
        created_at      REAL    NOT NULL,
        confirmed_at    REAL,
        paid_at         REAL,
        canceled_at     REAL,
        expires_at      REAL,
        shipped_at      REAL,
        delivered_at    REAL
    );
    CREATE INDEX orders_by_user ON orders (user_id, id);
    CREATE INDEX orders_by_status ON orders (status, expires_at);
    CREATE TABLE order_items (
        order_id   INTEGER NOT NULL,
        goods_id   INTEGER NOT NULL,
        quantity   INTEGER NOT NULL CHECK (quantity > 0),
        unit_price INTEGER,
        PRIMARY KEY (order_id, goods_id)
    ) WITHOUT ROWID;
    -- Every status change: operation placed, confirmed, paid, canceled_by_user,
    -- canceled_by_timeout, canceled_by_admin, placement_failed, shipped, delivered, returned...
    CREATE TABLE order_history (
        id          INTEGER PRIMARY KEY,
        order_id    INTEGER NOT NULL,
        from_status TEXT,
        to_status   TEXT    NOT NULL,
        operation   TEXT    NOT NULL,
        remark      TEXT    NOT NULL DEFAULT '',
        at          REAL    NOT NULL
    );
    CREATE INDEX order_history_by_order ON order_history (order_id, id);
    -- Idempotency-Key of POST /v1/orders: the same key with the same body is the same order.
    CREATE TABLE idempotency_keys (
        user_id      INTEGER NOT NULL,
        key          TEXT    NOT NULL,
        request_hash TEXT    NOT NULL,
        order_id     INTEGER NOT NULL,
        created_at   REAL    NOT NULL,
        PRIMARY KEY (user_id, key)
    ) WITHOUT ROWID;

    -- status: created, succeeded, failed, refunded.
    CREATE TABLE payments (
        id             INTEGER PRIMARY KEY,
        order_id       INTEGER NOT NULL,
        amount         INTEGER NOT NULL,
        status         TEXT    NOT NULL,
        gateway_txn_id TEXT,
        created_at     REAL    NOT NULL,
        updated_at     REAL    NOT NULL
    );
    CREATE INDEX payments_by_order ON payments (order_id);
    -- Every callback received, verified or not: what it said and what was done.
    CREATE TABLE payment_log (
        id         INTEGER PRIMARY KEY,
        payment_id INTEGER,
        order_id   INTEGER,
        verified   INTEGER NOT NULL,
        duplicate  INTEGER NOT NULL,
        action     TEXT    NOT NULL,
        body       BLOB,
        at         REAL    NOT NULL
    );
    -- kind: cancel, return, late_payment, duplicate_payment; status: refunding, refunded.
    CREATE TABLE refunds (
        id             INTEGER PRIMARY KEY,
        order_id       INTEGER NOT NULL,
        payment_id     INTEGER,
        kind           TEXT    NOT NULL,
        wallet_amount  INTEGER NOT NULL,
        gateway_amount INTEGER NOT NULL,
        status         TEXT    NOT NULL,
        attempts       INTEGER NOT NULL DEFAULT 0,
        created_at     REAL    NOT NULL,
        refunded_at    REAL
    );
    CREATE INDEX refunds_by_order ON refunds (order_id);
    CREATE TABLE refund_log (
        id        INTEGER PRIMARY KEY,
        refund_id INTEGER NOT NULL,
        event     TEXT    NOT NULL,
        detail    TEXT    NOT NULL DEFAULT '',
        at        REAL    NOT NULL
    );
    -- status: requested, approved.
    CREATE TABLE returns (
        id          INTEGER PRIMARY KEY,
        order_id    INTEGER NOT NULL,
        reason      TEXT    NOT NULL DEFAULT '',
        status      TEXT    NOT NULL,
        created_at  REAL    NOT NULL,
        approved_at REAL
    );
    CREATE INDEX returns_by_order ON returns (order_id);
    -- The warehouse's view of an order: awaiting, intercepted, shipped.
    CREATE TABLE shipments (
        order_id   INTEGER PRIMARY KEY,
        status     TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
)

PAYMENT_LOG_BY_ORDER = Migration(
    3,
    "an index of the payment log by order: loading an order reads its counted callbacks, and "
    "without it every load scanned the whole log (found by the soak: slower as the log grew)",
    "CREATE INDEX payment_log_by_order ON payment_log (order_id, id)",
)

IDEMPOTENCY_KEYS_OF_EVERY_ROUTE = Migration(
    4,
    "Idempotency-Keys of every route that moves money or stock (SPEC 7): scoped by principal "
    "(a user's id, or 0 for the admin), with the first answer kept to replay, and indexed by "
    "age for the sweep that prunes them after 24 hours",
    """
    -- order_id: the order a placement bound the key to (NULL for other routes); answer: the
    -- first answer (msgpack), NULL while a placement runs or when it failed.
    CREATE TABLE idempotency_keys_v4 (
        principal    INTEGER NOT NULL,
        key          TEXT    NOT NULL,
        request_hash TEXT    NOT NULL,
        order_id     INTEGER,
        answer       BLOB,
        created_at   REAL    NOT NULL,
        PRIMARY KEY (principal, key)
    ) WITHOUT ROWID;
    INSERT INTO idempotency_keys_v4 (principal, key, request_hash, order_id, created_at)
        SELECT user_id, key, request_hash, order_id, created_at FROM idempotency_keys;
    DROP TABLE idempotency_keys;
    ALTER TABLE idempotency_keys_v4 RENAME TO idempotency_keys;
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
    """,
)

PAYMENT_PROVIDERS = Migration(
    5,
    "payment providers (SPEC 10): which gateway a payment went through and in which currency, "
    "what the customer was given to pay it (the provider's checkout, JSON) and the provider's "
    "own id of it; the order's currency. Rows from before are the sandbox's, in CNY",
    """
    ALTER TABLE payments ADD COLUMN gateway TEXT NOT NULL DEFAULT 'sandbox';
    ALTER TABLE payments ADD COLUMN currency TEXT NOT NULL DEFAULT 'CNY';
    ALTER TABLE payments ADD COLUMN checkout TEXT;
    ALTER TABLE payments ADD COLUMN provider_ref TEXT;
    ALTER TABLE orders ADD COLUMN currency TEXT NOT NULL DEFAULT 'CNY';
    """,
)

KEYS_APPENDED_IN_TIME_ORDER = Migration(
    6,
    "idempotency_keys as a rowid table, unique by (principal, key): each new key's row, with "
    "the answer it keeps (a few hundred bytes), is appended to the table's last page instead of "
    "landing on a random one of a table ordered by key; only its small index entry does (a "
    "placement's commit wrote 2.8 pages of the table, and splits, against 1.3 of this index)",
    """
    CREATE TABLE idempotency_keys_v6 (
        principal    INTEGER NOT NULL,
        key          TEXT    NOT NULL,
        request_hash TEXT    NOT NULL,
        order_id     INTEGER,
        answer       BLOB,
        created_at   REAL    NOT NULL
    );
    INSERT INTO idempotency_keys_v6 (principal, key, request_hash, order_id, answer, created_at)
        SELECT principal, key, request_hash, order_id, answer, created_at
        FROM idempotency_keys ORDER BY created_at;
    DROP TABLE idempotency_keys;
    ALTER TABLE idempotency_keys_v6 RENAME TO idempotency_keys;
    CREATE UNIQUE INDEX idempotency_keys_once ON idempotency_keys (principal, key);
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
    """,
)

STOCK_LEDGER_BY_GOODS_IN_TIME_ORDER = Migration(
    7,
    "the stock ledger's indexes: unique by (order, goods, reason), which also finds an order's "
    "rows, and by (goods, id), which pages a goods' ledger newest first without sorting it "
    "(the index by goods, order and reason made every page of the admin console's ledger sort "
    "all of the goods' rows); a placement's ledger row still adds one index entry at a random "
    "place and one at the end",
    """
    DROP INDEX stock_ledger_once;
    DROP INDEX stock_ledger_by_order;
    CREATE UNIQUE INDEX stock_ledger_once ON stock_ledger (order_id, goods_id, reason);
    CREATE INDEX stock_ledger_by_goods ON stock_ledger (goods_id, id);
    """,
)

REFUNDS_THE_PROVIDER_FAILED = Migration(
    8,
    "why the provider failed a refund (WeChat Pay ABNORMAL, Stripe failed), kept on its row: "
    "such a refund stays refunding until the shop's staff pay it back another way and settle "
    "it by hand; rows failed before are found in their refund log",
    """
    ALTER TABLE refunds ADD COLUMN provider_failed TEXT;
    UPDATE refunds SET provider_failed = (
        SELECT detail FROM refund_log
        WHERE refund_id = refunds.id AND event = 'provider_failed' ORDER BY id DESC LIMIT 1
    ) WHERE status = 'refunding';
    """,
)

ORDERS_BY_STATUS_IN_ID_ORDER = Migration(
    9,
    "the orders' index by status is by (status, id, expires_at): a page of the orders of one "
    "status, newest first, is read from it in its order (by (status, expires_at) every page "
    "sorted all the orders of that status: 0.3 s a page, and the read connection held, with "
    "177,000 delivered), and the deadlines' sweep still reads only the index",
    """
    DROP INDEX orders_by_status;
    CREATE INDEX orders_by_status ON orders (status, id, expires_at);
    """,
)

ORDER_LINES_AS_PLACED = Migration(
    10,
    "an order's lines keep the order the customer gave them in (``line``, from 0): read back "
    "by their key they came in goods id order, so an order read from the store (a list, an "
    "order loaded again) listed them otherwise than its placement's answer; lines written "
    "before have none and read in goods id order, as they always did",
    """
    ALTER TABLE order_items ADD COLUMN line INTEGER;
    """,
)

REFUND_LOG_BY_REFUND = Migration(
    11,
    "a refund's log by refund, newest last: the back office shows the last word of each refund "
    "still in flight (the provider processing it, a try that failed and when it is sent "
    "again), which a person could find only in the table",
    """
    CREATE INDEX refund_log_by_refund ON refund_log (refund_id, id);
    """,
)

MIGRATIONS: tuple[Migration, ...] = (
    RUNTIME_TABLES,
    SHOP_TABLES,
    PAYMENT_LOG_BY_ORDER,
    IDEMPOTENCY_KEYS_OF_EVERY_ROUTE,
    PAYMENT_PROVIDERS,
    KEYS_APPENDED_IN_TIME_ORDER,
    STOCK_LEDGER_BY_GOODS_IN_TIME_ORDER,
    REFUNDS_THE_PROVIDER_FAILED,
    ORDERS_BY_STATUS_IN_ID_ORDER,
    ORDER_LINES_AS_PLACED,
    REFUND_LOG_BY_REFUND,
)
"""Every migration of the product schema, oldest first."""


def schema_version(conn: sqlite3.Connection) -> int:
    """The version recorded in the database file (0 for a new file)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def refuse_another_programs(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    """Raise :class:`SchemaMismatch` for another program's database: tables but no schema
    version, or a version without the tables the first of ``migrations`` makes (no later one
    drops them), which the migrations would fill with tables of their own (and the store
    switch to WAL under that program). Called before anything of the file changes."""
    tables = {name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'"
    )}  # fmt: skip
    version = schema_version(conn)
    if version == 0 and not tables:
        return  # a new file, or an empty one: ours to fill
    if version > 0 and migrations and first_tables(migrations[0]) <= tables:
        return
    found = ", ".join(sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
    raise SchemaMismatch(
        f"the database is another program's (schema version {version}, tables: "
        f"{found or 'none'}): give shopkeep a file of its own (a new or an empty one)"
    )


def refuse_damaged(conn: sqlite3.Connection) -> None:
    """Raise sqlite3.DatabaseError saying where, when SQLite's ``integrity_check`` finds the
    file ``conn`` reads damaged: pages it cannot read, an index that disagrees with its table
    (a few bytes overwritten, a ``-wal`` of another file's, or an older one of its own,
    replayed onto it). Every page is read, about 5 ms a megabyte from the page cache and
    several times that from the disk (``quick_check``, which compares no index with its
    table, passed files whose reads and writes then failed)."""
    try:
        rows = conn.execute("PRAGMA integrity_check(3)").fetchall()
    except sqlite3.OperationalError:  # busy, locked, out of memory: no word on the pages
        raise
    except sqlite3.DatabaseError as error:  # a page the check itself could not read
        if str(error) == NOT_A_DATABASE:  # no header: said as every command says it
            raise
        raise sqlite3.DatabaseError(f"the database is damaged: {error}") from None
    # each complaint on one line ("*** in database main ***\nPage 40: ...")
    damage = [" ".join(str(row[0]).split()) for row in rows]
    if damage != ["ok"]:
        raise sqlite3.DatabaseError(f"the database is damaged: {'; '.join(damage)}")


def first_tables(migration: Migration) -> set[str]:
    """The tables ``migration`` creates."""
    return set(re.findall(r"CREATE TABLE (\w+)", migration.sql))


def refuse_newer(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    """The schema version of the database ``conn`` reads; :class:`SchemaMismatch` when a newer
    shopkeep wrote it (a version past the last of ``migrations``): nothing here may change it,
    nor read it as the shop it knows."""
    current, latest = schema_version(conn), len(migrations)
    if current > latest:
        raise SchemaMismatch(
            f"database schema version {current} is newer than this shopkeep knows ({latest}); "
            "use the shopkeep that wrote it"
        )
    return current


def apply_migrations(
    conn: sqlite3.Connection,
    migrations: Sequence[Migration],
    agree: Callable[[sqlite3.Connection], None] | None = None,
) -> int:
    """Bring the schema up to the last of ``migrations``, all of them in one transaction;
    return the version reached.

    ``agree``: a check of the migrated file, run in that transaction before it commits (only
    when there was something to migrate): what it raises rolls every migration back, so a
    start refused after an upgrade leaves the file as the older shopkeep wrote it, which that
    shopkeep can still serve. Raises :class:`SchemaMismatch` when the file is newer than the
    migrations known here.
    """
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(f"migrations must be numbered 1, 2, ...: {migration.version} found")
    latest = len(migrations)
    current = refuse_newer(conn, migrations)
    if current == latest:
        return latest
    steps = "".join(
        f"{migration.sql};\nPRAGMA user_version = {migration.version};\n"
        for migration in migrations[current:]
    )
    try:
        # one script: executescript commits a transaction left open before it runs
        conn.executescript(f"BEGIN IMMEDIATE;\n{steps}")
        if agree is not None:
            agree(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return latest
