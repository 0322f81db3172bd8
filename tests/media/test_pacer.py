"""Pacing and the resend budget, with a hand-moved clock."""

from __future__ import annotations

import pytest

from media.control.pacer import UDP_IP_BYTES, Pacer, PaddingBudget, ResendBudget


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
        delay = pacer.delay_for(1200 + UDP_IP_BYTES)
        delays.append(delay)
        clock.t += delay
        pacer.consume(1200)
    # The burst allowance lets the first packets go at once; the whole frame takes
    # its size on the wire at the rate, as the link would have taken it anyway.
    assert delays[0] == 0.0
    assert clock.t == pytest.approx((20 * 1228 - 2600) * 8 / 256_000, rel=0.01)


def test_audio_goes_at_once_and_video_yields_to_it() -> None:
    clock = Clock()
    pacer = Pacer(100_000, clock)
    pacer.consume(2600 - UDP_IP_BYTES)  # the burst allowance is spent
    for _ in range(5):
        pacer.consume(120)  # audio never waits...
    # ...and the video packet behind it waits for the audio's share too, headers
    # included: 5 x (120 + 28) bytes.
    assert pacer.delay_for(1228) == pytest.approx((1228 + 740) * 8 / 100_000)


def test_what_went_out_is_measured_on_the_wire_over_two_seconds() -> None:
    clock = Clock()
    pacer = Pacer(1_000_000, clock)
    assert pacer.sent_bps() is None  # nothing to measure over yet
    for tick in range(1, 9):  # 50 packets of 222 bytes a second, read every half second
        for _ in range(25):
            pacer.consume(250 - UDP_IP_BYTES)
        clock.t = tick * 0.5
        rate = pacer.sent_bps()
        # With UDP and IPv4 headers: 50 x 250 bytes = 100 kbit/s, once 2 s have passed.
        assert (rate is None) == (clock.t < 2.0)
    assert rate == pytest.approx(100_000)
    clock.t = 5.0  # a second of silence halves the two-second figure
    assert pacer.sent_bps() == pytest.approx(50_000)


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


async def test_a_frame_goes_at_once_only_if_all_its_packets_fit_now() -> None:
    clock = Clock()
    pacer = Pacer(100_000, clock)  # 2600 bytes of tokens to start with
    assert pacer.take_now([1200, 1200])  # 2456 bytes on the wire
    assert not pacer.take_now([1200])  # 144 left: nothing is taken...
    assert pacer.delay_for(100 + UDP_IP_BYTES) == 0.0  # ...not even in part
    clock.t += 0.1  # 1250 bytes later
    assert pacer.take_now([1200])
    # While a packet waits its turn, none goes past it.
    clock.t += 1.0
    async with pacer._lock:
        assert not pacer.take_now([100])
    assert pacer.take_now([100])


def test_padding_is_owed_at_its_rate_and_never_made_up_in_a_burst() -> None:
    clock = Clock()
    padding = PaddingBudget(clock, max_owed_s=0.05)
    padding.set_rate(240_000)  # 30 000 bytes a second
    clock.t = 0.01
    assert padding.due(300) == 1  # 300 bytes owed after 10 ms
    padding.paid(1, 300)
    clock.t = 0.02
    assert padding.due(300) == 1
    # The pacer had no room for a second: what could not go out is owed at most
    # 50 ms deep (1500 bytes), not for the whole time.
    clock.t = 1.0
    assert padding.due(300) == 5
    padding.set_rate(0)
    clock.t = 2.0
    assert padding.due(300) == 0 and padding.sent_bytes == 300


def test_padding_slower_than_a_packet_per_window_still_goes_out_at_its_rate() -> None:
    """34 kbit/s owes 212 bytes in 50 ms, less than one packet: capped there, it was
    never due at all."""
    clock = Clock()
    padding = PaddingBudget(clock, max_owed_s=0.05)
    padding.set_rate(34_000)
    sent = 0
    for tick in range(1, 101):  # a second, polled every 10 ms as the relay does
        clock.t = tick / 100
        due = padding.due(300)
        padding.paid(due, 300)
        sent += due
        if tick % 50 == 0:
            padding.set_rate(34_000)  # the allocation tick sets it again
    assert sent * 300 == pytest.approx(34_000 / 8, abs=300)
