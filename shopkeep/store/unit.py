"""A unit of work: the statements of one state change, committed atomically or not at all."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any

Params = Sequence[Any]


class UnitOfWork:
    """SQL statements that must reach the disk together, in order.

    ``owner`` names who built the unit (an actor address) and ``incarnation`` which activation of
    it: when a unit fails, later units of the same owner and incarnation were built on state that
    never reached the disk, so the writer fails them too instead of committing them.

    ``after`` lists units of other owners that this one was built on (an answer given before
    its unit was committed); they were submitted earlier, and if one of them fails, so does this.

    ``joined`` lists the other owners (with their incarnations) whose changes this unit carries
    too: one turn may change several actors' state, all or nothing. Each of them counts as an
    owner of the unit: when it fails, their later units fail as well.
    """

    __slots__ = ("after", "failed", "incarnation", "joined", "owner", "statements")

    def __init__(self, owner: Hashable | None = None, incarnation: int = 0) -> None:
        self.owner = owner
        self.incarnation = incarnation
        self.statements: list[tuple[str, Any, bool]] = []
        self.after: list[UnitOfWork] = []
        self.joined: list[tuple[Hashable, int]] = []
        self.failed = False

    def owners(self) -> list[tuple[Hashable, int]]:
        """Every (owner, incarnation) whose state this unit changes: its owner, then the joined."""
        if self.owner is None:
            return self.joined
        return [(self.owner, self.incarnation), *self.joined]

    @property
    def orphaned(self) -> bool:
        """Whether a unit this one was built on has failed."""
        return any(dependency.failed for dependency in self.after)

    def execute(self, sql: str, params: Params = ()) -> None:
        """Add one statement."""
        self.statements.append((sql, params, False))

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Add one statement run once per row (one ``executemany`` call in the writer)."""
        self.statements.append((sql, list(rows), True))

    def __bool__(self) -> bool:
        return bool(self.statements)

    def __len__(self) -> int:
        return len(self.statements)
