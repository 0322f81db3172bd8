"""Measured layer cost, with hand-advanced time."""

from __future__ import annotations

import pytest

from media.control.meter import PACKET_OVERHEAD_BYTES, RateMeter


def test_steady_rate_includes_packet_overhead() -> None:
    meter = RateMeter(window_s=2.0)
    for i in range(300):  # 15 frames a second of 1000 bytes, 10 s
        meter.add(1000, i / 15)
    wire_bps = 15 * 8 * (1000 + PACKET_OVERHEAD_BYTES)
    assert meter.kbps(299 / 15) == pytest.approx(wire_bps / 1000, rel=0.05)


def test_follows_a_change_within_a_few_windows() -> None:
    meter = RateMeter(window_s=2.0)
    for i in range(150):
        meter.add(2000, i / 15)
    for i in range(150, 300):
        meter.add(500, i / 15)
    assert meter.kbps(299 / 15) == pytest.approx(
        15 * 8 * (500 + PACKET_OVERHEAD_BYTES) / 1000, rel=0.1
    )


def test_unknown_before_and_after_sending() -> None:
    meter = RateMeter(window_s=2.0)
    assert meter.kbps(0) is None
    meter.add(8000, 0.0)  # a layer starts with a keyframe...
    for i in range(1, 30):
        meter.add(100, i / 50)
    assert meter.kbps(0.6) is None  # ...so its first half second says little
    for i in range(30, 150):
        meter.add(100, i / 50)
    assert meter.kbps(3.0) is not None
    assert meter.kbps(10) is None  # paused: its old figure no longer holds
    assert meter.last_kbps() is not None  # but it is the best guess for a restart


def test_a_restarted_layer_is_measured_from_its_restart() -> None:
    """Folded over the pause, a restarted layer's first figures came out near zero:
    the pacer let it out at that rate and its frames were dropped."""
    meter = RateMeter(window_s=2.0)
    for i in range(60):  # 15 frames a second of 1500 bytes, 4 s
        meter.add(1500, i / 15)
    running = meter.kbps(59 / 15)
    assert running is not None
    restart = 20.0  # paused for 16 s
    for i in range(45):  # the same again, 3 s
        now = restart + i / 15
        meter.add(1500, now)
        during = meter.kbps(now)
        # Not measured yet: unknown, and the best guess is what it cost before.
        assert during is None or during == pytest.approx(running, rel=0.2), now
        assert meter.last_kbps() == pytest.approx(running, rel=0.2), now
    assert meter.kbps(restart + 44 / 15) == pytest.approx(running, rel=0.1)
