"""The retries' waits double up to their most, however many tries fail."""

from __future__ import annotations

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.refund_rules import retry_delay
from shopkeep.runtime.backoff import doubling_delay


def test_a_wait_doubles_after_each_failed_try_up_to_its_most() -> None:
    assert [doubling_delay(n, 1.0, 300.0) for n in (1, 2, 3, 9, 10)] == [1, 2, 4, 256, 300]


def test_a_thousand_and_more_failed_tries_wait_the_most_and_do_not_overflow() -> None:
    # 2 ** 1024 as a float overflowed at the 1,025th try of a refund the provider refused for
    # days: the retry crashed into a dead letter and the refund stayed refunding
    config = ShopConfig()
    for attempt in (1_025, 1_026, 10**6):
        assert retry_delay(attempt, config) == config.refund_retry_max_s
        assert doubling_delay(attempt, 0.001, 5.0) == 5.0
