"""What a sender hears over RTCP, and how often it reports.

- Feedback (`hook_sender_rtcp`). In packet mode (a track's recv() returns an
  encoded packet), RTCRtpSender only packs: PLI/FIR set a flag that only the
  frame-encoding path reads, and REMB lands on an encoder that packet mode never
  uses. We wrap the sender's RTCP handler to see those messages ourselves, then let
  aiortc handle them as before (a NACK still reaches the sender's `_retransmit`).
- Round trips. aiortc keeps only its latest SR's time, so every receiver report
  that answers an earlier SR (most of them once the round trip passes a few hundred
  ms: a queue, a satellite) is ignored, and what remains is smoothed 85/15. We wrap
  the sender's `_send_rtcp` to remember when each of its recent SRs left, on the
  relay's clock, and take each report's round trip ourselves (RFC 3550 §6.4.1:
  arrival - sent - DLSR).
- Idle senders (`quiet_when_idle`). Every sender reports (SR + SDES) about once a
  second, even one that sends nothing: a slot with no source now (no slides shared
  yet, nobody on stage), three of a classroom's five. Each report costs building,
  SRTCP and a send, and the classroom's answer as much again: a sender whose packet
  count has not moved reports only every `IDLE_REPORT_INTERVAL_S`.
- Frequent reports, for video (`FrequentReports`). aiortc reports about once a
  second, and a round trip tells the queue on the path as it was when the SR it
  answers left: up to a second and a half old, when a narrowing link's queue grows
  by a tenth of a second each second. A video sender reports every
  `VIDEO_REPORT_INTERVAL_S` instead, stamped with the time it leaves (RFC 3550
  §6.4.1) rather than its last packet's, so that each one can be told apart from
  the one before even when no frame came between them. One that has sent nothing
  since its last report is idle: it reports only every `IDLE_REPORT_INTERVAL_S`,
  as `quiet_when_idle` has the others do, and meanwhile only looks every
  `IDLE_CHECK_INTERVAL_S` whether it sends again.
- NACKs (`nacked`). aiortc's parser expands each NACK item into up to 17 sequence
  numbers, counting past 65535 where the bitmask crosses the wrap, and its sender
  resends them one at a time. A NACK may list hundreds of items: one classroom
  sending such NACKs (scripts/fuzz_rtp.py) kept the event loop busy enough that the
  other classrooms' video stopped. Before aiortc sees one, its list is cut to the
  distinct 16-bit numbers and to as many as a sender keeps packets to resend.
- The octet count the SRs carry (`sender_octets`) is private too.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiortc import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    unpack_remb_fci,
)

from media.control.feedback import SenderFeedback
from media.wire import rtp

Clock = Callable[[], float]

# SRs remembered per sender for the round trip: about 16 s of reports, well past
# any round trip worth measuring.
SR_MEMORY = 16
# How often a sender that sends nothing still reports (it was once a second).
IDLE_REPORT_INTERVAL_S = 5.0
# How often a video sender reports. Four times a second is about 2.5 kbit/s, under
# a hundredth of a 300 kbit/s layer; each report and its answer cost the relay's
# event loop about as much as a media packet (15 % more work at 64 classrooms in
# bench_fanout). One watched sender per classroom was cheaper but gave fresh round
# trips half as often, and the step profile's down switch late.
VIDEO_REPORT_INTERVAL_S = 0.25
# How often an idle video sender (no source in its slot: slides not shared, nobody
# on stage) looks whether it sends again. It builds no report meanwhile: woken four
# times a second, a classroom's two idle video senders made the relay's event loop
# work 7 % more in bench_fanout (64 classrooms), though quiet_when_idle dropped
# every report they built.
IDLE_CHECK_INTERVAL_S = 1.0
# The most sequence numbers one NACK may ask for: what a sender keeps to resend
# (media.adapter.sender.RTP_HISTORY_SIZE); no more of them can be there.
MAX_NACKED = 256


def nacked(lost: list[int]) -> list[int]:
    """The packets a NACK asks for, as aiortc parsed it: each 16-bit sequence number
    once, in order, at most MAX_NACKED of them (the newest items' are kept)."""
    distinct = list(dict.fromkeys(sequence & 0xFFFF for sequence in lost))
    return distinct[-MAX_NACKED:]


def hook_sender_rtcp(
    sender: RTCRtpSender,
    on_keyframe_request: Callable[[], None],
    on_feedback: Callable[[], None] | None = None,
    *,
    clock: Clock,
) -> SenderFeedback:
    """Watch the RTCP a sender receives; return the feedback record it keeps updated.

    `on_feedback` is called after a REMB or a report block for this sender changed
    the record. Round trips are measured on `clock` (the relay's)."""
    feedback = SenderFeedback()
    original: Callable[[Any], Awaitable[None]] = sender._handle_rtcp_packet
    original_send: Callable[[list[Any]], Awaitable[None]] = sender._send_rtcp
    # LSR value (the middle 32 bits of an SR's NTP time) -> when that SR left, or
    # None when several SRs carried it and an answer cannot tell which.
    sent: dict[int, float | None] = {}

    async def send_rtcp(packets: list[Any]) -> None:
        await original_send(packets)
        if packets and isinstance(packets[0], RtcpSrPacket):
            lsr = rtp.middle_32(packets[0].sender_info.ntp_timestamp)
            # A sender that sent nothing since repeats its NTP time (its last packet's).
            sent[lsr] = None if lsr in sent else clock()
            while len(sent) > SR_MEMORY:
                del sent[next(iter(sent))]

    async def handle_rtcp_packet(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                feedback.keyframe_requests += 1
                on_keyframe_request()
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    pass
                else:
                    if sender._ssrc in ssrcs:
                        feedback.remb_bps = bitrate
                        feedback.remb_reporter = packet.ssrc
                        feedback.rembs += 1
                        if on_feedback is not None:
                            on_feedback()
        elif isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == sender._ssrc:
                    feedback.fraction_lost = report.fraction_lost / 256.0
                    feedback.packets_lost = report.packets_lost
                    feedback.highest_sequence = report.highest_sequence
                    feedback.reports += 1
                    left = sent.get(report.lsr) if report.lsr else None
                    if left is not None:
                        rtt = clock() - left - report.dlsr / 65536
                        if rtt >= 0:
                            feedback.rtt_s = rtt
                            feedback.rtt_sr_at = left
                            feedback.rtts += 1
                    if on_feedback is not None:
                        on_feedback()
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            lost = nacked(packet.lost)
            if lost != packet.lost:
                packet = RtcpRtpfbPacket(
                    fmt=packet.fmt, ssrc=packet.ssrc, media_ssrc=packet.media_ssrc, lost=lost
                )
        await original(packet)

    # The DTLS transport's router calls `recipient._handle_rtcp_packet(packet)`,
    # so an instance attribute shadows the method for this sender only.
    sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]
    sender._send_rtcp = send_rtcp  # type: ignore[method-assign]
    return feedback


def quiet_when_idle(sender: RTCRtpSender, clock: Clock) -> None:
    """Let `sender` report once every IDLE_REPORT_INTERVAL_S while it sends nothing."""
    original: Callable[[list[Any]], Awaitable[None]] = sender._send_rtcp
    last_count: int | None = None
    last_at = float("-inf")

    async def send_rtcp(packets: list[Any]) -> None:
        nonlocal last_count, last_at
        if packets and isinstance(packets[0], RtcpSrPacket):
            count = packets[0].sender_info.packet_count
            now = clock()
            if count == last_count and now - last_at < IDLE_REPORT_INTERVAL_S:
                return
            last_count, last_at = count, now
        await original(packets)

    sender._send_rtcp = send_rtcp  # type: ignore[method-assign]


def sender_octets(sender: RTCRtpSender) -> int:
    """Payload octets sent so far (the SR octet count, RFC 3550 §6.4.1)."""
    return int(sender._RTCRtpSender__octet_count)  # type: ignore[attr-defined]


class SentCounts(Protocol):
    """What a sender has sent so far (media.adapter.sender.LeanRtp keeps it)."""

    @property
    def packets(self) -> int: ...

    @property
    def octets(self) -> int: ...

    @property
    def newest_timestamp(self) -> int: ...

    @property
    def clock_rate(self) -> int: ...


class FrequentReports:
    """A video sender's reports, in place of aiortc's `_run_rtcp` (module notes)."""

    def __init__(self, sender: RTCRtpSender, counts: SentCounts) -> None:
        self._sender: Any = sender
        self._counts = counts

    async def run(self) -> None:
        """The sender's `_run_rtcp`: an SR every `VIDEO_REPORT_INTERVAL_S` while it
        sends, every `IDLE_REPORT_INTERVAL_S` while idle; a BYE at the end."""
        sender = self._sender
        sender._RTCRtpSender__rtcp_started.set()
        try:
            loop = asyncio.get_running_loop()
            reported: int | None = None  # the packet count the last report carried
            reported_at = loop.time()
            idle = False  # nothing sent over the last interval
            while True:
                interval = IDLE_CHECK_INTERVAL_S if idle else VIDEO_REPORT_INTERVAL_S
                # Spread over half to one and a half times the interval (RFC 3550 §6.3.1).
                await asyncio.sleep(interval * (0.5 + random.random()))
                count = self._counts.packets
                idle = count == reported
                if idle and loop.time() - reported_at < IDLE_REPORT_INTERVAL_S:
                    continue
                reported, reported_at = count, loop.time()
                await sender._send_rtcp(self.report())
        except asyncio.CancelledError:
            pass
        await sender._send_rtcp([RtcpByePacket(sources=[sender._ssrc])])
        sender._RTCRtpSender__rtcp_exited.set()

    def report(self) -> list[Any]:
        """An SR for now: the NTP time it leaves, the RTP time of that instant."""
        sender = self._sender
        ntp_timestamp = rtp.ntp_time(time.time_ns())
        counts = self._counts
        rtp_timestamp = counts.newest_timestamp
        if counts.packets:
            # The newest frame's RTP time, moved on by the time since it went out
            # (the NTP time kept for aiortc's reports).
            elapsed = (ntp_timestamp - sender._RTCRtpSender__ntp_timestamp) / 2**32
            rtp_timestamp = (rtp_timestamp + round(elapsed * counts.clock_rate)) & 0xFFFFFFFF
        packets: list[Any] = [
            RtcpSrPacket(
                ssrc=sender._ssrc,
                sender_info=RtcpSenderInfo(
                    ntp_timestamp=ntp_timestamp,
                    rtp_timestamp=rtp_timestamp,
                    packet_count=counts.packets & 0xFFFFFFFF,
                    octet_count=counts.octets & 0xFFFFFFFF,
                ),
            )
        ]
        # What aiortc's own handling of the answering reports reads for its RTT
        # (RTCRtpSender._handle_rtcp_packet compares it with time.time()).
        sender._RTCRtpSender__lsr = rtp.middle_32(ntp_timestamp)
        sender._RTCRtpSender__lsr_time = time.time()
        cname = sender._RTCRtpSender__cname
        if cname is not None:
            packets.append(
                RtcpSdesPacket(
                    chunks=[RtcpSourceInfo(ssrc=sender._ssrc, items=[(1, cname.encode("utf8"))])]
                )
            )
        return packets
