"""Durable timers (reminders): rows in the database, a window of them in memory.

A timer is armed or canceled in the same unit of work as the state change that causes it (see
``Context.arm_timer``). When it falls due, it never runs code: it enqueues its message into the
actor's mailbox, behind whatever is there. The handler's unit deletes the row, so a fire is
handled exactly once in effect: a crash before that commit leaves the row, and it fires again
after restart, to an actor whose state (reloaded from the store) does not have the effect yet.

Memory is bounded however many timers are pending: only the earliest (``timer_page_size`` to
twice that) are in memory (the *window*, up to ``horizon``); the rest wait in the database,
ordered by (due, seq), and are read a page at a time as the window empties. Pages are read
through the writer (between batches), so a page sees every unit submitted before it, and the
arms and cancels submitted while it is being read are replayed on top of it.

Staleness: each arming has a unique ``seq``. A fire carries it, and is dropped when the actor has
since canceled or re-armed that timer. Overdue timers (after a restart) fire at most
``timer_max_fire_rate`` per second, so a long outage does not flood the mailboxes.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import sqlite3
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from shopkeep.runtime.backoff import doubling_delay
from shopkeep.runtime.clock import Cancellable
from shopkeep.runtime.envelope import Address, Envelope, TimerFire, TimerKey
from shopkeep.runtime.errors import MessageFailed, Overloaded
from shopkeep.store.errors import CommitFailed
from shopkeep.tally import Tally

if TYPE_CHECKING:
    from shopkeep.runtime.system import ActorSystem

log = structlog.get_logger("shopkeep.runtime.timers")

ARM_TIMER_SQL = (
    "INSERT OR REPLACE INTO timers (kind, actor_id, name, due_at, seq, payload) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
CANCEL_TIMER_SQL = "DELETE FROM timers WHERE kind = ? AND actor_id = ? AND name = ?"
FIRE_DONE_SQL = "DELETE FROM timers WHERE kind = ? AND actor_id = ? AND name = ? AND seq = ?"
PAGE_SQL = (
    "SELECT kind, actor_id, name, due_at, seq, payload FROM timers "
    "WHERE (due_at, seq) > (?, ?) ORDER BY due_at, seq LIMIT ?"
)


def armed_later(kind: str, id_column: str, name: str) -> str:
    """An SQL condition on a row whose actor is of ``kind``, its id in ``id_column``: true when
    its timer ``name`` is armed for later than the one parameter the condition takes (now).
    For a backup sweep that leaves alone what a timer of the actor's will see to."""
    return (
        f"EXISTS (SELECT 1 FROM timers WHERE kind = '{kind}' AND actor_id = {id_column} "
        f"AND name = '{name}' AND due_at > ?)"
    )


RETRY_S = 0.05
REFUSED_MOST_S = 5.0
"""The longest pause of every fire while the store refuses the fires' units for its own sake
(a full disk): each refusal doubles it from :data:`RETRY_S`, a handled fire ends it. Without
it, every overdue timer fired again at each reload of the window, each a few milliseconds
(hundreds of refused commits a second a timer)."""
LATENESS_KEPT = 16_384
"""Lateness samples kept, the latest (the runtime bench fires 10,000 timers and reads them all).
100,000 would take half an hour of a soak's timeouts to fill, the server growing meanwhile."""
LATENESS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0,
    3600.0,
)  # fmt: skip
"""Bounds of the lateness histogram, seconds: a fire on time is late by a loop turn; one
overdue after a restart by as long as the process was down."""
_BEFORE_ALL = (-math.inf, -1)


class _Armed:
    __slots__ = ("due_at", "message", "seq")

    def __init__(self, due_at: float, seq: int, message: Any) -> None:
        self.due_at = due_at
        self.seq = seq
        self.message = message  # the message, or its stored bytes until first fired


class TimerService:
    """Keeps the window of due-soonest timers and delivers them as messages."""

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
        self._armed: dict[TimerKey, _Armed] = {}
        self._heap: list[tuple[float, int, TimerKey]] = []
        self._horizon: tuple[float, int] = _BEFORE_ALL
        self._complete = False  # every pending timer is in the window
        self._replay: list[tuple[TimerKey, float, int, Any] | tuple[TimerKey, None]] | None = None
        self._wake: Cancellable | None = None
        self._wake_at = math.inf
        self._tokens = 0.0
        self._tokens_at = 0.0
        self._refused = 0  # fires the store refused in a row
        self._paused_until = -math.inf  # no fire before (the clock's time), see REFUSED_MOST_S
        self._running = False
        self._load_task: asyncio.Task[None] | None = None
        self._epoch = 0  # bumped by resync and trim: a page read before it is stale
        self.lateness: deque[float] = deque(maxlen=LATENESS_KEPT)
        self.lateness_s = Tally(LATENESS_BUCKETS)
        """Every fire's lateness since start, for the metrics' histogram."""
        self.fired = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the first page and begin delivering."""
        self._running = True
        self._tokens_at = self._system.clock.now()
        self._tokens = self._burst
        await self._load_page()

    def stop(self) -> None:
        """Deliver no more fires and read no more pages (one being read is dropped); pending
        timers stay in the database."""
        self._running = False
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        if self._load_task is not None:
            self._load_task.cancel()

    def resync(self) -> None:
        """Forget the window and read it again (after a failed commit undid some arms)."""
        self._epoch += 1
        self._armed.clear()
        self._heap.clear()
        self._horizon = _BEFORE_ALL
        self._complete = False
        self._schedule_load()

    # -- arms and cancels (called when a unit is submitted) -------------------------------------

    def apply(self, ops: list[tuple[TimerKey, float, int, Any] | tuple[TimerKey, None]]) -> None:
        """Apply the arms and cancels of a unit of work just submitted, in order."""
        if not ops:
            return
        if self._replay is not None:
            self._replay.extend(ops)
        for op in ops:
            self._apply(op)
        self._reschedule()

    def _apply(self, op: tuple[TimerKey, float, int, Any] | tuple[TimerKey, None]) -> None:
        key = op[0]
        self._armed.pop(key, None)
        if len(op) == 4:
            _, due_at, seq, message = op
            if self._complete or (due_at, seq) <= self._horizon:
                self._armed[key] = _Armed(due_at, seq, message)
                heapq.heappush(self._heap, (due_at, seq, key))
                if len(self._heap) > 2 * self._system.config.timer_page_size:
                    self._trim()

    def _trim(self) -> None:
        """Keep only the earliest page in memory; the rest are safe in the database. The heap
        loses its stale entries (of timers canceled or re-armed) on the way.

        Every armed timer is in a submitted unit, and pages are read through the writer after
        all submitted units, so a timer dropped here is found again when its page is read.

        It runs on the loop, in the turn of the arm that overfilled the heap (every
        ``timer_page_size`` arms or so), so it sorts the
        heap's tuples, compared in C, and walks them once. With pages of 4096, sorting the
        timers by a key function and then filtering the heap took 20-26 ms of the loop's
        time here, and this way 10 ms; with pages of 1024 (the default), 1-2 ms.
        """
        page_size = self._system.config.timer_page_size
        armed = self._armed
        heap: list[tuple[float, int, TimerKey]] = []  # a sorted list is a heap
        horizon: tuple[float, int] | None = None
        for entry in sorted(self._heap):
            _, seq, key = entry
            timer = armed.get(key)
            if timer is None or timer.seq != seq:
                continue  # canceled or re-armed: a stale entry
            if horizon is None:
                heap.append(entry)
                if len(heap) == page_size:
                    horizon = (entry[0], entry[1])
            elif (timer.due_at, timer.seq) <= horizon:
                heap.append(entry)  # a retried fire: its entry is later than its due time
            else:
                del armed[key]  # by its own (due, seq), as its row is read back by
        self._heap = heap
        if horizon is not None:  # else fewer than a page are waiting: nothing to drop
            self._epoch += 1  # a page being read was read from the old horizon: read it again
            self._horizon = horizon
            self._complete = False

    def is_current(self, fire: TimerFire) -> bool:
        """Whether ``fire`` is still the armed timer of its key (not canceled or re-armed)."""
        armed = self._armed.get(fire.key)
        return armed is not None and armed.seq == fire.seq

    def consumed(self, fire: TimerFire) -> None:
        """The handler of ``fire`` submitted its unit (which deletes the row)."""
        armed = self._armed.get(fire.key)
        if armed is not None and armed.seq == fire.seq:
            del self._armed[fire.key]
        if self._replay is not None:
            # a page being read (after a resync, say, which forgot the window) may have been
            # read before that delete: to the page, the fire is a cancel, or the timer would
            # come back from it and fire a second time
            self._replay.append((fire.key, None))

    def record_lateness(self, seconds: float) -> None:
        """Record how late a fire was handled, in seconds after its due time."""
        self.lateness.append(seconds)
        self.lateness_s.observe(seconds)
        self.fired += 1

    @property
    def _burst(self) -> float:
        # a tenth of a second's worth of fires may go at once
        return self._system.config.timer_max_fire_rate / 10 + 1

    @property
    def pending_in_memory(self) -> int:
        """Timers in the in-memory window."""
        return len(self._armed)

    # -- paging ---------------------------------------------------------------------------------

    def _schedule_load(self) -> None:
        if not self._running:  # a resync of the shutdown's last commits: start reads anew
            return
        if self._load_task is None or self._load_task.done():
            self._load_task = asyncio.get_running_loop().create_task(self._load_page())

    async def _load_page(self) -> None:
        system = self._system
        page_size = system.config.timer_page_size
        while True:
            epoch = self._epoch
            after = self._horizon
            self._replay = []
            try:
                rows = await system.store.writer.call(
                    partial(_read_page, after=after, limit=page_size)
                )
            except Exception:
                log.exception("timer_page_failed")
                self._replay = None
                system.clock.call_later(1.0, self._schedule_load)
                return
            replay, self._replay = self._replay, None
            if epoch == self._epoch:
                break
            # a resync (a commit failed: this page may hold arms that never reached the disk)
            # or a trim (the horizon moved back) happened while reading: read again from the
            # horizon as it is now, in this same task
        for kind, actor_id, name, due_at, seq, payload in rows:
            key = (kind, actor_id, name)
            if key not in self._armed:
                self._armed[key] = _Armed(due_at, seq, bytes(payload))
                heapq.heappush(self._heap, (due_at, seq, key))
        if len(rows) < page_size:
            self._complete = True
        else:
            self._horizon = (rows[-1][3], rows[-1][4])
        for op in replay:
            self._apply(op)
        self._reschedule()

    # -- firing ---------------------------------------------------------------------------------

    def _reschedule(self) -> None:
        if not self._running:
            return
        heap = self._heap
        if not self._complete and len(heap) < self._system.config.timer_page_size // 4:
            self._schedule_load()
        if not heap:
            return
        when = max(heap[0][0], self._paused_until)
        if when < self._wake_at:
            if self._wake is not None:
                self._wake.cancel()
            self._wake_at = when
            self._wake = self._system.clock.call_at(when, self._on_wake)

    def _on_wake(self) -> None:
        self._wake = None
        self._wake_at = math.inf
        if not self._running:
            return
        clock = self._system.clock
        now = clock.now()
        if now < self._paused_until:
            self._reschedule()
            return
        rate = self._system.config.timer_max_fire_rate
        # a wall clock stepped back refills nothing: its negative time emptied the bucket by
        # the step's worth, and the loop spun a wake every 1/rate s, firing nothing, as long
        elapsed = now - self._tokens_at
        if elapsed > 0:
            self._tokens = min(self._burst, self._tokens + elapsed * rate)
        self._tokens_at = now
        heap = self._heap
        while heap and heap[0][0] <= now:
            if self._tokens < 1:
                self._wake_at = now + 1 / rate
                self._wake = clock.call_at(self._wake_at, self._on_wake)
                return
            _, seq, key = heapq.heappop(heap)
            armed = self._armed.get(key)
            if armed is None or armed.seq != seq:
                continue  # canceled or re-armed: a stale heap entry
            self._tokens -= 1
            self._fire(key, armed)
        self._reschedule()

    def _fire(self, key: TimerKey, armed: _Armed) -> None:
        system = self._system
        message = armed.message
        if isinstance(message, bytes):
            try:
                message = armed.message = system.decode(key[0], message)
            except Exception:
                # cannot be delivered by this program: leave the row for one that can
                log.exception("timer_undecodable", key=key)
                del self._armed[key]
                return
        assert system._loop is not None
        reply: asyncio.Future[Any] = system._loop.create_future()
        fire = TimerFire(key, armed.seq, armed.due_at)
        envelope = Envelope(message, reply, timer=fire)
        try:
            system.deliver(Address(key[0], key[1]), envelope)
        except Overloaded:
            self._retry(key, armed.seq)
            return
        except Exception:
            log.exception("timer_fire_failed", key=key)
            self._retry(key, armed.seq)
            return
        reply.add_done_callback(lambda f: self._fired(key, armed.seq, f))

    def _fired(self, key: TimerKey, seq: int, reply: asyncio.Future[Any]) -> None:
        if reply.cancelled():
            self._retry(key, seq)
            return
        error = reply.exception()
        if error is None or (isinstance(error, MessageFailed) and error.dead_lettered):
            self._refused = 0
            return  # handled (or parked): the row is gone
        if isinstance(error, CommitFailed) and error.refused_by_store:
            # the store refuses writes (a full disk): every fire would fail alike
            self._refused += 1
            pause = doubling_delay(self._refused, RETRY_S, REFUSED_MOST_S)
            self._paused_until = self._system.clock.now() + pause
        self._retry(key, seq)  # not handled: still armed, try again shortly

    def _retry(self, key: TimerKey, seq: int) -> None:
        armed = self._armed.get(key)
        if armed is None or armed.seq != seq or not self._running:
            return
        heapq.heappush(self._heap, (self._system.clock.now() + RETRY_S, seq, key))
        self._reschedule()


def _read_page(
    conn: sqlite3.Connection, *, after: tuple[float, int], limit: int
) -> list[tuple[Any, ...]]:
    return conn.execute(PAGE_SQL, (after[0], after[1], limit)).fetchall()
