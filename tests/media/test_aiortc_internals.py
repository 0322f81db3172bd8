"""Canaries: what media/adapter/ (and the packet mode the relay rests on)
assume of aiortc 1.16 and aioice. If one fails after an upgrade, read that module's
docstring before changing anything else."""

from __future__ import annotations

import fractions
import inspect
import time

import aioice.ice
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import aiortc.rtp
import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket, pack_remb_fci

from media.adapter.encoded import DECODER_QUEUE, REMOTE_STREAMS
from media.adapter.hooks import (
    CONSENT_RETRANSMISSIONS,
    gather_on,
    install_consent_hook,
    patient_consent,
)
from media.adapter.rtcp import hook_sender_rtcp, sender_octets
from media.adapter.transport import pace_sender
from media.pipeline.fanout import SenderPacket

pytestmark = pytest.mark.timeout(20)


def test_senders_pack_packets_without_encoding_them() -> None:
    source = inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert ".pack(data)" in source, "aiortc no longer packs pre-encoded av.Packets"
    packet = av.Packet(b"\x10\x02\x00\x9d\x01\x2a" + b"\x00" * 2000)
    packet.pts = 90000
    packet.time_base = fractions.Fraction(1, 90000)
    payloads, timestamp = Vp8Encoder().pack(packet)
    assert timestamp == 90000 and len(payloads) == 2
    audio = av.Packet(b"\xf8" * 60)
    audio.pts = 960
    audio.time_base = fractions.Fraction(1, 48000)
    assert OpusEncoder().pack(audio) == ([b"\xf8" * 60], 960)


@pytest.mark.parametrize("kind", ["audio", "video"])
def test_senders_pack_anything_that_reads_like_a_packet(kind: str) -> None:
    # SubscriberTrack hands senders a SenderPacket (media.pipeline.fanout), not an av.Packet:
    # the sender encodes only frames, and its packers read pts, time_base and bytes().
    assert "isinstance(data, Frame)" in inspect.getsource(RTCRtpSender._next_encoded_frame)
    encoded = av.Packet(bytes(range(256)) * 12)  # a video packet of three RTP payloads
    encoded.pts = 123_456
    encoded.time_base = fractions.Fraction(1, 48000 if kind == "audio" else 90000)
    packers = [OpusEncoder() if kind == "audio" else Vp8Encoder() for _ in range(2)]
    for packer in packers:
        packer.picture_id = 0  # VP8's starts at random
    assert packers[0].pack(SenderPacket.of(encoded)) == packers[1].pack(encoded)


def test_keyframe_requests_only_set_a_flag_in_packet_mode() -> None:
    # If aiortc starts forwarding PLI/FIR to track sources itself, the relay's
    # interception may double the keyframes: revisit hook_sender_rtcp.
    source = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "self._send_keyframe()" in source
    assert "__force_keyframe = True" in inspect.getsource(RTCRtpSender._send_keyframe)


def test_rtcp_is_routed_through_the_senders_handle_rtcp_packet() -> None:
    source = inspect.getsource(RTCDtlsTransport._handle_rtcp_data)
    assert "recipient._handle_rtcp_packet(packet)" in source


async def test_the_hook_sees_pli_and_remb_and_aiortc_still_handles_them() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender = pc.addTransceiver("video", direction="sendonly").sender
    requests: list[int] = []
    feedback = hook_sender_rtcp(sender, lambda: requests.append(1), clock=time.monotonic)
    await sender._handle_rtcp_packet(
        RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc)
    )
    remb = RtcpPsfbPacket(fmt=15, ssrc=7, media_ssrc=0, fci=pack_remb_fci(640_000, [sender._ssrc]))
    await sender._handle_rtcp_packet(remb)
    assert requests == [1]
    assert feedback.remb_bps == 640_000 and feedback.remb_reporter == 7
    assert sender._RTCRtpSender__force_keyframe  # type: ignore[attr-defined]  # aiortc ran too
    assert sender_octets(sender) == 0
    await pc.close()


def test_aioice_gathers_host_addresses_through_one_function() -> None:
    assert list(inspect.signature(aioice.ice.get_host_addresses).parameters) == [
        "use_ipv4",
        "use_ipv6",
    ]
    assert "get_host_addresses(" in inspect.getsource(aioice.ice.Connection.gather_candidates)


async def test_gathering_stays_on_the_chosen_addresses() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    with gather_on(("127.0.0.1",)):
        await pc.setLocalDescription(await pc.createOffer())
    candidates = [line for line in pc.localDescription.sdp.splitlines() if "a=candidate" in line]
    assert candidates and all(line.split(" ")[4] == "127.0.0.1" for line in candidates)
    await pc.close()


def test_receivers_look_their_decoder_up_by_module_name() -> None:
    assert "get_decoder(codec)" in inspect.getsource(aiortc.rtcrtpreceiver.decoder_worker)


async def test_receivers_hand_reassembled_frames_to_a_queue_their_decoder_thread_reads() -> None:
    # media.adapter.encoded puts its tap in that queue's place before the receiver starts.
    receiver_source = inspect.getsource(aiortc.rtcrtpreceiver.RTCRtpReceiver)
    assert "self.__decoder_queue.put((codec, encoded_frame))" in receiver_source
    assert "self.__decoder_queue.put(None)" in receiver_source
    worker = inspect.getsource(aiortc.rtcrtpreceiver.decoder_worker)
    assert "input_q.get()" in worker and "task is None" in worker
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = pc.addTransceiver("video", direction="recvonly").receiver
    assert hasattr(receiver, DECODER_QUEUE) and hasattr(receiver, REMOTE_STREAMS)
    await pc.close()


async def test_senders_send_through_their_private_transport_each_time() -> None:
    # pace_sender swaps `__transport` for a proxy; our RTP loop reads it once a
    # frame, and aiortc must keep reading it through the `transport` property for
    # every RTCP packet.
    assert "await self.transport._send_rtp(payload)" in inspect.getsource(RTCRtpSender._send_rtcp)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender = pc.addTransceiver("video", direction="sendonly").sender
    assert sender.transport is sender._RTCRtpSender__transport  # type: ignore[attr-defined]
    await pc.close()


async def test_the_paced_transport_passes_everything_else_through() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender = pc.addTransceiver("video", direction="sendonly").sender
    real = sender.transport
    consumed: list[int] = []

    class Pacer:
        def consume(self, size: int) -> None:
            consumed.append(size)

    pace_sender(sender, Pacer(), wait=False)
    assert sender.transport is not real
    assert sender.transport._stats_id == real._stats_id
    assert sender.transport.state == real.state
    pace_sender(sender, Pacer(), wait=False)  # wrapping twice keeps one proxy
    assert sender.transport.inner is real
    await pc.close()


def test_consent_checks_are_the_only_requests_sent_without_retransmission() -> None:
    # install_consent_hook turns retransmissions=0 into a few; if aioice changes
    # how it checks consent, the classrooms on satellite links are cut off again.
    import aioice.stun

    consent = inspect.getsource(aioice.ice.Connection.query_consent)
    assert "retransmissions=0" in consent
    assert inspect.getsource(aioice.ice).count("retransmissions=0") == 1
    assert aioice.stun.RETRY_RTO == 0.5 and aioice.ice.CONSENT_FAILURES == 6


async def test_consent_checks_get_retransmissions_and_other_requests_do_not_change() -> None:
    seen: list[int | None] = []

    async def original(self, message, addr, integrity_key=None, retransmissions=None):  # type: ignore[no-untyped-def]
        seen.append(retransmissions)

    wrapped = patient_consent(original)
    await wrapped(None, "consent", ("198.18.0.2", 1), b"key", 0)
    await wrapped(None, "check", ("198.18.0.2", 1), b"key", None)
    await wrapped(None, "check", ("198.18.0.2", 1), b"key", 3)
    assert seen == [CONSENT_RETRANSMISSIONS, None, 3]
    install_consent_hook()
    install_consent_hook()  # idempotent: wrapped once
    assert getattr(aioice.ice.StunProtocol.request, "_classroom_consent_hook", False)


def test_red_can_be_put_first_between_offer_and_answer() -> None:
    # send_red() edits transceiver._codecs after setRemoteDescription(): the answer
    # and the sender's parameters must both be built from that list, and the sender
    # must send with the first codec, built by the get_encoder of its module.
    import aiortc.rtcpeerconnection as rtcpc

    answer = inspect.getsource(rtcpc.create_media_description_for_transceiver)
    assert "fmt=[c.payloadType for c in transceiver._codecs]" in answer
    assert "create_media_description_for_transceiver" in inspect.getsource(
        RTCPeerConnection.createAnswer
    )
    local_rtp = RTCPeerConnection._RTCPeerConnection__localRtp  # type: ignore[attr-defined]
    assert "codecs=transceiver._codecs" in inspect.getsource(local_rtp)
    # Our RTP loop (lean_rtp) gets the first codec and builds its encoder the same way.
    assert "_run_rtp(parameters.codecs[0])" in inspect.getsource(RTCRtpSender.send)
    assert hasattr(aiortc.rtcrtpsender, "get_encoder")


def test_senders_report_through_send_rtcp_with_the_sr_first() -> None:
    # quiet_when_idle() wraps _send_rtcp and reads the SR's packet count.
    source = inspect.getsource(RTCRtpSender._run_rtcp)
    assert "RtcpSrPacket(" in source and "await self._send_rtcp(packets)" in source
    assert source.index("RtcpSrPacket(") < source.index("RtcpSdesPacket(")


async def test_an_idle_sender_reports_every_five_seconds() -> None:
    from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

    from media.adapter.rtcp import IDLE_REPORT_INTERVAL_S, quiet_when_idle

    sent: list[int] = []

    class Sender:
        async def _send_rtcp(self, packets: list[object]) -> None:
            sent.append(packets[0].sender_info.packet_count)  # type: ignore[attr-defined]

    now = [0.0]
    sender = Sender()
    quiet_when_idle(sender, lambda: now[0])  # type: ignore[arg-type]

    def sr(count: int) -> list[object]:
        info = RtcpSenderInfo(ntp_timestamp=0, rtp_timestamp=0, packet_count=count, octet_count=0)
        return [RtcpSrPacket(ssrc=1, sender_info=info)]

    for second, count in enumerate([0, 0, 0, 0, 0, 0, 5, 9, 9, 9]):
        now[0] = second * IDLE_REPORT_INTERVAL_S / 5
        await sender._send_rtcp(sr(count))
    # Idle: at 0 s and 5 s; sending: every report; idle again: quiet.
    assert sent == [0, 0, 5, 9]


async def test_the_round_trip_comes_from_any_recent_sr() -> None:
    """aiortc keeps only its latest SR's time; a report answering an earlier one
    (any round trip longer than the SR interval) must still give a round trip."""
    from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, RtcpSenderInfo, RtcpSrPacket

    handled: list[object] = []

    class Sender:
        _ssrc = 1234

        async def _send_rtcp(self, packets: list[object]) -> None:
            pass

        async def _handle_rtcp_packet(self, packet: object) -> None:
            handled.append(packet)

    now = [1000.0]
    sender = Sender()
    feedback = hook_sender_rtcp(sender, lambda: None, clock=lambda: now[0])  # type: ignore[arg-type]

    def sr(ntp: int) -> list[object]:
        info = RtcpSenderInfo(ntp_timestamp=ntp, rtp_timestamp=0, packet_count=1, octet_count=0)
        return [RtcpSrPacket(ssrc=1234, sender_info=info)]

    def rr(lsr: int, dlsr_s: float) -> RtcpRrPacket:
        block = RtcpReceiverInfo(
            ssrc=1234, fraction_lost=0, packets_lost=0, highest_sequence=10, jitter=0,
            lsr=lsr, dlsr=round(dlsr_s * 65536),
        )  # fmt: skip
        return RtcpRrPacket(ssrc=99, reports=[block])

    first, second = 0xAAAA_0000_BBBB_0000, 0xAAAA_0001_CCCC_0000
    await sender._send_rtcp(sr(first))
    now[0] += 0.8
    await sender._send_rtcp(sr(second))
    now[0] += 0.1
    # The answer to the first SR, held 0.2 s by the receiver: 0.9 - 0.2 = 0.7 s.
    await sender._handle_rtcp_packet(rr((first >> 16) & 0xFFFFFFFF, 0.2))
    assert feedback.rtts == 1 and feedback.rtt_s == pytest.approx(0.7, abs=1e-4)
    # An SR we never sent gives nothing; aiortc still sees every packet.
    await sender._handle_rtcp_packet(rr(0x1234_5678, 0.2))
    assert feedback.rtts == 1 and len(handled) == 2
    # An idle sender repeats its last packet's NTP time: which SR was answered is
    # unknown, and a guess would say a round trip of seconds.
    await sender._send_rtcp(sr(second))
    now[0] += 0.3
    await sender._handle_rtcp_packet(rr((second >> 16) & 0xFFFFFFFF, 0.1))
    assert feedback.rtts == 1


def test_transport_cc_hooks_find_what_they_wrap() -> None:
    """media.adapter.twcc: the DTLS transport hands each decrypted compound RTCP
    packet to `_handle_rtcp_data`; answers are built from each transceiver's
    `_headerExtensions` and `_codecs`, set when the offer is applied; aiortc's own
    extension map writes the transport-wide number (what LeanRtp's layout reads)."""
    source = inspect.getsource(RTCDtlsTransport)
    assert "await self._handle_rtcp_data(data)" in source
    peer_source = inspect.getsource(RTCPeerConnection)
    assert "transceiver._headerExtensions = find_common_header_extensions(" in peer_source
    assert "headerExtensions=transceiver._headerExtensions" in peer_source
    assert "transport_sequence_number" in inspect.getsource(aiortc.rtp.HeaderExtensionsMap)


def test_a_widened_srtp_session_protects_an_fec_packet_over_full_size_packets() -> None:
    """media.adapter.transport.widen: pylibsrtp's buffer, and what it refuses without."""
    import os

    from pylibsrtp import Policy, Session

    from media.adapter.transport import MAX_RTP_BYTES, widen

    def session() -> Session:
        policy = Policy(key=os.urandom(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND)
        return Session(policy=policy)

    packet = bytes([0x80, 96]) + os.urandom(10) + os.urandom(1375 - 12)
    with pytest.raises(ValueError, match="too long"):
        session().protect(packet)
    wide = widen(session())
    assert len(wide.protect(packet)) == len(packet) + 10
    longest = bytes([0x80, 96]) + os.urandom(MAX_RTP_BYTES - 2)
    assert len(widen(wide).protect(longest)) == MAX_RTP_BYTES + 10


def test_the_receive_loop_hands_packets_to_handlers_the_guard_can_wrap() -> None:
    """media.adapter.guard: the DTLS transport calls its own `_handle_rtp_data` and
    `_handle_rtcp_data` by attribute, and expects only ValueError of the parsers."""
    source = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "await self._handle_rtcp_data(data)" in source
    assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in source
    assert "except ValueError" in inspect.getsource(RTCDtlsTransport._handle_rtp_data)


def test_receivers_take_packets_through_an_attribute_and_keep_every_ssrc() -> None:
    """media.adapter.guard_receiver: the transport calls `_handle_rtp_packet` by
    attribute; the receiver keeps a stream per SSRC in `__remote_streams` and reports
    on all of them."""
    source = inspect.getsource(RTCDtlsTransport._handle_rtp_data)
    assert "await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)" in source
    receiver_source = inspect.getsource(aiortc.rtcrtpreceiver.RTCRtpReceiver)
    assert "self.__remote_streams[packet.ssrc] = StreamStatistics(" in receiver_source
    assert "for ssrc, stream in self.__remote_streams.items():" in receiver_source


async def test_a_session_keeps_its_candidates_and_protocols_where_ice_tcp_adds_to_them() -> None:
    # media.adapter.ice_tcp adds a candidate to `_local_candidates` after gathering,
    # and an accepted TCP connection to `_protocols`; a protocol hands requests to
    # `receiver.request_received` and sends through `transport.sendto`.
    connection = aioice.ice.Connection(ice_controlling=False)
    with gather_on(("127.0.0.1",)):
        await connection.gather_candidates()
    assert connection.local_candidates == connection._local_candidates
    assert [p.local_candidate for p in connection._protocols] == connection._local_candidates
    assert connection._closing is False
    received = inspect.getsource(aioice.ice.StunProtocol.datagram_received)
    assert "self.receiver.request_received(message, addr, self)" in received
    assert "self.receiver.data_received(data, self.local_candidate.component)" in received
    assert "self.transport.sendto(bytes(message), addr)" in inspect.getsource(
        aioice.ice.StunProtocol.send_stun
    )
    pairing = inspect.getsource(aioice.ice.Connection._pair_remote_candidate)
    assert "protocol.local_candidate.can_pair_with" in pairing
    await connection.close()
    assert connection._closing is True


async def test_a_session_can_trade_its_udp_sockets_for_shares_of_one_port() -> None:
    # media.adapter.ice_udp closes a session's own UDP host sockets and puts its
    # shares in `_protocols`: aioice sends checks, answers and consent checks through
    # `protocol.transport.sendto`, keeps a protocol's open requests in `transactions`,
    # and closes a protocol by closing its transport and awaiting `connection_lost`.
    # (From the module's source: the consent hook may have wrapped `request`.)
    assert "self.transactions[request.transaction_id] = transaction" in inspect.getsource(
        aioice.ice
    )
    closing = inspect.getsource(aioice.ice.StunProtocol.close)
    assert "self.transport.close()" in closing
    assert "self.receiver.protocol_lost(self)" in inspect.getsource(
        aioice.ice.StunProtocol.connection_lost
    )
    assert "await pair.protocol.request(" in inspect.getsource(aioice.ice.Connection.query_consent)
    assert "for protocol in self._protocols:\n            await protocol.close()" in (
        inspect.getsource(aioice.ice.Connection.close)
    )
    assert "await active_pair.protocol.send_data(" in inspect.getsource(
        aioice.ice.Connection.sendto
    )
    assert "self.transport.sendto(data, addr)" in inspect.getsource(
        aioice.ice.StunProtocol.send_data
    )


def test_receivers_have_what_the_ingest_watch_reads() -> None:
    # media.adapter.inbound: the methods it wraps, the statistics and queues it reads.
    receiver_source = inspect.getsource(aiortc.rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet)
    assert "self._send_rtcp_pli(" in receiver_source
    assert "self._send_rtcp_nack(" in receiver_source
    stats = aiortc.rtcrtpreceiver.StreamStatistics(90000)
    for seq in (10, 12):  # one lost between them
        stats.add(aiortc.rtp.RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq))
    assert (stats.packets_received, stats.packets_expected) == (2, 3)
    track = aiortc.rtcrtpreceiver.RemoteStreamTrack(kind="video")
    assert track._queue.qsize() == 0


def test_the_dtls_transport_keys_srtp_in_a_method_lean_srtp_can_wrap() -> None:
    """media.adapter.srtp: `start` calls `self._setup_srtp()`, which leaves pylibsrtp
    Sessions in `_rx_srtp` and `_tx_srtp`, each holding its libsrtp context in `_srtp`;
    the receive loop catches pylibsrtp.Error from unprotecting."""
    import pylibsrtp

    assert "self._setup_srtp()" in inspect.getsource(RTCDtlsTransport.start)
    setup = inspect.getsource(RTCDtlsTransport._setup_srtp)
    assert "self._rx_srtp = Session(" in setup and "self._tx_srtp = Session(" in setup
    receive = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "self._rx_srtp.unprotect_rtcp(data)" in receive
    assert "except pylibsrtp.Error" in receive
    policy = pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    assert pylibsrtp.Session(policy)._srtp[0] is not None
    assert pylibsrtp.ERRORS[9] == "replay check failed (bad index)"
