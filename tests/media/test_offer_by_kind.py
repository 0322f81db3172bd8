"""WHIP and WHEP offers, their m-lines matched to slots by kind (check_by_kind)."""

from __future__ import annotations

import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpSender

from classroom.roles import Role
from media.adapter.hooks import gather_on
from media.adapter.offer import check_by_kind
from media.gateway import MediaError
from media.slots import Slot

S = Slot


async def offer(*lines: str, codec: str | None = None) -> str:
    """An aiortc offer with one m-line per `lines` item: "video/sendonly", ..."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        for line in lines:
            kind, direction = line.split("/")
            transceiver = pc.addTransceiver(kind, direction=direction)
            if codec is not None and kind == "video":
                caps = RTCRtpSender.getCapabilities("video").codecs
                transceiver.setCodecPreferences([c for c in caps if c.mimeType == codec])
        with gather_on(("127.0.0.1",)):
            await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
        return sdp
    finally:
        await pc.close()


@pytest.mark.parametrize(
    ("role", "lines", "slots"),
    [
        (Role.TEACHER, ("audio/sendonly", "video/sendonly"), (S.MICROPHONE, S.CAMERA)),
        (Role.TEACHER, ("video/sendrecv", "audio/sendrecv"), (S.CAMERA, S.MICROPHONE)),
        (Role.OBSERVER, ("video/recvonly", "audio/recvonly"), (S.TEACHER_CAMERA, S.TEACHER_AUDIO)),
        (Role.OBSERVER, ("video/recvonly",), (S.TEACHER_CAMERA,)),
        (
            Role.OBSERVER,
            ("video/recvonly", "video/recvonly", "audio/recvonly", "audio/recvonly"),
            (S.TEACHER_CAMERA, S.SLIDES, S.TEACHER_AUDIO, S.STAGE_AUDIO),
        ),
    ],
)
async def test_offers_taken(role: Role, lines: tuple[str, ...], slots: tuple[Slot, ...]) -> None:
    assert tuple(o.spec.slot for o in check_by_kind(await offer(*lines), role)) == slots


async def test_a_whip_encoder_may_send_h264_and_a_whep_player_must_take_vp8() -> None:
    h264 = await offer("video/sendonly", "audio/sendonly", codec="video/H264")
    assert [o.spec.slot for o in check_by_kind(h264, Role.TEACHER)] == [S.CAMERA, S.MICROPHONE]
    with pytest.raises(MediaError, match="VP8"):
        check_by_kind(await offer("video/recvonly", codec="video/H264"), Role.OBSERVER)


@pytest.mark.parametrize(
    ("role", "lines", "message"),
    [
        (Role.TEACHER, ("video/sendonly",), "one video .camera. and one audio"),
        (Role.TEACHER, ("video/sendonly", "video/sendonly", "audio/sendonly"), "one video"),
        (Role.TEACHER, ("audio/recvonly", "video/recvonly"), "must be sendonly"),
        (Role.OBSERVER, ("video/sendonly",), "must be recvonly"),
        (Role.OBSERVER, ("video/recvonly",) * 4, "at most 3 video"),
        (Role.CLASSROOM, ("video/sendonly", "audio/sendonly"), "teacher and observers"),
    ],
)
async def test_offers_refused(role: Role, lines: tuple[str, ...], message: str) -> None:
    with pytest.raises(MediaError, match=message):
        check_by_kind(await offer(*lines), role)


async def test_broken_or_unbundled_offers_are_refused() -> None:
    with pytest.raises(MediaError, match=r"not a valid SDP|audio or video"):
        check_by_kind("v=0\r\nhello\r\n", Role.TEACHER)
    sdp = await offer("audio/sendonly", "video/sendonly")
    unbundled = "\r\n".join(line for line in sdp.split("\r\n") if not line.startswith("a=group:"))
    with pytest.raises(MediaError, match="BUNDLE"):
        check_by_kind(unbundled, Role.TEACHER)
