"""Idempotency-Keys at the embedded API's edge: the key a caller gives, and one request at a
time under each key.

The rules (what binds a key, what a replay answers) are ``actors/key_rules.py``; the record
is kept by the actor that does the work (``actors/key_store.py``). Here:

- :class:`IdempotencyKey`: a key, checked (SPEC 7: printable ASCII, 1 to 255 characters), and
  after the call whether its answer was the first answer again (HTTP says so with
  ``Idempotent-Replayed: true``). A plain ``str`` is taken wherever a key is.
- :class:`InFlight`: two requests under one key of one principal never run at once: the second
  waits for the first's answer, then finds its record (a replay) or none (the first did nothing;
  it runs afresh). Without it, the same key sent at the same moment to two different actors
  would each see it free.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shopkeep.requests import check_key


class IdempotencyKey:
    """An Idempotency-Key given to a :class:`~shopkeep.shop.Shop` operation.

    ``replayed`` is set by the operation: True when its answer is the first answer to the same
    request under this key, given again with nothing done again.
    """

    __slots__ = ("replayed", "value")

    def __init__(self, value: str) -> None:
        self.value = check_key(value)
        self.replayed = False

    def __repr__(self) -> str:
        return f"IdempotencyKey({self.value!r}, replayed={self.replayed})"


def key_of(given: str | IdempotencyKey | None) -> IdempotencyKey | None:
    """``given`` as an IdempotencyKey (checked: ShopError validation_error), or None."""
    if given is None or isinstance(given, IdempotencyKey):
        return given
    return IdempotencyKey(given)


class InFlight:
    """The (principal, key) pairs whose request is running, each with the requests waiting for
    it. Entries live only while a request holds or waits: memory is bounded by the requests in
    flight."""

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[tuple[int, str], tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, principal: int, key: str) -> AsyncIterator[None]:
        """Run the block alone under ``key`` of ``principal``."""
        scope = (principal, key)
        entry = self._locks.get(scope)
        if entry is None:
            entry = self._locks[scope] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[scope]

    def __len__(self) -> int:
        return len(self._locks)
