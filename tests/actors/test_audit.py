"""The audit: a clean shop passes, and each kind of corruption fails exactly its own check."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from shopkeep.actors.audit import AuditReport, audit, audit_file
from shopkeep.actors.protocol import (
    AwardPoints,
    CreateCoupon,
    CreateGoods,
    CreateUser,
    CreditWallet,
    DebitWallet,
    OrderSettled,
    ReleaseAssets,
    ReturnStock,
    RevokePoints,
    TakeStock,
    UpdateGoods,
    UseCoupon,
)
from shopkeep.bootstrap import Runtime
from shopkeep.store.migrations import MIGRATIONS, apply_migrations
from tests.actors.asset_shop import (
    assets,
    coupon,
    goods,
    open_shop,
    record_order,
    record_payment,
    settled,
    user,
)

ANN, BOB = 1, 2
TEA, CUP = 10, 11
USED, SPARE = 20, 21


async def stock_a_shop(rt: Runtime) -> None:
    """Two users, two goods, two coupons, and four orders in four states, all consistent:

    100 ann's, paid with coupon 20 and her wallet; 101 ann's, canceled by her, everything given
    back; 102 bob's, paid through the gateway; 103 bob's, paid, then canceled, its refund
    still refunding.
    """
    ask = rt.system.ask
    now = rt.system.clock.now()
    await ask(user(ANN), CreateUser("ann", 10_000, "hash-ann"))
    await ask(user(BOB), CreateUser("bob", 0, "hash-bob"))
    await ask(user(BOB), CreditWallet(500))
    await ask(goods(TEA), CreateGoods("tea", 450, 20))
    await ask(goods(TEA), UpdateGoods(restock=5))
    await ask(goods(CUP), CreateGoods("cup", 1_200, 3))
    await ask(coupon(USED), CreateCoupon(ANN, 500))
    await ask(coupon(SPARE), CreateCoupon(ANN, 300))

    await ask(goods(TEA), TakeStock(100, 2))
    await ask(coupon(USED), UseCoupon(100, ANN, 1_900, now))
    await ask(user(ANN), DebitWallet(100, 1_400))
    await ask(user(ANN), AwardPoints(100, 14))
    await ask(user(ANN), OrderSettled(100))
    await record_order(
        rt, 100, ANN, "paid", {TEA: 2}, coupon_id=USED, wallet_amount=1_400, points=14
    )

    await ask(goods(TEA), TakeStock(101, 1))
    await ask(goods(CUP), TakeStock(101, 1))
    await ask(user(ANN), DebitWallet(101, 500))
    await record_order(
        rt, 101, ANN, "canceled", {TEA: 1, CUP: 1}, wallet_amount=500, cancel_reason="user"
    )
    await ask(assets(101), ReleaseAssets(101, ANN, (TEA, CUP), None, 500, revoke_points=False))

    await ask(goods(CUP), TakeStock(102, 1))
    await record_order(rt, 102, BOB, "paid", {CUP: 1})  # pays 1_200 + 1_000 shipping
    await record_payment(rt, 1_002, 102, 2_200)

    await ask(goods(TEA), TakeStock(103, 1))
    await ask(user(BOB), AwardPoints(103, 14))
    await record_order(rt, 103, BOB, "canceled", {TEA: 1}, cancel_reason="user")  # paid 1_450
    await record_payment(rt, 1_003, 103, 1_450, refund_id=2_003)
    await ask(assets(103), ReleaseAssets(103, BOB, (TEA,), None, 0, revoke_points=True))
    await settled(rt)


@pytest.fixture
async def shop_db(tmp_path: Path) -> str:
    """The path of a closed database holding the stocked shop."""
    path = str(tmp_path / "shop.db")
    async with open_shop(path) as rt:
        await stock_a_shop(rt)
    return path


def corrupt(path: str, sql: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql)
    conn.close()


def failing(report: AuditReport) -> dict[str, str]:
    return {check.name: check.detail for check in report.checks if not check.ok}


async def test_a_consistent_shop_audits_ok_and_says_what_it_checked(tmp_path: Path) -> None:
    async with open_shop(str(tmp_path / "shop.db")) as rt:
        await stock_a_shop(rt)
        report = await audit(rt.store.reader)
    assert report.ok, failing(report)
    details = {check.name: check.detail for check in report.checks}
    assert list(details) == [
        "stock", "wallet", "points", "coupons", "money", "states", "refunds", "amounts"
    ]  # fmt: skip
    assert details["money"] == (
        "collected 36.50 = kept by orders 22.00 + refunded 0.00 + refunding 14.50 (CNY)"
    )
    assert details["stock"] == "2 goods: on hand = initial + restocked - held by orders"


async def test_audit_file_on_the_closed_database_reports_what_audit_saw_live(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "shop.db")
    async with open_shop(path) as rt:
        await stock_a_shop(rt)
        await rt.store.writer.call(lambda conn: conn.execute("UPDATE users SET points = 99"))
        live = await audit(rt.store.reader)
    assert not live.ok
    assert audit_file(path) == live


async def test_an_empty_database_audits_ok(tmp_path: Path) -> None:
    path = str(tmp_path / "empty.db")
    async with open_shop(path):
        pass
    assert audit_file(path).ok


def test_a_shop_an_older_shopkeep_wrote_is_audited_as_migrated_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    # "no such column: r.provider_failed": a backup from before an upgrade could not be
    # audited, backed up or restored by the new shopkeep (only served)
    old = tmp_path / "old.db"
    with closing(sqlite3.connect(old, isolation_level=None)) as conn:
        apply_migrations(conn, MIGRATIONS[:5])
        conn.execute(
            "INSERT INTO users (id, name, token_hash, balance, points, created_at) "
            "VALUES (1, 'ann', 'h', 0, 0, 1.0)"
        )
    before = old.read_bytes()

    report = audit_file(str(old))

    assert report.ok, report
    assert old.read_bytes() == before
    with closing(sqlite3.connect(old)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (5,)


def test_audit_file_of_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no database file"):
        audit_file(str(tmp_path / "nowhere.db"))


def test_stock_changed_without_a_ledger_row_fails_the_stock_check(shop_db: str) -> None:
    corrupt(shop_db, f"UPDATE goods SET stock = stock - 1 WHERE id = {TEA}")
    assert failing(audit_file(shop_db)) == {
        "stock": "1 violation: goods 10: stock 22, but initial 20 + restocked 5 + ledger -2 = 23"
    }


def test_a_stock_ledger_of_fractions_fails_the_stock_check_rather_than_the_audit(
    shop_db: str,
) -> None:
    # SQLite's sum() of a REAL is a float, which the detail formatted as a whole number:
    # a traceback offline, a 500 from GET /v1/audit
    corrupt(shop_db, f"UPDATE stock_ledger SET quantity = quantity + 0.5 WHERE goods_id = {TEA}")
    assert "initial 20 + restocked 5 + ledger +0.5 = 25.5" in failing(audit_file(shop_db))["stock"]


def test_stock_and_money_made_in_multiples_of_the_fingerprints_modulus_are_still_found(
    shop_db: str,
) -> None:
    # +p on one key and -p on another left every residue as it was and the plain sum too:
    # the gates stayed shut on two billion units made out of nothing
    p = 2_147_483_647
    corrupt(shop_db, f"UPDATE goods SET stock = stock + {p} WHERE id = {TEA}")
    corrupt(shop_db, f"UPDATE goods SET initial_stock = initial_stock + {p} WHERE id != {TEA}")
    corrupt(shop_db, f"UPDATE users SET balance = balance + {p} WHERE id = {ANN}")
    corrupt(
        shop_db,
        "INSERT INTO wallet_ledger (user_id, order_id, reason, amount, at) "
        f"VALUES ({BOB}, NULL, 'credit', {p}, 0)",
    )
    found = failing(audit_file(shop_db))
    assert f"goods {TEA}: stock {22 + 1 + p}" in found["stock"]
    assert f"user {ANN}" in found["wallet"] and f"user {BOB}" in found["wallet"]


@pytest.mark.parametrize(
    "amounts",
    [(2_147_483_646, 1), (2_147_483_647**2,)],  # residues that carry; a multiple of p twice
)
def test_money_made_in_multiples_of_the_modulus_over_several_rows_is_still_found(
    shop_db: str, amounts: tuple[int, ...]
) -> None:
    for holder, sign in ((ANN, 1), (BOB, -1)):
        for amount in amounts:
            corrupt(
                shop_db,
                "INSERT INTO wallet_ledger (user_id, order_id, reason, amount, at) "
                f"VALUES ({holder}, NULL, 'credit', {sign * amount}, 0)",
            )
    found = failing(audit_file(shop_db))
    assert f"user {ANN}" in found["wallet"] and f"user {BOB}" in found["wallet"]


def test_ledger_rows_of_goods_that_do_not_exist_fail_the_stock_check_though_they_net_to_zero(
    shop_db: str,
) -> None:
    corrupt(
        shop_db,
        "INSERT INTO stock_ledger (goods_id, order_id, reason, quantity, at) "
        "VALUES (99, 101, 'take', -1, 0), (99, 101, 'release', 1, 0)",
    )
    assert failing(audit_file(shop_db)) == {
        "stock": "1 violation: goods 99 does not exist but has 2 stock ledger rows"
    }


def test_a_wallet_balance_off_its_ledger_fails_the_wallet_check(shop_db: str) -> None:
    corrupt(shop_db, f"UPDATE users SET balance = balance + 500 WHERE id = {BOB}")
    assert failing(audit_file(shop_db)) == {
        "wallet": "1 violation: user 2: balance 1000, but the wallet ledger sums to 500"
    }


def test_a_coupon_marked_used_by_no_order_fails_the_coupons_check(shop_db: str) -> None:
    corrupt(shop_db, f"UPDATE coupons SET order_id = 999 WHERE id = {SPARE}")
    assert failing(audit_file(shop_db)) == {
        "coupons": "1 violation: coupon 21 is marked used by order 999, which does not exist"
    }


def test_a_coupon_freed_while_its_order_still_holds_it_fails_the_coupons_check(
    shop_db: str,
) -> None:
    corrupt(shop_db, f"UPDATE coupons SET order_id = NULL WHERE id = {USED}")
    assert failing(audit_file(shop_db)) == {
        "coupons": "1 violation: coupon 20 is unused, but live order 100 holds it"
    }


def test_points_off_their_ledger_fail_the_points_check(shop_db: str) -> None:
    corrupt(shop_db, f"UPDATE users SET points = points + 7 WHERE id = {ANN}")
    assert failing(audit_file(shop_db)) == {
        "points": "1 violation: user 1: points 21, but the points ledger sums to 14"
    }


def test_a_refund_record_lost_fails_the_money_and_refunds_checks(shop_db: str) -> None:
    corrupt(shop_db, "DELETE FROM refunds")
    assert failing(audit_file(shop_db)) == {
        "money": "1 violation: order 103: collected 14.50, but kept 0.00 + refunded 0.00",
        "refunds": "1 violation: canceled order 103 was paid but has no refund record",
    }


def test_a_canceled_order_without_a_reason_fails_the_states_check(shop_db: str) -> None:
    corrupt(shop_db, "UPDATE orders SET cancel_reason = NULL WHERE id = 101")
    assert failing(audit_file(shop_db)) == {
        "states": "1 violation: canceled order 101 has no cancel reason"
    }


def test_amounts_that_do_not_add_up_fail_the_amounts_check(shop_db: str) -> None:
    corrupt(shop_db, "UPDATE orders SET coupon_discount = 400 WHERE id = 100")
    assert failing(audit_file(shop_db)) == {
        "amounts": "1 violation: order 100: goods 900 + shipping 1000 = order 1900, less "
        "discount 400 and wallet 1400 = pay 0 does not add up"
    }


def test_a_goods_amount_its_items_do_not_cost_fails_the_amounts_check(shop_db: str) -> None:
    corrupt(shop_db, "UPDATE order_items SET quantity = 3 WHERE order_id = 102")
    assert failing(audit_file(shop_db)) == {
        "stock": f"1 violation: order 102 ordered 3 of goods {CUP}, but holds 1",
        "amounts": "1 violation: order 102: goods amount 1200, but its items cost 3600",
    }


def test_stock_a_live_order_holds_for_another_fails_the_stock_check(shop_db: str) -> None:
    # the goods' totals are unchanged: only the orders' own rows tell
    corrupt(shop_db, "UPDATE stock_ledger SET order_id = 102 WHERE order_id = 100")
    assert failing(audit_file(shop_db)) == {
        "stock": f"2 violations: order 100 ordered 2 of goods {TEA}, but holds 0; "
        f"order 102 ordered 0 of goods {TEA}, but holds 2"
    }


def test_a_wallet_amount_the_wallet_did_not_debit_fails_the_amounts_check(shop_db: str) -> None:
    corrupt(shop_db, "UPDATE orders SET wallet_amount = 1300, coupon_discount = 600 WHERE id = 100")
    assert failing(audit_file(shop_db)) == {
        # pay stays 0 with a discount past the coupon's value: that is found too
        "amounts": "2 violations: order 100: wallet amount 1300, but the wallet debited 1400; "
        "order 100: discount 600, but coupon 20 is worth 500"
    }


def test_a_refund_whose_wallet_part_is_not_the_orders_fails_the_amounts_check(
    shop_db: str,
) -> None:
    corrupt(shop_db, "UPDATE refunds SET wallet_amount = 300")
    assert failing(audit_file(shop_db)) == {
        "amounts": "1 violation: cancel refund 2003 of order 103 gives the wallet 300, not 0"
    }


def test_a_paid_order_without_its_payment_fails_the_amounts_check(shop_db: str) -> None:
    corrupt(shop_db, "DELETE FROM payments WHERE order_id = 102")
    assert failing(audit_file(shop_db)) == {
        "amounts": "1 violation: paid order 102 has no succeeded payment of its 2200"
    }


def test_a_refunded_payment_set_back_to_succeeded_fails_the_money_check(shop_db: str) -> None:
    corrupt(shop_db, "UPDATE refunds SET status = 'refunded' WHERE id = 2003")
    corrupt(shop_db, "INSERT INTO refund_log (refund_id, event, at) VALUES (2003, 'refunded', 0)")
    assert failing(audit_file(shop_db)) == {
        "money": "1 violation: payment 1003 of order 103 is 'succeeded', but its collection "
        "and refunds make it 'refunded'"
    }


def test_a_payment_marked_refunded_with_no_refund_paid_out_fails_the_money_check(
    shop_db: str,
) -> None:
    # order 103's refund is still refunding
    corrupt(shop_db, "UPDATE payments SET status = 'refunded' WHERE id = 1003")
    assert failing(audit_file(shop_db)) == {
        "money": "1 violation: payment 1003 of order 103 is 'refunded', but its collection "
        "and refunds make it 'succeeded'"
    }


def test_a_payment_succeeded_with_nothing_collected_fails_the_money_check(shop_db: str) -> None:
    # a second payment of a paid order, never collected and so never refunded
    corrupt(
        shop_db,
        "INSERT INTO payments (id, order_id, amount, status, created_at, updated_at) "
        "VALUES (1004, 102, 2200, 'succeeded', 0, 0)",
    )
    assert failing(audit_file(shop_db)) == {
        "money": "1 violation: payment 1004 of order 102 is 'succeeded', but the log shows no "
        "collection of it"
    }


def test_a_collected_payment_marked_failed_fails_the_money_check(shop_db: str) -> None:
    corrupt(shop_db, "UPDATE payments SET status = 'failed' WHERE id = 1002")
    assert failing(audit_file(shop_db)) == {
        "money": "1 violation: payment 1002 of order 102 is 'failed', but its collection and "
        "refunds make it 'succeeded'",
        "amounts": "1 violation: paid order 102 has no succeeded payment of its 2200",
    }


def test_a_payment_of_no_known_status_fails_the_money_check(shop_db: str) -> None:
    corrupt(shop_db, "UPDATE payments SET status = 'settled' WHERE id = 1003")
    assert failing(audit_file(shop_db)) == {
        "money": "1 violation: payment 1003 of order 103 is 'settled'"
    }


def test_stock_taken_by_an_order_that_does_not_exist_fails_the_stock_check(shop_db: str) -> None:
    corrupt(
        shop_db,
        "INSERT INTO stock_ledger (goods_id, order_id, reason, quantity, at) "
        f"VALUES ({TEA}, 42, 'take', -5, 0)",
    )
    corrupt(shop_db, f"UPDATE goods SET stock = stock - 5 WHERE id = {TEA}")
    assert failing(audit_file(shop_db)) == {
        "stock": f"1 violation: order 42 does not exist but moved -5 of goods {TEA}"
    }


@pytest.mark.parametrize(
    ("sql", "said"),
    [
        ("UPDATE orders SET paid_at = NULL WHERE id = 102", "paid order 102 has no paid_at"),
        ("UPDATE orders SET canceled_at = NULL WHERE id = 101",
         "canceled order 101 has no canceled_at"),
    ],
)
def test_a_status_without_the_time_it_says_fails_the_states_check(
    shop_db: str, sql: str, said: str
) -> None:
    corrupt(shop_db, sql)
    assert failing(audit_file(shop_db)) == {"states": f"1 violation: {said}"}


@pytest.mark.parametrize(
    ("sql", "said"),
    [
        # a start would undo it as an interrupted placement, points and payment kept
        ("UPDATE orders SET status = 'pending' WHERE id = 102", "pending order 102 has paid_at"),
        # moved on without being shipped, or moved back after it
        ("UPDATE orders SET status = 'delivered' WHERE id = 102",
         "delivered order 102 has no shipped_at"),
        ("UPDATE orders SET status = 'shipped', shipped_at = 5 WHERE id = 102; "
         "UPDATE orders SET status = 'paid' WHERE id = 102", "paid order 102 has shipped_at"),
        ("UPDATE orders SET delivered_at = 5 WHERE id = 101",
         "canceled order 101 has delivered_at"),
    ],
)
def test_a_status_beside_a_time_it_has_not_reached_yet_fails_the_states_check(
    shop_db: str, sql: str, said: str
) -> None:
    for statement in sql.split("; "):
        corrupt(shop_db, statement)
    assert failing(audit_file(shop_db))["states"].startswith(f"1 violation: {said}")


def test_a_returned_order_without_an_approved_return_fails_the_states_check(
    shop_db: str,
) -> None:
    corrupt(shop_db, "UPDATE orders SET status = 'returned' WHERE id = 102")
    corrupt(
        shop_db,
        "INSERT INTO returns (id, order_id, status, created_at) VALUES (7, 100, 'bogus', 0)",
    )
    failed = failing(audit_file(shop_db))
    assert "returned order 102 has no approved return" in failed["states"]
    assert "return 7 of order 100 is 'bogus'" in failed["states"]


def test_a_discount_past_the_coupons_value_fails_the_amounts_check(shop_db: str) -> None:
    corrupt(shop_db, f"UPDATE coupons SET value = 100 WHERE id = {USED}")
    assert failing(audit_file(shop_db)) == {
        "amounts": f"1 violation: order 100: discount 500, but coupon {USED} is worth 100"
    }


@pytest.mark.parametrize(
    ("sql", "said"),
    [
        ("UPDATE refunds SET kind = 'return' WHERE id = 2003",  # still refunding: in flight
         "return refund 2003 is of order 103, which is canceled; 1 in flight"),
        ("UPDATE refunds SET status = 'refunded' WHERE id = 2003",
         "refund 2003 of order 103 is refunded, but its log never says so"),
    ],
)
def test_a_refund_its_order_or_log_does_not_bear_out_fails_the_refunds_check(
    shop_db: str, sql: str, said: str
) -> None:
    corrupt(shop_db, sql)
    assert failing(audit_file(shop_db))["refunds"] == f"1 violation: {said}"


def test_a_refund_refunding_with_nothing_driving_it_fails_the_refunds_check(
    shop_db: str,
) -> None:
    corrupt(shop_db, "DELETE FROM timers WHERE kind = 'refunder'")
    assert failing(audit_file(shop_db)) == {
        "refunds": "1 violation: refund 2003 of order 103 is refunding with nothing driving it"
    }


def test_a_refund_the_provider_failed_is_left_to_the_staff_not_a_violation(
    shop_db: str,
) -> None:
    corrupt(shop_db, "DELETE FROM timers WHERE kind = 'refunder'")
    corrupt(shop_db, "UPDATE refunds SET provider_failed = 'card refused' WHERE id = 2003")
    assert audit_file(shop_db).ok


def test_points_a_paid_order_did_not_give_fail_the_points_check(shop_db: str) -> None:
    # the ledger and the balance agree: only the order's own record tells
    corrupt(shop_db, "UPDATE points_ledger SET amount = amount + 1000 WHERE order_id = 100")
    corrupt(shop_db, f"UPDATE users SET points = points + 1000 WHERE id = {ANN}")
    assert failing(audit_file(shop_db)) == {
        "points": f"1 violation: paid order 100 gives user {ANN} 1014 points, not 14"
    }


def test_an_order_holding_another_users_coupon_fails_the_coupons_check(shop_db: str) -> None:
    corrupt(shop_db, f"UPDATE coupons SET user_id = {BOB} WHERE id = {USED}")
    assert failing(audit_file(shop_db)) == {
        "coupons": f"1 violation: order 100 of user {ANN} holds coupon {USED} of user {BOB}"
    }


def test_a_placement_that_failed_on_another_users_coupon_is_no_violation(shop_db: str) -> None:
    corrupt(
        shop_db,
        "INSERT INTO orders (id, user_id, status, cancel_reason, coupon_id, created_at, "
        f"canceled_at) VALUES (106, {BOB}, 'canceled', 'placement_failed', {SPARE}, 0, 0)",
    )
    assert audit_file(shop_db).ok


def test_a_refund_of_no_known_kind_fails_the_refunds_check(shop_db: str) -> None:
    corrupt(shop_db, "UPDATE refunds SET kind = 'banana'")
    assert failing(audit_file(shop_db)) == {
        "refunds": "1 violation: refund 2003 of order 103 is 'of kind banana'; 1 in flight"
    }


def test_a_payment_log_row_that_is_no_json_is_named_and_the_audit_goes_on(
    shop_db: str,
) -> None:
    corrupt(shop_db, "UPDATE payment_log SET body = x'ff00' WHERE order_id = 102")
    failed = failing(audit_file(shop_db))
    assert failed["money"].startswith("2 violations: order 102: collected 0.00, but kept 22.00")
    assert "of order 102 is no callback body" in failed["money"]


def test_an_order_awaiting_payment_without_its_deadline_fails_the_states_check(
    shop_db: str,
) -> None:
    corrupt(shop_db, "UPDATE orders SET status = 'awaiting_payment' WHERE id = 100")
    assert failing(audit_file(shop_db)) == {
        "states": "2 violations: order 100 awaits payment with no deadline timer; "
        "awaiting_payment order 100 has no expires_at"
    }


async def test_a_canceled_orders_release_still_in_the_outbox_is_in_flight_not_a_violation(
    shop_db: str,
) -> None:
    async with open_shop(shop_db) as rt:
        rt.system.outbox.stop()  # the release stays in the outbox, as if the server stopped
        await rt.system.ask(goods(CUP), TakeStock(104, 1))
        await rt.system.ask(user(ANN), DebitWallet(104, 200))
        await rt.system.ask(coupon(SPARE), UseCoupon(104, ANN, 1_200, rt.system.clock.now()))
        await record_order(
            rt,
            104,
            ANN,
            "canceled",
            {CUP: 1},
            coupon_id=SPARE,
            wallet_amount=200,
            cancel_reason="timeout",
        )
        await rt.system.ask(assets(104), ReleaseAssets(104, ANN, (CUP,), SPARE, 200, False))
        await record_order(rt, 105, ANN, "pending", {TEA: 1})
    report = audit_file(shop_db)
    assert report.ok, failing(report)
    details = {check.name: check.detail for check in report.checks}
    assert details["stock"].endswith("; 1 in flight")
    assert details["wallet"].endswith("; 1 in flight")
    assert details["coupons"].endswith("; 1 in flight")
    assert details["states"].endswith("; 1 in flight (pending placements)")
    corrupt(shop_db, "DELETE FROM outbox")
    assert failing(audit_file(shop_db)) == {
        "stock": "1 violation: canceled order 104 still holds 1 of goods 11",
        "wallet": "1 violation: canceled order 104 still holds 200 of user 1",
        "coupons": "1 violation: coupon 21 is still marked used by canceled order 104",
    }


def test_a_release_assets_in_the_outbox_counts_exactly_as_it_will_fan_out(shop_db: str) -> None:
    corrupt(
        shop_db,
        f"DELETE FROM stock_ledger WHERE order_id = 101 AND goods_id = {TEA} AND quantity > 0",
    )
    corrupt(shop_db, f"UPDATE goods SET stock = stock - 1 WHERE id = {TEA}")
    assert "canceled order 101 still holds 1 of goods 10" in failing(audit_file(shop_db))["stock"]
    pending = ReleaseAssets(101, ANN, (TEA,), None, 0, revoke_points=False)
    with sqlite3.connect(shop_db) as conn:
        conn.execute(
            "INSERT INTO outbox (id, kind, actor_id, payload, created_at) "
            "VALUES (1, 'assets', 101, ?, 0)",
            (msgspec.msgpack.encode(pending),),
        )
    conn.close()
    assert audit_file(shop_db).ok


@pytest.mark.parametrize(
    "release",
    [ReturnStock(100, "release"), RevokePoints(100)],
    ids=["stock", "points"],
)
def test_a_release_on_its_way_for_an_order_that_holds_its_assets_fails_the_audit(
    shop_db: str, release: Any
) -> None:
    # a paid order gives nothing back: no unit that keeps it paid writes such a message
    kind, actor_id = ("goods", TEA) if isinstance(release, ReturnStock) else ("user", ANN)
    with sqlite3.connect(shop_db) as conn:
        conn.execute(
            "INSERT INTO outbox (id, kind, actor_id, payload, created_at) VALUES (1, ?, ?, ?, 0)",
            (kind, actor_id, msgspec.msgpack.encode(release)),
        )
    conn.close()
    assert failing(audit_file(shop_db)) == {
        "outbox": "a release of paid order 100 is on its way"
    }


def test_stock_moved_between_two_goods_is_found_though_the_totals_still_agree(
    shop_db: str,
) -> None:
    corrupt(shop_db, f"UPDATE goods SET stock = stock + 1 WHERE id = {TEA}")
    corrupt(shop_db, f"UPDATE goods SET stock = stock - 1 WHERE id = {CUP}")
    assert failing(audit_file(shop_db)) == {
        "stock": "2 violations: goods 10: stock 24, but initial 20 + restocked 5 + ledger -2 = 23; "
        "goods 11: stock 1, but initial 3 + restocked 0 + ledger -1 = 2"
    }


def test_money_moved_between_two_users_is_found_though_the_totals_still_agree(
    shop_db: str,
) -> None:
    corrupt(shop_db, f"UPDATE users SET balance = balance - 100 WHERE id = {ANN}")
    corrupt(shop_db, f"UPDATE users SET balance = balance + 100 WHERE id = {BOB}")
    assert set(failing(audit_file(shop_db))) == {"wallet"}


def test_a_refund_recorded_on_the_wrong_order_is_found_though_the_totals_agree(
    shop_db: str,
) -> None:
    corrupt(shop_db, "UPDATE refunds SET order_id = 102")
    assert failing(audit_file(shop_db))["money"] == (
        "2 violations: order 102: collected 22.00, but kept 22.00 + refunded 14.50; "
        "order 103: collected 14.50, but kept 0.00 + refunded 0.00"
    )


async def test_a_ledger_summing_past_64_bits_fails_its_check_and_the_others_still_run(
    shop_db: str,
) -> None:
    # SQLite's sum overflowed and the one statement failed: a traceback offline, a 500 live
    huge = 2**62
    for _ in range(2):
        corrupt(
            shop_db,
            "INSERT INTO wallet_ledger (user_id, order_id, reason, amount, at) "
            f"VALUES ({BOB}, NULL, 'credit', {huge}, 0)",
        )

    offline = audit_file(shop_db)
    async with open_shop(shop_db) as rt:
        live = await audit(rt.store.reader)

    for report in (offline, live):
        assert not report.ok
        assert [check.name for check in report.checks][:3] == ["stock", "wallet", "points"]
        assert "passes 64 bits" in failing(report)["wallet"]
        assert all(check.ok for check in report.checks if check.name != "wallet")
