"""The goods' rules, with no IO: price, stock on hand and its ledger."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shopkeep.actors.config import MAX_HELD
from shopkeep.actors.goods_rules import Goods, StockMove, create, give_back, take, update
from shopkeep.actors.protocol import (
    CreateGoods,
    GoodsView,
    ReturnStock,
    StockTaken,
    TakeStock,
    UpdateGoods,
)
from shopkeep.refusals import INSUFFICIENT_STOCK, VALIDATION_ERROR, Refusal

TEA = Goods("tea", 450, 10, 10, 0)


def test_new_goods_start_with_their_stock_as_initial_stock() -> None:
    assert create(CreateGoods("tea", 450, 10)) == Goods("tea", 450, 10, 10, 0)


@pytest.mark.parametrize(
    "msg", [CreateGoods("tea", -1, 10), CreateGoods("tea", 450, -1), CreateGoods("", 450, 10)]
)
def test_goods_with_a_negative_price_or_stock_or_no_name_are_refused(msg: CreateGoods) -> None:
    refused = create(msg)
    assert isinstance(refused, Refusal) and refused.code == VALIDATION_ERROR


def test_the_view_shows_price_and_stock_on_hand() -> None:
    assert TEA.view(3) == GoodsView(3, "tea", 450, 10)


def test_a_take_lowers_the_stock_and_answers_todays_price() -> None:
    assert take(TEA, 3, TakeStock(order_id=7, quantity=4)) == (
        Goods("tea", 450, 6, 10, 0),
        StockMove(7, "take", -4),
        StockTaken(450),
    )


def test_the_last_units_can_be_taken() -> None:
    taken = take(TEA, 3, TakeStock(7, 10))
    assert not isinstance(taken, Refusal) and taken[0].stock == 0


def test_a_take_beyond_the_stock_is_refused_and_says_what_is_left() -> None:
    refused = take(Goods("tea", 450, 2, 10, 0), 123, TakeStock(7, 5))
    assert refused == Refusal(INSUFFICIENT_STOCK, "goods 123: 2 left, 5 asked")


@pytest.mark.parametrize("quantity", [0, -1])
def test_a_take_of_no_units_is_refused(quantity: int) -> None:
    refused = take(TEA, 3, TakeStock(7, quantity))
    assert isinstance(refused, Refusal) and refused.code == VALIDATION_ERROR


def test_a_return_gives_back_what_the_order_still_holds() -> None:
    goods, move = give_back(Goods("tea", 450, 6, 10, 0), ReturnStock(7), {"take": -4})
    assert goods.stock == 10
    assert move == StockMove(7, "release", 4)


def test_an_approved_return_gives_back_under_its_own_reason() -> None:
    _, move = give_back(Goods("tea", 450, 6, 10, 0), ReturnStock(7, "return"), {"take": -4})
    assert move == StockMove(7, "return", 4)


def test_a_second_return_finds_nothing_held_and_changes_nothing() -> None:
    assert give_back(TEA, ReturnStock(7), {"take": -4, "release": 4}) == (TEA, None)


def test_a_return_for_an_order_that_took_nothing_changes_nothing() -> None:
    assert give_back(TEA, ReturnStock(7), {}) == (TEA, None)


def test_a_return_with_an_unknown_reason_is_a_senders_bug() -> None:
    with pytest.raises(ValueError, match="reason"):
        give_back(TEA, ReturnStock(7, "lost"), {"take": -4})


def test_a_restock_adds_to_the_stock_and_to_restocked() -> None:
    assert update(TEA, UpdateGoods(restock=5)) == Goods("tea", 450, 15, 10, 5)


def test_a_price_change_leaves_the_stock_alone() -> None:
    assert update(TEA, UpdateGoods(price=500)) == Goods("tea", 500, 10, 10, 0)


def test_an_empty_update_changes_nothing() -> None:
    assert update(TEA, UpdateGoods()) == TEA


def test_a_restock_may_bring_the_units_supplied_to_the_most_a_goods_holds_and_no_further() -> (
    None
):
    # counted in what was supplied, not on hand: units an order holds come back on hand later
    sold_out = Goods("tea", 450, 0, 10, MAX_HELD - 15)
    assert update(sold_out, UpdateGoods(restock=5)).stock == 5  # type: ignore[union-attr]
    refused = update(sold_out, UpdateGoods(price=1, restock=6))
    assert isinstance(refused, Refusal) and refused.code == VALIDATION_ERROR
    assert str(MAX_HELD) in refused.detail and refused.pointer == "/restock"


def test_a_price_change_of_a_goods_supplied_past_the_most_is_still_taken() -> None:
    # one that a database of before the cap holds: its price must stay changeable
    past = Goods("tea", 450, MAX_HELD + 2, MAX_HELD + 2, 0)
    assert update(past, UpdateGoods(price=500)) == Goods("tea", 500, MAX_HELD + 2, MAX_HELD + 2, 0)


@pytest.mark.parametrize("msg", [UpdateGoods(price=-1), UpdateGoods(restock=-1)])
def test_a_negative_price_or_restock_is_refused(msg: UpdateGoods) -> None:
    refused = update(TEA, msg)
    assert isinstance(refused, Refusal) and refused.code == VALIDATION_ERROR


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["take", "return", "restock"]), st.integers(1, 6), st.integers(1, 8)
        ),
        max_size=60,
    )
)
def test_any_takes_returns_and_restocks_keep_on_hand_equal_to_initial_plus_restocked_plus_ledger(
    ops: list[tuple[str, int, int]],
) -> None:
    goods = TEA
    ledger: dict[int, dict[str, int]] = {}
    for operation, order_id, quantity in ops:
        rows = ledger.setdefault(order_id, {})
        move: StockMove | None = None
        if operation == "take" and "take" not in rows:  # asked once per order and goods
            taken = take(goods, 3, TakeStock(order_id, quantity))
            if not isinstance(taken, Refusal):
                goods, move, _ = taken
        elif operation == "return":
            goods, move = give_back(goods, ReturnStock(order_id), rows)
        elif operation == "restock":
            restocked = update(goods, UpdateGoods(restock=quantity))
            assert not isinstance(restocked, Refusal)
            goods = restocked
        if move is not None:
            rows[move.reason] = move.quantity
        net = sum(sum(r.values()) for r in ledger.values())
        assert goods.stock >= 0
        assert goods.stock == goods.initial_stock + goods.restocked + net
        assert all(sum(r.values()) <= 0 for r in ledger.values())
