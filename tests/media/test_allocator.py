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
    alloc = Allocator(headroom=0.85, up_hold_ms=2000, after_down_ms=6000)
    alloc.update(800, LESSON, 0)  # camera mid (680 budget)
    flaps = run(alloc, [(t, 800 + (60 if (t // 500) % 2 else -60)) for t in range(500, 20000, 500)])
    assert flaps == []


def test_upgrade_needs_the_better_allocation_to_last() -> None:
    alloc = Allocator(headroom=0.85, up_hold_ms=2000, after_down_ms=0)
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
