"""The audit: the invariants of SPEC section 6, checked in SQL over the database at any time.

``audit(reader)`` runs on a live server's read connection; ``audit_file(path)`` opens a closed
database read-only (``shopkeep audit --db PATH``). Both run the very same statement and
judge its rows with the very same code; only the way the statement is executed differs.

Why one statement: the checks compare tables that the server changes while the audit reads
(an order canceled between reading the ledger and reading the outbox would look like a leak).
SQLite gives one statement one snapshot, and the read connection is shared with the actors, so
a transaction around several statements is not an option. Every check's branches and the
outbox are therefore one ``UNION ALL``: one snapshot, one round trip.

Why it is fast: each branch compares aggregates in SQL and returns only candidate violations
(and the outbox, which is small when the server keeps up), never a row per order; the
per-goods, per-user and per-order sums run only when a cheap fingerprint of the totals says
they will find something (see :mod:`shopkeep.actors.audit_sql`).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from shopkeep.actors.audit_checks import (
    COUNTS_BRANCH,
    COUPONS,
    OUTBOX_BRANCH,
    POINTS,
    POINTS_CTES,
    STOCK,
    STOCK_CTES,
    WALLET,
    WALLET_CTES,
    judge_coupons,
    judge_points,
    judge_stock,
    judge_wallet,
)
from shopkeep.actors.audit_flight import InFlight, read_outbox
from shopkeep.actors.audit_order_checks import (
    AMOUNTS,
    AMOUNTS_CTES,
    MONEY,
    MONEY_CTES,
    REFUNDS,
    STATES,
    judge_amounts,
    judge_money,
    judge_refunds,
    judge_states,
)
from shopkeep.actors.audit_sql import LIVE, Check, Counts, Findings, Row, Verdict
from shopkeep.store.database import (
    WalNotItsOwn,
    read_only_uri,
    wal_beside_refused,
    wal_misfit,
)
from shopkeep.store.errors import NO_SHOP, SchemaMismatch
from shopkeep.store.migrations import (
    MIGRATIONS,
    apply_migrations,
    refuse_damaged,
    refuse_newer,
)
from shopkeep.store.reader import Reader

CHECKS: tuple[Check, ...] = (
    Check("stock", STOCK, judge_stock, STOCK_CTES),
    Check("wallet", WALLET, judge_wallet, WALLET_CTES),
    Check("points", POINTS, judge_points, POINTS_CTES),
    Check("coupons", COUPONS, judge_coupons),
    Check("money", MONEY, judge_money, MONEY_CTES),
    Check("states", STATES, judge_states),
    Check("refunds", REFUNDS, judge_refunds),
    Check("amounts", AMOUNTS, judge_amounts, AMOUNTS_CTES),
)
"""The invariants, in the order the report lists them."""


def statement(checks: tuple[Check, ...], *, counts: bool = True) -> str:
    """The one statement that runs ``checks``: their CTEs, then all branches in one UNION ALL
    (with ``counts``, the counts' and the outbox's branches first)."""
    ctes = [cte for check in checks for cte in check.ctes]
    base = [COUNTS_BRANCH, OUTBOX_BRANCH] if counts else []
    branches = [*base, *(b for check in checks for b in check.branches)]
    head = "WITH " + ",\n".join(ctes) + "\n" if ctes else ""
    return head + "\nUNION ALL\n".join(branches)


AUDIT_SQL = statement(CHECKS)
"""The one statement of the audit."""

LIVE_OF_SQL = (
    "SELECT id, status FROM orders WHERE id IN (SELECT value FROM json_each(?)) "
    f"AND status IN {LIVE}"
)
"""Which of the orders a JSON array names hold their assets: read after the audit's statement
for the orders whose releases it found in flight. No snapshot is needed for it: such an order
was canceled, returned or failed in the unit that wrote its release, and those are final."""

SHOWN = 5
"""Violations named in a failed check's detail (the rest are counted)."""


class AuditCheck(msgspec.Struct, frozen=True, gc=False):
    """One invariant's result; ``detail`` names the first violations, or what was checked."""

    name: str
    ok: bool
    detail: str


class AuditReport(msgspec.Struct, frozen=True, gc=False):
    """The audit: ``ok`` when every check is."""

    ok: bool
    checks: list[AuditCheck]


OVERFLOW = "integer overflow"
"""SQLite's words when a sum passes 64 bits."""
OVERFLOWED = (
    "a sum of its rows passes 64 bits (SQLite's integer overflow): values no shop writes, so "
    "the database was changed by hand; the other checks ran each in a statement of its own, "
    "so on a shop taking orders they may show what moved between them: audit it again quiet"
)
"""The detail of a check whose sums SQLite could not take."""

Query = tuple[str, tuple[Any, ...]]
Steps = Generator[Query, list[Row], AuditReport]


def audit_steps() -> Steps:
    """The audit as the queries it asks, each sent back its rows (or thrown SQLite's error):
    one code for the live read connection and a closed file, which only run them differently.

    A sum past 64 bits (a ledger changed by hand) fails the one statement: then each check runs
    in one of its own, and the one that overflowed fails saying so, where the audit itself
    failed (a traceback offline, a 500 over HTTP). Those statements see as many snapshots:
    only a database changed by hand takes that way."""
    try:
        rows = yield AUDIT_SQL, ()
    except sqlite3.OperationalError as error:
        if OVERFLOW not in str(error):
            raise
        rows = yield statement(()), ()  # the counts and the outbox
        overflowed = []
        for check in CHECKS:
            try:
                rows += yield statement((check,), counts=False), ()
            except sqlite3.OperationalError as again:
                if OVERFLOW not in str(again):
                    raise
                overflowed.append(check.name)
        found, flight = sort_rows(rows)
        return judge(found, flight, (yield from _live(flight)), overflowed)
    found, flight = sort_rows(rows)
    return judge(found, flight, (yield from _live(flight)))


def _live(flight: InFlight) -> Generator[Query, list[Row], list[Row]]:
    """:data:`LIVE_OF_SQL`'s rows for the releases ``flight`` found (none asked if none)."""
    released = released_orders(flight)
    return (yield LIVE_OF_SQL, (released,)) if released else []


def _advance(steps: Steps, outcome: list[Row] | sqlite3.OperationalError) -> Query | AuditReport:
    """The next query of ``steps`` given the last one's ``outcome`` (its rows or its error), or
    the report when they are done."""
    try:
        if isinstance(outcome, sqlite3.OperationalError):
            return steps.throw(outcome)
        return steps.send(outcome)
    except StopIteration as done:
        report: AuditReport = done.value
        return report


async def audit(reader: Reader) -> AuditReport:
    """Audit the committed state seen by ``reader`` (a live server's read connection)."""
    steps = audit_steps()
    step: Query | AuditReport = next(steps)
    while isinstance(step, tuple):
        try:
            outcome: list[Row] | sqlite3.OperationalError = await reader.fetchall(*step)
        except sqlite3.OperationalError as error:
            outcome = error
        step = _advance(steps, outcome)
    return step


def _audit_on(conn: sqlite3.Connection) -> AuditReport:
    """:func:`audit_steps` on ``conn``, at once."""
    steps = audit_steps()
    step: Query | AuditReport = next(steps)
    while isinstance(step, tuple):
        try:
            outcome: list[Row] | sqlite3.OperationalError = conn.execute(*step).fetchall()
        except sqlite3.OperationalError as error:
            outcome = error
        step = _advance(steps, outcome)
    return step


def audit_file(path: str) -> AuditReport:
    """Audit the database file at ``path``, opened read-only (for a closed database).

    Raises FileNotFoundError when there is no such file, and sqlite3.Error when it is not a
    shopkeep database or is damaged (SQLite's ``integrity_check``, as ``serve`` and
    ``backup`` make it: the audit reads only the pages its queries need, and would find a
    file whose other pages are garbage ok).
    """
    file = Path(path)
    try:
        found = file.is_file()
    except OSError as error:  # a name the system cannot even look up (too long, say)
        raise FileNotFoundError(f"no database file at {path}: {error.strerror}") from None
    if not found:
        raise FileNotFoundError(f"no database file at {path}")
    real_path = str(file.resolve())
    # a -wal that is not the file's is refused as serve refuses it: read through it, the
    # audit would check another file's pages, or pages of two files
    not_its_own = wal_beside_refused(real_path)
    if not_its_own is not None:
        raise WalNotItsOwn(not_its_own)
    return _audit_uri(read_only_uri(real_path), real_path)


def _audit_uri(uri: str, real_path: str | None = None) -> AuditReport:
    """The audit of the database at ``uri``; a damaged one refused, saying what to do when
    the file at ``real_path`` is whole without the ``-wal`` that damages it
    (:func:`~shopkeep.store.database.wal_misfit`)."""
    conn = sqlite3.connect(uri, uri=True)
    try:
        try:
            refuse_damaged(conn)
        except sqlite3.OperationalError:  # busy, locked: no word on the pages
            raise
        except sqlite3.DatabaseError as damaged:
            misfit = None if real_path is None else wal_misfit(real_path, str(damaged))
            if misfit is None:
                raise
            raise sqlite3.DatabaseError(misfit) from damaged
        try:
            version = refuse_newer(conn, MIGRATIONS)
        except SchemaMismatch as newer:  # its tables may mean what this audit does not know
            raise sqlite3.DatabaseError(str(newer)) from None
        if 0 < version < len(MIGRATIONS):
            conn = migrated_copy(conn)
        try:
            return _audit_on(conn)
        except sqlite3.OperationalError as error:
            if "no such table" not in str(error):
                raise
            # an empty file, another program's, or a shop's no shopkeep has opened since a
            # migration made the table: SQLite's words alone ("no such table: refunds") do
            # not say which file is wrong
            raise sqlite3.DatabaseError(
                f"{NO_SHOP}, or one this shopkeep has not opened yet ({error})"
            ) from None
    finally:
        conn.close()


def migrated_copy(conn: sqlite3.Connection) -> sqlite3.Connection:
    """A copy in memory of the shop ``conn`` reads, migrated as a start migrates it (``conn``
    closed): what an older shopkeep wrote (a backup from before an upgrade, a file an older
    server runs) is audited as this one sees it, and the file is not changed."""
    copy = sqlite3.connect(":memory:")
    try:
        conn.backup(copy)
        apply_migrations(copy, MIGRATIONS)
    except BaseException:
        copy.close()
        raise
    finally:
        conn.close()
    return copy


def sort_rows(rows: list[Row]) -> tuple[Findings, InFlight]:
    """The rows of :data:`AUDIT_SQL` by tag (without it), and what its outbox rows carry."""
    found: defaultdict[str, list[Row]] = defaultdict(list)
    for row in rows:
        found[row[0]].append(row[1:])
    return found, read_outbox(row[:4] for row in found["outbox"])


def released_orders(flight: InFlight) -> str | None:
    """The orders whose releases are in flight, as :data:`LIVE_OF_SQL`'s parameter (a JSON
    array); None when there are none."""
    return msgspec.json.encode(sorted(flight.released)).decode() if flight.released else None


def judge(
    found: Findings, flight: InFlight, live: Sequence[Row], overflowed: Sequence[str] = ()
) -> AuditReport:
    """The report on the rows of :data:`AUDIT_SQL` (``found`` and ``flight``, by
    :func:`sort_rows`): one check per invariant, in order, and one more, ``outbox``, failing,
    only if some outbox row cannot be decoded (the runtime could not deliver it either, so
    whatever it carried is stuck) or gives back what an order that holds its assets holds
    (``live``: :data:`LIVE_OF_SQL`'s rows, such orders and their status). The checks named
    in ``overflowed`` fail, saying their sums could not be taken."""
    goods, users, coupons, orders, refunds, *_ = found["counts"][0]
    counts = Counts(goods, users, coupons, orders, refunds)
    checks = [
        AuditCheck(check.name, False, OVERFLOWED) if check.name in overflowed
        else _report(check.name, check.judge(found, flight, counts))
        for check in CHECKS
    ]
    stuck = [f"{flight.undecodable} outbox rows cannot be decoded"] if flight.undecodable else []
    stuck += [f"a release of {status} order {order_id} is on its way" for order_id, status in live]
    if stuck:
        checks.append(AuditCheck("outbox", False, "; ".join(stuck)))
    return AuditReport(all(check.ok for check in checks), checks)


def _report(name: str, verdict: Verdict) -> AuditCheck:
    flight = f"; {verdict.in_flight} {verdict.flight_label}" if verdict.in_flight else ""
    bad = verdict.violations
    if not bad:
        return AuditCheck(name, True, verdict.summary + flight)
    more = f"; and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    plural = "s" if len(bad) > 1 else ""
    return AuditCheck(
        name, False, f"{len(bad)} violation{plural}: {'; '.join(bad[:SHOWN])}{more}{flight}"
    )
