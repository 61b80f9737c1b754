"""The order's wire shape: its times are the datetimes its timestamps make, however made."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from shopkeep.actors.order_messages import OrderItemView, OrderView
from shopkeep.http.conversion import order_out

TIMESTAMPS = st.floats(min_value=0, max_value=4_102_444_800)  # 1970 to 2100
AHEAD = st.one_of(
    st.integers(min_value=0, max_value=7 * 86_400).map(float),  # whole seconds, as timeouts
    st.floats(min_value=0, max_value=7 * 86_400),  # any fraction too
)


def placed(created_at: float, expires_at: float) -> OrderView:
    return OrderView(
        id=1, user_id=2, status="awaiting_payment", coupon_id=None, created_at=created_at,
        goods_amount=100, shipping_fee=0, order_amount=100, pay_amount=100,
        confirmed_at=created_at, expires_at=expires_at, items=(OrderItemView(3, 1, 100),),
    )  # fmt: skip


@settings(max_examples=2_000)
@given(TIMESTAMPS, AHEAD)
def test_an_orders_deadline_is_the_datetime_its_timestamp_makes(
    created_at: float, ahead: float
) -> None:
    expires_at = created_at + ahead
    out = order_out(placed(created_at, expires_at))
    assert out.created_at == datetime.fromtimestamp(created_at, UTC)
    assert out.expires_at == datetime.fromtimestamp(expires_at, UTC)
    assert out.confirmed_at == out.created_at
