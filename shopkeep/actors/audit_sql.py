"""How the audit's checks are written: SQL branches, fingerprint gates, and what judges return.

A check is SQL and a judge. Its *branches* are ``SELECT`` statements whose first column is a
tag (``stock.goods``...) and which have :data:`WIDTH` columns in all (NULL-padded); its *ctes*
are named subqueries they share. :mod:`shopkeep.actors.audit` joins every check into one
``WITH ... UNION ALL ...`` statement, so the whole audit reads one snapshot. A judge turns the
rows of its tags, with what the outbox still carries, into a :class:`Verdict`.

Fingerprint gates, and why. The exact comparisons (per goods, per user, per order) group
hundreds of thousands of ledger rows, which in SQLite means a sort; on a 100k-order database
that alone takes longer than the rest of the audit. Instead, each side of an equation is first
folded in one scan into four numbers: the plain sum of its values, two sums of the values
weighted by the key modulo ``p = 2^31 - 1`` (``value mod p`` times ``key mod p``, and times
``key div p mod p``; every product and sum is reduced so nothing overflows 64 bits), and one
modulo another prime, ``q = 2^31 - 19`` (``value mod q`` times ``key mod q``): a difference of a
multiple of ``p`` on one key, which every residue mod ``p`` misses (+p on one goods and -p on
another, or split over rows whose residues carry), is no multiple of ``q`` below ``p q``, about
4.6e18. If the two sides agree for every key, the four numbers agree. If they disagree for some
keys, the plain sum or a weighted sum differs unless the differences cancel out exactly under
unrelated weightings at once (two keys never share both weights), which a bug or a corruption
does not do by accident. When the numbers differ, the gate is *open* and the exact per-key
comparison runs to name the violations; when they agree, the comparison's loops never start
(the gate, a CTE with one row or none, is the outermost table of the branch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shopkeep.actors.audit_flight import InFlight
from shopkeep.actors.order_state import (
    AWAITING_PAYMENT,
    CANCELED,
    DELIVERED,
    PAID,
    RETURNED,
    SHIPPED,
)

Row = tuple[Any, ...]
Findings = Mapping[str, list[Row]]
"""Rows by tag, without the tag."""

WIDTH = 8
"""Columns of every branch: the tag and seven values."""

P = 2_147_483_647
"""The fingerprints' modulus, 2^31 - 1 (prime): a product of two residues stays below 2^62."""
Q = 2_147_483_629
"""The fourth number's modulus, 2^31 - 19, the prime below ``P``."""

def sql_list(values: tuple[str, ...]) -> str:
    """``values`` as an SQL list of literals, ``('a', 'b')``: the order's words are no input."""
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


RELEASED = sql_list((CANCELED, RETURNED))
"""Orders that must have given back what they held."""
LIVE = sql_list((AWAITING_PAYMENT, PAID, SHIPPED, DELIVERED))
"""Orders that hold their assets. (``pending``: a placement running, never judged.)"""
KEPT = sql_list((PAID, SHIPPED, DELIVERED))
"""Orders that keep the money they were paid."""


@dataclass(frozen=True)
class Counts:
    """How big the database is, for the details of checks that pass."""

    goods: int
    users: int
    coupons: int
    orders: int
    refunds: int


@dataclass(frozen=True)
class Verdict:
    """What a check found: violations (in words), how many findings were in flight (named by
    ``flight_label``), and what was checked (said when all is well)."""

    violations: list[str]
    in_flight: int
    summary: str
    flight_label: str = "in flight"


Judge = Callable[[Findings, InFlight, Counts], Verdict]


@dataclass(frozen=True)
class Check:
    """One invariant: its name in the report, its SQL, and its judge."""

    name: str
    branches: tuple[str, ...]
    judge: Judge
    ctes: tuple[str, ...] = field(default=())


def placed(table: str = "") -> str:
    """The condition that an order (a row of ``orders``, or of its alias ``table``) was placed,
    its amounts final: all but a placement running (pending) or one that failed, which may
    have stopped before it was priced."""
    t = f"{table}." if table else ""
    return (
        f"{t}status != 'pending' "
        f"AND NOT ({t}status = 'canceled' AND {t}cancel_reason = 'placement_failed')"
    )


MODULI: tuple[int | None, ...] = (None, P, P, Q)
"""Each number of a fingerprint (``n0`` the plain sum, ``n1`` to ``n3`` weighted) and the
modulus it is compared by."""


def sums(key: str, value: str) -> tuple[str, ...]:
    """The aggregates of a fingerprint of ``value`` by ``key``, one a :data:`MODULI` (NULL over
    no rows)."""
    residue, residue_q = f"(({value}) % {P})", f"(({value}) % {Q})"
    w1, w2, w3 = f"(({key}) % {P})", f"((({key}) / {P}) % {P})", f"(({key}) % {Q})"
    return (
        f"sum({value})",
        f"sum({residue} * {w1} % {P})",
        f"sum({residue} * {w2} % {P})",
        f"sum({residue_q} * {w3} % {Q})",
    )


def fold(source: str, key: str, value: str) -> str:
    """One row ``(n0, n1, n2, n3)``: the fingerprint of ``value`` by ``key`` over ``source``."""
    named = ", ".join(f"coalesce({total}, 0) AS n{i}" for i, total in enumerate(sums(key, value)))
    return f"SELECT {named} FROM {source}"


def nonzero(source: str, key: str, value: str) -> str:
    """A scalar subquery: whether ``value`` over ``source`` does not net to zero for some key
    (false over no rows)."""
    totals = zip(sums(key, value), MODULI, strict=True)
    some = " OR ".join(_zero(total, modulus, "!=") for total, modulus in totals)
    return f"(SELECT {some} FROM {source})"


def agree(*sides: tuple[str, int]) -> str:
    """The condition that signed folds (alias, +1 or -1) sum to zero in all their numbers."""
    terms = [
        " ".join(f"{'+' if sign > 0 else '-'} {alias}.n{i}" for alias, sign in sides)
        for i in range(len(MODULI))
    ]
    return " AND ".join(
        _zero(term, modulus, "=") for term, modulus in zip(terms, MODULI, strict=True)
    )


def _zero(total: str, modulus: int | None, compare: str) -> str:
    """``total`` compared (``=`` or ``!=``) with zero, modulo ``modulus`` when it has one."""
    return f"({total}) {compare} 0" if modulus is None else f"({total}) % {modulus} {compare} 0"


def gate(name: str, books: str, ledger: str) -> str:
    """A CTE ``name`` with one row when the folds ``books`` and ``ledger`` differ, none when
    they agree. A branch that starts its FROM clause with :func:`behind` runs only then."""
    return (
        f"{name} AS (SELECT 1 FROM ({books}) AS b, ({ledger}) AS l "
        f"WHERE NOT ({agree(('b', 1), ('l', -1))}))"
    )


def behind(name: str) -> str:
    """The start of a FROM clause that runs the rest of a branch only when gate ``name`` is
    open: CROSS JOIN keeps the gate's row (or none) in the outermost loop, so with no row
    nothing inside is read, not even a subquery."""
    return f"{name} CROSS JOIN"
