"""A participant's peer connection as the relay answers it: one transceiver per slot.

Public aiortc API only, and the two choices that make it work for a relay: every
connection bundled, and senders that can only be negotiated to what the relay
encodes.
"""

from __future__ import annotations

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from media.adapter.hooks import gather_on
from media.adapter.ice_sessions import offering
from media.adapter.ice_tcp import PassiveTcpPort
from media.adapter.ice_udp import SharedUdpPort
from media.gateway import MediaError
from media.slots import SlotSpec

# The relay sends packets it encoded as VP8 / Opus: a sender must not be
# negotiated to anything else, whatever the browser lists first.
_SENT_CODECS = {"video": ("video/vp8", "video/rtx"), "audio": ("audio/opus",)}


def new_peer(stun_servers: tuple[str, ...]) -> RTCPeerConnection:
    # MAX_BUNDLE: aiortc's default (balanced) gives the second transceiver of a
    # kind the first one's transport *before* the offer's BUNDLE group is seen,
    # and then never moves it onto the bundle: those senders never start.
    return RTCPeerConnection(
        RTCConfiguration(
            iceServers=[RTCIceServer(urls=url) for url in stun_servers],
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        )
    )


def add_slot(pc: RTCPeerConnection, spec: SlotSpec, *, ingest: bool = False) -> RTCRtpTransceiver:
    """The transceiver for one slot, in the direction the relay sees it.

    `ingest`: a WHIP publisher's video may also be H.264 (the ladder decodes it
    and encodes its layers in VP8 as from any page)."""
    incoming = spec.direction == "sendonly"
    transceiver = pc.addTransceiver(spec.kind, direction="recvonly" if incoming else "sendonly")
    codecs = RTCRtpSender.getCapabilities(spec.kind).codecs
    wanted = _SENT_CODECS[spec.kind]
    if ingest and incoming and spec.kind == "video":
        wanted = (*wanted, "video/h264")
    transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() in wanted])
    return transceiver


async def take_offer(pc: RTCPeerConnection, offer_sdp: str) -> None:
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
    except Exception as exc:  # aiortc raises ValueError, OperationError, ...
        raise MediaError(f"the offer cannot be used: {exc}") from None


async def answer(
    pc: RTCPeerConnection,
    host_addresses: tuple[str, ...],
    tcp: PassiveTcpPort | None = None,
    udp: SharedUdpPort | None = None,
) -> str:
    """Create and apply the answer, gathering on `host_addresses`; its SDP. With
    `udp`, the UDP host candidates are at its shared port; with `tcp`, its passive
    ICE-TCP candidates are offered beside them."""
    description = await pc.createAnswer()
    # UDP first: the TCP port writes a passive candidate beside each UDP host one.
    with gather_on(host_addresses), offering(udp, tcp):
        await pc.setLocalDescription(description)
    sdp: str = pc.localDescription.sdp
    return sdp
