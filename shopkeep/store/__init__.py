"""SQLite storage: one file, WAL, a group-commit writer and a separate read connection.

The store knows nothing of actors or shops: it takes units of work (lists of SQL statements)
and commits them in submission order, many per transaction, one fsync per batch.
"""

from shopkeep.store.database import Store, StoreConfig
from shopkeep.store.errors import CommitFailed, DatabaseInUse, SchemaMismatch, StoreError
from shopkeep.store.migrations import MIGRATIONS, Migration
from shopkeep.store.unit import UnitOfWork

__all__ = [
    "MIGRATIONS",
    "CommitFailed",
    "DatabaseInUse",
    "Migration",
    "SchemaMismatch",
    "Store",
    "StoreConfig",
    "StoreError",
    "UnitOfWork",
]
