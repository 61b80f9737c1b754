"""Group 4: five thousand adversarial payment callbacks, a few hundred of them over HTTP."""

from __future__ import annotations

from shopkeep.proof.callbacks import COUNT, run


def test_no_forged_callback_is_accepted_and_nothing_is_credited_twice() -> None:
    figures = run(COUNT)

    print(figures.line())
    tally = figures.tally
    assert tally.total == COUNT and tally.http >= 100 and tally.forged >= COUNT // 4
    assert tally.stale_replays >= 100  # bytes captured on the wire, sent again too late
    assert tally.forged_accepted == 0
    assert figures.double_credits == []
    assert tally.duplicates >= 100 and tally.duplicates_acknowledged == tally.duplicates
    assert tally.late >= 100 and figures.late_refunded == tally.late
    assert tally.genuine_refused == 0
    assert figures.audit == []
    assert figures.ok
