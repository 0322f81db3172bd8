"""Sharing a classroom's downlink over its slots: priorities, fallbacks, hysteresis."""

from __future__ import annotations

import pytest

from media.allocator import OFF, Allocator, SlotOffer, allocate

AUDIO = SlotOffer("teacher_audio", 0, (("high", 40.0),), essential=True)
SLIDES = SlotOffer("slides", 1, (("low", 60.0), ("high", 150.0)))
CAMERA = SlotOffer("teacher_camera", 2, (("low", 150.0), ("mid", 500.0), ("high", 1200.0)))
STAGE_AUDIO = SlotOffer("stage_audio", 0, (("high", 40.0),), essential=True)
STAGE = SlotOffer("stage_video", 3, (("low", 150.0), ("mid", 500.0)))
LESSON = [AUDIO, SLIDES, CAMERA]


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (20, {"teacher_audio": "high", "slides": OFF, "teacher_camera": OFF}),  # audio always
        (100, {"teacher_audio": "high", "slides": "low", "teacher_camera": OFF}),
        (99, {"teacher_audio": "high", "slides": OFF, "teacher_camera": OFF}),
        (200, {"teacher_audio": "high", "slides": "high", "teacher_camera": OFF}),
        (250, {"teacher_audio": "high", "slides": "low", "teacher_camera": "low"}),
        (340, {"teacher_audio": "high", "slides": "high", "teacher_camera": "low"}),
        (700, {"teacher_audio": "high", "slides": "high", "teacher_camera": "mid"}),
        (1400, {"teacher_audio": "high", "slides": "high", "teacher_camera": "high"}),
    ],
)
def test_priority_order(budget: float, expected: dict[str, str]) -> None:
    assert allocate(budget, LESSON) == expected


def test_stage_comes_after_the_lesson_but_its_audio_is_kept() -> None:
    got = allocate(400, [*LESSON, STAGE_AUDIO, STAGE])
    assert got["stage_audio"] == "high"
    assert got["slides"] == "high" and got["teacher_camera"] == "low"
    assert got["stage_video"] == OFF


def run(alloc: Allocator, steps: list[tuple[int, float]]) -> list[tuple[int, str, str]]:
    """Feed (time ms, estimate kbps) pairs; return (time, reason, camera layer) per change."""
    out = []
    for now, kbps in steps:
        decision = alloc.update(kbps, LESSON, now)
        if decision:
            out.append((now, decision.reason, decision.allocation["teacher_camera"]))
    return out


def test_down_at_once_up_after_hold_and_quiet_period() -> None:
    alloc = Allocator(headroom=0.85, up_hold_ms=2000, after_down_ms=6000)
    steps = [(0, 2000.0), (1000, 2000.0), (2000, 300.0)]
    steps += [(t, 2000.0) for t in range(3000, 12000, 500)]
    changes = run(alloc, steps)
    assert changes[0] == (0, "reshape", "high")
    assert changes[1] == (2000, "down", "low")  # 255 kbit/s: audio, slides low, camera low
    # Quiet until 6 s after the drop, then the better allocation must hold 2 s.
    assert changes[2] == (10000, "up", "high")
    assert len(changes) == 3


def test_no_flapping_around_the_threshold() -> None:
    alloc = Allocator(headroom=0.85, up_hold_ms=2000, after_down_ms=6000, probe_ceiling=0)
    alloc.update(800, LESSON, 0)  # camera mid (680 budget)
    flaps = run(alloc, [(t, 800 + (60 if (t // 500) % 2 else -60)) for t in range(500, 20000, 500)])
    assert flaps == []


def test_upgrade_needs_the_better_allocation_to_last() -> None:
    alloc = Allocator(headroom=0.85, up_hold_ms=2000, after_down_ms=0, probe_ceiling=0)
    alloc.update(300, LESSON, 0)
    # Good for 1.5 s, then gone again: no upgrade.
    assert run(alloc, [(500, 2000), (1000, 2000), (1500, 2000), (2000, 300), (2500, 2000)]) == []
    assert run(alloc, [(3000, 2000), (4500, 2000)]) == [(4500, "up", "high")]


def test_a_new_slot_reshapes_at_once() -> None:
    alloc = Allocator()
    alloc.update(2000, LESSON, 0)
    decision = alloc.update(2000, [*LESSON, STAGE_AUDIO, STAGE], 100)
    assert decision is not None and decision.reason == "reshape"
    assert decision.allocation["stage_video"] != OFF


def probing() -> Allocator:
    return Allocator(
        headroom=0.85,
        up_hold_ms=2000,
        after_down_ms=6000,
        probe_ceiling=1.6,
        probe_hold_ms=2000,
        probe_grace_ms=10_000,
    )


def step_through(alloc: Allocator, steps: list[tuple[int, float]]) -> list[tuple[int, str, str]]:
    out = []
    for now, kbps in steps:
        decision = alloc.update(kbps, LESSON, now)
        if decision:
            out.append((now, decision.reason, decision.allocation["teacher_camera"]))
    return out


def test_a_probe_that_the_estimate_follows_is_kept() -> None:
    """REMB sits near what is received; only sending more shows the link carries more."""
    alloc = probing()
    # 250 kbit/s: audio 40 + slides high 150 fit; the camera's 150 more does not.
    assert step_through(alloc, [(0, 250)]) == [(0, "reshape", OFF)]
    changes = step_through(alloc, [(t, 250) for t in range(500, 2600, 500)])
    assert changes == [(2500, "probe", "low")]  # 340 kbit/s <= 1.6 x 250, after the hold
    # The receiver's estimate climbs with what it receives: the probe holds.
    assert step_through(alloc, [(t, 250 + (t - 2500) / 20) for t in range(3000, 6000, 500)]) == []
    assert step_through(alloc, [(6000, 360)]) == []
    # ...and the next probe may come (camera mid: 690 kbit/s is within 1.6 x 450).
    changes = step_through(alloc, [(t, 450) for t in range(6500, 9000, 500)])
    assert changes and changes[0][1] == "probe" and changes[0][2] == "mid"


def test_a_failed_probe_falls_back_at_once_and_backs_off() -> None:
    alloc = probing()
    step_through(alloc, [(t, 250) for t in range(0, 2600, 500)])
    assert alloc.current["teacher_camera"] == "low"  # probing
    # Congestion: the delay-based estimate falls below where the probe began.
    assert step_through(alloc, [(3000, 200)]) == [(3000, "down", OFF)]
    # No new probe for twice the quiet period (12 s), then one after the hold.
    quiet = step_through(alloc, [(t, 250) for t in range(3500, 15000, 500)])
    assert quiet == []
    assert step_through(alloc, [(t, 250) for t in range(15000, 17500, 500)]) == [
        (17000, "probe", "low")
    ]


def test_a_probe_the_estimate_never_reaches_expires() -> None:
    alloc = probing()
    step_through(alloc, [(t, 250) for t in range(0, 2600, 500)])
    changes = step_through(alloc, [(t, 250) for t in range(3000, 13500, 500)])
    assert changes == [(13000, "down", OFF)]  # 10 s of grace, then back


def test_no_probe_beyond_the_ceiling() -> None:
    alloc = probing()
    # 118 kbit/s: audio + slides low (100) fit the headroom; slides high (190) is
    # more than 1.6 x 118 = 188.8: too big a step to try.
    step_through(alloc, [(0, 118)])
    assert alloc.current == {"teacher_audio": "high", "slides": "low", "teacher_camera": OFF}
    assert step_through(alloc, [(t, 118) for t in range(500, 6000, 500)]) == []
