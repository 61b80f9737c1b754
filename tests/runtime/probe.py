"""A test actor whose every behaviour is driven by its messages, and what it saw.

``Probe`` keeps one integer in the ``probe`` table. Tests send it messages that add, read, fail,
arm timers, send durable messages, ask others, or wait for a gate the test opens; every message
it handles is appended to ``Probe.journal`` (a class-level list the test resets), so tests
assert the exact order of events.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from shopkeep.bootstrap import Runtime, open_runtime
from shopkeep.runtime import Actor, Address, Context, RuntimeConfig, VirtualClock, run_seeded
from shopkeep.runtime.actor import ActivationContext
from shopkeep.runtime.join import NotJoinable
from shopkeep.store import MIGRATIONS, Migration


class Add(msgspec.Struct, tag=True, frozen=True):
    n: int


class Get(msgspec.Struct, tag=True, frozen=True):
    pass


class Boom(msgspec.Struct, tag=True, frozen=True):
    """Add 1000 in memory only, then raise: a restart must forget the 1000. ``error``:
    "runtime" raises RuntimeError("boom"), "value" ValueError, anything else RuntimeError of
    that text."""

    error: str = "runtime"


class Arm(msgspec.Struct, tag=True, frozen=True):
    name: str
    delay: float
    n: int


class Disarm(msgspec.Struct, tag=True, frozen=True):
    name: str


class Fired(msgspec.Struct, tag=True, frozen=True):
    name: str
    n: int


class Send(msgspec.Struct, tag=True, frozen=True):
    """Send Add(n) durably to probe ``to`` (a poison Boom() when n < 0)."""

    to: int
    n: int


class AskOther(msgspec.Struct, tag=True, frozen=True):
    to: int
    message: Add | Get | AskOther


class Saga(msgspec.Struct, tag=True, frozen=True):
    """Write ``n`` and checkpoint, then ask probe ``to`` to add ``n``, then fail or not."""

    to: int
    n: int
    fail: bool = False


class Audit(msgspec.Struct, tag=True, frozen=True):
    """Write ``n``, then read back this probe's row with a read-your-writes query."""

    n: int


class Wait(msgspec.Struct, tag=True, frozen=True):
    """Wait for the gate ``Probe.gates[gate]`` to open (a test-controlled event)."""

    gate: str


class Join(msgspec.Struct, tag=True, frozen=True):
    """Add ``n`` here and run probe ``to``'s handler for ``message`` in this turn; then fail or
    not. Answers what ``to`` answered."""

    to: int
    n: int
    message: Add | Get | Wait
    check: bool = False
    fail: bool = False


ProbeMessage = (
    Add | Get | Boom | Arm | Disarm | Fired | Send | AskOther | Wait | Saga | Audit | Join
)

PROBE_MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        len(MIGRATIONS) + 1,
        "probe",
        "CREATE TABLE probe (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)",
    ),
)

UPSERT = (
    "INSERT INTO probe (id, value) VALUES (?, ?) "
    "ON CONFLICT (id) DO UPDATE SET value = excluded.value"
)


class Probe(Actor):
    """The test actor. Class-level records are shared by all activations; reset them."""

    __slots__ = ("value",)
    kind = "probe"
    messages = ProbeMessage

    journal: ClassVar[list[tuple[int, Any]]] = []
    activations: ClassVar[list[int]] = []
    gates: ClassVar[dict[str, asyncio.Event]] = {}
    arrivals: ClassVar[dict[str, asyncio.Event]] = {}
    fail_activation: ClassVar[set[int]] = set()
    held_activation: ClassVar[set[int]] = set()
    """Ids whose loads arrive at ``load <id>`` and wait for the gate of that name."""
    nothing: ClassVar[set[int]] = set()
    """Ids that name nothing (``absent``), as an id never created does."""
    holding: ClassVar[set[int]] = set()
    """Ids whose activations keep in memory what they could not load again (``pinned``)."""
    on_receive: ClassVar[Callable[[], object] | None] = None

    @classmethod
    def reset(cls) -> None:
        cls.journal = []
        cls.activations = []
        cls.gates = {}
        cls.arrivals = {}
        cls.fail_activation = set()
        cls.held_activation = set()
        cls.nothing = set()
        cls.holding = set()

    async def on_activate(self, ctx: ActivationContext) -> None:
        if self.address.id in self.fail_activation:
            raise OSError("cannot load")
        if self.address.id in self.held_activation:
            name = f"load {self.address.id}"
            self.arrivals.setdefault(name, asyncio.Event()).set()
            await self.gates.setdefault(name, asyncio.Event()).wait()
        row = await ctx.reader.fetchone("SELECT value FROM probe WHERE id = ?", (self.address.id,))
        self.value = int(row[0]) if row else 0
        self.activations.append(self.address.id)

    @property
    def pinned(self) -> bool:
        return self.address.id in self.holding

    @property
    def absent(self) -> bool:
        return self.address.id in self.nothing

    def check(self, message: Any) -> Any:
        if isinstance(message, Get):
            return self.value
        raise NotJoinable(f"probes answer no check of {type(message).__name__}")

    async def receive(self, ctx: Context, message: Any) -> Any:
        self.journal.append((self.address.id, message))
        hook = Probe.on_receive  # read on the class: a plain function, not a method
        if hook is not None:
            hook()
        match message:
            case Fired(_, n) if n < 0:
                raise RuntimeError("a poison fire")
            case Add(n) | Fired(_, n):
                self.value += n
                ctx.execute(UPSERT, (self.address.id, self.value))
                return self.value
            case Get():
                return self.value
            case Boom(error):
                self.value += 1000
                if error == "value":
                    raise ValueError("bad value")
                raise RuntimeError("boom" if error == "runtime" else error)
            case Arm(name, delay, n):
                ctx.arm_timer(name, ctx.now() + delay, Fired(name, n))
                return None
            case Disarm(name):
                ctx.cancel_timer(name)
                return None
            case Send(to, n):
                ctx.send(Address("probe", to), Add(n) if n >= 0 else Boom())
                return None
            case AskOther(to, inner):
                return await ctx.ask(Address("probe", to), inner)
            case Saga(to, n, fail):
                self.value += n
                ctx.execute(UPSERT, (self.address.id, self.value))
                ctx.checkpoint()
                await ctx.ask(Address("probe", to), Add(n))
                if fail:
                    raise RuntimeError("the saga's next step failed")
                return self.value
            case Audit(n):
                self.value += n
                ctx.execute(UPSERT, (self.address.id, self.value))
                ctx.checkpoint()
                rows = await ctx.query("SELECT value FROM probe WHERE id = ?", (self.address.id,))
                return rows[0][0]
            case Join(to, n, inner, check, fail):
                self.value += n
                ctx.execute(UPSERT, (self.address.id, self.value))
                answer = ctx.join(Address("probe", to), inner, check=check)
                if fail:
                    raise RuntimeError("the turn failed after its join")
                return answer
            case Wait(gate):
                self.arrivals.setdefault(gate, asyncio.Event()).set()
                await self.gates.setdefault(gate, asyncio.Event()).wait()
                return gate
        raise TypeError(f"unexpected message {message!r}")


def gate(name: str) -> asyncio.Event:
    """The gate ``name`` (open it with ``.set()``)."""
    return Probe.gates.setdefault(name, asyncio.Event())


async def arrival(name: str) -> None:
    """Wait until a probe is waiting at gate ``name``."""
    await Probe.arrivals.setdefault(name, asyncio.Event()).wait()


def open_all_gates() -> None:
    """Let every waiting probe go (so a runtime can drain and stop)."""
    for event in Probe.gates.values():
        event.set()


async def count_rows(runtime: Runtime, table: str) -> int:
    """Rows in ``table`` once everything submitted so far is committed."""
    await runtime.store.writer.flush()
    row = await runtime.store.reader.fetchone(f"SELECT count(*) FROM {table}")
    assert row is not None
    return int(row[0])


Work = Callable[[Runtime, VirtualClock], Awaitable[None]]


def journal_of_seeded_run(
    seed: int, work: Work, config: RuntimeConfig | None = None
) -> list[tuple[int, Any]]:
    """Run ``work`` on a fresh probe runtime in the seeded deterministic mode (virtual clock,
    inline store, shuffled ready queue) and return what the probes saw, in order."""

    async def main() -> list[tuple[int, Any]]:
        Probe.reset()
        clock = VirtualClock()
        with tempfile.TemporaryDirectory() as folder:
            async with open_runtime(
                str(Path(folder) / "seeded.db"),
                kinds=[Probe],
                migrations=PROBE_MIGRATIONS,
                clock=clock,
                inline=True,
                config=config,
            ) as runtime:
                await work(runtime, clock)
        return list(Probe.journal)

    return run_seeded(seed, main)


def probe(actor_id: int) -> Address:
    """The address of probe ``actor_id``."""
    return Address("probe", actor_id)
