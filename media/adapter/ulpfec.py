"""ULPFEC in RED for a video sender (the format is media.wire.ulpfec).

aiortc knows neither. Where the browser's offer has `red/90000` and `ulpfec/90000`
for a video section (Chromium offers both), the sending transceiver answers them
too, after its own codec (VP8 stays first, so the sender keeps sending VP8): the
browser then runs its FEC decoder on that stream. Whether FEC is sent at a given
moment is the relay's choice (LeanRtp.fec_on), packet by packet; without it the
stream is plain VP8 as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpCodecParameters, RTCRtpTransceiver

from media.wire.rates import VIDEO_CLOCK_RATE

RED_MIME = "video/red"
ULPFEC_MIME = "video/ulpfec"


@dataclass(frozen=True)
class FecTypes:
    """The payload types the answer gives RED and ULPFEC on one video stream."""

    red: int
    ulpfec: int


def negotiate_fec(
    transceiver: RTCRtpTransceiver, offered: list[RTCRtpCodecParameters]
) -> FecTypes | None:
    """Answer RED and ULPFEC on a sending video transceiver if the offer has both.

    Call between setRemoteDescription and createAnswer."""

    def find(mime: str) -> int | None:
        for codec in offered:
            if codec.mimeType.lower() == mime and codec.clockRate == VIDEO_CLOCK_RATE:
                return codec.payloadType
        return None

    red, fec = find(RED_MIME), find(ULPFEC_MIME)
    if red is None or fec is None:
        return None
    target: Any = transceiver
    codecs: list[RTCRtpCodecParameters] = target._codecs
    if not codecs or codecs[0].mimeType.lower() != "video/vp8":
        return None
    known = {c.payloadType for c in codecs}
    for mime, payload_type in ((RED_MIME, red), (ULPFEC_MIME, fec)):
        if payload_type not in known:
            codecs.append(
                RTCRtpCodecParameters(
                    mimeType=mime, clockRate=VIDEO_CLOCK_RATE, payloadType=payload_type
                )
            )
    return FecTypes(red, fec)
