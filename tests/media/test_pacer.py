"""Pacing and the resend budget, with a hand-moved clock."""

from __future__ import annotations

import pytest

from media.pacer import Pacer, ResendBudget


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_keyframe_is_spread_at_the_pacing_rate() -> None:
    clock = Clock()
    pacer = Pacer(256_000, clock)
    delays = []
    for _ in range(20):  # a 24 KB keyframe in 1200-byte packets, all at once
        delay = pacer.delay_for(1200)
        delays.append(delay)
        clock.t += delay
        pacer.consume(1200)
    # The burst allowance lets the first packets go at once; the whole frame takes
    # its size at the rate, as the link would have taken it anyway.
    assert delays[0] == 0.0
    assert clock.t == pytest.approx((20 * 1200 - 2600) * 8 / 256_000, rel=0.01)


def test_audio_goes_at_once_and_video_yields_to_it() -> None:
    clock = Clock()
    pacer = Pacer(100_000, clock)
    pacer.consume(2600)  # the burst allowance is spent
    for _ in range(5):
        pacer.consume(120)  # audio never waits...
    # ...and the video packet behind it waits for the audio's share too.
    assert pacer.delay_for(1200) == pytest.approx((1200 + 600) * 8 / 100_000)


def test_resends_within_budget_and_only_while_useful() -> None:
    clock = Clock()
    budget = ResendBudget(0.15, clock, max_age_s=1.0, min_bps=16_000)
    budget.set_rate(1_000_000)  # 150 kbit/s of resends, half a second's worth at most
    clock.t = 10.0
    allowed = sum(budget.allow(1200, age_s=0.2) for _ in range(20))
    assert allowed == 150_000 // 8 // 2 // 1200  # 7 packets, the rest refused
    assert budget.refused_budget == 20 - allowed
    assert not budget.allow(100, age_s=1.5)  # too old to be any use
    assert budget.refused_old == 1
