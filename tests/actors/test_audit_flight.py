"""Reading the outbox: which compensations are on their way, by the asset they will move."""

from __future__ import annotations

import msgspec

from shopkeep.actors.audit_flight import read_outbox
from shopkeep.actors.order_messages import RefundDone
from shopkeep.actors.protocol import (
    AwardPoints,
    OrderSettled,
    ReleaseAssets,
    ReleaseCoupon,
    ReleaseWallet,
    ReturnStock,
    RevokePoints,
)
from shopkeep.actors.refund_rules import RefundAttempt


def row(kind: str, actor_id: int, message: object) -> tuple[int, str, int, bytes]:
    return (0, kind, actor_id, msgspec.msgpack.encode(message))


def test_a_pending_release_assets_counts_as_everything_it_will_fan_out() -> None:
    flight = read_outbox([row("assets", 7, ReleaseAssets(7, 1, (10, 11), 4, 300, True))])
    assert flight.stock == {(7, 10), (7, 11)}
    assert flight.coupons == {(4, 7)}
    assert flight.wallet == {7}
    assert flight.points == {7}
    assert flight.orders == set()


def test_each_asset_message_counts_for_its_own_asset() -> None:
    flight = read_outbox(
        [
            row("goods", 10, ReturnStock(7)),
            row("coupon", 4, ReleaseCoupon(8)),
            row("user", 1, ReleaseWallet(9, 100)),
            row("user", 1, AwardPoints(5, 3)),
            row("user", 1, RevokePoints(6)),
        ]
    )
    assert flight.stock_moving(7, 10) and not flight.stock_moving(7, 11)
    assert flight.coupon_moving(4, 8) and not flight.coupon_moving(4, 7)
    assert flight.wallet_moving(9) and not flight.wallet_moving(7)
    assert flight.points_moving(5) and flight.points_moving(6)
    assert flight.messages == 5


def test_what_is_not_a_compensation_moves_nothing() -> None:
    flight = read_outbox([row("user", 1, OrderSettled(7))])
    assert not flight.wallet_moving(7) and not flight.order_moving(7)


def test_a_message_of_another_kind_counts_for_the_order_it_names_or_is_sent_to() -> None:
    flight = read_outbox(
        [row("refunder", 55, RefundAttempt(55, 7, 99, 500)), row("order", 8, RefundDone(3))]
    )
    assert flight.orders == {7, 8}
    assert flight.stock_moving(7, 10) and flight.wallet_moving(8)


def test_a_message_to_an_order_that_is_none_of_the_orders_own_excuses_nothing() -> None:
    flight = read_outbox([row("order", 8, OrderSettled(1))])  # a user's message
    assert flight.undecodable == 1
    assert flight.orders == set()


def test_a_row_that_cannot_be_decoded_is_counted_not_guessed_at() -> None:
    flight = read_outbox([(0, "goods", 10, b"\xc1"), (1, "refunder", 1, b"\xc1")])
    assert flight.undecodable == 2
    assert flight.stock == set() and flight.orders == set()


def test_a_row_no_actor_could_deliver_excuses_nothing() -> None:
    # any map naming an order_id excused every check of that order: a row of a kind no actor
    # has, or one its kind does not decode, hid a refund missing and money unaccounted for
    flight = read_outbox(
        [row("nosuchkind", 1, {"order_id": 7}), row("refunder", 1, {"order_id": 8})]
    )
    assert flight.undecodable == 2
    assert flight.orders == set()
    assert not flight.order_moving(7) and not flight.stock_moving(8, 10)
