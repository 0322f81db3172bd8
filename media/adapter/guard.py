"""What a participant sends cannot end its connection.

aiortc's RTP and RTCP parsers raise ValueError on a packet they cannot read, and the
DTLS transport drops such a packet. A few raise `struct.error` instead, which its
receive loop does not expect: a header extension of the wrong size for what its id
was negotiated to carry (abs-send-time, toffset, audio level, transport-wide
sequence number), a REMB that lists more SSRCs than it holds (found by
scripts/fuzz_rtp.py). The loop logs the traceback and ends: the participant's
receivers stop, its senders hear no more feedback, and the relay keeps a connection
that carries nothing until ICE consent runs out. `guard_transport` wraps the
transport's two handlers so that such a packet is dropped like any other it cannot
parse.

A receiver's streams (`guard_receiver`). aiortc keeps statistics for every SSRC a
receiver hears, for as long as it lives, and reports on all of them in one receiver
report every second. A participant that sends under hundreds of SSRCs (mutated
packets, scripts/fuzz_rtp.py) grew that report past what SRTCP protects: its RTCP
task raised and ended unseen, and closing the connection then waited for that task
forever (the participant could never be dropped, nor the relay shut down). A slot
carries one stream and its resends; a receiver now takes packets from at most
`MAX_STREAMS` SSRCs, the first it hears, which also keeps the report within the 31
blocks its header can count (RFC 3550 §6.4.2).

STUN (`guard_stun`). aioice tells STUN from the rest of a socket's datagrams by
whether `stun.parse_message` raises ValueError; so do the relay's shared UDP port and
ICE-TCP port (media.adapter.ice_udp, ice_tcp). An attribute of the wrong length for
its type (ICE-CONTROLLING in four bytes, say) raises `struct.error` instead, which
nobody expects: scripts/fuzz_rtp.py's mutated datagrams reached it once in 100,000,
and the event loop logged the traceback. `guard_stun` makes it a ValueError, so such
a datagram is not STUN, as aioice already treats one it cannot read, and the DTLS
transport drops it.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from aioice import stun

logger = logging.getLogger(__name__)
_MARK = "_classroom_guarded"
# SSRCs one receiver takes packets from: its stream and its resends, and room for a
# sender that changes its SSRC a few times in a session.
MAX_STREAMS = 8


def guard_transport(dtls: Any) -> None:
    """Drop what aiortc cannot parse on `dtls` (an RTCDtlsTransport) rather than let it
    end the transport's receive loop (idempotent). Install after any other wrapper of
    its handlers (media.adapter.twcc), so that it guards them too."""
    if getattr(dtls, _MARK, False):
        return
    handle_rtp: Callable[..., Awaitable[None]] = dtls._handle_rtp_data
    handle_rtcp: Callable[[bytes], Awaitable[None]] = dtls._handle_rtcp_data

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        try:
            await handle_rtp(data, arrival_time_ms=arrival_time_ms)
        except struct.error as exc:
            logger.debug("RTP packet dropped, it does not parse: %s", exc)

    async def handle_rtcp_data(data: bytes) -> None:
        try:
            await handle_rtcp(data)
        except struct.error as exc:
            logger.debug("RTCP packet dropped, it does not parse: %s", exc)

    # The receive loop calls `self._handle_rtp_data(...)`: instance attributes
    # shadow the methods for this transport only.
    dtls._handle_rtp_data = handle_rtp_data
    dtls._handle_rtcp_data = handle_rtcp_data
    setattr(dtls, _MARK, True)


def guard_receiver(receiver: Any) -> None:
    """Let `receiver` (an RTCRtpReceiver) take packets from at most MAX_STREAMS SSRCs,
    the first it hears (module notes; idempotent)."""
    if getattr(receiver, _MARK, False):
        return
    streams: dict[int, Any] = receiver._RTCRtpReceiver__remote_streams
    handle: Callable[..., Awaitable[None]] = receiver._handle_rtp_packet

    async def handle_rtp_packet(packet: Any, arrival_time_ms: int) -> None:
        if packet.ssrc in streams or len(streams) < MAX_STREAMS:
            await handle(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = handle_rtp_packet
    setattr(receiver, _MARK, True)


def guard_stun() -> None:
    """Make a STUN message that does not parse raise ValueError, whatever the
    attribute that broke it (module notes; process-wide, idempotent)."""
    parse: Callable[[bytes], stun.Message] = stun.parse_message
    if getattr(parse, _MARK, False):
        return

    def parse_message(data: bytes) -> stun.Message:
        try:
            return parse(data)
        except (struct.error, IndexError) as exc:
            raise ValueError(f"STUN message does not parse: {exc}") from exc

    setattr(parse_message, _MARK, True)
    stun.parse_message = parse_message
