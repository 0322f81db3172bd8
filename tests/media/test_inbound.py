"""media.adapter.inbound on aiortc's own jitter buffer: a gap it would wait at for
512 packets is found, and skipped, and frames come out again."""

from __future__ import annotations

from types import SimpleNamespace

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from media.adapter.inbound import JITTER_BUFFER, skip_gap, waits_for
from media.control.ingest import STUCK_S, IngestSample, IngestWatch

PACKETS_PER_FRAME = 3


def packet(seq: int) -> RtpPacket:
    p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=3000 * (seq // PACKETS_PER_FRAME))
    p._data = bytes([seq % 256])  # type: ignore[attr-defined]  # as the receiver depayloads
    return p


def receiver_with(buffer: JitterBuffer) -> SimpleNamespace:
    # The receiver is read only through its jitter buffer's attribute (name-mangled).
    return SimpleNamespace(**{JITTER_BUFFER: buffer})


def test_a_lost_packet_holds_every_frame_behind_it_until_the_gap_is_skipped() -> None:
    buffer = JitterBuffer(capacity=512, is_video=True)
    frames = [buffer.add(packet(seq))[1] for seq in range(0, 30)]
    assert sum(f is not None for f in frames) == 9  # each frame out once the next starts
    assert waits_for(buffer) is None
    # Packet 31 (the middle of frame 10) is lost for good; 60 more packets come.
    after = [buffer.add(packet(seq))[1] for seq in (30, *range(32, 92))]
    assert sum(f is not None for f in after) == 1  # frame 9, then nothing
    assert waits_for(buffer) == 31
    receiver = receiver_with(buffer)
    # Frame 10 (packets 30 and 32) goes with the gap; frame 11 is whole.
    assert skip_gap(receiver) == 3
    assert waits_for(buffer) is None
    # The frames held behind the gap come out, one per packet that arrives.
    out = [buffer.add(packet(seq))[1] for seq in range(92, 96)]
    assert [f.timestamp // 3000 for f in out if f is not None] == [11, 12, 13, 14]
    assert skip_gap(receiver) == 0  # nothing to skip once nothing is missing


def test_a_gap_at_the_head_drops_the_frame_after_it() -> None:
    buffer = JitterBuffer(capacity=512, is_video=True)
    for seq in range(0, 6):
        buffer.add(packet(seq))  # frame 0 out at packet 3; frame 1 waits for packet 6
    for seq in range(7, 20):  # 6 lost: frame 2 has only 7 and 8
        buffer.add(packet(seq))
    assert waits_for(buffer) == 6
    assert skip_gap(receiver_with(buffer)) == 6  # 3-5 (frame 1), 6, 7-8 (frame 2)
    assert waits_for(buffer) is None


def test_a_keyframe_still_arriving_is_no_gap() -> None:
    buffer = JitterBuffer(capacity=512, is_video=True)
    for seq in range(0, 40):  # one large frame (a keyframe of a new slide) in flight
        p = packet(seq)
        p.timestamp = 0
        buffer.add(p)
    assert waits_for(buffer) is None
    assert skip_gap(receiver_with(buffer)) == 0


def sample(frames: int, gap: int | None) -> IngestSample:
    return IngestSample(100, 1, frames, 0, 1, 0, 0, gap=gap)


def test_the_watch_gives_up_on_a_gap_held_for_stuck_s_with_no_frame_out() -> None:
    watch = IngestWatch("l/teacher/camera in")
    assert not watch.stuck(sample(10, 31), 0.0)
    assert not watch.stuck(sample(10, 31), STUCK_S - 0.1)
    assert watch.stuck(sample(10, 31), STUCK_S)
    assert watch.gaps_skipped == 1
    # Once skipped, a new wait starts from the next gap seen.
    assert not watch.stuck(sample(10, 40), STUCK_S + 0.5)


def test_a_gap_that_moves_or_lets_frames_out_is_waited_on_afresh() -> None:
    watch = IngestWatch("l/teacher/camera in")
    watch.stuck(sample(10, 31), 0.0)
    assert not watch.stuck(sample(10, 35), STUCK_S)  # a resend filled 31; 35 is new
    assert not watch.stuck(sample(12, 35), 2 * STUCK_S)  # frames came out meanwhile
    assert not watch.stuck(sample(12, None), 3 * STUCK_S)
    assert not watch.stuck(sample(12, 35), 3.5 * STUCK_S)
    assert watch.gaps_skipped == 0
