"""Addresses, envelopes, and the per-message context variables.

An envelope carries one message through a mailbox with what the runtime needs to answer it:
the reply future (asks), the chain of actors waiting on this ask (cycle detection), the trace id
of the request that caused it (log context travels in the envelope, not in the sender's task),
and, for timer fires and durable messages, what to delete when the handler's unit commits.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any, NamedTuple


class Address(NamedTuple):
    """Who a message is for: an actor kind and an id. Nobody holds actor objects."""

    kind: str
    id: int


TimerKey = tuple[str, int, str]
"""(actor kind, actor id, timer name): one armed timer per key."""


class TimerFire(NamedTuple):
    """What a timer-fire envelope must delete on success: the row of this arming."""

    key: TimerKey
    seq: int
    due_at: float


current_trace: ContextVar[str | None] = ContextVar("shopkeep_trace", default=None)
"""The trace (request) id of the request being served, set by whoever takes requests in;
messages carry it in their envelopes from there on."""

current_scope: ContextVar[tuple[Address, Envelope] | None] = ContextVar(
    "shopkeep_scope", default=None
)
"""The actor and the envelope being handled in this task, or ``None`` outside any handler.
One variable, set once per message: it is on the hot path."""


def message_context() -> tuple[Address | None, str | None]:
    """The actor being handled here (if any) and the trace id in force: for log lines."""
    scope = current_scope.get()
    if scope is None:
        return None, current_trace.get()
    return scope[0], scope[1].trace


class Envelope:
    """One message in a mailbox, and how to answer it."""

    __slots__ = (
        "answer_waits", "caller", "chain", "handled", "message", "outbox_id", "reply", "timer",
        "trace",
    )

    def __init__(
        self,
        message: Any,
        reply: asyncio.Future[Any] | None,
        chain: tuple[Address, ...] = (),
        trace: str | None = None,
        timer: TimerFire | None = None,
        outbox_id: int | None = None,
    ) -> None:
        self.message = message
        self.reply = reply
        self.chain = chain
        self.trace = trace
        self.timer = timer
        self.outbox_id = outbox_id
        self.handled = False  # the handler ran; only the commit of its unit is awaited
        self.caller: Any = None  # the asking actor's Context, for an ask made by a handler
        # the answer waits for a commit: the message stays in flight until it is given
        self.answer_waits = False

    def resolve(self, value: Any) -> None:
        """Answer with ``value`` (no effect for tells or answers already given)."""
        reply = self.reply
        if reply is not None and not reply.done():
            reply.set_result(value)

    def fail(self, error: BaseException) -> None:
        """Answer with ``error`` (no effect for tells or answers already given)."""
        reply = self.reply
        if reply is not None and not reply.done():
            reply.set_exception(error)
