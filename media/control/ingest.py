"""Holes in what a participant sends the relay: named when they happen, not guessed at after.

A soak once saw the teacher's camera and slides both stop reaching the relay for
24 s while the synthetic teacher went on producing 15 frames a second and the
relay's loop ran on time. Nothing said where the frames went: never received,
received but never completed by the jitter buffer, or completed and waiting on
the decoder thread. `IngestWatch` is fed, about once a second, the counters of
one incoming slot (`IngestSample`, read from aiortc by
media.adapter.inbound.read_inbound) and says when a source that was flowing has
delivered no frame for `HOLE_S`, and again when frames come back, with what
the receiver did meanwhile. Two lines a hole, none while all flows: the log
stays quiet until it has something to say.

Pure: the caller passes the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

# No frame for this long from a source that was flowing is a hole. Below the 5 s
# after which a source counts as gone (media.pipeline.ladder.Ladder.live), so the
# log names a hole before the classrooms lose the slot.
HOLE_S = 2.0


@dataclass(frozen=True)
class IngestSample:
    """Cumulative counters of one incoming slot (all its SSRCs, resends included)."""

    # RTP packets received and lost, as the receiver's statistics count them.
    packets: int
    lost: int
    # Frames the relay got out of the decoder.
    frames: int
    # Feedback the relay sent the publisher: picture loss indications and NACKs.
    plis: int
    nacks: int
    # Encoded frames waiting for the decoder thread, and decoded frames waiting
    # for the ladder to read them (now, not cumulative).
    to_decode: int
    decoded_waiting: int


@dataclass
class _Hole:
    since: float
    at_start: IngestSample
    worst_to_decode: int = 0
    worst_decoded_waiting: int = 0


class IngestWatch:
    """One incoming slot's frames over time: `update()` returns a line to log, or None."""

    def __init__(self, name: str, hole_s: float = HOLE_S) -> None:
        self.name = name
        self.hole_s = hole_s
        self._last: IngestSample | None = None
        # When the last frame came (by the samples), None before the first.
        self._frame_at: float | None = None
        self._frame_sample: IngestSample | None = None
        self._hole: _Hole | None = None
        self.holes = 0

    def update(self, sample: IngestSample, now: float) -> str | None:
        last, self._last = self._last, sample
        if last is None or sample.frames > last.frames:
            line = None
            if self._hole is not None and last is not None:
                line = self._ended(self._hole, sample, now)
                self._hole = None
            if last is not None or sample.frames > 0:
                self._frame_at, self._frame_sample = now, sample
            return line
        if self._frame_at is None or self._frame_sample is None:
            return None  # never flowed: a camera not sending yet is no hole
        hole = self._hole
        if hole is None:
            if now - self._frame_at < self.hole_s:
                return None
            self.holes += 1
            hole = self._hole = _Hole(self._frame_at, self._frame_sample)
            self._note(hole, sample)
            return f"{self.name}: no frame for {now - hole.since:.1f} s; " + _since(
                hole.at_start, sample
            )
        self._note(hole, sample)
        return None

    @staticmethod
    def _note(hole: _Hole, sample: IngestSample) -> None:
        hole.worst_to_decode = max(hole.worst_to_decode, sample.to_decode)
        hole.worst_decoded_waiting = max(hole.worst_decoded_waiting, sample.decoded_waiting)

    def _ended(self, hole: _Hole, sample: IngestSample, now: float) -> str:
        return (
            f"{self.name}: frames again after {now - hole.since:.1f} s; "
            + _since(hole.at_start, sample)
            + f"; most waiting: {hole.worst_to_decode} to decode, "
            f"{hole.worst_decoded_waiting} decoded"
        )


def _since(before: IngestSample, now: IngestSample) -> str:
    """What the receiver saw and did since `before`: where the frames stopped."""
    return (
        f"packets +{now.packets - before.packets}, lost +{max(0, now.lost - before.lost)}, "
        f"frames +{now.frames - before.frames}, PLI sent +{now.plis - before.plis}, "
        f"NACK sent +{now.nacks - before.nacks}, waiting {now.to_decode} to decode, "
        f"{now.decoded_waiting} decoded"
    )
