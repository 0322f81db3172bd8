"""What an aiortc receiver did with what a participant sent: counters for media.relay.ingest.

aiortc keeps a receiver's packet statistics per SSRC, its jitter buffer hands
complete frames to a decoder thread through an unbounded queue, and the decoded
frames wait in its track's queue for the reader (the relay's ladder). It counts
neither the picture loss indications nor the NACKs it sends the publisher:
`count_feedback` wraps the two methods that send them, on this receiver only.
tests/media/test_aiortc_internals.py checks the names read here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from media.adapter.encoded import DECODER_QUEUE, REMOTE_STREAMS
from media.control.ingest import IngestSample

_COUNTS = "_classroom_feedback_sent"
# Where aiortc's receiver keeps its jitter buffer (name mangling of `__jitter_buffer`).
JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"


def count_feedback(receiver: Any) -> None:
    """Count the PLIs and NACKs `receiver` (an RTCRtpReceiver) sends (idempotent)."""
    if getattr(receiver, _COUNTS, None) is not None:
        return
    counts = {"pli": 0, "nack": 0}
    send_pli: Callable[[int], Awaitable[None]] = receiver._send_rtcp_pli
    send_nack: Callable[[int, list[int]], Awaitable[None]] = receiver._send_rtcp_nack

    async def pli(media_ssrc: int) -> None:
        counts["pli"] += 1
        await send_pli(media_ssrc)

    async def nack(media_ssrc: int, lost: list[int]) -> None:
        counts["nack"] += 1
        await send_nack(media_ssrc, lost)

    # aiortc calls `self._send_rtcp_pli(...)`: instance attributes shadow the methods.
    receiver._send_rtcp_pli = pli
    receiver._send_rtcp_nack = nack
    setattr(receiver, _COUNTS, counts)


def read_inbound(receiver: Any, frames: int) -> IngestSample:
    """The receiver's counters now; `frames`: what its reader got out of it."""
    streams: dict[int, Any] = getattr(receiver, REMOTE_STREAMS, {})
    packets = lost = 0
    for stream in list(streams.values()):
        packets += stream.packets_received
        lost += max(0, stream.packets_expected - stream.packets_received)
    counts: dict[str, int] = getattr(receiver, _COUNTS, None) or {}
    to_decode = getattr(receiver, DECODER_QUEUE, None)
    track = getattr(receiver, "track", None)
    decoded = getattr(track, "_queue", None)
    return IngestSample(
        gap=waits_for(getattr(receiver, JITTER_BUFFER, None)),
        packets=packets,
        lost=lost,
        frames=frames,
        plis=counts.get("pli", 0),
        nacks=counts.get("nack", 0),
        to_decode=_size(to_decode),
        decoded_waiting=_size(decoded),
    )


def waits_for(buffer: Any) -> int | None:
    """The sequence number of the first packet a video jitter buffer (aiortc's
    JitterBuffer) misses while it holds later ones, or None (nothing missing before
    the newest packet it holds). aiortc hands a frame over only once every packet
    from the buffer's head is in, so everything behind that packet waits."""
    head = _head(buffer)
    return None if head is None else head[0] + head[1]


def _head(buffer: Any) -> tuple[int, int, int] | None:
    """(origin, packets held before the first gap, empty slots in the gap), or None."""
    if buffer is None or buffer._origin is None:
        return None
    slots: list[Any] = buffer._packets
    capacity = len(slots)
    origin: int = buffer._origin
    held = 0
    while held < capacity and slots[(origin + held) % capacity] is not None:
        held += 1
    missing = 0
    while held + missing < capacity and slots[(origin + held + missing) % capacity] is None:
        missing += 1
    if held + missing >= capacity:
        return None  # nothing held after the gap: the newest frame is still arriving
    return origin, held, missing


def skip_gap(receiver: Any) -> int:
    """Give up on the packets `receiver`'s jitter buffer waits for (`waits_for`):
    drop what it holds before them (the frame they belong to), the gap, and the
    frame of the first packet after it. The next packet that comes completes the
    frame after that, if its packets are in. Returns the slots dropped. The
    caller asks for a keyframe: what follows refers to what was lost."""
    buffer: Any = getattr(receiver, JITTER_BUFFER, None)
    head = _head(buffer)
    if head is None:
        return 0
    origin, held, missing = head
    slots: list[Any] = buffer._packets
    capacity = len(slots)
    count = held + missing
    # The first packet after the gap may be the rest of a frame whose start was
    # lost (the packer's start bit is gone once the receiver depayloaded it): its
    # frame goes too. At worst a whole frame more is lost, and the keyframe asked
    # for replaces it anyway.
    broken = slots[(origin + count) % capacity].timestamp
    while count < capacity:
        packet = slots[(origin + count) % capacity]
        if packet is None or packet.timestamp != broken:
            break
        count += 1
    buffer.remove(count)
    return count


def _size(queue: Any) -> int:
    qsize = getattr(queue, "qsize", None)
    return int(qsize()) if callable(qsize) else 0
