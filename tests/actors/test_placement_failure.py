"""What a failed placement step tells the client: its refusal as it is, and for an error
inside the shop a generic detail, the error itself logged (it names tables, paths, actors)."""

from __future__ import annotations

import structlog

from shopkeep.actors.placement import BUSY_DETAIL, FAILED_DETAIL, placement_failure
from shopkeep.refusals import Refusal
from shopkeep.runtime import AskTimeout, Overloaded
from shopkeep.store.errors import CommitFailed


def test_a_refusal_is_answered_as_it_is() -> None:
    assert placement_failure(Refusal("insufficient_stock", "2 left")) == (
        "insufficient_stock",
        "2 left",
    )


def test_an_error_inside_the_shop_is_answered_generically_and_logged() -> None:
    inside = CommitFailed("commit failed: disk I/O error on /srv/shop.db-wal")

    with structlog.testing.capture_logs() as logs:
        code, detail = placement_failure(inside)

    assert (code, detail) == ("unavailable", FAILED_DETAIL)
    assert "disk" not in detail and "CommitFailed" not in detail
    [logged] = logs
    assert logged["event"] == "placement_step_failed"
    assert "/srv/shop.db-wal" in logged["error"]


def test_a_timeout_and_an_overload_name_no_actor() -> None:
    assert placement_failure(AskTimeout("goods:7 did not answer")) == ("unavailable", FAILED_DETAIL)
    assert placement_failure(Overloaded("mailbox of goods:7 is full")) == (
        "overloaded",
        BUSY_DETAIL,
    )
