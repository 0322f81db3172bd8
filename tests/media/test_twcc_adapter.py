"""Transport-cc through aiortc (media.adapter.twcc): negotiated where the browser
offers it, every packet numbered where it goes to the socket, feedback read back."""

from __future__ import annotations

import re
from typing import Any

from aiortc.rtcrtpparameters import (
    RTCRtcpParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from classroom.roles import Role
from media.adapter.offer import check_offer
from media.adapter.peer import add_slot, answer, new_peer, take_offer
from media.adapter.sender import extension_block
from media.adapter.twcc import WIRE_OVERHEAD_BYTES, TransportCc, negotiate, transport_cc_of
from media.synthetic import SyntheticParticipant
from media.wire import rtp, twcc

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def as_chromium_offers(sdp: str, extmap_id: int = 5) -> str:
    """An aiortc offer with what Chromium adds to every m-line: the transport-wide
    extension and transport-cc feedback on each codec."""
    out = []
    for line in sdp.splitlines():
        out.append(line)
        if line.startswith("a=mid:"):
            out.append(f"a=extmap:{extmap_id} {twcc.URI}")
        match = re.match(r"a=rtpmap:(\d+) (VP8|opus)/", line)
        if match:
            out.append(f"a=rtcp-fb:{match.group(1)} transport-cc")
    return "\r\n".join(out) + "\r\n"


async def answer_to(offer: str) -> tuple[str, list[bool]]:
    offered = check_offer(offer, Role.CLASSROOM)
    pc = new_peer(())
    try:
        transceivers = [add_slot(pc, item.spec) for item in offered]
        await take_offer(pc, offer)
        negotiated = [
            negotiate(t, item.extensions, item.codecs)
            for item, t in zip(offered, transceivers, strict=True)
            if item.spec.direction == "recvonly"
        ]
        return await answer(pc, ("127.0.0.1",)), negotiated
    finally:
        await pc.close()


async def test_offered_by_the_browser_it_is_answered_on_every_sending_slot() -> None:
    client = SyntheticParticipant(Role.CLASSROOM)
    try:
        offer = as_chromium_offers(await client.offer())
    finally:
        await client.close()
    sdp, negotiated = await answer_to(offer)
    assert negotiated and all(negotiated)
    assert f"a=extmap:5 {twcc.URI}" in sdp
    payload_type = re.search(r"a=rtpmap:(\d+) VP8/90000", sdp)
    assert payload_type is not None
    assert f"a=rtcp-fb:{payload_type.group(1)} transport-cc" in sdp


async def test_not_offered_it_is_not_answered() -> None:
    client = SyntheticParticipant(Role.CLASSROOM)
    try:
        offer = await client.offer()
    finally:
        await client.close()
    sdp, negotiated = await answer_to(offer)
    assert not any(negotiated)
    assert twcc.URI not in sdp and "transport-cc" not in sdp


def test_the_number_goes_where_a_receiver_reads_it() -> None:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpSendParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=4, uri=MID),
                RTCRtpHeaderExtensionParameters(id=2, uri=ABS_SEND_TIME),
                RTCRtpHeaderExtensionParameters(id=5, uri=twcc.URI),
            ],
            rtcp=RTCRtcpParameters(),
        )
    )
    layout = extension_block(extensions, "1")
    assert layout.stamped and layout.twcc_at is not None
    header = rtp.HEADER.pack(rtp.VERSION | rtp.EXTENSION_BIT, 96, 7, 9000, 1234)
    packet = header + layout.before + rtp.abs_send_time(0) + layout.after + b"payload"
    numbering = TransportCc(FakeDtls(), clock=lambda: 1.0, on_feedback=lambda _: None)
    numbering.stamp(packet, layout.twcc_at)  # the first is 0
    parsed = RtpPacket.parse(numbering.stamp(packet, layout.twcc_at), extensions)
    assert parsed.extensions.transport_sequence_number == 1
    assert parsed.extensions.mid == "1" and parsed.payload == b"payload"


class FakeDtls:
    def __init__(self) -> None:
        self.handled: list[bytes] = []

    async def _handle_rtcp_data(self, data: bytes) -> None:
        self.handled.append(data)


async def test_feedback_is_read_before_aiortc_and_matched_with_what_was_sent() -> None:
    now = [10.0]
    dtls: Any = FakeDtls()
    got: list[list[Any]] = []
    numbering = TransportCc(dtls, clock=lambda: now[0], on_feedback=got.append)
    assert transport_cc_of(dtls) is numbering
    packet = bytes(20)
    for i in range(3):
        now[0] = 10.0 + i * 0.02
        numbering.stamp(packet, 12)
    feedback = twcc.build(1, 2, 0, [5_000_000, None, 5_030_000])
    receiver_report = bytes((0x80, 201, 0, 1)) + bytes(4)
    await dtls._handle_rtcp_data(receiver_report + feedback)
    assert dtls.handled == [receiver_report + feedback]  # aiortc still gets it all
    [results] = got
    assert [(r.sent_ms, r.arrived_us) for r in results] == [
        (10_000.0, 5_000_000),
        (10_020.0, None),
        (10_040.0, 5_030_000),
    ]
    assert results[0].size == len(packet) + WIRE_OVERHEAD_BYTES


async def test_broken_feedback_is_dropped_and_the_rest_goes_on() -> None:
    dtls: Any = FakeDtls()
    got: list[list[Any]] = []
    TransportCc(dtls, clock=lambda: 0.0, on_feedback=got.append)
    broken = bytes((0x80 | twcc.FMT, twcc.RTPFB, 0, 2)) + bytes(8)
    await dtls._handle_rtcp_data(broken)
    assert got == [] and dtls.handled == [broken]
