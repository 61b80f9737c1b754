"""Errors raised by the store. Each says whose fault it is and reads well on one line."""

import sqlite3
from typing import Final

from shopkeep.store.writer_process import WriterProcessDied

UNREADABLE: Final = (sqlite3.Error, UnicodeDecodeError)
"""What opening or reading a file SQLite cannot read raises: its errors, or a
UnicodeDecodeError when the message it composes quotes bytes of a damaged file (the sqlite3
module decodes the message as UTF-8, and raises that instead)."""


def unreadable(error: BaseException) -> str:
    """One of :data:`UNREADABLE` in words: SQLite's message, or, where it could not be read,
    what it means."""
    if isinstance(error, UnicodeDecodeError):
        return "the file is damaged (SQLite's complaint quotes bytes of it that are not text)"
    said = str(error)
    if said.endswith(NOT_A_DATABASE):  # SQLite's words for a file without its header
        return f"it is not a SQLite database, or its first page is damaged ({NOT_A_DATABASE})"
    return said


NOT_A_DATABASE: Final = "file is not a database"
"""What SQLite says of a file whose first bytes are not a database's header."""


NO_SHOP: Final = "not a shop's database"
"""The start of what the audit says of a SQLite file without a shop's tables."""


def names_no_shop(error: BaseException) -> bool:
    """Whether ``error``, one of :data:`UNREADABLE`, says the file is no shop's database at
    all (not SQLite's, or without a shop's tables), rather than a shop's damaged: a file named
    by mistake."""
    said = str(error)
    return isinstance(error, sqlite3.DatabaseError) and (
        said.endswith(NOT_A_DATABASE) or said.startswith((NO_SHOP, "no such table"))
    )


DATA_FAULTS: Final = (
    sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
    OverflowError,
)
"""What a commit raises for what its unit writes, not for the disk (a constraint, a value
SQLite cannot bind, an int past 64 bits): the same unit fails the same way every time."""


class StoreError(Exception):
    """Base class of the store's errors; ``str()`` is a one-line message fit for a user."""


class DatabaseInUse(StoreError):
    """Another process holds the database file: two writers would corrupt the group commit.

    The operator's fault (a second server started on the same file); nothing was opened.
    """


class SchemaMismatch(StoreError):
    """The database's schema version is one this program does not know (made by a newer one).

    Not a bug here: the file was written by another version of shopkeep; nothing was changed.
    """


class CommitFailed(StoreError):
    """A unit of work was not committed; its effects are not on disk.

    ``cause`` is the SQLite error (or ``None`` when the unit was skipped because an earlier unit
    of the same actor failed: it was built on state that never reached the disk).
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause

    @property
    def of_data(self) -> bool:
        """Whether SQLite refused what the unit writes (:data:`DATA_FAULTS`): every try of it
        fails alike."""
        return isinstance(self.cause, DATA_FAULTS)

    @property
    def maybe_kept(self) -> bool:
        """Whether the unit may be on disk after all: its writer process died with the batch
        sent, which may have committed before it ended (not one that never took it: it could
        not open the database, or could not be started)."""
        return isinstance(self.cause, WriterProcessDied) and self.cause.batch_sent

    @property
    def refused_by_store(self) -> bool:
        """Whether the store refused the unit for its own sake (a full disk, an I/O error, a
        writer process gone, the database file moved), or a unit it was built on so in a run
        of such refusals; not for what it writes."""
        return self.cause is not None and not self.of_data
