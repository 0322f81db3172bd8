"""media.control.ingest: a hole in what a participant sends is named twice, and only then."""

from __future__ import annotations

import pytest

from media.control.ingest import HOLE_S, IngestSample, IngestWatch


def sample(
    packets: int, frames: int, *, lost: int = 0, plis: int = 0, to_decode: int = 0
) -> IngestSample:
    return IngestSample(packets, lost, frames, plis, 0, to_decode, 0)


def test_flowing_frames_say_nothing() -> None:
    watch = IngestWatch("l/teacher/camera in")
    lines = [watch.update(sample(30 * t, 15 * t), float(t)) for t in range(60)]
    assert lines == [None] * 60 and watch.holes == 0


def test_a_source_that_never_sent_is_no_hole() -> None:
    watch = IngestWatch("l/classroom-1/camera in")
    assert [watch.update(sample(0, 0), float(t)) for t in range(30)] == [None] * 30


def test_a_hole_is_named_once_when_it_opens_and_once_when_it_ends() -> None:
    watch = IngestWatch("l/teacher/camera in")
    for t in range(5):
        assert watch.update(sample(30 * t, 15 * t), float(t)) is None
    # Packets keep coming (the jitter buffer holds them) but no frame comes out.
    lines = [
        watch.update(sample(120 + 30 * k, 60, lost=3, plis=k, to_decode=0), 4.0 + k)
        for k in range(1, 8)
    ]
    opened = [line for line in lines if line is not None]
    assert len(opened) == 1 and watch.holes == 1
    assert opened[0].startswith("l/teacher/camera in: no frame for 2.0 s")
    assert "packets +60" in opened[0] and "frames +0" in opened[0] and "lost +3" in opened[0]
    ended = watch.update(sample(400, 75, lost=3, plis=9, to_decode=2), 12.0)
    assert ended is not None and ended.startswith("l/teacher/camera in: frames again after 8.0 s")
    assert "PLI sent +9" in ended and "frames +15" in ended and "2 to decode" in ended
    assert watch.update(sample(430, 90, lost=3, plis=9), 13.0) is None


@pytest.mark.parametrize("gap_s", [1.0, HOLE_S - 0.5])
def test_a_gap_shorter_than_a_hole_says_nothing(gap_s: float) -> None:
    watch = IngestWatch("l/teacher/screen in")
    watch.update(sample(10, 5), 0.0)
    assert watch.update(sample(20, 5), gap_s) is None
    assert watch.update(sample(30, 10), gap_s + 0.1) is None
    assert watch.holes == 0
