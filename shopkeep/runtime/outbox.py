"""Durable messages between actors: the outbox, delivered at least once, applied once.

``Context.send`` writes the message to the ``outbox`` table in the sender's unit of work, so it
exists if and only if the sender's state change does. After that unit commits, the dispatcher
delivers it; the receiver's unit of work deletes the row (``CONSUME_SQL``), so applying the
message and recording that it was applied are one transaction. A delivery that fails (the actor
stopped, its commit failed, the system was full) is retried with back-off until it succeeds or
the receiver parks it as a dead letter; one whose receiver's commit SQLite keeps refusing for
what it writes (:data:`~shopkeep.store.errors.DATA_FAULTS`) is parked after
``outbox_fault_attempts`` tries. After a crash, the rows still in the table are exactly the
messages not yet applied, and they are delivered again at start; after a unit whose outcome is
unknown (it failed, but may have committed), the table is scanned again at once.

Memory is bounded: at most ``outbox_max_in_flight`` deliveries at once and
``outbox_max_backlog`` waiting in memory; beyond that, messages wait in the table only and are
read back in pages of the oldest first when the backlog drains.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from shopkeep.runtime.backoff import doubling_delay
from shopkeep.runtime.clock import Cancellable
from shopkeep.runtime.envelope import Address, Envelope
from shopkeep.runtime.errors import MessageFailed
from shopkeep.store.errors import CommitFailed

if TYPE_CHECKING:
    from shopkeep.runtime.system import ActorSystem

log = structlog.get_logger("shopkeep.runtime.outbox")

SEND_SQL = "INSERT INTO outbox (id, kind, actor_id, payload, created_at) VALUES (?, ?, ?, ?, ?)"
CONSUME_SQL = "DELETE FROM outbox WHERE id = ?"
PAGE_SQL = "SELECT id, kind, actor_id, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?"
def is_data_fault(error: BaseException) -> bool:
    """Whether a delivery failed because its receiver's commit refused what it writes."""
    return isinstance(error, CommitFailed) and error.of_data


class OutboxDispatcher:
    """Delivers committed outbox messages until their receivers have applied them."""

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
        self._backlog: deque[tuple[int, Address, Any]] = deque()
        self._known: set[int] = set()  # in the backlog, being delivered, or waiting to retry
        self._delivering = 0
        self._attempts: dict[int, int] = {}
        self._retries: dict[int, Cancellable] = {}
        self._spilled = False  # some committed messages are only in the table
        self._scan_after = 0
        self._scan_task: asyncio.Task[None] | None = None
        self._running = False
        self.delivered = 0
        self.redeliveries = 0

    async def start(self) -> None:
        """Begin delivering, starting with what a previous run left in the table."""
        self._running = True
        self._spilled = True
        await self._scan()

    def stop(self) -> None:
        """Start no more deliveries and drop a scan under way; what is left stays in the
        table for the next start."""
        self._running = False
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        if self._scan_task is not None:
            self._scan_task.cancel()

    @property
    def delivering(self) -> int:
        """Deliveries under way, or waiting in memory to start (not those waiting to retry),
        plus one while the table is being scanned for more."""
        scanning = self._scan_task is not None and not self._scan_task.done()
        return self._delivering + len(self._backlog) + scanning

    @property
    def backlog(self) -> int:
        """Messages committed but not yet applied, known to this process."""
        return len(self._known)

    def committed(self, message_id: int, to: Address, message: Any) -> None:
        """The unit holding this message committed: deliver it."""
        if message_id in self._known:
            return
        if len(self._backlog) >= self._system.config.outbox_max_backlog:
            self._spilled = True  # it is safe in the table; a scan will find it
            return
        self._known.add(message_id)
        self._backlog.append((message_id, to, message))
        self._pump()

    def rescan(self) -> None:
        """Read the table again: a unit failed whose outcome is unknown (the writer process
        died during its batch, which may have committed), and any message it committed would
        otherwise wait for the next start. Messages already known are not delivered twice."""
        if self._running:
            self._spilled = True
            self._pump()

    def _pump(self) -> None:
        limit = self._system.config.outbox_max_in_flight
        while self._running and self._backlog and self._delivering < limit:
            self._deliver(*self._backlog.popleft())
        scanning = self._scan_task is not None and not self._scan_task.done()
        if self._running and self._spilled and not self._backlog and not scanning:
            self._scan_task = asyncio.get_running_loop().create_task(self._scan())
            # a rescan asked for while this scan runs may come after the page it needed:
            # pump again once it is done, which scans again if one was asked for
            self._scan_task.add_done_callback(self._scanned)

    def _scanned(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox_scan_failed", error=repr(task.exception()))
            return  # the store is closing (or broken): the next start scans again
        self._pump()

    def _deliver(self, message_id: int, to: Address, message: Any) -> None:
        system = self._system
        assert system._loop is not None
        reply: asyncio.Future[Any] = system._loop.create_future()
        try:
            system.deliver(to, Envelope(message, reply, outbox_id=message_id))
        except Exception as exc:
            self._retry_later(message_id, to, message, exc)
            return
        self._delivering += 1
        reply.add_done_callback(lambda f: self._done(message_id, to, message, f))

    def _done(self, message_id: int, to: Address, message: Any, reply: asyncio.Future[Any]) -> None:
        self._delivering -= 1
        error = asyncio.CancelledError() if reply.cancelled() else reply.exception()
        if error is None or (isinstance(error, MessageFailed) and error.dead_lettered):
            self._known.discard(message_id)
            self._attempts.pop(message_id, None)
            self.delivered += 1
        else:
            self._retry_later(message_id, to, message, error)
        self._pump()

    def _retry_later(
        self, message_id: int, to: Address, message: Any, error: BaseException
    ) -> None:
        if not self._running:
            return  # it stays in the table
        config = self._system.config
        attempt = self._attempts.get(message_id, 0) + 1
        self._attempts[message_id] = attempt
        if attempt >= config.outbox_fault_attempts and is_data_fault(error):
            self._park(message_id, to, message, error, attempt)
            return
        delay = doubling_delay(attempt, config.outbox_retry_s, config.outbox_retry_max_s)
        self.redeliveries += 1
        log.info(
            "outbox_retry",
            message_id=message_id,
            to=f"{to.kind}:{to.id}",
            attempt=attempt,
            delay_s=delay,
            error=f"{type(error).__name__}: {error}",
        )

        def again() -> None:
            self._retries.pop(message_id, None)
            if self._running:
                self._backlog.appendleft((message_id, to, message))
                self._pump()

        self._retries[message_id] = self._system.clock.call_later(delay, again)

    def _park(
        self, message_id: int, to: Address, message: Any, error: BaseException, attempts: int
    ) -> None:
        """Park a message its receiver's commit keeps refusing (a dead letter, for a person;
        its row consumed with it); if the parking does not commit, it is tried again."""
        system = self._system
        assert system._loop is not None
        log.warning(
            "outbox_parked", message_id=message_id, to=f"{to.kind}:{to.id}", attempts=attempts,
            error=f"{type(error).__name__}: {error}",
        )  # fmt: skip
        reply: asyncio.Future[Any] = system._loop.create_future()
        self._delivering += 1
        reply.add_done_callback(lambda f: self._done(message_id, to, message, f))
        system.park_message(to, Envelope(message, reply, outbox_id=message_id), error, attempts)

    async def _scan(self) -> None:
        """Read messages that are only in the table (after a restart or a spill)."""
        system = self._system
        page = system.config.outbox_max_backlog // 2 or 1
        self._spilled = False
        after = 0
        while self._running:
            rows = await system.store.writer.call(partial(_read_page, after=after, limit=page))
            for message_id, kind, actor_id, payload in rows:
                if message_id in self._known:
                    continue
                try:
                    message = system.decode(kind, bytes(payload))
                except Exception:
                    log.exception("outbox_undecodable", message_id=message_id)
                    continue
                self._known.add(message_id)
                self._backlog.append((message_id, Address(kind, actor_id), message))
            self._pump()
            if len(rows) < page:
                return
            after = rows[-1][0]
            if len(self._backlog) >= system.config.outbox_max_backlog:
                self._spilled = True
                return


def _read_page(conn: sqlite3.Connection, *, after: int, limit: int) -> list[tuple[Any, ...]]:
    return conn.execute(PAGE_SQL, (after, limit)).fetchall()
