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
        packets=packets,
        lost=lost,
        frames=frames,
        plis=counts.get("pli", 0),
        nacks=counts.get("nack", 0),
        to_decode=_size(to_decode),
        decoded_waiting=_size(decoded),
    )


def _size(queue: Any) -> int:
    qsize = getattr(queue, "qsize", None)
    return int(qsize()) if callable(qsize) else 0
