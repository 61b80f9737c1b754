"""The demo fills a fresh database whole, or leaves none: a half-filled one (a full disk cut
it) holds users whose tokens were never printed, and refused the next demo for ever."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from shopkeep.cli import main
from shopkeep.demo import fill
from shopkeep.shop import Shop
from shopkeep.store.errors import CommitFailed


@pytest.mark.parametrize("given", ["nothing", "an empty file"])
async def test_a_demo_a_full_disk_cut_leaves_no_database_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    async def full(*args: Any, **kwargs: Any) -> Any:
        raise CommitFailed("commit failed: database or disk is full")

    monkeypatch.setattr(Shop, "create_coupon", full)  # after the users and goods were made
    db = tmp_path / "shop.db"
    if given == "an empty file":
        db.touch()  # it was left half filled: not fresh to the next demo

    with pytest.raises(CommitFailed):
        await fill(str(db))

    left = sorted(path.name for path in tmp_path.iterdir())
    if given == "an empty file":
        assert left == ["shop.db", "shop.db.lock"] and db.stat().st_size == 0
    else:
        assert left == ["shop.db.lock"]
    monkeypatch.undo()
    assert "admin token" in (await fill(str(db))).lower()  # and the next demo fills it


def test_a_demo_sqlite_refused_as_the_shop_opened_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a disk full as the shop kept its currency: SQLite's own error, a traceback and exit 1
    async def full(db: str, **options: Any) -> str:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr("shopkeep.demo.fill", full)

    status = main(["demo", "--db", str(tmp_path / "shop.db")])

    [line] = capsys.readouterr().err.splitlines()
    assert status == 2
    assert line.endswith("database or disk is full") and "error:" in line


def test_a_demo_in_yen_is_a_shop_in_yen_and_says_its_amounts_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # demo made every shop in yuan, which serve --currency JPY then refused to open
    db = tmp_path / "shop.db"
    monkeypatch.setenv("SHOPKEEP_CURRENCY", "jpy")

    assert main(["demo", "--db", str(db)]) == 0

    printed = capsys.readouterr().out
    assert f"demo shop in {db} (JPY)" in printed
    assert "price    1200" in printed and "12.00" not in printed  # the tea, in whole yen
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM settings WHERE key = 'currency'").fetchone() == (
            "JPY",
        )


def test_a_demo_takes_the_admin_token_from_a_file_and_generates_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text("demo-admin-token-0123456789\n")

    db = str(tmp_path / "shop.db")
    status = main(["demo", "--db", db, "--admin-token-file", str(token_file)])

    out = capsys.readouterr().out
    assert status == 0
    assert "admin token: the one you configured" in out
    assert "demo-admin-token-0123456789" not in out



@pytest.mark.parametrize(
    ("level", "said"), [("warning", True), ("error", False)], ids=["warning", "error"]
)
def test_a_token_file_others_may_read_is_said_in_the_logs_as_they_are_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], level: str, said: bool
) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text("demo-admin-token-0123456789\n")
    token_file.chmod(0o644)
    db = str(tmp_path / "shop.db")

    status = main(
        ["demo", "--db", db, "--admin-token-file", str(token_file), "--log-format", "json",
         "--log-level", level]
    )  # fmt: skip

    printed = capsys.readouterr()
    assert status == 0
    assert "secret_file_not_private" not in printed.out  # the tokens a script reads
    assert ('"event":"secret_file_not_private"' in printed.err) is said
