"""The ``settings`` table: the credentials a server runs with (its one reader and writer).

The admin token is kept as its hash only; a generated gateway secret is never stored.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from functools import partial
from typing import Final

from shopkeep.shop import hash_token, new_token
from shopkeep.store.writer import GroupCommitWriter

ADMIN_TOKEN_HASH: Final = "admin_token_hash"
"""``settings`` key: the SHA-256 (hex) of the admin token generated at first start."""
GATEWAY_SECRET: Final = "gateway_secret"
"""``settings`` key under which earlier versions kept a generated gateway secret, in clear;
deleted at every start (see :func:`settle_credentials`)."""


@dataclass(frozen=True)
class Credentials:
    """The admin token's hash and the gateway secret, as the server will use them."""

    admin_token_hash: str
    gateway_secret: str
    new_admin_token: str | None = None
    """The admin token generated just now, in clear: announce it, it is never known again."""


async def settle_credentials(
    writer: GroupCommitWriter, *, admin_token: str | None, gateway_secret: str | None
) -> Credentials:
    """The credentials to run with, generating what is missing.

    A configured value is used as given and not stored (configuration stays the operator's).
    A generated admin token's hash is written with ``INSERT OR IGNORE``, then read back: the
    row that won is the one in force, and the new token is announced only if it is that one.

    A generated gateway secret is kept in memory only, new at every start: HMAC needs it in
    clear, so stored it would be readable in every copy of the database, and nobody else can
    use it anyway (it is never shown: a real gateway needs a configured secret, and the
    sandbox gateway signs with this process's). One stored by an earlier version is deleted.
    """
    token = None if admin_token else new_token()
    generated: dict[str, str] = {}
    if token is not None:
        generated[ADMIN_TOKEN_HASH] = hash_token(token)
    stored = await writer.call(partial(_keep_settings, generated))
    admin_hash = hash_token(admin_token) if admin_token else stored[ADMIN_TOKEN_HASH]
    announced = token if token is not None and hash_token(token) == admin_hash else None
    return Credentials(admin_hash, gateway_secret or secrets.token_hex(32), announced)


def _keep_settings(generated: dict[str, str], conn: sqlite3.Connection) -> dict[str, str]:
    """Insert what is missing of ``generated`` and forget a stored gateway secret; every
    credential setting, as stored now."""
    # the forgotten secret's bytes are overwritten, not left in a free page of the file
    (secure,) = conn.execute("PRAGMA secure_delete").fetchone()
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", generated.items()
        )
        conn.execute("DELETE FROM settings WHERE key = ?", (GATEWAY_SECRET,))
        found = conn.execute(
            "SELECT key, value FROM settings WHERE key = ?", (ADMIN_TOKEN_HASH,)
        ).fetchall()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.execute(f"PRAGMA secure_delete = {int(secure)}")
    return {str(key): str(value) for key, value in found}


async def forget_admin_token(writer: GroupCommitWriter, admin_hash: str) -> None:
    """Forget the generated admin token of hash ``admin_hash`` (a start that failed before it
    announced it): the next start generates and announces another."""
    await writer.call(partial(_forget_admin_token, admin_hash))


def _forget_admin_token(admin_hash: str, conn: sqlite3.Connection) -> None:
    with conn:
        conn.execute(
            "DELETE FROM settings WHERE key = ? AND value = ?", (ADMIN_TOKEN_HASH, admin_hash)
        )
