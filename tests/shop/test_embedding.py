"""What a program embedding the shop gets for its mistakes: a clear exception before anything
changes (a ShopError with the HTTP API's codes, or a ValueError or TypeError for the shop's own
setup), and shopkeep's log lines on its own standard logging, never on its stdout.

Unchecked, ``gateway=None`` would open a shop that fails at its first payment, ids past 64
bits would raise SQLite's OverflowError, a negative shipping fee would be paid, and wrong types
would leak TypeErrors; a key object used again would say its last operation's replay, and a
cancel by the program itself would read as the user's."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from shopkeep.actors.config import ShopConfig
from shopkeep.errors import ShopError
from shopkeep.idempotency import IdempotencyKey
from shopkeep.opening import CurrencyMismatch
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.runtime import RealClock, WrongLoop
from shopkeep.shop import Shop

ROOT = Path(__file__).resolve().parents[2]
PAST_64_BITS = 2**64


async def test_a_shop_needs_its_gateway_named(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="'sandbox', a SandboxGateway or a PaymentProvider"):
        async with Shop.open(str(tmp_path / "shop.db"), gateway=None):  # type: ignore[arg-type]
            pass


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"config": {"shipping_fee": 5}}, "a ShopConfig"),
        ({"gateway_secret": 5}, "gateway_secret: a str, not int"),
        ({"gateway_secret": ["x"]}, "gateway_secret: a str, not list"),
    ],
)
async def test_settings_of_the_wrong_type_are_refused_as_the_shop_opens(
    tmp_path: Path, given: dict[str, Any], says: str
) -> None:
    # a dict config failed later on a missing attribute; a secret of an int made every sandbox
    # callback fail to sign, retried for ever, the payment never completed
    with pytest.raises(TypeError, match=says):
        async with Shop.open(tmp_path / "shop.db", gateway="sandbox", **given):
            pass
    assert not (tmp_path / "shop.db").exists()


async def attach_again(shop: Shop) -> None:
    assert shop.gateway is not None
    shop.gateway.attach(shop.acknowledge_callback)


async def test_a_call_from_another_threads_loop_is_refused_and_does_nothing(shop: Shop) -> None:
    # a write was done on the shop's loop while its caller got a bare RuntimeError (a credit
    # retried after that "failure" credited twice); the sandbox collected, then retried its
    # callback for ever; the back office's dead letters were retried and never delivered
    ann = (await shop.create_user("ann", balance=100)).user
    tea = await shop.create_goods("tea", price=300, stock=5)
    order = await shop.place_order(ann.id, [(tea.id, 1)])
    payment = (await shop.start_payment(order.id)).payment
    assert shop.gateway is not None
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: shop.credit_wallet(ann.id, 50),
        lambda: shop.list_goods(),
        lambda: shop.discard_dead_letter(1),
        lambda: shop.gateway.complete(  # type: ignore[union-attr]
            payment.id, order.id, payment.amount, "succeeded"
        ),
        # attached again or settled elsewhere, the sandbox refused every refund and complete
        # of the shop's own loop, or took no more completes
        lambda: attach_again(shop),
        lambda: shop.gateway.settle(0.1),  # type: ignore[union-attr]
    ]
    failed: list[BaseException] = []

    def elsewhere() -> None:
        for call in calls:
            try:
                asyncio.run(asyncio.wait_for(call(), 5))
            except BaseException as error:  # kept for the assertion
                failed.append(error)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    await asyncio.to_thread(thread.join, 30)

    assert [type(error) for error in failed] == [WrongLoop] * len(calls)
    assert "run_coroutine_threadsafe" in str(failed[0])
    assert (await shop.get_user(ann.id)).balance == 100
    assert (await shop.get_order(order.id)).status == "awaiting_payment"
    assert shop.gateway.total_collected == 0
    await shop.gateway.complete(payment.id, order.id, payment.amount, "succeeded")
    assert (await shop.get_order(order.id)).status == "paid"  # on its own loop, as before


async def test_a_shop_opens_on_a_path_object_too(tmp_path: Path) -> None:
    # it raised AttributeError ('PosixPath' object has no attribute 'startswith')
    async with Shop.open(tmp_path / "shop.db", gateway="sandbox") as shop:
        made = await shop.create_goods("tea", price=100, stock=1)
    assert (tmp_path / "shop.db").exists() and made.stock == 1


async def test_a_database_keeps_the_currency_it_was_first_opened_in(tmp_path: Path) -> None:
    path = str(tmp_path / "shop.db")
    async with Shop.open(path, gateway="sandbox") as shop:
        await shop.create_user("ann", balance=10_000)  # 100.00 yuan

    with pytest.raises(CurrencyMismatch, match="keeps its amounts in CNY"):
        async with Shop.open(path, gateway="sandbox", config=ShopConfig(currency="USD")):
            pass
    async with Shop.open(path, gateway="sandbox") as shop:  # and opens again as it was
        assert shop.config.currency == "CNY"


async def test_a_database_from_before_the_currency_was_kept_keeps_its_orders_one(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "shop.db")
    async with Shop.open(path, gateway="sandbox") as shop:
        ann = await shop.create_user("ann", balance=0)
        tea = await shop.create_goods("tea", price=500, stock=5)
        await shop.place_order(ann.user.id, [(tea.id, 1)])
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM settings WHERE key = 'currency'")

    with pytest.raises(CurrencyMismatch, match="keeps its amounts in CNY"):
        async with Shop.open(path, gateway="sandbox", config=ShopConfig(currency="EUR")):
            pass


@pytest.mark.parametrize(
    "setting",
    [
        {"shipping_fee": -5_000},
        {"free_shipping_threshold": -1},
        {"order_timeout_s": -5},
        {"order_timeout_s": 0},
        {"order_timeout_s": float("nan")},
        {"order_timeout_s": 1e-9},  # every order canceled as it is born
        {"refund_query_after_s": 0.5},
        {"refund_retry_s": 1e-9},
        {"sweep_interval_s": 1e-9},  # the database read in a loop, the shop idle
        {"one_turn_placement": "no"},  # a true value
        {"one_turn_placement": 0},
        {"max_unpaid_orders": 0},
        {"max_quantity": 2**64},  # a quantity past any stock: refused by the store, not a rule
        {"points_per_unit": True},
        {"currency": "dollars"},
    ],
)
def test_a_setting_no_shop_can_run_by_is_refused_naming_it(setting: dict[str, Any]) -> None:
    [name] = setting
    with pytest.raises(ValueError, match=f"ShopConfig.{name} must be"):
        ShopConfig(**setting)


@pytest.mark.parametrize(
    "call",
    [
        lambda shop: shop.get_user(PAST_64_BITS),
        lambda shop: shop.get_goods(PAST_64_BITS),
        lambda shop: shop.get_order(PAST_64_BITS),
        lambda shop: shop.cancel_order(PAST_64_BITS),
        lambda shop: shop.get_payment(PAST_64_BITS),
        lambda shop: shop.approve_return(PAST_64_BITS),
        lambda shop: shop.list_orders(user_id=PAST_64_BITS),
        lambda shop: shop.place_order(PAST_64_BITS, [(1, 1)]),
        lambda shop: shop.stock_ledger(PAST_64_BITS),
        lambda shop: shop.order_returns(PAST_64_BITS),
        lambda shop: shop.dead_letter(PAST_64_BITS),
        lambda shop: shop.retry_dead_letter(PAST_64_BITS),
        lambda shop: shop.discard_dead_letter(PAST_64_BITS),
        lambda shop: shop.knows_outcome(PAST_64_BITS, "succeeded", None),
    ],
)
async def test_an_id_past_64_bits_names_nothing(
    shop: Shop, call: Callable[[Shop], Awaitable[object]]
) -> None:
    with pytest.raises(ShopError) as refused:
        await call(shop)
    assert refused.value.code == "not_found"


async def test_an_item_past_64_bits_names_no_goods(shop: Shop) -> None:
    user = (await shop.create_user("ann")).user.id
    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, [(PAST_64_BITS, 1)])
    assert refused.value.code == "not_found"


@pytest.mark.parametrize(
    "call",
    [
        lambda shop, user: shop.create_coupon(user, 5, expires_at="2020"),
        lambda shop, user: shop.create_coupon(user, 5, expires_at=True),
        lambda shop, user: shop.list_orders(limit="5"),
        lambda shop, user: shop.list_orders(cursor=5),
        lambda shop, user: shop.list_orders(cursor="-5"),  # int() takes these three
        lambda shop, user: shop.list_orders(cursor=" 5 "),
        lambda shop, user: shop.list_orders(cursor="1_0"),
        lambda shop, user: shop.list_coupons(user, cursor="05"),
        lambda shop, user: shop.stock_ledger("1"),  # the back office's ids are checked too
        lambda shop, user: shop.stock_ledger(1.0),
        lambda shop, user: shop.order_returns("1"),
        lambda shop, user: shop.dead_letter("1"),
        lambda shop, user: shop.dead_letter(None),
        lambda shop, user: shop.discard_dead_letter(True),
        lambda shop, user: shop.knows_outcome("1", "succeeded", None),
        lambda shop, user: shop.knows_outcome(1, "paid", None),  # a dead letter an order
        lambda shop, user: shop.knows_outcome(1, "succeeded", ["txn"]),  # failed thrice on
        lambda shop, user: shop.user_for_token_hash(5),
        lambda shop, user: shop.list_orders(status="bogus"),
        lambda shop, user: shop.request_return(1, 5),
        lambda shop, user: shop.settle_refund(1, None),
        lambda shop, user: shop.place_order(user, [(1, 1)], wait="no"),  # "no" is true
        lambda shop, user: shop.place_order(user, [(1, 1)], wait=0),
        lambda shop, user: shop.start_payment(1, channel="xx"),
        lambda shop, user: shop.handle_callback("{}", "t=1,v1=00"),  # the body's bytes
        lambda shop, user: shop.handle_callback(b"{}", 5),
        lambda shop, user: shop.handle_callback(b"{}", {"Shopkeep-Signature": 5}),
        lambda shop, user: shop.handle_callback(b"{}", {1: "t=1,v1=00"}),
        lambda shop, user: shop.gateway.complete(1, 2, 2200, "succeeded", b"txn"),
        lambda shop, user: shop.gateway.complete(1, 2, "2200", "succeeded"),
        lambda shop, user: shop.gateway.complete("1", 2, 2200, "succeeded"),
        lambda shop, user: shop.user_for_token(None),
        lambda shop, user: shop.find_orders(since="yesterday"),
        lambda shop, user: shop.find_orders(until=True),
        lambda shop, user: shop.minute_figures(10**9),  # a day's rows at most
        lambda shop, user: shop.minute_figures(-5),
        lambda shop, user: shop.due_soonest(-1),
    ],
)
async def test_a_value_of_the_wrong_type_is_a_validation_error(
    shop: Shop, call: Callable[[Shop, int], Awaitable[object]]
) -> None:
    user = (await shop.create_user("ann")).user.id
    with pytest.raises(ShopError) as refused:
        await call(shop, user)
    assert refused.value.code == "validation_error"
    assert (await shop.list_coupons(user)).items == []


SCOPED: list[Callable[[Shop, int, Any], Awaitable[object]]] = [
    lambda shop, order, who: shop.get_order(order, user_id=who),
    lambda shop, order, who: shop.order_history(order, user_id=who),
    lambda shop, order, who: shop.payments(order, user_id=who),
    lambda shop, order, who: shop.refunds(order, user_id=who),
    lambda shop, order, who: shop.start_payment(order, user_id=who),
    lambda shop, order, who: shop.cancel_order(order, user_id=who),
    lambda shop, order, who: shop.request_return(order, user_id=who),
    lambda shop, order, who: shop.get_payment(order, user_id=who),
    lambda shop, order, who: shop.get_coupon(order, user_id=who),
    lambda shop, order, who: shop.get_return(order, user_id=who),
]


@pytest.mark.parametrize("call", SCOPED)
async def test_a_callers_user_id_that_is_no_int_is_refused_before_it_can_name_another(
    shop: Shop, call: Callable[[Shop, int, Any], Awaitable[object]]
) -> None:
    # as a float, a user id rounds to its neighbour's, made the same millisecond: that user's
    # order was read and canceled; as text, the caller's own answered not_found
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    owner = (await shop.create_user("ann")).user.id
    order = await shop.place_order(owner, [(tea.id, 1)])

    for given in (float(owner), str(owner), True):
        with pytest.raises(ShopError) as refused:
            await call(shop, order.id, given)
        assert refused.value.code == "validation_error", given
        assert refused.value.errors is not None
        assert [e.pointer for e in refused.value.errors] == ["/user_id"]
    assert (await shop.get_order(order.id)).status == "awaiting_payment"


async def test_text_holding_a_lone_surrogate_is_refused_not_failed_at_its_commit(
    shop: Shop,
) -> None:
    # no UTF-8 can store it: the unit failed at its commit (a storage fault, to the log)
    with pytest.raises(ShopError) as user_refused:
        await shop.create_user("a\udc80b")
    with pytest.raises(ShopError) as goods_refused:
        await shop.create_goods("x\ud800", price=10, stock=5)

    assert user_refused.value.code == goods_refused.value.code == "validation_error"
    assert (await shop.list_goods()).items == []
    assert (await shop.create_user("emoji \U0001f375")).user.name == "emoji \U0001f375"


def test_an_embedding_program_gets_shopkeeps_lines_through_its_own_logging(
    tmp_path: Path,
) -> None:
    program = textwrap.dedent(f"""
        import asyncio, logging, sys
        import structlog
        from shopkeep.shop import Shop

        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="EMBEDDER %(message)s")

        async def main():
            async with Shop.open({str(tmp_path / "shop.db")!r}, gateway="sandbox"):
                structlog.get_logger("shopkeep.order").warning("order_odd", order_id=7)

        asyncio.run(main())
    """)
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "EMBEDDER event='order_odd' order_id='7'" in done.stderr


@pytest.mark.parametrize("writer", ["thread", "process"])
async def test_a_shop_cancelled_as_it_closes_still_closes_whole_then_lets_the_cancel_through(
    tmp_path: Path, writer: str
) -> None:
    # a Ctrl-C or a wait_for running out just as the block ends: a close cut halfway left the
    # writer's and the reader's threads running, and the program never exited
    before = set(threading.enumerate())

    async def session() -> None:
        async with Shop.open(str(tmp_path / "shop.db"), gateway="sandbox", writer=writer) as shop:
            await shop.create_user("ann")
            block = asyncio.current_task()
            assert block is not None
            store_writer = shop.runtime.store.writer
            close_writer = store_writer.close

            async def cancelled_as_it_closes() -> None:
                block.cancel()  # as the store closes, halfway through the shop's close
                await close_writer()

            store_writer.close = cancelled_as_it_closes  # type: ignore[method-assign]

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(session())
    assert set(threading.enumerate()) <= before
    async with Shop.open(str(tmp_path / "shop.db"), gateway="sandbox") as reopened:
        assert (await reopened.audit()).ok  # the lock was released, and nothing was lost


async def test_a_coupon_expiry_given_as_an_int_reads_back_as_the_same_float_everywhere(
    shop: Shop,
) -> None:
    ann = (await shop.create_user("ann")).user
    made = await shop.create_coupon(ann.id, 100, expires_at=4_102_444_800)
    [listed] = (await shop.list_coupons(ann.id)).items
    read = await shop.get_coupon(made.id)
    assert [type(c.expires_at) for c in (made, listed, read)] == [float] * 3
    assert made.expires_at == listed.expires_at == read.expires_at == 4_102_444_800.0


def test_a_sandbox_gateway_of_the_callers_serves_a_shop_opened_again_on_a_new_loop(
    tmp_path: Path,
) -> None:
    # bound to the first loop for good, its second shop's attach raised WrongLoop
    gateway = SandboxGateway("s" * 32, RealClock())

    async def open_and_pay(name: str) -> str:
        async with Shop.open(tmp_path / "shop.db", gateway=gateway) as shop:
            ann = (await shop.create_user(name, balance=1_000)).user
            tea = await shop.create_goods("tea", price=300, stock=5)
            order = await shop.place_order(ann.id, [(tea.id, 1)])
            payment = (await shop.start_payment(order.id)).payment
            await gateway.complete(payment.id, order.id, payment.amount, "succeeded")
            return (await shop.get_order(order.id)).status

    assert [asyncio.run(open_and_pay(name)) for name in ("ann", "bob")] == ["paid", "paid"]


async def test_a_sandbox_gateway_serves_one_open_shop_at_a_time(tmp_path: Path) -> None:
    # a second shop opened with it took its callbacks: the first shop's payment was called
    # back to the second, "order ... does not exist", and stayed unpaid
    gateway = SandboxGateway("s" * 32, RealClock())
    async with Shop.open(tmp_path / "a.db", gateway=gateway) as first:
        with pytest.raises(ValueError, match="another open shop"):
            async with Shop.open(tmp_path / "b.db", gateway=gateway):
                pass
        ann = (await first.create_user("ann", balance=0)).user
        tea = await first.create_goods("tea", price=300, stock=5)
        order = await first.place_order(ann.id, [(tea.id, 1)])
        payment = (await first.start_payment(order.id)).payment
        assert await gateway.complete(payment.id, order.id, payment.amount, "succeeded")
        assert (await first.get_order(order.id)).status == "paid"

    async with Shop.open(tmp_path / "b.db", gateway=gateway) as second:  # once it closed
        assert (await second.list_orders()).items == []


async def test_of_two_shops_opening_at_once_with_one_sandbox_gateway_the_second_is_refused(
    tmp_path: Path,
) -> None:
    # each looked before the other had attached, and both opened: the later attach took
    # every callback of both
    gateway = SandboxGateway("s" * 32, RealClock())

    async def opened(name: str) -> str:
        async with Shop.open(tmp_path / name, gateway=gateway):
            return name

    results = await asyncio.gather(opened("a.db"), opened("b.db"), return_exceptions=True)

    assert results[0] == "a.db" and isinstance(results[1], ValueError)
    assert not gateway.in_use  # the first closed, the second never had it


async def test_an_idempotency_key_object_used_again_says_each_operations_own_replay(
    shop: Shop,
) -> None:
    ann, bob = [(await shop.create_user(name, balance=100)).user.id for name in ("ann", "bob")]
    tea = await shop.create_goods("tea", 10, 5)
    key = IdempotencyKey("kept-by-the-program")

    await shop.credit_wallet(ann, 5, idempotency_key=key)
    await shop.credit_wallet(ann, 5, idempotency_key=key)
    assert key.replayed
    with pytest.raises(ShopError) as conflict:
        await shop.credit_wallet(ann, 9, idempotency_key=key)  # the admin's key, another body
    assert conflict.value.code == "idempotency_conflict" and not key.replayed
    placed = await shop.place_order(bob, [(tea.id, 1)], idempotency_key=key)  # bob's own key
    assert placed.status == "awaiting_payment" and not key.replayed


async def test_a_cancel_the_program_makes_without_a_user_is_the_admins(shop: Shop) -> None:
    ann = (await shop.create_user("ann")).user.id
    tea = await shop.create_goods("tea", 10, 5)
    by_the_shop = await shop.place_order(ann, [(tea.id, 1)])
    by_ann = await shop.place_order(ann, [(tea.id, 1)])

    assert (await shop.cancel_order(by_the_shop.id)).cancel_reason == "admin"
    assert (await shop.cancel_order(by_ann.id, user_id=ann)).cancel_reason == "user"


async def test_none_for_an_optional_amount_or_reason_means_what_leaving_it_out_means(
    shop: Shop,
) -> None:
    user = (await shop.create_user("ann", balance=None)).user
    tea = await shop.create_goods("tea", price=500, stock=3)
    coupon = await shop.create_coupon(user.id, 100, min_order_amount=None)
    order = await shop.place_order(user.id, [(tea.id, 1)], use_balance=None, wait=None)
    assert order.status == "awaiting_payment"  # waited for, as without ``wait``
    payment = (await shop.start_payment(order.id, channel=None)).payment
    assert isinstance(shop.gateway, SandboxGateway)
    await shop.gateway.complete(payment.id, order.id, payment.amount, "succeeded")
    await shop.runtime.system.quiet()
    await shop.ship(order.id)
    await shop.deliver(order.id)

    asked = await shop.request_return(order.id, None)

    assert (user.balance, coupon.min_order_amount, order.wallet_amount) == (0, 0, 0)
    assert asked.created


def test_the_readmes_example_runs_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    [example] = re.findall(r"```python\n(.*?)```", readme, re.S)
    (tmp_path / "example.py").write_text(example)
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["paid", "True"]
