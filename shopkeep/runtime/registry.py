"""The registry: the only place live activations are kept, so one address has at most one.

Kept in order of last use (oldest first), coarsely: a cell is moved to the end when it handles
a message a second or more after it was last moved there (``listed_at``). So along the
registry's order ``listed_at`` never decreases, and each cell was last used less than a second
after its ``listed_at``: the LRU eviction under the cap and the idle sweep are walks from the
front, and the sweep stops at the first cell listed after its cutoff instead of walking every
live cell (200,000 of them took 9 ms with none idle). A wall clock stepped back only delays the
sweep of the cells listed after the step, until those before them go idle or move.
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
        costs a dict delete and insert, so a cell moved within the last second stays put)."""
        if now - cell.listed_at >= 1.0 and self._cells.get(cell.address) is cell:
            self._cells[cell.address] = self._cells.pop(cell.address)
            cell.listed_at = now
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

    def passivate_idle(self, cutoff: float, most: int) -> int:
        """Passivate up to ``most`` idle cells last used at or before ``cutoff``, oldest first;
        how many went (fewer than ``most``: no other cell is idle that long)."""
        idle: list[Address] = []
        for address, cell in self._cells.items():
            if cell.listed_at > cutoff:
                break  # used after the cutoff, as is every cell listed after it
            if cell.last_used <= cutoff and cell.passivatable and not cell.pinned:
                idle.append(address)
                if len(idle) >= most:
                    break
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
