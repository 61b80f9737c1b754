"""GET /healthz: liveness, answered without a token and without touching the shop's actors or
database; 503 while the store is stuck at one commit, and every write refused meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any, cast

import pytest
from pytest_aiohttp import AiohttpClient
from structlog.testing import capture_logs

from shopkeep.actors.config import ShopConfig
from shopkeep.http import write_gate
from shopkeep.http.app import make_app
from shopkeep.http.config import HttpConfig
from shopkeep.http.errors import commit_failed_problem
from shopkeep.http.front_door import DOOR
from shopkeep.shop import Shop
from shopkeep.store import writer as writer_module
from shopkeep.store.errors import CommitFailed
from shopkeep.store.writer_process import WriterProcessDied
from tests.http.conftest import ADMIN, Api


class UnusableShop:
    """A shop with nothing in it but its rules (the app documents them as it is built) and its
    store's busy time: a handler that touched anything else would fail the test."""

    config = ShopConfig()
    runtime = None
    system = None
    reader = None

    def store_busy_s(self) -> float:
        return 0.0

    def store_refusal(self, within_s: float) -> str | None:
        return None


async def test_healthz_answers_ok_without_a_token_or_the_shop(
    aiohttp_client: AiohttpClient,
) -> None:
    app = make_app(cast(Shop, UnusableShop()), HttpConfig(admin_token="unused"))
    client = await aiohttp_client(app)

    response = await client.get("/healthz")

    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == {"status": "ok"}


async def test_healthz_answers_503_while_the_store_is_stuck_at_one_commit_and_writes_are_refused(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write_gate, "STALLED_AFTER_S", 0.0)  # any commit under way is "stuck"
    entered, release = threading.Event(), threading.Event()

    def stuck_disk(conn: object) -> None:
        entered.set()
        release.wait(10)

    held = asyncio.ensure_future(api.shop.runtime.store.writer.call(stuck_disk))
    assert await asyncio.to_thread(entered.wait, 10)
    with capture_logs() as logged:
        stalled = await api.call("GET", "/healthz", {})  # looks at the store: stalled
        refused = await api.call("POST", "/v1/users", ADMIN, {"name": "ann"})
        read = await api.call("GET", "/v1/goods", ADMIN)
        release.set()
        await held
        answering = await api.call("GET", "/healthz", {})  # looked at again: it answers

    assert stalled.status == 503
    assert stalled.body["code"] == "unavailable" and "its disk does not answer" in stalled.body[
        "detail"
    ]
    assert "Retry-After" in stalled.headers
    assert (refused.status, refused.body["code"]) == (503, "unavailable")
    assert "nothing was done" in refused.body["detail"] and "Retry-After" in refused.headers
    assert read.status == 200  # reads are served meanwhile
    assert answering.status == 200
    # the log says why writes were refused, and when they are taken again
    said = [(line["event"], line["log_level"]) for line in logged if "store" in line["event"]]
    assert said == [("store_stalled", "warning"), ("store_answering", "warning")]
    assert (await api.call("POST", "/v1/users", ADMIN, {"name": "ann"})).status == 201
    assert [user.name for user in (await api.shop.list_users()).items] == ["ann"]


async def test_a_running_app_looks_at_its_store_by_itself(
    aiohttp_client: AiohttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write_gate, "WATCH_S", 0.01)
    app = make_app(cast(Shop, UnusableShop()), HttpConfig(admin_token="unused"))
    gate, looked = app[DOOR].gate, asyncio.Event()
    watch = gate.watch_store

    def watched() -> float:
        looked.set()
        return watch()

    monkeypatch.setattr(gate, "watch_store", watched)
    await aiohttp_client(app)  # started: its door watches the store from now on

    await asyncio.wait_for(looked.wait(), 5)
    assert gate.store_stalled is False


def fill_up(conn: sqlite3.Connection) -> None:
    """The writer's database can grow no more: as full as a disk can be."""
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")


def make_room(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA max_page_count = 1073741823")


async def test_healthz_answers_503_while_the_store_refuses_writes_as_a_full_disk_does(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every write answered 503 while /healthz said ok, no metric counted it, and the log
    # had a warning a unit (9,000 in 50 s under load)
    monkeypatch.setattr(writer_module, "WRITING_AGAIN_AFTER_S", 0.0)  # the first commit ends it
    writer = api.shop.runtime.store.writer
    refused, healths = [], []
    with capture_logs() as logged:
        for run in range(2):  # each run of refusals said, its start and its end
            await writer.call(fill_up)
            for n in range(300):
                body = {"name": f"g{run}-{n}", "price": 1, "stock": 1}
                answer = await api.call("POST", "/v1/goods", ADMIN, body)
                if answer.status == 503:
                    refused.append(answer)
            healths.append(await api.call("GET", "/healthz", {}))
            await writer.call(make_room)
            tea = {"name": "tea", "price": 1, "stock": 1}
            assert (await api.call("POST", "/v1/goods", ADMIN, tea)).status == 201
            healths.append(await api.call("GET", "/healthz", {}))

    assert len(refused) >= 4  # the database filled up on the way, twice
    assert all(answer.body["code"] == "unavailable" for answer in refused)
    assert [health.status for health in healths] == [503, 200, 503, 200]
    assert "database or disk is full" in healths[0].body["detail"]
    # one line when each run began, one when it ended: no line a unit
    said = [line["event"] for line in logged if line["log_level"] == "warning"]
    assert said == ["store_refusing_writes", "store_writing_again"] * 2
    assert writer.stats.refused_units == len(refused)  # shopkeep_commit_refused_units_total


@pytest.mark.parametrize(
    ("method", "keyed", "said"),
    [
        ("GET", False, "could not answer it: a write before it could not be stored"),
        ("POST", True, "retry it under the same Idempotency-Key"),
        ("POST", False, "look before retrying it"),
    ],
)
def test_a_request_the_store_failed_is_told_what_that_means_for_it(
    method: str, keyed: bool, said: str
) -> None:
    # a read that waited behind a refused write was told "could not write it", and a write
    # without a key to retry "under the same Idempotency-Key"
    answer = commit_failed_problem(method, keyed)

    assert answer.status == 503
    assert answer.text is not None and said in answer.text


async def test_a_key_sent_to_a_route_that_reads_none_is_not_named_in_its_503(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a token's replacement reads no Idempotency-Key: its 503 told a caller who sent one to
    # retry under it, as if it were kept
    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise CommitFailed("commit failed: database or disk is full")

    monkeypatch.setattr(api.shop, "replace_token", refused)
    user = await api.customer()
    keyed = {**ADMIN, "Idempotency-Key": "again-1"}

    answer = await api.call("POST", f"/v1/users/{user.id}/token", keyed)

    assert answer.status == 503
    assert answer.body["detail"].endswith("look before retrying it")


def test_a_write_the_store_refused_for_its_own_sake_says_why() -> None:
    # the database file moved under the server: every write refused, and only /healthz said why
    cause = sqlite3.OperationalError("the database file shop.db is no longer there")
    answer = commit_failed_problem("POST", True, CommitFailed("commit failed", cause))

    assert answer.text is not None and "shop.db is no longer there" in answer.text
    assert "nothing of it was kept" in answer.text  # it said "it may be done in part"


def test_a_write_whose_writer_process_died_may_have_been_kept() -> None:
    died = WriterProcessDied("the writer process ended in the middle of a batch")
    answer = commit_failed_problem("POST", True, CommitFailed("commit failed", died))

    assert answer.text is not None and "it may not be done, or be done in part" in answer.text
    never = WriterProcessDied("cannot start the writer process: no memory", batch_sent=False)
    answer = commit_failed_problem("POST", True, CommitFailed("commit failed", never))
    assert answer.text is not None and "nothing of it was kept" in answer.text
