"""NACKs as the relay's senders take them (media.adapter.rtcp `nacked`)."""

from __future__ import annotations

from typing import Any

from aiortc.rtp import RTCP_RTPFB_NACK, RtcpPacket, RtcpRtpfbPacket

from media.adapter.rtcp import MAX_NACKED, hook_sender_rtcp, nacked


class _Sender:
    """What hook_sender_rtcp wraps on an RTCRtpSender; records what aiortc would resend."""

    def __init__(self) -> None:
        self._ssrc = 1234
        self.resend: list[int] = []

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self.resend.extend(packet.lost)

    async def _send_rtcp(self, packets: list[Any]) -> None:
        pass


def _nack(*items: tuple[int, int]) -> RtcpRtpfbPacket:
    fci = b"".join(pid.to_bytes(2, "big") + blp.to_bytes(2, "big") for pid, blp in items)
    data = bytes((0x80 | RTCP_RTPFB_NACK, 205)) + ((len(fci) + 8) // 4).to_bytes(2, "big")
    [packet] = RtcpPacket.parse(data + (1).to_bytes(4, "big") + (1234).to_bytes(4, "big") + fci)
    assert isinstance(packet, RtcpRtpfbPacket)
    return packet


def test_each_sequence_number_once_and_across_the_wrap() -> None:
    # aiortc reads the bitmask after 65535 as 65536, 65537...: numbers no packet has.
    assert _nack((65535, 0b11)).lost == [65535, 65536, 65537]
    assert nacked(_nack((65535, 0b11)).lost) == [65535, 0, 1]
    assert nacked([5, 6, 5, 7, 6]) == [5, 6, 7]


def test_a_nack_asking_for_thousands_is_cut_to_what_a_sender_keeps() -> None:
    """Found by scripts/fuzz_rtp.py: NACKs of ~300 items, each asking for 17 packets,
    from one classroom slowed the event loop until other classrooms' video stopped."""
    huge = _nack(*((k * 17, 0xFFFF) for k in range(290)))
    assert len(huge.lost) == 290 * 17
    assert len(nacked(huge.lost)) == MAX_NACKED
    assert nacked(huge.lost) == list(range(290 * 17 - MAX_NACKED, 290 * 17))


async def test_the_sender_resends_what_the_cut_list_holds() -> None:
    sender = _Sender()
    hook_sender_rtcp(sender, lambda: None, clock=lambda: 0.0)  # type: ignore[arg-type]
    await sender._handle_rtcp_packet(_nack((65534, 0b111)))
    assert sender.resend == [65534, 65535, 0, 1]
    sender.resend.clear()
    await sender._handle_rtcp_packet(_nack(*((k * 17, 0xFFFF) for k in range(290))))
    assert len(sender.resend) == MAX_NACKED
