"""What an aiortc receiver did with what a participant sent: counters for media.relay.ingest.

aiortc keeps a receiver's packet statistics per SSRC, its jitter buffer hands
complete frames to a decoder thread through an unbounded queue, and the decoded
frames wait in its track's queue for the reader (the relay's ladder). It counts
neither the picture loss indications nor the NACKs it sends the publisher:
`count_feedback` wraps the two methods that send them, on this receiver only.
`skip_gap` drops what the jitter buffer waits for past saving (media.control.ingest),
and `widen_receive_buffers` gives a connection's UDP sockets (aioice's
`Connection._protocols`) room for what comes while the relay runs late.
tests/media/test_aiortc_internals.py checks the names read here.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCPeerConnection

from media.adapter.encoded import DECODER_QUEUE, REMOTE_STREAMS
from media.control.ingest import IngestSample

_COUNTS = "_classroom_feedback_sent"
# Each peer connection's own UDP sockets (widen_receive_buffers): about 5 s of a
# teacher's camera and slides at their best.
RECEIVE_BUFFER_BYTES = 1024 * 1024
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


def widen_receive_buffers(pc: RTCPeerConnection, size: int = RECEIVE_BUFFER_BYTES) -> int:
    """Give the UDP sockets of `pc`'s own ICE candidates a receive buffer of `size`
    bytes (the kernel caps it at net.core.rmem_max); returns how many it widened.

    A soak's relay, its loop late by up to 1.5 s on a machine short of CPU, lost
    bursts of the teacher's packets: what came meanwhile overflowed the kernel's
    default buffer of 208 kB (the system's UDP RcvbufErrors rose at each hole).
    A camera and slides at their best, 1.5 Mbit/s, fill that in about a second;
    `RECEIVE_BUFFER_BYTES` holds several, and costs memory only while it is full.
    A shared UDP port (media.adapter.ice_udp) has its own, larger buffer."""
    widened = 0
    seen: set[int] = set()
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        if connection is None or id(connection) in seen:
            continue
        seen.add(id(connection))
        for protocol in list(getattr(connection, "_protocols", [])):
            transport = getattr(protocol, "transport", None)
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is None or sock.type != socket.SOCK_DGRAM:
                continue
            with contextlib.suppress(OSError):
                # Never narrower: a shared port's socket (ice_udp) has more already.
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < size:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
                    widened += 1
    return widened
