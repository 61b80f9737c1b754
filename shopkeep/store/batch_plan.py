"""How a batch's statements are run: grouped per table, repeated UPDATEs coalesced, INSERTs joined.

A batch of 32 placements is about 300 statements, and every call into the sqlite3 driver drops and
retakes the GIL once per row it steps: beside a busy event loop each retake waits. The plan runs
the same changes in far fewer calls. It only ever changes *how* the statements run, never what a
committed batch leaves on disk, and it is used only for the first, all-or-nothing attempt: when
that attempt fails, the writer retries unit by unit with each unit's own statements in their own
order (:meth:`GroupCommitWriter._commit_one_by_one`), so which unit failed is decided exactly as
if no plan had been made. A plan therefore has to satisfy one condition: when the planned batch
commits, the statements in submission order would have committed too, leaving the same rows. Each
transformation keeps to it as follows.

1. Grouping per table. A statement joins an earlier run of the same SQL text (one executemany)
   only if every statement it moves past writes another table and the statement is
   *table-local*: what it does and whether it fails depends only on its own table. That holds
   for the shapes :func:`shape_of` accepts (INSERT ... VALUES of parameters and literals, with at
   most a plain upsert clause; UPDATE and DELETE whose expressions are columns, parameters,
   literals and arithmetic: no subquery, no function call such as ``last_insert_rowid()``), on a
   table the schema keeps to itself: an ordinary table with no trigger and no TEMP object of its
   name (a trigger, a shadowing table), and, when foreign keys are enforced, in no foreign key.
   Statements on one table never change their relative order (any statement on the table
   closes that table's open run), so each table sees the same sequence of statements, starting
   from the same state, as it would in submission order: the same rows, the same rowids, the
   same UNIQUE conflicts (INSERT-then-UPDATE of one row, DELETE of a timer then INSERT OR
   REPLACE of it, all keep their order). Any other statement is a barrier: nothing moves across
   it. One that is not an INSERT, UPDATE or DELETE may change the schema (a trigger, a table),
   so after it the rest of the batch is only joined where adjacent, and the schema is read again.
2. Coalescing repeated UPDATEs. Within one run of ``UPDATE t SET a = ?, b = ? WHERE k = ? [AND
   ...]``, rows with the same key (equal values of the same types, so the same rows match in
   SQL) are kept only at their last occurrence. This is equivalent when: every SET value is a
   parameter (a later row overwrites the same columns, reading nothing), no WHERE column is SET
   (the rows a key matches stay the same), and a dropped row could not have failed. The last is
   checked row by row against the table's schema: its SET columns are in no index that can fail
   (UNIQUE, primary key, partial or expression index), the table has no generated column and is
   not STRICT, and the dropped row passes every constraint on a SET column here in Python (NOT
   NULL; CHECK of the form ``column >= / > / <= / < integer``, on an int). A table with any other
   CHECK is never coalesced; a row that fails the check in Python is kept, and runs. A row that
   a kept row of the same key overwrites leaves nothing behind, and no statement reads the table
   between them (the run is consecutive for its table), so the last row's values are what each
   matched row holds in both orders.
3. Joining INSERTs into one statement. A run of ``INSERT [OR ...] INTO t (...) VALUES (?, ...)``
   with no upsert or RETURNING clause becomes multi-row ``VALUES (...), (...)`` statements.
   SQLite inserts such rows one by one, in order, with the same conflict handling per row, so
   the rows and rowids are the same; only a failure undoes the whole statement rather than one
   row, and a failure fails the batch either way. Chunks are powers of two (at most
   ``MAX_ROWS``) so that a few prepared statements serve every run length.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from typing import Any

Statement = tuple[str, Any, bool]
"""One call of a batch: SQL, its parameters (a list of rows when the flag says executemany)."""

MAX_ROWS = 64
"""The most rows one multi-row INSERT carries (fewer when its columns would pass MAX_PARAMS)."""
MAX_PARAMS = 999
"""The parameters one multi-row INSERT binds at most: SQLite's limit before 3.32."""

log = logging.getLogger("shopkeep.store")

_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_VALUE = r"(?:\?|-?\d+(?:\.\d+)?|'[^',()]*'|NULL)"
_INSERT = re.compile(
    rf"\s*INSERT\s+(?:OR\s+(?:REPLACE|IGNORE|ABORT|FAIL|ROLLBACK)\s+)?INTO\s+({_ID})\s*"
    rf"\(\s*{_ID}(?:\s*,\s*{_ID})*\s*\)\s*VALUES\s*(\(\s*{_VALUE}(?:\s*,\s*{_VALUE})*\s*\))\s*"
    r"(.*?)\s*",
    re.IGNORECASE | re.DOTALL,
)
_UPSERT = re.compile(
    rf"ON\s+CONFLICT\s*(?:\(\s*{_ID}(?:\s*,\s*{_ID})*\s*\))?\s*DO\s+"
    rf"(?:NOTHING|UPDATE\s+SET\s+{_ID}\s*=\s*[\w.?]+(?:\s*,\s*{_ID}\s*=\s*[\w.?]+)*)",
    re.IGNORECASE,
)
_UPDATE = re.compile(rf"\s*UPDATE\s+({_ID})\s+SET\s+(.+?)\s+WHERE\s+(.+?)\s*", re.I | re.S)
_DELETE = re.compile(rf"\s*DELETE\s+FROM\s+({_ID})\s+WHERE\s+(.+?)\s*", re.I | re.S)
_LITERAL = re.compile(r"'[^']*'")
_EXPRESSION = re.compile(r"[\w\s?+\-*/=<>!.,]+")  # columns, parameters, numbers, arithmetic
_ASSIGNMENT = re.compile(rf"\s*({_ID})\s*=\s*(.+?)\s*", re.S)
_KEY = re.compile(rf"\s*({_ID})\s*=\s*\?\s*")
_AND = re.compile(r"\bAND\b", re.IGNORECASE)
_SELECT = re.compile(r"\bselect\b", re.IGNORECASE)
_DML = re.compile(r"\s*(?:INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_CHECK = re.compile(r"\bCHECK\b", re.IGNORECASE)
_SIMPLE_CHECK = re.compile(rf"\bCHECK\s*\(\s*({_ID})\s*(>=|>|<=|<)\s*(-?\d+)\s*\)", re.I)
_STRICT = re.compile(r"\)\s*(?:WITHOUT\s+ROWID\s*,\s*)?STRICT\b[^)]*$", re.IGNORECASE)


@dataclass(frozen=True)
class Shape:
    """What the plan needs to know of one SQL text."""

    table: str  # lower case
    head: str = ""  # an INSERT that may become multi-row: the text before its VALUES tuple
    values: str = ""  # ... and the tuple, e.g. "(?, ?, 'x')"
    width: int = 0  # ... and how many parameters a row has
    set_columns: tuple[str, ...] = ()  # an UPDATE whose SET values are all parameters
    key_columns: tuple[str, ...] = ()  # ... keyed by ``column = ?`` conjunctions


@lru_cache(maxsize=1024)
def shape_of(sql: str) -> Shape | None:
    """The shape of a table-local statement, or None for anything else (a barrier)."""
    if _SELECT.search(sql):
        return None
    if match := _INSERT.fullmatch(sql):
        table, values, tail = match.groups()
        if not tail:
            head = sql[: match.start(2)]
            width = _LITERAL.sub("", values).count("?")
            return Shape(table.lower(), head=head, values=values, width=width)
        return Shape(table.lower()) if _UPSERT.fullmatch(tail) else None
    if match := _UPDATE.fullmatch(sql):
        table, assignments, where = (_LITERAL.sub("0", part) for part in match.groups())
        if not (_EXPRESSION.fullmatch(assignments) and _EXPRESSION.fullmatch(where)):
            return None
        pairs = [_ASSIGNMENT.fullmatch(part) for part in assignments.split(",")]
        keys = [_KEY.fullmatch(part) for part in _AND.split(where)]
        if all(p is not None and p.group(2) == "?" for p in pairs) and all(keys):
            set_columns = tuple(p.group(1).lower() for p in pairs if p is not None)
            key_columns = tuple(k.group(1).lower() for k in keys if k is not None)
            if not set(set_columns) & set(key_columns):
                return Shape(table.lower(), set_columns=set_columns, key_columns=key_columns)
        return Shape(table.lower())
    if match := _DELETE.fullmatch(sql):
        table, where = match.groups()
        return Shape(table.lower()) if _EXPRESSION.fullmatch(_LITERAL.sub("0", where)) else None
    return None


def changes_only_rows(sql: str) -> bool:
    """Whether ``sql`` is an INSERT, UPDATE or DELETE (it cannot change the schema)."""
    return _DML.match(sql) is not None


@dataclass
class Schema:
    """Which tables keep to themselves, and what may fail on an UPDATE of theirs, as read from
    the database (read again after anything that may have changed it)."""

    plain: frozenset[str]
    sql: dict[str, str]
    _constraints: dict[tuple[str, tuple[str, ...]], _Constraints | None] = field(
        default_factory=dict
    )

    @classmethod
    def read(cls, conn: sqlite3.Connection) -> Schema:
        """The tables of ``conn``'s main database."""
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
        tables = {
            name.lower(): sql or ""
            for kind, name, _, sql in rows
            if kind == "table" and not (sql or "").upper().startswith("CREATE VIRTUAL")
        }
        linked = {table.lower() for kind, _, table, _ in rows if kind == "trigger"}
        # a TEMP table may shadow a table of the same name, a TEMP trigger may fire on one
        temp = conn.execute("SELECT name, tbl_name FROM sqlite_temp_master").fetchall()
        linked.update(str(name).lower() for row in temp for name in row)
        if conn.execute("PRAGMA foreign_keys").fetchone()[0]:
            for table in tables:
                query = 'SELECT "table" FROM pragma_foreign_key_list(?)'
                for (parent,) in conn.execute(query, (table,)):
                    linked.update((table, str(parent).lower()))
        return cls(frozenset(tables.keys() - linked), tables)

    def constraints(self, conn: sqlite3.Connection, shape: Shape) -> _Constraints | None:
        """What a row of ``shape``'s UPDATE must pass to be dropped; None: never drop one."""
        key = (shape.table, shape.set_columns)
        if key not in self._constraints:
            self._constraints[key] = _read_constraints(conn, shape, self.sql[shape.table])
        return self._constraints[key]


@dataclass(frozen=True)
class _Constraints:
    """Per SET column (by position): NOT NULL, and the (operator, bound) CHECKs on it."""

    not_null: tuple[bool, ...]
    checks: tuple[tuple[tuple[str, int], ...], ...]

    def passed(self, row: Sequence[Any]) -> bool:
        for value, not_null, checks in zip(row, self.not_null, self.checks, strict=False):
            if value is None:
                if not_null:
                    return False
                continue  # a CHECK on NULL passes
            if checks and type(value) is not int:
                return False  # affinity would decide: keep the row rather than reason about it
            for operator, bound in checks:
                if not _COMPARE[operator](value, bound):
                    return False
        return True


_COMPARE = {
    ">=": int.__ge__,
    ">": int.__gt__,
    "<=": int.__le__,
    "<": int.__lt__,
}


def _read_constraints(conn: sqlite3.Connection, shape: Shape, create: str) -> _Constraints | None:
    table, columns = shape.table, shape.set_columns
    if _STRICT.search(create):
        return None
    query = "SELECT * FROM pragma_table_xinfo(?)"
    info = {str(row[1]).lower(): row for row in conn.execute(query, (table,))}
    if any(row[6] in (2, 3) for row in info.values()):  # generated columns
        return None
    if any(column not in info or info[column][5] for column in columns):  # unknown or key
        return None
    for index in conn.execute("SELECT * FROM pragma_index_list(?)", (table,)).fetchall():
        name, unique, partial = index[1], index[2], index[4]
        indexed = conn.execute("SELECT * FROM pragma_index_info(?)", (name,)).fetchall()
        if any(row[1] == -2 for row in indexed) or partial:
            return None  # an expression or a WHERE clause that an UPDATE might make fail
        if unique and any(str(row[2]).lower() in columns for row in indexed):
            return None
    simple = _SIMPLE_CHECK.findall(create)
    if len(simple) != len(_CHECK.findall(create)):
        return None  # a CHECK this module does not evaluate
    checks = tuple(
        tuple((op, int(bound)) for name, op, bound in simple if name.lower() == column)
        for column in columns
    )
    return _Constraints(tuple(bool(info[column][3]) for column in columns), checks)


class _Run:
    """Rows of one SQL text that run as one call."""

    __slots__ = ("rows", "shape", "sql")

    def __init__(self, sql: str, shape: Shape | None) -> None:
        self.sql = sql
        self.shape = shape
        self.rows: list[Any] = []


def planned(
    conn: sqlite3.Connection, statements: list[Statement], schema: Schema | None
) -> tuple[list[Statement], Schema | None]:
    """``statements`` as the writer runs them on ``conn``, planned with ``schema`` (None: read
    it first), and the schema to plan the next batch with (None when it must be read again).
    When the plan cannot be made (the schema cannot be read, say) the statements run as they
    were submitted; a failure that is not SQLite's is a fault of the plan's, logged once a
    process (every batch then runs unplanned, slower, and nobody would know why). The writer's
    process and its thread both plan through this."""
    global _fault_logged
    try:
        if schema is None:
            schema = Schema.read(conn)
        calls, schema_may_change = plan(statements, schema, conn)
    except sqlite3.Error:
        return statements, None
    except Exception:
        if not _fault_logged:
            _fault_logged = True
            log.exception("batch_plan_failed: batches run as submitted")
        return statements, None
    return calls, None if schema_may_change else schema


_fault_logged = False
"""Whether this process logged a fault of the plan's (once: it would recur every batch)."""


def plan(
    statements: Iterable[Statement], schema: Schema, conn: sqlite3.Connection
) -> tuple[list[Statement], bool]:
    """The calls that make the same changes as ``statements`` run in order (see the module's
    docstring), and whether the schema may have changed (then it must be read again)."""
    runs: list[_Run] = []
    open_runs: dict[str, _Run] = {}  # SQL text -> the run a statement of it may still join
    by_table: dict[str, str] = {}  # table -> the SQL text of its open run (one at most)
    frozen = False  # after a statement that may change the schema, runs only join adjacently
    last: _Run | None = None
    for sql, params, many in statements:
        run = open_runs.get(sql)
        if run is None:
            shape = None if frozen else shape_of(sql)
            if shape is not None and shape.table in schema.plain:
                closed = by_table.get(shape.table)
                if closed is not None:
                    del open_runs[closed]  # it may not move past this statement on its table
                run = open_runs[sql] = _Run(sql, shape)
                by_table[shape.table] = sql
                runs.append(run)
            else:  # a barrier: nothing moves across it
                open_runs.clear()
                by_table.clear()
                frozen = frozen or not changes_only_rows(sql)
                if last is None or last.sql != sql:
                    run = _Run(sql, None)
                    runs.append(run)
                else:
                    run = last
        last = run
        if many:
            run.rows.extend(params)
        else:
            run.rows.append(params)
    calls: list[Statement] = []
    for run in runs:
        calls.extend(_calls(run, schema, conn))
    return calls, frozen


def _calls(run: _Run, schema: Schema, conn: sqlite3.Connection) -> list[Statement]:
    rows, shape = run.rows, run.shape
    if shape is not None and shape.key_columns and len(rows) > 1:
        constraints = schema.constraints(conn, shape)
        if constraints is not None:
            rows = _coalesced(rows, shape, constraints)
    if shape is not None and shape.width and len(rows) > 1:
        joined = _joined(run.sql, shape, rows)
        if joined is not None:
            return joined
    if len(rows) == 1:
        return [(run.sql, rows[0], False)]
    return [(run.sql, rows, True)]


def _coalesced(rows: list[Any], shape: Shape, constraints: _Constraints) -> list[Any]:
    """``rows`` without those a later row of the same key overwrites (and that cannot fail)."""
    set_count = len(shape.set_columns)
    width = set_count + len(shape.key_columns)
    last: dict[tuple[tuple[type, Any], ...], int] = {}
    for position, row in enumerate(rows):
        if not isinstance(row, tuple | list) or len(row) != width:
            return rows  # named parameters, or a row that fails anyway: run them as they are
        try:
            last[tuple((type(value), value) for value in row[set_count:])] = position
        except TypeError:
            return rows  # an unhashable key
    if len(last) == len(rows):
        return rows
    kept = set(last.values())
    return [
        row
        for position, row in enumerate(rows)
        if position in kept or not constraints.passed(row[:set_count])
    ]


def _joined(sql: str, shape: Shape, rows: list[Any]) -> list[Statement] | None:
    """``rows`` of an INSERT as multi-row INSERTs, largest chunks first; None if a row is not a
    sequence of the right length (executemany then reports it as it would have)."""
    width = shape.width
    if not _SEQUENCES.issuperset(map(type, rows)) or set(map(len, rows)) != {width}:
        return None  # (map, not a generator: this runs on every batch)
    limit = min(MAX_ROWS, MAX_PARAMS // max(1, width))
    size = 1 << (limit.bit_length() - 1)  # the largest power of two within the limit
    calls: list[Statement] = []
    start = 0
    while start < len(rows):
        while size > len(rows) - start:
            size >>= 1
        if size == 1:
            calls.append((sql, rows[start], False))
        else:
            chunk = list(chain.from_iterable(rows[start : start + size]))
            calls.append((_multi_row(shape.head, shape.values, size), chunk, False))
        start += size
    return calls


_SEQUENCES = frozenset((tuple, list))


@lru_cache(maxsize=1024)
def _multi_row(head: str, values: str, rows: int) -> str:
    return head + ", ".join([values] * rows)
