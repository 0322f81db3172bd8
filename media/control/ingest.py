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

What it found (a 20-classroom soak, the relay late by up to 1.5 s): the camera's
packets kept coming, none lost by then, and no frame came out for 25.7 s, nothing
waiting for the decoder. aiortc's video jitter buffer hands a frame over only
once every packet before it is in; a packet lost for good (the socket's buffer
overflowed while the relay ran late, and its resend was lost too: aiortc sends
one NACK per gap and never asks again) holds everything behind it until 512
packets (its capacity) have come, and at the 15-20 packets a second of a
synthetic camera at a low rate, that is 25-30 s. `IngestWatch.stuck()` says when
the buffer has waited at the same gap for `STUCK_S` with packets behind it and
no frame out: the relay then skips the gap and asks for a keyframe
(media.adapter.inbound.skip_gap), as a browser does when a frame cannot be
completed (libwebrtc asks for a keyframe once a missing packet is past saving).
A keyframe large for a slow uplink is no gap (its first packet is in, the
rest on its way): it is left to come.

Pure: the caller passes the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

# No frame for this long from a source that was flowing is a hole. Below the 5 s
# after which a source counts as gone (media.pipeline.ladder.Ladder.live), so the
# log names a hole before the classrooms lose the slot.
HOLE_S = 2.0
# A jitter buffer waiting this long at the same missing packet, with later packets
# in and no frame out, gives up on it (module notes): a resend asked for by NACK
# comes a round trip later, well within this even on a satellite uplink.
STUCK_S = 1.0


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
    # The jitter buffer's first missing packet (the sequence number it waits for)
    # while packets after it are held; None when it waits for none.
    gap: int | None = None


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
        # The gap the jitter buffer waits at, and since when (and how many frames
        # had come out then).
        self._gap: tuple[int, float, int] | None = None
        self.gaps_skipped = 0

    def stuck(self, sample: IngestSample, now: float) -> bool:
        """Whether the jitter buffer has waited at one missing packet for `STUCK_S`,
        with no frame out meanwhile: the caller skips it (module notes). Counted as
        skipped when True; the wait starts again at the next gap."""
        if sample.gap is None:
            self._gap = None
            return False
        if self._gap is None or self._gap[0] != sample.gap or self._gap[2] != sample.frames:
            self._gap = (sample.gap, now, sample.frames)
            return False
        if now - self._gap[1] < STUCK_S:
            return False
        self._gap = None
        self.gaps_skipped += 1
        return True

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
