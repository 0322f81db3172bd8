"""Our RTP loop (media.adapter.sender.LeanRtp) sends what aiortc's own loop sends
for the same packets, and answers NACKs from its own history."""

from __future__ import annotations

import asyncio
import fractions
import inspect
import itertools
import time
from typing import Any

import aiortc.clock
import av
import pytest
from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import (
    RTCRtcpParameters,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtpPacket, is_rtcp, wrap_rtx

from media.adapter.sender import budget_resends, lean_rtp
from media.adapter.ulpfec import FecTypes
from media.control.pacer import ResendBudget
from media.pipeline.fanout import SenderPacket
from media.wire import ulpfec
from media.wire.rtp import PADDING_BYTES
from media.wire.vp8 import CHUNK_BYTES as VP8_CHUNK_BYTES

pytestmark = pytest.mark.timeout(20)

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


class Transport:
    """Stands in for the DTLS transport: keeps the RTP it is given, unencrypted."""

    state = "connected"

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def _register_rtp_sender(self, *args: Any) -> None:
        pass

    def _unregister_rtp_sender(self, *args: Any) -> None:
        pass

    async def _send_rtp(self, data: bytes) -> None:
        if not is_rtcp(data):
            self.sent.append(data)


class Feed(MediaStreamTrack):
    def __init__(self, kind: str, packets: list[SenderPacket]) -> None:
        super().__init__()
        self.kind = kind
        self._packets = asyncio.Queue[SenderPacket]()
        for packet in packets:
            self._packets.put_nowait(packet)

    async def recv(self) -> SenderPacket:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        return await self._packets.get()


def packets(sizes: list[int], step: int, rate: int) -> list[SenderPacket]:
    out = []
    for i, size in enumerate(sizes):
        packet = av.Packet(bytes((i * 7 + j) % 251 for j in range(size)))
        packet.pts = 1000 + i * step
        packet.time_base = fractions.Fraction(1, rate)
        out.append(SenderPacket.of(packet))
    return out


def parameters(codecs: list[RTCRtpCodecParameters], kind: str) -> RTCRtpSendParameters:
    extensions = [RTCRtpHeaderExtensionParameters(id=4, uri=MID)]
    if kind == "video":
        extensions.append(RTCRtpHeaderExtensionParameters(id=2, uri=ABS_SEND_TIME))
    else:
        extensions.append(RTCRtpHeaderExtensionParameters(id=1, uri=AUDIO_LEVEL))
    return RTCRtpSendParameters(
        codecs=codecs, headerExtensions=extensions, muxId="3", rtcp=RTCRtcpParameters(cname="c")
    )


async def send(
    kind: str, codecs: list[RTCRtpCodecParameters], feed: list[SenderPacket], lean: bool
) -> tuple[RTCRtpSender, Transport, list[RtpPacket], HeaderExtensionsMap]:
    transport = Transport()
    sender = RTCRtpSender(Feed(kind, feed), transport)  # type: ignore[arg-type]
    if lean:
        lean_rtp(sender)
    params = parameters(codecs, kind)
    await sender.send(params)
    expected = sum(max(1, -(-len(p.data) // VP8_CHUNK_BYTES)) for p in feed if p.data)
    for _ in range(200):
        if len(transport.sent) >= expected:
            break
        await asyncio.sleep(0.01)
    extensions = HeaderExtensionsMap()
    extensions.configure(params)
    return sender, transport, [RtpPacket.parse(d, extensions) for d in transport.sent], extensions


def relative(sent: list[RtpPacket]) -> list[tuple[int, int, int, int]]:
    first = sent[0]
    return [
        (
            (p.sequence_number - first.sequence_number) % 65536,
            (p.timestamp - first.timestamp) % 2**32,
            p.marker,
            p.payload_type,
        )
        for p in sent
    ]


def counters(sender: RTCRtpSender) -> tuple[int, int]:
    private: Any = sender
    return private._RTCRtpSender__packet_count, private._RTCRtpSender__octet_count


@pytest.mark.parametrize(
    ("kind", "codec", "sizes", "step", "rate"),
    [
        # One payload, two (one of them full), three exactly full, and none.
        ("video", VP8, [300, 1800, 3 * VP8_CHUNK_BYTES, 0, 40], 6000, 90000),
        ("audio", OPUS, [60, 80, 1, 120], 1920, 48000),
    ],
)
async def test_the_lean_loop_sends_what_aiortc_sends(
    kind: str, codec: RTCRtpCodecParameters, sizes: list[int], step: int, rate: int
) -> None:
    theirs_sender, _, theirs, _ = await send(kind, [codec], packets(sizes, step, rate), lean=False)
    ours_sender, _, ours, _ = await send(kind, [codec], packets(sizes, step, rate), lean=True)
    assert len(ours) == len(theirs) > 0
    assert relative(ours) == relative(theirs)
    assert {p.ssrc for p in ours} == {ours_sender._ssrc}
    for mine, aiortcs in zip(ours, theirs, strict=True):
        assert mine.extensions.mid == aiortcs.extensions.mid == "3"
        assert (mine.extensions.abs_send_time is None) == (kind == "audio")
        assert (aiortcs.extensions.abs_send_time is None) == (kind == "audio")
        if kind == "video":
            # The descriptor's PictureID (bytes 2-3) starts at random in both.
            assert mine.payload[:2] + mine.payload[4:] == aiortcs.payload[:2] + aiortcs.payload[4:]
        else:
            assert mine.payload == aiortcs.payload
    if kind == "video":
        # abs-send-time is the NTP time in 6.18 fixed point, as aiortc's clock gives it.
        now = (aiortc.clock.current_ntp_time() >> 14) & 0xFFFFFF
        assert all((now - p.extensions.abs_send_time) % 2**24 < 2**18 for p in ours)
        starts = [p for p in ours if p.payload[0] & 0x10]
        ids = [int.from_bytes(p.payload[2:4], "big") & 0x7FFF for p in starts]
        assert [(b - a) % 2**15 for a, b in itertools.pairwise(ids)] == [1] * (len(ids) - 1)
    # The sender's reports (RFC 3550 §6.4.1) count the same.
    assert counters(ours_sender) == counters(theirs_sender)
    for sender in (ours_sender, theirs_sender):
        await sender.stop()


async def test_a_nack_is_answered_as_rtx_from_the_history() -> None:
    sender, transport, sent, extensions = await send(
        "video", [VP8, RTX], packets([300, 2000], 3000, 90000), lean=True
    )
    lost = sent[1]
    private: Any = sender
    rtx_sequence = private._RTCRtpSender__rtx_sequence_number
    await sender._retransmit(lost.sequence_number)
    await sender._retransmit((lost.sequence_number + 1000) % 65536)  # never sent: nothing
    assert len(transport.sent) == len(sent) + 1
    resent = RtpPacket.parse(transport.sent[-1], extensions)
    expected = wrap_rtx(lost, payload_type=97, sequence_number=rtx_sequence, ssrc=sender._rtx_ssrc)
    assert resent.ssrc == sender._rtx_ssrc and resent.payload_type == 97
    assert (resent.sequence_number, resent.timestamp, resent.marker) == (
        expected.sequence_number,
        expected.timestamp,
        expected.marker,
    )
    assert resent.payload == expected.payload
    assert resent.extensions.mid == lost.extensions.mid
    assert private._RTCRtpSender__rtx_sequence_number == (rtx_sequence + 1) % 65536
    await sender.stop()


async def test_padding_is_a_padding_only_packet_on_the_rtx_stream_stamped_now() -> None:
    sender, transport, sent, extensions = await send(
        "video", [VP8, RTX], packets([300], 3000, 90000), lean=True
    )
    lean = lean_rtp(sender)
    private: Any = sender
    rtx_sequence = private._RTCRtpSender__rtx_sequence_number
    data = lean.padding()
    assert data is not None and len(data) == lean.padding_packet_bytes
    padding = RtpPacket.parse(data, extensions)
    assert padding.ssrc == sender._rtx_ssrc and padding.payload_type == 97
    assert padding.padding_size == PADDING_BYTES and padding.payload == b""
    assert padding.sequence_number == rtx_sequence
    assert padding.extensions.mid == sent[0].extensions.mid
    now = (aiortc.clock.current_ntp_time() >> 14) & 0xFFFFFF
    assert (now - padding.extensions.abs_send_time) % 2**24 < 2**18
    # Resends go on from where padding left the RTX stream's sequence.
    await sender._retransmit(sent[0].sequence_number)
    assert (
        RtpPacket.parse(transport.sent[-1], extensions).sequence_number
        == (rtx_sequence + 1) % 65536
    )
    await sender.stop()


@pytest.mark.parametrize(
    ("kind", "codecs"), [("video", [VP8]), ("audio", [OPUS])], ids=["no-rtx", "audio"]
)
async def test_no_padding_without_rtx_and_abs_send_time(
    kind: str, codecs: list[RTCRtpCodecParameters]
) -> None:
    sender, _, _, _ = await send(kind, codecs, packets([300], 3000, 90000), lean=True)
    assert lean_rtp(sender).padding() is None
    await sender.stop()


async def test_without_rtx_the_same_packet_is_sent_again() -> None:
    sender, transport, _, _ = await send("video", [VP8], packets([300], 3000, 90000), lean=True)
    original = transport.sent[0]
    await sender._retransmit(int.from_bytes(original[2:4], "big"))
    assert transport.sent[-1] == original and len(transport.sent) == 2
    await sender.stop()


async def test_budgeted_resends_skip_packets_too_old_to_help() -> None:
    # Two frames 2 s apart: the first is older than the budget's 1 s when NACKed.
    sender, transport, sent, _ = await send(
        "video", [VP8], packets([300, 300], 2 * 90000, 90000), lean=True
    )
    budget = ResendBudget(share=1.0, clock=lambda: 10.0, max_age_s=1.0, min_bps=1_000_000)
    budget._at = 0.0  # a full half second of budget
    budget_resends(sender, budget)
    await sender._retransmit(sent[0].sequence_number)
    await sender._retransmit(sent[1].sequence_number)
    assert (budget.refused_old, budget.resent) == (1, 1)
    assert transport.sent[-1] == transport.sent[1] and len(transport.sent) == 3
    await sender.stop()


async def test_stopping_the_sender_ends_the_loop_and_its_track() -> None:
    sender, _, _, _ = await send("video", [VP8], packets([300], 3000, 90000), lean=True)
    track = sender.track
    await asyncio.wait_for(sender.stop(), 5)
    assert track is not None and track.readyState == "ended"


async def test_aiortc_runs_and_stops_the_loop_through_what_lean_rtp_replaces() -> None:
    # lean_rtp() shadows `_run_rtp` and `_retransmit` on the instance, and keeps
    # the private state that aiortc's reports, stats and stop() read.
    assert "self._run_rtp(parameters.codecs[0])" in inspect.getsource(RTCRtpSender.send)
    assert "await self._retransmit(" in inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    stop = inspect.getsource(RTCRtpSender.stop)
    assert "self.__rtp_started.wait()" in stop and "self.__rtp_exited.wait()" in stop
    report = inspect.getsource(RTCRtpSender._run_rtcp)
    for name in ("__ntp_timestamp", "__rtp_timestamp", "__packet_count", "__octet_count"):
        assert f"self.{name}" in report
    sender: Any = RTCRtpSender("video", Transport())  # type: ignore[arg-type]
    for name in (
        "__rtp_started",
        "__rtp_exited",
        "__rtp_header_extensions_map",
        "__mid",
        "__track",
        "__encoder",
        "__transport",
        "__rtx_payload_type",
        "__rtx_sequence_number",
        "__ntp_timestamp",
        "__rtp_timestamp",
        "__packet_count",
        "__octet_count",
        "__rtcp_started",
        "__rtcp_exited",
        "__lsr",
        "__lsr_time",
        "__cname",
    ):
        assert hasattr(sender, f"_RTCRtpSender{name}"), name
    # A video sender's reports come from run_rtcp (item 10), started and awaited so.
    assert "self._run_rtcp()" in inspect.getsource(RTCRtpSender.send)
    assert "self.__rtcp_exited.wait()" in stop
    assert hasattr(sender, "_rtx_ssrc") and hasattr(sender, "_enabled")


def test_the_direct_wire_does_what_aiortc_and_aioice_do_per_packet() -> None:
    # _Wire (RTP) and send_rtcp protect and send as these do, for an
    # RTCDtlsTransport; every relay test with real peers then checks that what it
    # sends is received.
    import aioice.ice
    from aiortc.rtcdtlstransport import RTCDtlsTransport
    from aiortc.rtcicetransport import RTCIceTransport

    dtls_send = inspect.getsource(RTCDtlsTransport._send_rtp)
    for line in (
        "self._state != State.CONNECTED",
        "data = self._tx_srtp.protect(data)",
        "data = self._tx_srtp.protect_rtcp(data)",
        "await self.transport._send(data)",
        "self.__tx_bytes += len(data)",
        "self.__tx_packets += 1",
    ):
        assert line in dtls_send, line
    assert "self._send = self._connection.send" in inspect.getsource(RTCIceTransport)
    assert "await self.sendto(data, 1)" in inspect.getsource(aioice.ice.Connection.send)
    sendto = inspect.getsource(aioice.ice.Connection.sendto)
    assert "self._nominated.get(component)" in sendto
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in sendto
    send_data = inspect.getsource(aioice.ice.StunProtocol.send_data)
    assert "self.transport.sendto(data, addr)" in send_data


async def test_a_frames_packet_sizes_are_known_before_it_is_packed() -> None:
    # send_now asks the pacer for a whole frame's tokens before building it.
    feed = packets([300, 2 * VP8_CHUNK_BYTES + 5], 3000, 90000)
    sender, transport, _, _ = await send("video", [VP8], feed, lean=True)
    lean = lean_rtp(sender)  # the one already installed
    predicted = [size for p in feed for size in lean._packet_sizes(p) or []]
    assert predicted == [len(sent) for sent in transport.sent]
    await sender.stop()


async def test_a_video_sender_reports_often_stamped_with_the_time_it_leaves() -> None:
    """Item 10: an SR four times a second while frames go out (here ten a second),
    each its own NTP time (so its answer's round trip can be told apart) with the
    RTP time of that instant, and a BYE at the end; audio keeps aiortc's pace."""
    from aiortc.rtp import RtcpByePacket, RtcpPacket, RtcpSrPacket

    from media.adapter.rtcp import VIDEO_REPORT_INTERVAL_S

    reports: list[bytes] = []

    class Reports(Transport):
        async def _send_rtp(self, data: bytes) -> None:
            (reports if is_rtcp(data) else self.sent).append(data)

    transport = Reports()
    track = Feed("video", [])
    sender = RTCRtpSender(track, transport)  # type: ignore[arg-type]
    lean_rtp(sender)
    await sender.send(parameters([VP8], "video"))
    # Frames stamped with the wall clock as they are handed over, so that the RTP
    # time an SR gives for the instant it leaves can be checked against its NTP time.
    start = time.monotonic()
    while time.monotonic() - start < VIDEO_REPORT_INTERVAL_S * 8:
        frame = av.Packet(bytes(900))
        frame.pts = round((time.monotonic() - start) * 90000)
        frame.time_base = fractions.Fraction(1, 90000)
        track._packets.put_nowait(SenderPacket.of(frame))
        await asyncio.sleep(0.1)
    await asyncio.wait_for(sender.stop(), 5)
    parsed = [RtcpPacket.parse(r) for r in reports]
    srs = [p[0] for p in parsed if isinstance(p[0], RtcpSrPacket)]
    assert len(srs) >= 4
    ntps = [sr.sender_info.ntp_timestamp for sr in srs]
    assert len(set(ntps)) == len(ntps)
    # NTP and RTP times advance together at the video clock, between frames too
    # (an SR's RTP time is its newest frame's moved on to the instant it leaves).
    first, last = srs[0].sender_info, srs[-1].sender_info
    seconds = (last.ntp_timestamp - first.ntp_timestamp) / 2**32
    ticks = (last.rtp_timestamp - first.rtp_timestamp) % 2**32
    assert ticks == pytest.approx(seconds * 90000, abs=900)
    assert isinstance(parsed[-1][0], RtcpByePacket)
    # aiortc's own handling of the answers reads the newest SR's LSR.
    assert sender._RTCRtpSender__lsr == (ntps[-1] >> 16) & 0xFFFFFFFF  # type: ignore[attr-defined]
    audio = RTCRtpSender(Feed("audio", []), Transport())  # type: ignore[arg-type]
    lean_rtp(audio)
    assert "_run_rtcp" not in vars(audio)


async def test_an_idle_video_sender_reports_only_now_and_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A video sender with nothing to send (a slot with no source now) builds no
    report until IDLE_REPORT_INTERVAL_S has passed, and only looks every
    IDLE_CHECK_INTERVAL_S whether it sends again; then it reports at once."""
    from aiortc.rtp import RtcpPacket, RtcpSrPacket

    from media.adapter import rtcp

    monkeypatch.setattr(rtcp, "VIDEO_REPORT_INTERVAL_S", 0.04)
    monkeypatch.setattr(rtcp, "IDLE_CHECK_INTERVAL_S", 0.1)
    monkeypatch.setattr(rtcp, "IDLE_REPORT_INTERVAL_S", 0.6)
    reports: list[bytes] = []
    built = 0

    class Reports(Transport):
        async def _send_rtp(self, data: bytes) -> None:
            (reports if is_rtcp(data) else self.sent).append(data)

    transport = Reports()
    track = Feed("video", packets([900], 3000, 90000))  # one frame, then nothing
    sender = RTCRtpSender(track, transport)  # type: ignore[arg-type]
    lean_rtp(sender)
    report = rtcp.FrequentReports.report

    def counted(self: rtcp.FrequentReports) -> list[Any]:
        nonlocal built
        built += 1
        return report(self)

    monkeypatch.setattr(rtcp.FrequentReports, "report", counted)
    await sender.send(parameters([VP8], "video"))
    await asyncio.sleep(1.5)

    def srs() -> list[Any]:
        parsed = [RtcpPacket.parse(r)[0] for r in reports]
        return [p for p in parsed if isinstance(p, RtcpSrPacket)]

    # The frame's report, then one each 0.6 s idle: 2 or 3 in 1.5 s, where a
    # sender reporting at its pace would have sent some 37.
    assert 2 <= len(srs()) <= 3
    assert built == len(srs())
    # It sends again: reported within a look (0.15 s at most) and a report's interval.
    before = len(srs())
    track._packets.put_nowait(packets([900], 3000, 90000)[0])
    await asyncio.sleep(0.25)
    assert len(srs()) > before
    await asyncio.wait_for(sender.stop(), 5)


async def test_with_fec_the_camera_goes_in_red_and_any_one_loss_is_rebuilt() -> None:
    """ULPFEC in RED (media.wire.ulpfec): media wrapped, an FEC packet after each group
    on the same sequence, and each protected packet rebuilt from the others."""
    transport = Transport()
    feed = packets([300, 200, 250, 280, 2000, 2000, 100, 400, 500, 60], 3000, 90000)
    sender = RTCRtpSender(Feed("video", feed), transport)  # type: ignore[arg-type]
    lean = lean_rtp(sender)
    lean.fec_types = FecTypes(red=118, ulpfec=120)
    lean.fec_on = True
    params = parameters([VP8, RTX], "video")
    await sender.send(params)
    # 12 media packets (a 2000-byte frame is two), 3 FEC: after four one-packet
    # frames, after four packets (two two-packet frames), after four frames again.
    for _ in range(200):
        if len(transport.sent) >= 15:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    extensions = HeaderExtensionsMap()
    extensions.configure(params)
    parsed = [RtpPacket.parse(d, extensions) for d in transport.sent]
    assert len(parsed) == 15
    assert {p.payload_type for p in parsed} == {118}
    seqs = [p.sequence_number for p in parsed]
    assert [(b - a) % 65536 for a, b in itertools.pairwise(seqs)] == [1] * 14
    inner = [p.payload[0] for p in parsed]
    assert inner == ([96] * 4 + [120]) * 3
    header_length = len(transport.sent[0]) - len(parsed[0].payload)
    plain = {
        p.sequence_number: ulpfec.red_unwrap(raw, header_length)
        for p, raw in zip(parsed, transport.sent, strict=True)
        if p.payload[0] == 96
    }
    rebuilt = 0
    for p in parsed:
        if p.payload[0] != 120:
            continue
        fec = p.payload[1:]
        for lost in ulpfec.protected_sequences(fec):
            others = {s: d for s, d in plain.items() if s != lost}
            assert ulpfec.recover(fec, sender._ssrc, others) == plain[lost]
            rebuilt += 1
    assert rebuilt == 12
    # A resend is of the plain packet: VP8 again once the RTX header is taken off.
    first = min(plain)
    await sender._retransmit(first)
    resent = RtpPacket.parse(transport.sent[-1], extensions)
    assert resent.payload_type == 97
    assert resent.payload[2:] == RtpPacket.parse(plain[first], extensions).payload
    # FEC off: plain VP8 again, on the same sequence.
    lean.fec_on = False
    assert lean._packet_sizes(feed[0]) is not None
    await sender.stop()


def test_a_shared_packet_carries_the_relays_own_clock_objects() -> None:
    """SenderPacket.of: the senders compare the clock with `is` before `==`."""
    from media.wire.rates import AUDIO_TIME_BASE, VIDEO_TIME_BASE

    video, audio, other = (packets([10], 1, rate)[0] for rate in (90_000, 48_000, 1000))
    assert video.time_base is VIDEO_TIME_BASE and audio.time_base is AUDIO_TIME_BASE
    assert other.time_base == fractions.Fraction(1, 1000)
