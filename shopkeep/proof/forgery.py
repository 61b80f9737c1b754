"""Callbacks the shop must refuse: every way a forger (or a broken network) can get one wrong.

Each forgery starts from a genuine callback body and spoils one thing: a bit of the body, a
digit of the signature, the key, the timestamp, the amount, the payment, or the body's very
shape. Those that keep a valid signature (wrong amount, unknown payment, malformed) are what a
gateway bug or a stolen key would send; the others are what a forger without the key can do.
A callback that the shop accepts out of any of them is a *forged callback accepted*: the proof
groups count those, and the count must be zero.
"""

from __future__ import annotations

import random

import msgspec

from shopkeep.payments.provider import TOLERANCE_S, CallbackBody
from shopkeep.payments.signature import sign

FORGERIES = (
    "bit-flipped body",
    "bit-flipped signature",
    "wrong key",
    "stale timestamp",
    "future timestamp",
    "wrong amount",
    "unknown payment",
    "unknown order",
    "malformed body",
    "missing signature",
    "malformed header",
)
"""Every kind of forgery :func:`forge` makes."""

MALFORMED_BODIES = (
    b"",
    b"{",
    b"null",
    b"[]",
    b'{"payment_id": "1"}',
    b'{"payment_id": 1, "order_id": 2, "amount": 3, "status": "succeeded", "gateway_txn_id": "x"}',
    b'{"payment_id": "-5", "order_id": "7", "amount": 1, "status": "succeeded", '
    b'"gateway_txn_id": "x"}',
    b'{"payment_id": "99999999999999999999", "order_id": "7", "amount": 1, '
    b'"status": "succeeded", "gateway_txn_id": "x"}',
    b"\xff\xfe\x00garbage",
)


def flip_bit(rng: random.Random, data: bytes) -> bytes:
    """``data`` with one bit flipped at a random place."""
    index = rng.randrange(len(data))
    return data[:index] + bytes([data[index] ^ (1 << rng.randrange(8))]) + data[index + 1 :]


def forge(
    rng: random.Random, kind: str, body: bytes, secret: str, now: float
) -> tuple[bytes, str | None]:
    """A ``kind`` forgery (one of :data:`FORGERIES`) of the genuine ``body``: (body, header)."""
    stamp = int(now)
    fields = msgspec.json.decode(body, type=CallbackBody)
    match kind:
        case "bit-flipped body":
            return flip_bit(rng, body), sign(secret, stamp, body)
        case "bit-flipped signature":
            header = sign(secret, stamp, body)
            index = rng.randrange(len(header) - 64, len(header))
            digit = rng.choice([c for c in "0123456789abcdef" if c != header[index]])
            return body, header[:index] + digit + header[index + 1 :]
        case "wrong key":
            return body, sign(secret + "-guessed", stamp, body)
        case "stale timestamp":
            late = stamp - TOLERANCE_S - 1 - rng.randrange(86_400)
            return body, sign(secret, late, body)
        case "future timestamp":
            early = stamp + TOLERANCE_S + 1 + rng.randrange(86_400)
            return body, sign(secret, early, body)
        case "wrong amount":
            amount = fields.amount + rng.choice([-1, 1, 100, -fields.amount, 10**6])
            spoiled = msgspec.structs.replace(fields, amount=amount)
            return _signed(spoiled, secret, stamp)
        case "unknown payment":
            spoiled = msgspec.structs.replace(fields, payment_id=str(rng.randrange(1, 2**62)))
            return _signed(spoiled, secret, stamp)
        case "unknown order":
            spoiled = msgspec.structs.replace(fields, order_id=str(rng.randrange(1, 2**62)))
            return _signed(spoiled, secret, stamp)
        case "malformed body":
            garbage = rng.choice(MALFORMED_BODIES)
            return garbage, sign(secret, stamp, garbage)
        case "missing signature":
            return body, None
        case "malformed header":
            header = sign(secret, stamp, body)
            return body, rng.choice(
                [header.upper(), header.replace(",", ";"), header + ",v0=00", "v1=" + header[2:]]
            )
    raise ValueError(f"unknown forgery {kind!r}")


def _signed(fields: CallbackBody, secret: str, stamp: int) -> tuple[bytes, str]:
    body = msgspec.json.encode(fields)
    return body, sign(secret, stamp, body)
