"""What a server keeps of its secrets: the admin token as a hash, the gateway secret nowhere
(a generated one lives in memory only), in files that only their owner can read."""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

from shopkeep.credentials import GATEWAY_SECRET
from shopkeep.http.server import ServeOptions, running


def settings(db: Path) -> dict[str, str]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return dict(conn.execute("SELECT key, value FROM settings").fetchall())


async def test_a_fresh_server_stores_no_gateway_secret_and_its_files_are_private(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shop.db"
    before = os.umask(0o022)
    try:
        options = ServeOptions(db=str(db), port=0, sandbox=True)
        async with running(options, announce=lambda token: None) as server:
            secret = server.shop._gateway_secret
            modes = {
                name: stat.S_IMODE(Path(f"{db}{name}").stat().st_mode)
                for name in ("", "-wal", "-shm", ".lock")
            }
    finally:
        os.umask(before)

    assert len(secret) == 64  # made for this run
    assert GATEWAY_SECRET not in settings(db)
    assert secret not in db.read_bytes().decode("latin-1")
    assert set(modes.values()) == {0o600}, modes


async def test_a_gateway_secret_an_earlier_version_stored_is_deleted_at_start(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shop.db"
    options = ServeOptions(db=str(db), port=0, sandbox=True)
    async with running(options, announce=lambda token: None):
        pass
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (GATEWAY_SECRET, "old"))

    async with running(options, announce=lambda token: None) as server:
        assert server.shop._gateway_secret != "old"

    assert GATEWAY_SECRET not in settings(db)
