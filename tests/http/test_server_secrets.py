"""What a server keeps of its secrets: the admin token as a hash, the gateway secret nowhere
(a generated one lives in memory only), in files that only their owner can read."""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import structlog

from shopkeep.credentials import ADMIN_TOKEN_HASH, GATEWAY_SECRET, Credentials
from shopkeep.http.server import ServeOptions, StartupError, open_credentials, running
from shopkeep.opening import CurrencyMismatch
from shopkeep.payments.settings import ProviderSettings
from shopkeep.shop import Shop
from shopkeep.shop_accounts import hash_token


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


async def test_a_configured_admin_token_retires_the_generated_one_for_good(
    tmp_path: Path,
) -> None:
    # the generated token leaked: the operator configures one; dropped again later, the
    # leaked one came back into force, silently
    db, shown = tmp_path / "shop.db", list[str]()
    options = ServeOptions(db=str(db), port=0, sandbox=True)
    async with running(options, announce=shown.append):
        pass
    configured = ServeOptions(db=str(db), port=0, sandbox=True, admin_token="c" * 32)
    async with running(configured, announce=shown.append):
        pass
    assert ADMIN_TOKEN_HASH not in settings(db)

    async with running(options, announce=shown.append):
        pass

    leaked, fresh = shown
    assert leaked != fresh
    assert settings(db)[ADMIN_TOKEN_HASH] == hash_token(fresh)


async def test_a_refused_start_with_an_admin_token_leaves_the_generated_one_in_force(
    tmp_path: Path,
) -> None:
    # refused once the database was open (another currency), it had retired it all the same
    db, shown = tmp_path / "shop.db", list[str]()
    async with running(ServeOptions(db=str(db), port=0, sandbox=True), announce=shown.append):
        pass
    in_dollars = ServeOptions(
        db=str(db), port=0, sandbox=True, admin_token="c" * 32,
        payments=ProviderSettings(currency="USD"),
    )
    async with Shop.open(str(db), gateway="sandbox"):
        pass  # a shop in CNY from its first start: USD is refused
    with pytest.raises(CurrencyMismatch):
        async with running(in_dollars, announce=shown.append):
            pass  # never reached

    assert settings(db)[ADMIN_TOKEN_HASH] == hash_token(shown[0])


async def test_a_first_start_that_cannot_listen_shows_no_token_and_the_next_start_shows_one(
    tmp_path: Path,
) -> None:
    # printed, then the start failing, the token would be lost to an operator reading the
    # error, and the next start would print none
    shown: list[str] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = ServeOptions(db=str(tmp_path / "shop.db"), port=port, sandbox=True)
        with pytest.raises(StartupError, match="cannot listen"):
            async with running(busy, announce=shown.append):
                pass  # never reached
    assert shown == []
    assert not (tmp_path / "shop.db").exists()  # no token made: the address was tried first

    options = ServeOptions(db=str(tmp_path / "shop.db"), port=0, sandbox=True)
    async with running(options, announce=shown.append) as server:
        assert len(shown) == 1
        assert server.shop is not None
    assert settings(tmp_path / "shop.db")[ADMIN_TOKEN_HASH] == hash_token(shown[0])


async def start_failing_once_open(db: Path) -> list[str]:
    """Start a server on a shop in CNY without an admin token, in dollars: it makes a token,
    then fails once the database is open; the tokens it announced."""
    async with Shop.open(str(db), gateway="sandbox"):
        pass
    shown: list[str] = []
    in_dollars = ServeOptions(
        db=str(db), port=0, sandbox=True, payments=ProviderSettings(currency="USD")
    )
    with pytest.raises(CurrencyMismatch):
        async with running(in_dollars, announce=shown.append):
            pass  # never reached
    return shown


async def test_a_start_that_fails_once_the_database_is_open_forgets_the_token_it_made(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shop.db"
    assert await start_failing_once_open(db) == []
    assert ADMIN_TOKEN_HASH not in settings(db)


async def test_a_token_announced_by_a_start_stays_when_that_server_fails_later(
    tmp_path: Path,
) -> None:
    shown: list[str] = []
    options = ServeOptions(db=str(tmp_path / "shop.db"), port=0, sandbox=True)
    with pytest.raises(RuntimeError, match="the block failed"):
        async with running(options, announce=shown.append):
            raise RuntimeError("the block failed")
    assert len(shown) == 1
    assert settings(tmp_path / "shop.db")[ADMIN_TOKEN_HASH] == hash_token(shown[0])


async def user_created_status(url: str, admin_token: str) -> int:
    """The status of a user's creation at the server ``url`` with ``admin_token``."""
    bearer = {"Authorization": f"Bearer {admin_token}"}
    made = aiohttp.request("POST", f"{url}/v1/users", json={"name": "ann"}, headers=bearer)
    async with made as answer:
        return answer.status


async def test_a_token_the_database_cannot_keep_is_announced_and_serves_until_the_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a disk that filled up meanwhile: the server runs, its token works, and the log says
    # the next start prints another
    async def full(*args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr("shopkeep.http.server.put_in_force", full)
    db, shown = tmp_path / "shop.db", list[str]()
    options = ServeOptions(db=str(db), port=0, sandbox=True)
    with structlog.testing.capture_logs() as logs:
        async with running(options, announce=shown.append) as server:
            assert await user_created_status(server.url, shown[0]) == 201
    assert [line["event"] for line in logs if line["log_level"] == "warning"] == [
        "admin_token_not_kept"
    ]
    assert ADMIN_TOKEN_HASH not in settings(db)


async def test_a_start_killed_before_it_listens_keeps_no_token_and_retires_none(
    tmp_path: Path,
) -> None:
    # a SIGKILL has no undo: a first start killed between keeping its token's hash and
    # printing the token left a token nobody had seen, the admin API locked for good
    db, shown = tmp_path / "shop.db", list[str]()
    options = ServeOptions(db=str(db), port=0, sandbox=True)
    await open_credentials(options)  # all a start does before it opens the shop: then killed
    assert ADMIN_TOKEN_HASH not in settings(db)
    async with running(options, announce=shown.append):
        pass
    [generated] = shown
    await open_credentials(replace(options, admin_token="c" * 32))  # killed likewise

    assert settings(db)[ADMIN_TOKEN_HASH] == hash_token(generated)


async def test_a_start_that_ran_while_another_started_gives_way_to_the_token_announced_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one start read the settings, another ran whole meanwhile (announcing its token), then
    # the first listened and announced its own, kept by INSERT OR IGNORE: never, so the
    # token its operator last saw answered 401 after a restart, and none was printed
    db, shown = tmp_path / "shop.db", list[str]()
    options = ServeOptions(db=str(db), port=0, sandbox=True)
    slow = await open_credentials(options)
    async with running(options, announce=shown.append):
        pass
    monkeypatch.setattr("shopkeep.http.server.open_credentials", lambda *_: _settled(slow))
    with structlog.testing.capture_logs() as logs:
        async with running(options, announce=shown.append):
            pass

    first, last = shown
    assert last == slow.new_admin_token != first
    assert settings(db)[ADMIN_TOKEN_HASH] == hash_token(last)
    assert "admin_token_replaced" in [line["event"] for line in logs]


async def _settled(credentials: Credentials) -> Credentials:
    return credentials
