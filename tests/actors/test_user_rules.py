"""The user's rules, with no IO: wallet, points, the unpaid-orders cap, Idempotency-Keys."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shopkeep.actors.config import MAX_HELD, MAX_POINTS
from shopkeep.actors.protocol import (
    AwardPoints,
    BeginOrder,
    CreateUser,
    DebitWallet,
    OrderTicket,
    ReleaseWallet,
    RevokePoints,
    UserView,
)
from shopkeep.actors.user_rules import (
    Account,
    Change,
    KeyUse,
    PointsMove,
    WalletMove,
    award,
    begin_order,
    credit,
    debit,
    open_account,
    release,
    revoke,
)
from shopkeep.refusals import (
    IDEMPOTENCY_CONFLICT,
    INSUFFICIENT_BALANCE,
    TOO_MANY_UNPAID_ORDERS,
    VALIDATION_ERROR,
    Refusal,
)

ANN = Account("ann", 1_000, 0)


def change(decision: Change | Refusal) -> Change:
    assert isinstance(decision, Change), decision
    return decision


def refusal(decision: object) -> Refusal:
    assert isinstance(decision, Refusal), decision
    return decision


# -- opening and crediting ------------------------------------------------------------------


def test_an_opening_balance_is_written_to_the_ledger_without_an_order() -> None:
    opened = change(open_account(CreateUser("ann", 500, "h")))
    assert opened.account == Account("ann", 500, 0)
    assert opened.move == WalletMove(None, "opening", 500)


def test_an_account_opened_empty_writes_no_ledger_row() -> None:
    assert change(open_account(CreateUser("ann", 0, "h"))).move is None


def test_a_negative_opening_balance_or_an_empty_name_is_refused() -> None:
    assert refusal(open_account(CreateUser("ann", -1, "h"))).code == VALIDATION_ERROR
    assert refusal(open_account(CreateUser("", 0, "h"))).code == VALIDATION_ERROR


def test_a_credit_adds_to_the_balance_with_a_credit_row() -> None:
    credited = change(credit(ANN, 250))
    assert credited.account.balance == 1_250
    assert credited.move == WalletMove(None, "credit", 250)


@pytest.mark.parametrize("amount", [0, -5])
def test_a_credit_that_is_not_positive_is_refused(amount: int) -> None:
    assert refusal(credit(ANN, amount)).code == VALIDATION_ERROR


def test_a_credit_past_the_most_a_wallet_holds_is_refused() -> None:
    full = Account("ann", MAX_HELD - 100, 0)
    assert change(credit(full, 100)).account.balance == MAX_HELD
    refused = refusal(credit(full, 101))
    assert refused.code == VALIDATION_ERROR and str(MAX_HELD) in refused.detail
    assert refused.pointer == "/amount"


def test_the_view_shows_balances_and_never_the_token() -> None:
    assert ANN.view(7) == UserView(7, "ann", 1_000, 0)


# -- beginning an order ---------------------------------------------------------------------


def begin(order_id: int, key: str | None = None, request_hash: str = "h1") -> BeginOrder:
    return BeginOrder(order_id, key, request_hash, max_unpaid=2)


def test_an_order_is_admitted_under_the_cap() -> None:
    assert begin_order(1, {10}, None, begin(11)) == OrderTicket(11, existing=False)


def test_one_more_unpaid_order_than_the_cap_is_refused() -> None:
    refused = refusal(begin_order(1, {10, 11}, None, begin(12)))
    assert refused.code == TOO_MANY_UNPAID_ORDERS
    assert refused.detail == (
        "user 1 already has 2 orders unpaid or being placed (at most 2 unpaid)"
    )


def test_a_provisional_order_is_admitted_at_the_cap_and_told_so() -> None:
    provisional = msgspec.structs.replace(begin(12), provisional=True)
    assert begin_order(1, {10, 11}, None, provisional) == OrderTicket(
        12, existing=False, capped=True
    )
    assert begin_order(1, {10}, None, provisional) == OrderTicket(12, existing=False)


def test_an_order_already_counted_as_unpaid_is_admitted_again_at_the_cap() -> None:
    assert begin_order(1, {10, 11}, None, begin(11)) == OrderTicket(11, existing=False)


def test_a_key_seen_with_the_same_request_answers_the_order_first_begun_with_it() -> None:
    seen = KeyUse("h1", 10, 0.0)
    assert begin_order(1, set(), seen, begin(99, "k")) == OrderTicket(10, existing=True)


def test_a_key_seen_with_the_same_request_is_answered_even_at_the_cap() -> None:
    seen = KeyUse("h1", 10, 0.0)
    assert begin_order(1, {10, 11}, seen, begin(99, "k")) == OrderTicket(10, existing=True)


def test_the_same_begin_asked_again_with_its_key_carries_on() -> None:
    assert begin_order(1, {10}, KeyUse("h1", 10, 0.0), begin(10, "k")) == OrderTicket(10, False)


def test_a_key_seen_with_another_request_is_an_idempotency_conflict() -> None:
    refused = refusal(begin_order(1, set(), KeyUse("h1", 10, 0.0), begin(99, "k", "h2")))
    assert refused.code == IDEMPOTENCY_CONFLICT
    assert refused.order_id is None  # no order was recorded for this request


def test_a_key_bound_to_a_placement_that_did_nothing_is_admitted_as_new() -> None:
    retry = msgspec.structs.replace(begin(99, "k"), replaces=10)
    assert begin_order(1, set(), KeyUse("h1", 10, 0.0), retry) == OrderTicket(99, False)


def test_a_key_taken_over_meanwhile_by_another_order_is_not_rebound() -> None:
    retry = msgspec.structs.replace(begin(99, "k"), replaces=10)
    assert begin_order(1, set(), KeyUse("h1", 12, 0.0), retry) == OrderTicket(12, True)


def test_a_rebound_key_still_counts_under_the_unpaid_orders_cap() -> None:
    retry = msgspec.structs.replace(begin(12, "k"), replaces=10)
    refused = refusal(begin_order(1, {10, 11}, KeyUse("h1", 10, 0.0), retry))
    assert refused.code == TOO_MANY_UNPAID_ORDERS


def test_a_key_another_route_bound_is_a_conflict_for_a_placement() -> None:
    refused = refusal(begin_order(1, set(), KeyUse("h9", None, 0.0), begin(99, "k")))
    assert refused.code == IDEMPOTENCY_CONFLICT


# -- debits and releases --------------------------------------------------------------------


def test_a_debit_takes_the_amount_with_an_order_debit_row() -> None:
    debited = change(debit(ANN, 1, DebitWallet(10, 300), already_debited=False))
    assert debited.account.balance == 700
    assert debited.move == WalletMove(10, "order_debit", -300)


def test_a_second_debit_for_the_same_order_changes_nothing() -> None:
    assert change(debit(ANN, 1, DebitWallet(10, 300), already_debited=True)) == Change(ANN)


def test_a_debit_of_nothing_writes_nothing() -> None:
    assert change(debit(ANN, 1, DebitWallet(10, 0), already_debited=False)).move is None


def test_a_debit_above_the_balance_is_refused_and_says_by_how_much() -> None:
    refused = refusal(debit(ANN, 1, DebitWallet(10, 1_001), already_debited=False))
    assert refused.code == INSUFFICIENT_BALANCE
    assert refused.detail == "user 1: balance 1000, the order would take 1001"


def test_a_negative_debit_is_refused() -> None:
    assert refusal(debit(ANN, 1, DebitWallet(10, -1), False)).code == VALIDATION_ERROR


def test_a_release_gives_back_what_the_order_debited() -> None:
    released = release(ANN, ReleaseWallet(10, 300), {"order_debit": -300})
    assert released.account.balance == 1_300
    assert released.move == WalletMove(10, "order_release", 300)


def test_a_release_gives_back_at_most_what_the_order_debited() -> None:
    released = release(ANN, ReleaseWallet(10, 500), {"order_debit": -300})
    assert released.move == WalletMove(10, "order_release", 300)


def test_a_release_for_an_order_that_never_debited_is_a_no_op() -> None:
    assert release(ANN, ReleaseWallet(10, 300), {}) == Change(ANN)


def test_a_release_applied_before_is_a_no_op() -> None:
    ledger = {"order_debit": -300, "order_release": 300}
    assert release(ANN, ReleaseWallet(10, 300), ledger) == Change(ANN)


def test_a_refund_to_the_wallet_after_a_release_gives_nothing_more() -> None:
    ledger = {"order_debit": -300, "order_release": 300}
    assert release(ANN, ReleaseWallet(10, 300, "refund"), ledger) == Change(ANN)


def test_a_refund_to_the_wallet_gives_back_the_debit_once() -> None:
    released = release(ANN, ReleaseWallet(10, 300, "refund"), {"order_debit": -300})
    assert released.move == WalletMove(10, "refund", 300)


def test_a_release_with_an_unknown_reason_is_a_senders_bug() -> None:
    with pytest.raises(ValueError, match="reason"):
        release(ANN, ReleaseWallet(10, 300, "gift"), {"order_debit": -300})


# -- points ---------------------------------------------------------------------------------


def test_points_are_awarded_once_per_order() -> None:
    awarded = award(ANN, AwardPoints(10, 12), {})
    assert awarded.account.points == 12
    assert awarded.move == PointsMove(10, "award", 12)
    assert award(ANN, AwardPoints(10, 12), {"award": 12}) == Change(ANN)


def test_an_award_is_cut_to_the_most_points_held_and_its_revoke_takes_back_that() -> None:
    # uncut, points past 2**63 could not be written: the award's commit failed for ever; and
    # past 2**53 a JavaScript reader of the JSON was shown another number than the shop held
    assert MAX_POINTS == 2**53 - 1
    near = Account("ann", 0, MAX_POINTS - 5)
    awarded = award(near, AwardPoints(10, 12), {})
    assert (awarded.account.points, awarded.move) == (MAX_POINTS, PointsMove(10, "award", 5))
    assert award(awarded.account, AwardPoints(11, 12), {}) == Change(awarded.account)
    revoked = revoke(awarded.account, RevokePoints(10), {"award": 5})
    assert revoked.account.points == MAX_POINTS - 5


def test_no_points_award_nothing() -> None:
    assert award(ANN, AwardPoints(10, 0), {}) == Change(ANN)


def test_a_revoke_takes_back_exactly_what_was_awarded_once() -> None:
    holder = Account("ann", 0, 12)
    revoked = revoke(holder, RevokePoints(10), {"award": 12})
    assert revoked.account.points == 0
    assert revoked.move == PointsMove(10, "revoke", -12)
    assert revoke(holder, RevokePoints(10), {"award": 12, "revoke": -12}) == Change(holder)


def test_a_revoke_that_comes_before_its_award_leaves_a_tombstone_the_award_respects() -> None:
    tombstone = revoke(ANN, RevokePoints(10), {})
    assert tombstone == Change(ANN, PointsMove(10, "revoke", 0))
    assert award(ANN, AwardPoints(10, 12), {"revoke": 0}) == Change(ANN)


def test_a_revoke_may_take_the_points_below_zero_when_they_were_spent() -> None:
    spent = Account("ann", 0, 5)
    assert revoke(spent, RevokePoints(10), {"award": 12}).account.points == -7


# -- the invariant --------------------------------------------------------------------------

operations = st.lists(
    st.tuples(
        st.sampled_from(["debit", "release", "refund"]), st.integers(1, 5), st.integers(0, 400)
    ),
    max_size=40,
)


@given(operations)
def test_any_debits_and_releases_keep_the_balance_equal_to_the_ledger_and_never_negative(
    ops: list[tuple[str, int, int]],
) -> None:
    account = Account("ann", 1_000, 0)
    ledger: dict[int, dict[str, int]] = {}
    for operation, order_id, amount in ops:
        rows = ledger.setdefault(order_id, {})
        if operation == "debit":
            decision = debit(account, 1, DebitWallet(order_id, amount), "order_debit" in rows)
        else:
            reason = "order_release" if operation == "release" else "refund"
            decision = release(account, ReleaseWallet(order_id, amount, reason), rows)
        if isinstance(decision, Refusal):
            continue
        account = decision.account
        if isinstance(decision.move, WalletMove):
            rows[decision.move.reason] = decision.move.amount
        assert account.balance >= 0
        assert account.balance == 1_000 + sum(sum(r.values()) for r in ledger.values())
        assert all(sum(r.values()) <= 0 for r in ledger.values())  # never more back than taken
