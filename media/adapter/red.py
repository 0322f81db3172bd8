"""RED for the audio senders (RFC 2198; the format itself is media.wire.red).

RED is no codec of aiortc's. Where the browser offers it, we put it first in the
audio sender's negotiated codecs (its private `_codecs`, between the offer and the
answer) so the answer names it and the sender sends with it; the sender builds its
encoder with the `get_encoder` it finds in its module's namespace, which we wrap
to hand RED a `RedEncoder`.
"""

from __future__ import annotations

from typing import Any

import aiortc.rtcrtpsender
from aiortc import RTCRtpCodecParameters, RTCRtpSender, RTCRtpTransceiver

from media.wire.rates import AUDIO_CLOCK_RATE
from media.wire.red import RedEncoder

RED_MIME = "audio/red"
_RED_MARK = "_classroom_red_hook"


def red_codec(offered: list[RTCRtpCodecParameters], opus_payload_type: int) -> int | None:
    """The payload type under which the offer takes RED carrying our Opus, if it does.

    Chromium offers `a=rtpmap:63 red/48000/2` with `a=fmtp:63 111/111`: its
    blocks are all of the Opus payload type.
    """
    wanted = f"{opus_payload_type}/{opus_payload_type}"
    for codec in offered:
        red = codec.mimeType.lower() == RED_MIME and codec.clockRate == AUDIO_CLOCK_RATE
        if red and wanted in codec.parameters:
            return codec.payloadType
    return None


def send_red(transceiver: RTCRtpTransceiver, offered: list[RTCRtpCodecParameters]) -> bool:
    """Make an audio sender send RED when the offer takes it; True if it will.

    Call after setRemoteDescription() and before createAnswer().
    """
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    opus = next((c for c in codecs if c.mimeType.lower() == "audio/opus"), None)
    if opus is None or opus.payloadType is None:
        return False
    red_type = red_codec(offered, opus.payloadType)
    if red_type is None:
        return False
    red = RTCRtpCodecParameters(
        mimeType=RED_MIME,
        clockRate=AUDIO_CLOCK_RATE,
        channels=2,
        payloadType=red_type,
        parameters={f"{opus.payloadType}/{opus.payloadType}": None},
    )
    transceiver._codecs = [red, *codecs]
    return True


def install_red_encoder() -> None:
    """Let senders negotiated to RED (see `send_red`) build a media.wire.red.RedEncoder
    (idempotent). It starts with one earlier packet per packet; `sender_red(sender).distance`
    changes that for one sender."""
    module: Any = aiortc.rtcrtpsender
    original: Any = module.get_encoder
    if getattr(original, _RED_MARK, False):
        original = original.__wrapped__

    def get_encoder(codec: RTCRtpCodecParameters) -> Any:
        if codec.mimeType.lower() == RED_MIME:
            opus_type = int(next(iter(codec.parameters)).split("/")[0])
            return RedEncoder(opus_type, distance=1)
        return original(codec)

    setattr(get_encoder, _RED_MARK, True)
    setattr(get_encoder, "__wrapped__", original)  # noqa: B010
    module.get_encoder = get_encoder


def sender_red(sender: RTCRtpSender) -> RedEncoder | None:
    """The RED encoder a sender packs with, once it has sent its first packet."""
    encoder = sender._RTCRtpSender__encoder  # type: ignore[attr-defined]
    return encoder if isinstance(encoder, RedEncoder) else None
