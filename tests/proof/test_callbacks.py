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
    assert [p.provider for p in figures.providers] == ["alipay", "wechatpay", "stripe"]
    for provider in figures.providers:
        print(provider.line())
        assert provider.forged >= 20 and provider.forged_accepted == 0, provider.line()
        assert provider.double_credits == [], provider.line()
        assert provider.duplicates_acknowledged == provider.duplicates, provider.line()
        assert provider.late >= 1 and provider.late_refunded == provider.late, provider.line()
        assert provider.genuine_refused == 0 and provider.audit_ok, provider.line()
    assert figures.ok
