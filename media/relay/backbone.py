"""An edge relay's peer connection toward its origin: what the pull and the uplinks share.

The edge pulls a lesson (`upstream.Upstream`, one per lesson) and sends each of its
classrooms' camera and microphone up (`uplink.Uplink`, one per classroom), each on a
peer connection of its own across the backbone. Both are offered by the edge and
answered by the origin, gathered on the relay's own addresses, and carry only what
the pages and the origin's layers already are (VP8 with its resends, Opus): nothing
to negotiate, nothing re-encoded on the way. Kept here once, so that the two cannot
drift apart.
"""

from __future__ import annotations

from aiortc import RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription

from media.adapter.hooks import gather_on
from media.adapter.peer import new_peer
from media.gateway import MediaError
from media.settings import RelaySettings

# What crosses the backbone as it came: VP8 (with its resends), Opus.
CODECS = {"video": ("video/vp8", "video/rtx"), "audio": ("audio/opus",)}


class BackbonePeer:
    """The edge's side of one peer connection to the origin."""

    def __init__(self, settings: RelaySettings) -> None:
        self._settings = settings
        self.pc = new_peer(settings.stun_servers)

    def add_line(self, kind: str, direction: str) -> RTCRtpTransceiver:
        """An m-line of `kind` that offers only the codecs that cross as they came."""
        transceiver = self.pc.addTransceiver(kind, direction=direction)
        codecs = RTCRtpSender.getCapabilities(kind).codecs
        wanted = CODECS[kind]
        transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() in wanted])
        return transceiver

    async def offer(self) -> str:
        """The edge's offer to the origin (gathered on the relay's addresses)."""
        description = await self.pc.createOffer()
        with gather_on(self._settings.host_addresses):
            await self.pc.setLocalDescription(description)
        sdp: str = self.pc.localDescription.sdp
        return sdp

    async def accept(self, answer_sdp: str) -> None:
        """Apply the origin's answer: the media starts to flow."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        except Exception as exc:  # aiortc raises ValueError, OperationError, ...
            raise MediaError(f"the origin's answer cannot be used: {exc}") from None

    @property
    def failed(self) -> bool:
        return self.pc.connectionState in ("failed", "closed")
