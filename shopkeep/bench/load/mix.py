"""The mix: which customer journeys a run is made of, and how often each is picked.

``--mix place=10,pay=25,...`` gives each journey a weight (a journey left out weighs 0); each
worker picks its next journey at random in proportion to the weights, from a
:class:`random.Random` seeded with ``--seed`` and its own number, so a run's sequence of picks
is reproducible (the timing of the answers, and so the interleaving, is not).

A journey is a few operations of one customer on one order (see :mod:`.journeys`); the report
counts operations, whatever journey they were part of. Business refusals that the mix provokes
on purpose are *expected refusals*, counted per code apart from errors (:data:`EXPECTED`).
"""

from __future__ import annotations

from collections.abc import Mapping

JOURNEYS: Mapping[str, str] = {
    "place": "place an order (synchronously) and leave it unpaid, to time out",
    "place_async": "place with ?wait=false, poll until placed, then cancel it",
    "pay": "place, start the payment, complete it through the sandbox, wait until paid",
    "pay_fail": "place, start the payment, fail it through the sandbox, then cancel",
    "duplicate_callback": "place, start the payment, send the same signed callback twice",
    "late_callback": "place, start the payment, let the order time out, then a success "
    "callback: signed and sent by the bench with the gateway secret, else by the sandbox "
    "gateway on a late complete (the shop must acknowledge it and refund: a late_payment "
    "refund)",
    "cancel_unpaid": "place, then cancel before paying",
    "cancel_paid": "pay, then cancel (the shop refunds)",
    "ship": "pay, ship, deliver",
    "return": "pay, ship, deliver, ask for a return, approve it (admin)",
    "cancel_race": "pay, then ship and cancel at the same moment (exactly one of them is "
    "refused)",
}
"""Every journey, and what it does."""

DEFAULT_MIX: Mapping[str, int] = {
    "place": 5,
    "place_async": 10,
    "pay": 25,
    "pay_fail": 5,
    "duplicate_callback": 10,
    "late_callback": 5,
    "cancel_unpaid": 10,
    "cancel_paid": 10,
    "ship": 10,
    "return": 5,
    "cancel_race": 5,
}
"""The default weights: every journey, the happy path most often."""

OPERATIONS = frozenset(
    {
        "place", "place_async", "await_placed", "get_order", "get_history", "start_payment",
        "complete_success", "await_paid", "complete_failure", "callback", "callback_duplicate",
        "await_timeout", "callback_late", "complete_late", "get_refunds", "await_refund",
        "cancel_unpaid", "cancel_paid", "ship", "deliver", "request_return", "approve_return",
    }
)  # fmt: skip
"""Every operation the journeys time (the rows of the report, the names a threshold takes)."""

SIGNED = frozenset({"duplicate_callback"})
"""Journeys that need the gateway secret: they send a callback of their own, the same one twice,
which the sandbox route cannot (a late callback can come from the sandbox gateway)."""

PLACEMENT_REFUSALS: Mapping[str, str] = {
    "insufficient_stock": "the placement is of the scarce goods, which runs out on purpose",
    "coupon_unavailable": "the placement uses a coupon a cancel gave back (it may still be on "
    "its way back); a coupon's first use, never",
    "insufficient_balance": "the placement asks of the wallet more than the shopper's "
    "placements so far (in flight included) may have left of its opening balance",
    "too_many_unpaid_orders": "the shopper holds orders left unpaid for their deadline (a "
    "shop whose cap of unpaid orders is below the ones the mix holds)",
}
"""Why a placement may be refused in this mix: each code, and the placement that provokes it
(:func:`placement_provokes`)."""

EXPECTED: Mapping[str, Mapping[str, str]] = {
    "place": PLACEMENT_REFUSALS,
    "place_async": PLACEMENT_REFUSALS,
    "await_placed": PLACEMENT_REFUSALS,  # a place_async whose placement failed after its 202
    "start_payment": {
        "invalid_state": "the order's deadline had come: a payment started on an order it "
        "canceled meanwhile"
    },
    "await_paid": {
        "invalid_state": "the order was canceled by its deadline before the payment landed "
        "(it is refunded as late)"
    },
    "ship": {"invalid_state": "in cancel_race, whose cancel came first and was done"},
    "cancel_paid": {"invalid_state": "in cancel_race, whose ship came first and was done"},
}
"""Per operation, the refusal codes that the mix provokes on purpose, and where: a code is
expected only where its journey provokes it (the journeys decide, :mod:`.journeys`), so a shop
that refuses every placement ``insufficient_stock``, or every ship ``invalid_state``, counts
errors. Any other code of any operation (and any code at all of an operation not listed) is
an error."""


def placement_provokes(
    code: str, *, scarce: bool, coupon: bool, wallet: bool, holding: bool
) -> bool:
    """Whether a placement refused ``code`` was provoked by the mix (see
    :data:`PLACEMENT_REFUSALS`): ``scarce``, it asked for the scarce goods; ``coupon``, it
    used a coupon a cancel gave back; ``wallet``, it asked of the wallet more than may be left
    in it (:attr:`~.journeys.Shopper.wallet_floor`); ``holding``,
    its shopper holds orders left unpaid for their deadline."""
    return {
        "insufficient_stock": scarce,
        "coupon_unavailable": coupon,
        "insufficient_balance": wallet,
        "too_many_unpaid_orders": holding,
    }.get(code, False)


class MixError(ValueError):
    """A ``--mix`` that cannot be used: the operator's mistake, said in one line."""


def parse_mix(text: str | None) -> dict[str, int]:
    """The weights of ``name=weight,...`` (None: :data:`DEFAULT_MIX`; an empty text, given
    and saying nothing, is refused as every other empty value is)."""
    if text is None:
        return dict(DEFAULT_MIX)
    if not text.strip():
        raise MixError("'' names no journey (journeys: " + ", ".join(JOURNEYS) + ")")
    weights: dict[str, int] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        known = ", ".join(JOURNEYS)
        if not sep:
            raise MixError(f"{part.strip()!r} is not journey=weight (journeys: {known})")
        if name not in JOURNEYS:
            raise MixError(f"{name!r} is no journey (journeys: {known})")
        if name in weights:
            raise MixError(f"journey {name} is given twice")
        try:
            weight = int(value)
        except ValueError:
            raise MixError(f"{name}: weight {value!r} is not a whole number") from None
        if weight < 0:
            raise MixError(f"{name}: weight {weight} is negative")
        weights[name] = weight
    if not any(weights.values()):
        raise MixError("every weight is 0: nothing to run")
    return {name: weight for name, weight in weights.items() if weight > 0}

