"""Transport-wide congestion control through aiortc, which has none of its own.

- Negotiation (`negotiate`). aiortc knows the header extension's URI but neither
  offers nor answers it, and keeps only the RTCP feedback types of its own codec
  table. After the browser's offer is applied, a sending transceiver whose offer
  lists both the extension and `transport-cc` feedback gets them added to what it
  answers and sends with: the browser then reports every packet it receives on
  those streams, and stops sending REMB for them.
- Numbering (`TransportCc.stamp`). One 16-bit sequence per DTLS transport (one per
  participant: every connection is bundled), written into each packet as it goes
  to the socket (media.adapter.transport.Wire): media, resends and padding alike,
  in the order they leave, and noted in the transport's `SentLog` with the time.
- Feedback (`TransportCc`). aiortc parses RTPFB FMT 15 as if it were a NACK and
  drops it. The DTLS transport's RTCP handler is wrapped: transport feedback is
  read from the decrypted compound packet (media.wire.twcc) before aiortc sees it,
  matched against the log and handed on as `PacketResult`s.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCRtpCodecParameters, RTCRtpTransceiver
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpHeaderExtensionParameters

from media.control.sendside import PacketResult, SentLog
from media.wire import twcc

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
_MARK = "_classroom_transport_cc"
# What a packet costs on the wire beyond its RTP bytes: the SRTP tag (10 bytes,
# AES_CM_128_HMAC_SHA1_80) and UDP over IPv4 (28 bytes).
WIRE_OVERHEAD_BYTES = 38
_FEEDBACK = RTCRtcpFeedback(type=twcc.RTCP_FB)


def negotiate(
    transceiver: RTCRtpTransceiver,
    extensions: list[RTCRtpHeaderExtensionParameters],
    codecs: list[RTCRtpCodecParameters],
) -> bool:
    """Answer transport-cc on a sending transceiver if the offer has it (module notes).

    Call between setRemoteDescription and createAnswer. True if negotiated."""
    offered = next((e for e in extensions if e.uri == twcc.URI), None)
    with_feedback = {c.payloadType for c in codecs if _FEEDBACK in c.rtcpFeedback}
    if offered is None or not with_feedback:
        return False
    target: Any = transceiver
    ours: list[RTCRtpHeaderExtensionParameters] = target._headerExtensions
    if all(e.uri != twcc.URI for e in ours):
        ours.append(RTCRtpHeaderExtensionParameters(id=offered.id, uri=twcc.URI))
    negotiated = False
    for codec in target._codecs:
        if codec.payloadType in with_feedback:
            negotiated = True
            if _FEEDBACK not in codec.rtcpFeedback:
                codec.rtcpFeedback.append(_FEEDBACK)
    return negotiated


class TransportCc:
    """One DTLS transport's transport-wide numbering and feedback (module notes)."""

    def __init__(
        self,
        dtls: Any,
        clock: Clock,
        on_feedback: Callable[[list[PacketResult]], None],
        log: SentLog | None = None,
    ) -> None:
        self.log = log or SentLog()
        self._clock = clock
        self._on_feedback = on_feedback
        self.feedback_count = 0
        original: Callable[[bytes], Awaitable[None]] = dtls._handle_rtcp_data

        async def handle_rtcp_data(data: bytes) -> None:
            self.read(data)
            await original(data)

        dtls._handle_rtcp_data = handle_rtcp_data
        setattr(dtls, _MARK, self)

    def stamp(self, packet: bytes, at: int) -> bytes:
        """`packet` with the next transport sequence number written at byte `at`."""
        sequence = self.log.sent(len(packet) + WIRE_OVERHEAD_BYTES, self._clock() * 1000)
        return b"".join((packet[:at], sequence.to_bytes(2, "big"), packet[at + 2 :]))

    def read(self, data: bytes) -> None:
        """Hand on what the transport feedback in a compound RTCP packet reports."""
        try:
            messages = twcc.transport_feedback(data)
        except ValueError as exc:
            logger.debug("transport feedback dropped: %s", exc)
            return
        for message in messages:
            self.feedback_count += 1
            results = self.log.results(message)
            if results:
                self._on_feedback(results)


def transport_cc_of(dtls: Any) -> TransportCc | None:
    """The transport's numbering, if transport-cc was negotiated on it."""
    found = getattr(dtls, _MARK, None)
    return found if isinstance(found, TransportCc) else None
