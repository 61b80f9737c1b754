"""The rules of Idempotency-Keys (SPEC 7), with no IO: what a key seen before answers, which
answers bind a key, and how long keys are kept.

A key belongs to a *principal*: the user whose token sent it, or :data:`ADMIN` for the admin
token; two principals never see each other's keys. Under one principal a key names one
request: the route and its path ids and body, hashed (:func:`request_hash`). The first request
under a key that *did something* binds the key, and its answer is recorded with it, in the
same unit of work as what it did (``key_store.run_keyed``): nothing can be done twice, even
across a crash, and the same request again answers the first answer as recorded (the Stripe
convention: when the resource changed since, the replay still shows it as it was then).

What does not bind: a request that did nothing because it was never carried out. A 503
(overloaded, unavailable: nothing was enqueued, or nothing was kept) and a placement that
failed interrupted (everything given back) leave the key free, and the retry runs afresh (SPEC
7); so does a validation error, which no actor acts on, and a conflict, whose key is another
request's already. Every other answer binds, a business refusal (409) or a 404 of the actor
that handled the request included: the same request again answers the same refusal, replayed,
even once the obstacle is gone (the Stripe convention; a new attempt takes a new key). A
placement refused by its checks in one turn binds its key to the order id it was given, which
names no order, with the refusal as the answer; a placement whose order was recorded before
it failed keeps that order, canceled placement_failed, and its key stays bound to it: the
refusal is answered again from the order (the saga), or the order as it was accepted, pending
(``?wait=false``, whose answer was that), except when it failed overloaded, unavailable or
interrupted (``shopkeep.placing`` binds the key to a new placement then).
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, TypeVar

import msgspec

from shopkeep.actors.placement import UNDONE_FAILURES
from shopkeep.actors.protocol import Keyed, Replayed
from shopkeep.refusals import IDEMPOTENCY_CONFLICT, VALIDATION_ERROR, Refusal
from shopkeep.runtime.join import NotJoinable

T = TypeVar("T")

ADMIN: Final = 0
"""The principal of the admin token (user ids are positive)."""
KEY_RETENTION_S: Final = 86_400.0
"""How long a key is kept at least (SPEC 7: 24 hours); older ones are pruned."""
KEY_SWEEP_S: Final = 3_600.0
"""How often the keys older than :data:`KEY_RETENTION_S` are pruned: a key lives 24 to 25
hours."""
KEY_SWEEP_BATCH: Final = 2_000
"""Keys deleted by one unit of work at most: a sweep after a long stop does not hold the
writer for one huge delete; a full batch sweeps again at once."""

NOT_BINDING: Final = UNDONE_FAILURES | {VALIDATION_ERROR, IDEMPOTENCY_CONFLICT}
"""The refusal codes that leave a key free (see the module)."""


class KeyUnknown(NotJoinable):
    """A placement's Idempotency-Key its user's memory cannot tell new or used: the order
    reads the keys' table, then joins again saying what it found (``BeginOrder.key_absent``);
    a key found there takes the saga, whose user reads it for the replay or the conflict."""


_encode = msgspec.msgpack.Encoder().encode
_decode_refusal = msgspec.msgpack.Decoder(Refusal).decode


class _Tag(msgspec.Struct, frozen=True, gc=False):
    """The tag of a kept answer: ``"Refusal"`` for a refusal, None for a view (no view has a
    field of that name)."""

    type: str | None = None


_decode_tag = msgspec.msgpack.Decoder(_Tag).decode


class KeptKey(msgspec.Struct, frozen=True, gc=False):
    """A key as recorded: its request, the order a placement bound it to, the first answer."""

    request_hash: str
    order_id: int | None
    answer: bytes | None
    created_at: float


def request_hash(*request: Any) -> str:
    """The identity of a request under a key: the SHA-256 of its parts (the operation's name,
    its path ids, its body's values), encoded as msgpack."""
    return hashlib.sha256(_encode(request)).hexdigest()


def conflict(key: str) -> Refusal:
    """The refusal of a key already bound to another request."""
    return Refusal(IDEMPOTENCY_CONFLICT, f"Idempotency-Key {key!r} was used for another request")


def replay(seen: KeptKey | None, keyed: Keyed) -> Replayed | Refusal | None:
    """What ``keyed`` answers given the key's record (``seen``; None: the key is free): its
    first answer again, the conflict, or None (handle the request)."""
    if seen is None:
        return None
    if seen.request_hash != keyed.request_hash or seen.answer is None:
        # a placement's key (no answer kept) is never another route's: the hashes differ
        return conflict(keyed.key)
    return Replayed(seen.answer)


def binds(answer: Any) -> bool:
    """Whether the key must keep ``answer``: any but a refusal in :data:`NOT_BINDING` (see
    the module)."""
    if isinstance(answer, Refusal):
        return answer.code not in NOT_BINDING
    return answer is not None


def encode_answer(answer: Any) -> bytes:
    """An answer as kept with its key (msgspec msgpack: the views are Structs, a refusal a
    tagged one)."""
    return _encode(answer)


def decode_answer(kept: bytes, kind: type[T]) -> T | Refusal:
    """A kept answer as it was given: the refusal, or else a ``kind``."""
    if _decode_tag(kept).type == Refusal.__struct_config__.tag:
        return _decode_refusal(kept)
    return msgspec.msgpack.decode(kept, type=kind)


def expired(created_at: float, now: float) -> bool:
    """Whether a key recorded at ``created_at`` may have been pruned by ``now``."""
    return created_at <= now - KEY_RETENTION_S
