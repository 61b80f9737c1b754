"""The coupon's rules, with no IO: who may use it, for which order, until when."""

from __future__ import annotations

import pytest

from shopkeep.actors.coupon_rules import Coupon, create, release, use
from shopkeep.actors.protocol import CouponView, CreateCoupon, ReleaseCoupon, UseCoupon
from shopkeep.refusals import COUPON_UNAVAILABLE, NOT_FOUND, VALIDATION_ERROR, Refusal

NOON = 1_767_268_800.0  # 2026-01-01T12:00:00Z
FIVE_OFF = Coupon(user_id=1, value=500, min_order_amount=2_000, expires_at=NOON, order_id=None)


def use_for(order_id: int, *, user_id: int = 1, amount: int = 3_000, now: float = 0.0) -> UseCoupon:
    return UseCoupon(order_id, user_id, amount, now)


def unavailable(answer: object) -> str:
    assert isinstance(answer, Refusal) and answer.code == COUPON_UNAVAILABLE, answer
    return answer.detail


def test_a_new_coupon_is_unused() -> None:
    assert create(CreateCoupon(1, 500, 2_000, NOON)) == FIVE_OFF


@pytest.mark.parametrize("msg", [CreateCoupon(1, 0), CreateCoupon(1, 500, -1)])
def test_a_coupon_worth_nothing_or_with_a_negative_minimum_is_refused(msg: CreateCoupon) -> None:
    refused = create(msg)
    assert isinstance(refused, Refusal) and refused.code == VALIDATION_ERROR


def test_the_view_says_unused_or_used_and_by_which_order() -> None:
    assert FIVE_OFF.view(4) == CouponView(4, 1, 500, 2_000, NOON, "unused", None)
    held = Coupon(1, 500, 0, None, order_id=9)
    assert held.view(4) == CouponView(4, 1, 500, 0, None, "used", 9)


def test_the_owner_uses_it_for_an_order_and_learns_its_value() -> None:
    assert use(FIVE_OFF, 4, use_for(9)) == (Coupon(1, 500, 2_000, NOON, order_id=9), 500)


def test_using_it_again_for_the_same_order_is_the_same_use() -> None:
    held = Coupon(1, 500, 2_000, NOON, order_id=9)
    assert use(held, 4, use_for(9, now=NOON + 1)) == (held, 500)


def test_another_users_coupon_answers_as_a_missing_one() -> None:
    assert use(FIVE_OFF, 4, use_for(9, user_id=2)) == Refusal(
        NOT_FOUND, "coupon 4 does not exist"
    )


def test_a_coupon_held_by_another_order_is_unavailable() -> None:
    held = Coupon(1, 500, 2_000, NOON, order_id=8)
    assert unavailable(use(held, 4, use_for(9))) == "coupon 4 is used by another order"


def test_a_coupon_is_unavailable_from_its_expiry_instant_on() -> None:
    assert not isinstance(use(FIVE_OFF, 4, use_for(9, now=NOON - 0.001)), Refusal)
    assert unavailable(use(FIVE_OFF, 4, use_for(9, now=NOON))) == (
        "coupon 4 expired at 2026-01-01T12:00:00Z"
    )


def test_a_coupon_without_expiry_never_expires() -> None:
    forever = Coupon(1, 500, 0, None, None)
    assert not forever.expired(1e12)


def test_an_order_below_the_minimum_cannot_use_it() -> None:
    assert unavailable(use(FIVE_OFF, 4, use_for(9, amount=1_999))) == (
        "coupon 4 needs an order amount of 2000, this order is 1999"
    )


def test_an_order_at_the_minimum_can_use_it() -> None:
    assert not isinstance(use(FIVE_OFF, 4, use_for(9, amount=2_000)), Refusal)


def test_the_checks_name_the_owner_before_anything_else() -> None:
    held_and_expired = Coupon(1, 500, 2_000, NOON, order_id=8)
    refusal = use(held_and_expired, 4, use_for(9, user_id=2, now=NOON, amount=1))
    assert refusal == Refusal(NOT_FOUND, "coupon 4 does not exist")


def test_the_holder_releases_it() -> None:
    held = Coupon(1, 500, 2_000, NOON, order_id=9)
    assert release(held, ReleaseCoupon(9)) == FIVE_OFF


def test_a_release_by_an_order_that_does_not_hold_it_changes_nothing() -> None:
    held = Coupon(1, 500, 2_000, NOON, order_id=9)
    assert release(held, ReleaseCoupon(8)) is None
    assert release(FIVE_OFF, ReleaseCoupon(9)) is None
