"""A backup of a live shop is a consistent, checked copy, however busy the shop is."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from shopkeep.actors.config import ShopConfig
from shopkeep.backup import BackupError, backup
from shopkeep.shop import Shop

ORDERS = 400


async def place_orders(shop: Shop, user: int, goods: int, count: int) -> None:
    for _ in range(count):
        await shop.place_order(user, [(goods, 1)])


async def test_a_backup_taken_while_orders_are_placed_is_whole_and_audits_ok(
    tmp_path: Path,
) -> None:
    source, copy = str(tmp_path / "shop.db"), str(tmp_path / "copy.db")
    progress: list[tuple[int, int]] = []
    config = ShopConfig(max_unpaid_orders=ORDERS)  # these customers never pay
    async with Shop.open(source, gateway="sandbox", writer="process", config=config) as shop:
        users = [(await shop.create_user(f"u{n}")).user.id for n in range(8)]
        goods = (await shop.create_goods("tea", price=100, stock=10 * ORDERS)).id
        placing = asyncio.gather(
            *(place_orders(shop, user, goods, ORDERS // len(users)) for user in users)
        )
        # a step of one page and a pause after each: the shop commits many times meanwhile
        report = await asyncio.to_thread(
            backup, source, copy, pages_per_step=1, pause_s=0.001,
            progress=lambda done, total: progress.append((done, total)),
        )  # fmt: skip
        await placing
        placed_in_source = len((await shop.list_orders(limit=200)).items)

    assert report.ok and report.integrity == "ok"
    assert len(progress) > 1 and progress[-1][0] == progress[-1][1] == report.pages
    # one snapshot throughout: never restarted by the shop's commits (SQLite would start over)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert len({total for _, total in progress}) == 1
    copied = sqlite3.connect(copy).execute("SELECT count(*) FROM orders").fetchone()[0]
    assert 0 <= copied <= ORDERS and placed_in_source > 0
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600
    # one file: no partial copy left, nor a write-ahead log or shared memory of one
    assert sorted(p.name for p in tmp_path.glob("copy.db*")) == ["copy.db"]
    async with Shop.open(copy, gateway="sandbox") as restored:
        assert (await restored.audit()).ok


def test_a_backup_never_overwrites_a_file(tmp_path: Path) -> None:
    source, target = tmp_path / "shop.db", tmp_path / "taken.db"
    sqlite3.connect(source).close()
    target.write_text("precious")

    with pytest.raises(BackupError, match="exists already"):
        backup(str(source), str(target))

    assert target.read_text() == "precious"


def test_a_backup_leaves_a_partial_copy_it_did_not_write_alone(tmp_path: Path) -> None:
    source, target = tmp_path / "shop.db", tmp_path / "copy.db"
    sqlite3.connect(source).close()
    underway = tmp_path / "copy.db.partial"  # another backup's, still being written
    underway.write_text("another backup's pages")

    with pytest.raises(BackupError, match=r"copy\.db\.partial exists"):
        backup(str(source), str(target))

    assert underway.read_text() == "another backup's pages" and not target.exists()


def test_a_target_that_cannot_be_created_is_named_as_the_user_gave_it(tmp_path: Path) -> None:
    source = tmp_path / "shop.db"
    sqlite3.connect(source).close()

    with pytest.raises(BackupError) as refused:
        backup(str(source), "/proc/shopkeep-backup.db")

    assert "/proc/shopkeep-backup.db:" in str(refused.value)
    assert ".partial" not in str(refused.value)


def test_a_missing_database_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no such database file"):
        backup(str(tmp_path / "nothing.db"), str(tmp_path / "copy.db"))
    assert not (tmp_path / "copy.db.partial").exists()
