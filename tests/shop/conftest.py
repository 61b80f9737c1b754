"""Fixtures: a Shop on a real SQLite file in tmp_path, on a virtual clock."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from shopkeep.actors.config import ShopConfig
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.runtime import Address, VirtualClock
from shopkeep.shop import Shop
from shopkeep.store.migrations import MIGRATIONS

SECRET = "test-gateway-secret"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def shop(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[Shop]:
    async with Shop.open(
        str(tmp_path / "shop.db"), gateway="sandbox", clock=clock, gateway_secret=SECRET
    ) as opened:
        yield opened


@pytest.fixture
async def saga_shop(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[Shop]:
    """A shop whose every placement takes the saga of asks (none is placed in one turn)."""
    config = ShopConfig(one_turn_placement=False)
    path = str(tmp_path / "saga.db")
    async with Shop.open(
        path, gateway="sandbox", clock=clock, gateway_secret=SECRET, config=config
    ) as opened:
        yield opened


def sandbox(shop: Shop) -> SandboxGateway:
    """The shop's in-process sandbox gateway."""
    assert isinstance(shop.gateway, SandboxGateway)
    return shop.gateway


async def settle(shop: Shop) -> None:
    """Wait until the shop is quiet: durable releases and refunds delivered and applied."""
    await shop.runtime.system.quiet()


async def mail_queued(shop: Shop, address: Address, within_s: float = 10.0) -> None:
    """Wait until a message waits in ``address``'s mailbox (behind the one it is handling).
    Nothing announces a message queued, so the loop is given turns until one is."""

    async def waiting() -> None:
        while True:
            cell = shop.runtime.system.registry.get(address)
            if cell is not None and cell.mailbox:
                return
            await asyncio.sleep(0)

    await asyncio.wait_for(waiting(), within_s)


async def assert_audit_ok(shop: Shop) -> None:
    """Every invariant of SPEC 6 holds."""
    report = await shop.audit()
    assert report.ok, [(c.name, c.detail) for c in report.checks if not c.ok]


def as_written_before_the_last_migration(path: Path | str) -> None:
    """Take ``path`` back to the schema the shopkeep before the last migration wrote: its
    version, without what the last migration made."""
    last = MIGRATIONS[-1]
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP INDEX refund_log_by_refund")  # all the last migration makes
        conn.execute(f"PRAGMA user_version = {last.version - 1}")
    assert "refund_log_by_refund" in last.sql


def schema_of(path: Path | str) -> tuple[int, bool]:
    """``path``'s schema version, and whether the last migration's index is there."""
    with closing(sqlite3.connect(path)) as conn:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        index = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'refund_log_by_refund'"
        ).fetchone()
    return version, index is not None
