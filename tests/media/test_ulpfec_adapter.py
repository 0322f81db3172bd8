"""FEC negotiated with a browser's offer (media.adapter.ulpfec): Chromium's own offer
(recvonly video and audio, as Chromium 14x writes it) answered with RED and ULPFEC
after VP8."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription

from media.adapter.ulpfec import FecTypes, negotiate_fec

OFFER = (Path(__file__).parent / "chromium_offer.sdp").read_text()

pytestmark = pytest.mark.timeout(20)


async def answer_with(offer: str) -> tuple[FecTypes | None, str]:
    codecs = SessionDescription.parse(offer).media[0].rtp.codecs
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="sendonly")
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        types = negotiate_fec(pc.getTransceivers()[0], codecs)
        answer = await pc.createAnswer()
        return types, answer.sdp
    finally:
        await pc.close()


async def test_chromiums_offer_gets_red_and_ulpfec_answered_after_vp8() -> None:
    types, sdp = await answer_with(OFFER)
    assert types == FecTypes(red=118, ulpfec=120)
    video = sdp.split("m=audio")[0]
    m_line = next(line for line in video.splitlines() if line.startswith("m=video"))
    payload_types = m_line.split()[3:]
    assert payload_types[0] == "96"  # VP8 first: the sender keeps sending it
    assert "a=rtpmap:118 red/90000" in video and "a=rtpmap:120 ulpfec/90000" in video
    assert "flexfec" not in video


async def test_an_offer_without_ulpfec_is_answered_as_before() -> None:
    offer = OFFER.replace("a=rtpmap:120 ulpfec/90000\n", "")
    types, sdp = await answer_with(offer)
    assert types is None
    assert "red/90000" not in sdp.split("m=audio")[0]
