"""The registry: the only place live activations are kept, so one address has at most one.

Kept in order of last use (oldest first): a cell is moved to the end when it handles a message
after a second or more of quiet, which makes both the LRU eviction under the cap and the idle
sweep a walk from the front.
"""

from __future__ import annotations

from collections.abc import Iterator

from shopkeep.runtime.cell import Cell
from shopkeep.runtime.envelope import Address


class Registry:
    """Live cells by address, oldest use first."""

    __slots__ = ("_cells",)

    def __init__(self) -> None:
        self._cells: dict[Address, Cell] = {}

    def get(self, address: Address) -> Cell | None:
        """The live cell of ``address``, if any."""
        return self._cells.get(address)

    def add(self, cell: Cell) -> None:
        """Register a new activation (the caller made room under the cap first)."""
        self._cells[cell.address] = cell

    def touch(self, cell: Cell, now: float) -> None:
        """``cell`` was used at ``now``: keep the oldest-use-first order (coarsely: a move
        costs a dict delete and insert, so a cell busy within the last second stays put)."""
        if now - cell.last_used >= 1.0 and self._cells.get(cell.address) is cell:
            self._cells[cell.address] = self._cells.pop(cell.address)
        cell.last_used = now

    def remove(self, cell: Cell) -> None:
        """Forget ``cell`` if it is still the registered activation of its address."""
        if self._cells.get(cell.address) is cell:
            del self._cells[cell.address]

    def evict(self, want: int) -> int:
        """Passivate up to ``want`` of the least recently used idle cells; how many went."""
        victims: list[Address] = []
        for address, cell in self._cells.items():
            if cell.passivatable:
                victims.append(address)
                if len(victims) >= want:
                    break
        for address in victims:
            del self._cells[address]
        return len(victims)

    def passivate_idle(self, cutoff: float) -> int:
        """Passivate every idle cell last used at or before ``cutoff``; how many went."""
        idle = [a for a, c in self._cells.items() if c.last_used <= cutoff and c.passivatable]
        for address in idle:
            del self._cells[address]
        return len(idle)

    def cells(self) -> Iterator[Cell]:
        """Every live cell (a snapshot, safe to change the registry while iterating)."""
        return iter(list(self._cells.values()))

    def __len__(self) -> int:
        return len(self._cells)

    def __contains__(self, address: object) -> bool:
        return address in self._cells
