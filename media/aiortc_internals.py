"""Every place the relay reaches into aiortc's (and aioice's) private API.

aiortc 1.16 is pinned (pyproject.toml) and tests/media/test_aiortc_internals.py
checks each assumption below, so an upgrade that changes one fails loudly there
instead of silently here:

1. In packet mode (a track's recv() returns an av.Packet), RTCRtpSender only packs;
   PLI/FIR set a flag that only the frame-encoding path reads, and REMB lands on an
   encoder that packet mode never uses. We wrap the sender's RTCP handler to see
   those messages ourselves, then let aiortc handle them as before (a NACK still
   reaches the sender's `_retransmit`, the RTT is still computed).
2. aioice gathers host candidates on every interface except loopback, with no
   per-connection choice. We replace `aioice.ice.get_host_addresses` once with a
   function that answers from a context variable when one is set, so each
   setLocalDescription() can gather on the operator's addresses (or 127.0.0.1 in
   tests) without touching other peer connections.
3. The sender's octet count is a private attribute. Its RTT estimate is too, and
   it is of little use to us: aiortc keeps only its latest SR's time, so every
   receiver report that answers an earlier SR (most of them once the round trip
   passes a few hundred ms: a queue, a satellite) is ignored, and what remains is
   smoothed 85/15. We wrap the sender's `_send_rtcp` to remember when each of its
   recent SRs left, and take each report's round trip ourselves (RFC 3550
   §6.4.1: arrival - sent - DLSR).
4. A sender writes every packet through its private `__transport`'s `_send_rtp()`
   (resends and RTCP at each packet; our RTP loop, 9., reads it once a frame): a
   proxy there paces it (media.pacer). Our loop asks the proxy for a packet's turn
   and then sends it itself.
5. A sender answers a NACK by calling its `_retransmit(seq)`. aiortc's keeps 128
   packets (about a second of 720p, short for a 600 ms satellite round trip) and
   resends every one asked for. Ours (9.) keeps `RTP_HISTORY_SIZE`, skips packets
   too old to help and keeps resends within a budget.
6. aioice checks ICE consent (RFC 7675) every ~5 s with a single STUN request
   that it gives up on after its initial 0.5 s timeout, and closes the connection
   after six failures. On a satellite link (600 ms round trip and more) every
   check fails and the classroom is cut off after 30 s. Consent requests (the
   only ones aioice sends with `retransmissions=0`) get two retransmissions, so
   an answer is awaited 3.5 s (a late answer to the first try counts).
7. RED (RFC 2198, media.red) is no codec of aiortc's. Where the browser offers
   it, we put it first in the audio sender's negotiated codecs (its private
   `_codecs`, between the offer and the answer) so the answer names it and the
   sender sends with it; the sender builds its encoder with the `get_encoder` it
   finds in its module's namespace, which we wrap to hand RED a `RedEncoder`.
8. Every sender sends a report (RTCP SR + SDES) about once a second, even one
   that sends nothing: a slot with no source now (no slides shared yet, nobody on
   stage), three of a classroom's five. Each report costs building, SRTCP and a
   send, and the classroom's answer costs as much again. We wrap the sender's
   `_send_rtcp` so that a sender whose packet count has not moved reports only
   every `IDLE_REPORT_INTERVAL_S`.
9. aiortc's RTP loop (`_run_rtp`) builds an RtpPacket object per packet and per
   classroom, packetizes each VP8 frame again for each classroom, and reads the
   NTP time through datetime objects, twice a packet. We replace a sender's
   `_run_rtp` and `_retransmit` (`lean_rtp`) with a loop that takes VP8 frames cut
   once per layer, builds each header with one struct call, protects and sends each
   packet itself (the DTLS transport's SRTP session, the socket of aioice's
   nominated pair: four coroutines fewer a packet), and keeps the
   private state aiortc's reports, stats and stop() read: the counters and times of
   the last packet sent, the track, the encoder, the started and exited events.
   A frame may also be sent by `LeanRtp.send_now`, outside the loop, while the
   loop waits for it (media.fanout).
10. A sender reports (RTCP SR) about once a second (`_run_rtcp`), and a round trip
   (3.) tells the queue on the path as it was when the SR it answers left: up to a
   second and a half old, when a narrowing link's queue grows by a tenth of a
   second each second. A video sender's loop (`LeanRtp.run_rtcp`) reports every
   `VIDEO_REPORT_INTERVAL_S` instead, stamped with the time it leaves (RFC 3550
   §6.4.1) rather than its last packet's, so that each one can be told apart from
   the one before even when no frame came between them (still slides).
11. A probe may send padding (media.allocator): padding-only packets on the
   sender's RTX stream (`LeanRtp.padding`), whose payload type, SSRC and sequence
   number aiortc keeps privately (`__rtx_payload_type`, `_rtx_ssrc`,
   `__rtx_sequence_number`, shared with resends).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import struct
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aioice.ice
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import aiortc.rtp
from aiortc import RTCRtpCodecParameters, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    is_rtcp,
    unpack_remb_fci,
)

from media.encoders import AUDIO_TIME_BASE, VIDEO_TIME_BASE
from media.red import RedEncoder

logger = logging.getLogger(__name__)

_host_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "media_host_addresses", default=None
)
_HOOK_MARK = "_classroom_media_hook"


# What the consent fix (6. above) gives a consent check: 0.5 + 1 + 2 s of waiting.
CONSENT_RETRANSMISSIONS = 2
_CONSENT_MARK = "_classroom_consent_hook"


def patient_consent(request: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap StunProtocol.request so that consent checks (retransmissions=0) retry."""

    async def wrapped(
        self: Any,
        message: Any,
        addr: tuple[str, int],
        integrity_key: bytes | None = None,
        retransmissions: int | None = None,
    ) -> Any:
        if retransmissions == 0:
            retransmissions = CONSENT_RETRANSMISSIONS
        return await request(self, message, addr, integrity_key, retransmissions)

    setattr(wrapped, _CONSENT_MARK, True)
    return wrapped


def install_consent_hook() -> None:
    """Let consent checks wait for a long round trip (idempotent)."""
    protocol = aioice.ice.StunProtocol
    if not getattr(protocol.request, _CONSENT_MARK, False):
        protocol.request = patient_consent(protocol.request)  # type: ignore[method-assign,assignment]


def install_host_address_hook() -> None:
    """Make aioice ask `gather_on()` which host addresses to use (idempotent)."""
    current = aioice.ice.get_host_addresses
    if getattr(current, _HOOK_MARK, False):
        return
    original = current

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        chosen = _host_addresses.get()
        if chosen is None:
            return original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    setattr(get_host_addresses, _HOOK_MARK, True)
    aioice.ice.get_host_addresses = get_host_addresses


@contextmanager
def gather_on(addresses: tuple[str, ...]) -> Iterator[None]:
    """Within this block, ICE gathering uses exactly `addresses` (empty: aioice's default).

    Wrap `await pc.setLocalDescription(...)`: aiortc gathers inside it, in tasks
    that inherit this context.
    """
    install_host_address_hook()
    token = _host_addresses.set(addresses or None)
    try:
        yield
    finally:
        _host_addresses.reset(token)


@dataclass
class SenderFeedback:
    """What the receiving peer told one of our senders over RTCP."""

    remb_bps: int | None = None
    # SSRC of the RTCP sender of that REMB: one estimate per reporting receiver.
    remb_reporter: int | None = None
    # RFC 3550 §6.4.1: fraction lost since the previous report, 0..1.
    fraction_lost: float = 0.0
    # Cumulative figures of the latest report block: packets lost, and the extended
    # highest sequence number received. Their differences between two reports give
    # the loss over that interval exactly (RFC 3550 §A.3).
    packets_lost: int = 0
    highest_sequence: int | None = None
    reports: int = 0
    rembs: int = 0
    keyframe_requests: int = 0
    # The round trip taken from the latest report that answered one of our SRs
    # (item 3), in seconds, and how many such reports have come.
    rtt_s: float | None = None
    rtts: int = 0
    # When the SR that round trip answers left (time.time()): the newest SR tells
    # the path as it is now.
    rtt_sr_at: float | None = None


# SRs remembered per sender for the round trip: about 16 s of reports, well past
# any round trip worth measuring.
SR_MEMORY = 16


def hook_sender_rtcp(
    sender: RTCRtpSender,
    on_keyframe_request: Callable[[], None],
    on_feedback: Callable[[], None] | None = None,
) -> SenderFeedback:
    """Watch the RTCP a sender receives; return the feedback record it keeps updated.

    `on_feedback` is called after a REMB or a report block for this sender changed
    the record."""
    feedback = SenderFeedback()
    original: Callable[[Any], Awaitable[None]] = sender._handle_rtcp_packet
    original_send: Callable[[list[Any]], Awaitable[None]] = sender._send_rtcp
    # LSR value (the middle 32 bits of an SR's NTP time) -> when that SR left, or
    # None when several SRs carried it and an answer cannot tell which.
    sent: dict[int, float | None] = {}

    async def send_rtcp(packets: list[Any]) -> None:
        await original_send(packets)
        if packets and isinstance(packets[0], RtcpSrPacket):
            lsr = (packets[0].sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF
            # A sender that sent nothing since repeats its NTP time (its last packet's).
            sent[lsr] = None if lsr in sent else time.time()
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
                        rtt = time.time() - left - report.dlsr / 65536
                        if rtt >= 0:
                            feedback.rtt_s = rtt
                            feedback.rtt_sr_at = left
                            feedback.rtts += 1
                    if on_feedback is not None:
                        on_feedback()
        await original(packet)

    # The DTLS transport's router calls `recipient._handle_rtcp_packet(packet)`,
    # so an instance attribute shadows the method for this sender only.
    sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]
    sender._send_rtcp = send_rtcp  # type: ignore[method-assign]
    return feedback


def sender_octets(sender: RTCRtpSender) -> int:
    """Payload octets sent so far (the SR octet count, RFC 3550 §6.4.1)."""
    return int(sender._RTCRtpSender__octet_count)  # type: ignore[attr-defined]


def replace_decoders(factory: Callable[[Any], Any]) -> None:
    """Make aiortc's receivers build their decoders with `factory(codec)`.

    For load generators only (scripts/bench_fanout.py): dozens of synthetic
    classrooms in one process cannot all decode VP8, so most count frames that
    aiortc's jitter buffer completed and only a sample decodes. aiortc's decoder
    thread looks `get_decoder` up in its module's namespace at each new codec.
    """
    aiortc.rtcrtpreceiver.get_decoder = factory  # type: ignore[attr-defined,assignment]


# Packets kept per sender for resending: at 1.2 Mbit/s, 256 packets are about 2 s,
# twice aiortc's 128 and past the 1 s after which the resend budget refuses a packet
# anyway (a satellite link's 600 ms round trip and a late NACK fit).
RTP_HISTORY_SIZE = 256


class _PacedTransport:
    """Stands in for a sender's RTCDtlsTransport; everything but sending passes through."""

    def __init__(self, transport: Any, pacer: Any, wait: bool) -> None:
        self._transport = transport
        self._pacer = pacer
        self._wait = wait

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    @property
    def waits(self) -> bool:
        return self._wait

    def take_now(self, sizes: list[int]) -> bool:
        """Video: the tokens for a whole frame's packets, if the pacer has them now."""
        return bool(self._pacer.take_now(sizes))

    def draw(self, size: int) -> None:
        """Audio: draw a packet's tokens (it never waits)."""
        self._pacer.consume(size)

    async def pace(self, size: int) -> None:
        """Wait for (video) or draw (audio) the pacer's tokens for an RTP packet."""
        if self._wait:
            await self._pacer.wait(size)
        else:
            self.draw(size)

    async def _send_rtp(self, data: bytes) -> None:
        if not is_rtcp(data):
            await self.pace(len(data))
        await self._transport._send_rtp(data)


def pace_sender(sender: RTCRtpSender, pacer: Any, *, wait: bool) -> None:
    """Route a sender's packets through `pacer` (media.pacer.Pacer).

    `wait`: video waits for its turn; audio (wait=False) is sent at once and only
    draws from the budget. RTCP is never held back.
    """
    transport = sender._RTCRtpSender__transport  # type: ignore[attr-defined]
    if isinstance(transport, _PacedTransport):
        transport = transport._transport
    sender._RTCRtpSender__transport = _PacedTransport(transport, pacer, wait)  # type: ignore[attr-defined]


def budget_resends(sender: RTCRtpSender, budget: Any) -> None:
    """Answer NACKs only within `budget` (media.pacer.ResendBudget) and while still useful.

    The sender must run our RTP loop (`lean_rtp`): its history knows each packet's age.
    """
    lean = getattr(sender, _LEAN_MARK, None)
    if not isinstance(lean, LeanRtp):
        raise TypeError("resends are budgeted on senders that run lean_rtp()")
    lean.budget = budget


# --- 7. RED for audio ------------------------------------------------------------------

RED_MIME = "audio/red"
_RED_MARK = "_classroom_red_hook"


def red_codec(offered: list[RTCRtpCodecParameters], opus_payload_type: int) -> int | None:
    """The payload type under which the offer takes RED carrying our Opus, if it does.

    Chromium offers `a=rtpmap:63 red/48000/2` with `a=fmtp:63 111/111`: its
    blocks are all of the Opus payload type.
    """
    wanted = f"{opus_payload_type}/{opus_payload_type}"
    for codec in offered:
        red = codec.mimeType.lower() == RED_MIME and codec.clockRate == 48000
        if red and wanted in codec.parameters:
            return codec.payloadType
    return None


def send_red(transceiver: RTCRtpTransceiver, offered: list[RTCRtpCodecParameters]) -> bool:
    """Make an audio sender send RED when the offer takes it; True if it will.

    Call after setRemoteDescription() and before createAnswer().
    """
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    opus = next((c for c in codecs if c.mimeType.lower() == "audio/opus"), None)
    if opus is None:
        return False
    if opus.payloadType is None:
        return False
    red_type = red_codec(offered, opus.payloadType)
    if red_type is None:
        return False
    red = RTCRtpCodecParameters(
        mimeType=RED_MIME,
        clockRate=48000,
        channels=2,
        payloadType=red_type,
        parameters={f"{opus.payloadType}/{opus.payloadType}": None},
    )
    transceiver._codecs = [red, *codecs]
    return True


def install_red_encoder() -> None:
    """Let senders negotiated to RED (see `send_red`) build a media.red.RedEncoder.

    It starts with one earlier packet per packet; `sender_red(sender).distance`
    changes that for one sender.
    """
    original: Any = aiortc.rtcrtpsender.get_encoder  # type: ignore[attr-defined]
    if getattr(original, _RED_MARK, False):
        original = original.__wrapped__

    def get_encoder(codec: RTCRtpCodecParameters) -> Any:
        if codec.mimeType.lower() == RED_MIME:
            opus_type = int(next(iter(codec.parameters)).split("/")[0])
            return RedEncoder(opus_type, distance=1)
        return original(codec)

    setattr(get_encoder, _RED_MARK, True)
    get_encoder.__wrapped__ = original  # type: ignore[attr-defined]
    aiortc.rtcrtpsender.get_encoder = get_encoder  # type: ignore[attr-defined]


def sender_red(sender: RTCRtpSender) -> RedEncoder | None:
    """The RED encoder a sender packs with, once it has sent its first packet."""
    encoder = sender._RTCRtpSender__encoder  # type: ignore[attr-defined]
    return encoder if isinstance(encoder, RedEncoder) else None


# --- the NTP clock (for 9.) ------------------------------------------------------------------

# Seconds from the NTP epoch (1900) to the Unix epoch (1970), RFC 5905 §6.
NTP_UNIX_OFFSET_S = 2_208_988_800


def _ntp_time_now() -> int:
    """The current time as a 64-bit NTP timestamp (RFC 3550 §4), as aiortc's clock gives it."""
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    return ((seconds + NTP_UNIX_OFFSET_S) << 32) | ((nanoseconds << 32) // 1_000_000_000)


def _abs_send_time() -> int:
    """The abs-send-time header extension's value now: NTP seconds in 6.18 fixed
    point, 24 bits (the NTP epoch is a whole number of 64 s before the Unix one)."""
    return (time.time_ns() << 18) // 1_000_000_000 & 0xFFFFFF


# --- 8. idle senders' reports ---------------------------------------------------------

# How often a sender that sends nothing still reports (it was once a second).
IDLE_REPORT_INTERVAL_S = 5.0


def quiet_when_idle(sender: RTCRtpSender, clock: Callable[[], float]) -> None:
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


# --- 9. the RTP loop -------------------------------------------------------------------

# How often a video sender reports (item 10). Four times a second is about 2.5
# kbit/s, under a hundredth of a 300 kbit/s layer; each report and its answer cost
# the relay's event loop about as much as a media packet (15 % more work at 64
# classrooms in bench_fanout). One watched sender per classroom was cheaper but
# gave fresh round trips half as often, and the step profile's down switch late.
VIDEO_REPORT_INTERVAL_S = 0.25

# aiortc's VP8 payloads are at most 1300 bytes; ours too, a 4-byte descriptor
# (RFC 7741 §4.2: X and I set, a 15-bit PictureID) and up to 1296 bytes of frame.
VP8_PAYLOAD_BYTES = 1300
_VP8_DESCRIPTOR_BYTES = 4
VP8_CHUNK_BYTES = VP8_PAYLOAD_BYTES - _VP8_DESCRIPTOR_BYTES
_VIDEO_CLOCK = 90000
_RTP_HEADER = struct.Struct("!BBHII")
_RTP_VERSION = 0x80
_RTP_EXTENSION = 0x10
_RTP_MARKER = 0x80
_RTP_PADDING = 0x20
# A padding packet's padding: the most its one-byte count can say (RFC 3550 §5.1).
PADDING_BYTES = 255
_PADDING = bytes(PADDING_BYTES - 1) + bytes((PADDING_BYTES,))
_LEAN_MARK = "_classroom_lean_rtp"


def vp8_chunks(frame: bytes) -> tuple[bytes, ...]:
    """A VP8 frame cut into the pieces its RTP payloads carry after their descriptors.

    The same for every subscriber of a layer, so a layer's packet cuts it once
    (media.fanout.SenderPacket) and each sender only puts its own descriptor in front.
    """
    return tuple(
        frame[start : start + VP8_CHUNK_BYTES] for start in range(0, len(frame), VP8_CHUNK_BYTES)
    )


def _extension_block(
    extensions_map: aiortc.rtp.HeaderExtensionsMap, mid: str | None
) -> tuple[bytes, bytes, bool]:
    """A sender's RTP header extension block (RFC 8285) as the bytes before and after
    the 3 bytes of abs-send-time, and whether that is negotiated at all (if not, the
    whole block is the first part).

    Built by aiortc's own map from the negotiated ids, so the layout is aiortc's.
    """
    low, high = (
        extensions_map.set(aiortc.rtp.HeaderExtensions(mid=mid, abs_send_time=value))
        for value in (0, 0xFFFFFF)
    )
    profile, block = low
    if not block:
        return b"", b"", False
    start = struct.pack("!HH", profile, len(block) // 4)
    if block == high[1]:
        return start + block, b"", False
    at = next(i for i, (a, b) in enumerate(zip(block, high[1], strict=True)) if a != b)
    return start + block[:at], block[at + 3 :], True


class _Wire:
    """An RTP packet from a sender to its socket as RTCDtlsTransport._send_rtp and
    aioice send it (SRTP, then a datagram to the nominated candidate pair), without
    their four coroutines and property lookups per packet.

    `ready()` once a frame: a frame's packets go to the pair nominated when it started.
    """

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self.dtls = dtls
        self._pair: Any = None
        self._protect: Callable[[bytes], bytes] = lambda packet: packet
        self._sendto: Callable[[bytes, Any], None] = lambda data, address: None
        self._address: Any = None
        self._packets = 0
        self._bytes = 0

    def ready(self) -> None:
        pair = self.dtls.transport._connection._nominated.get(1)
        if self.dtls._state is not DtlsState.CONNECTED or pair is None:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        if pair is not self._pair:
            self._pair = pair
            self._protect = self.dtls._tx_srtp.protect
            self._sendto = pair.protocol.transport.sendto
            self._address = pair.remote_addr

    def send(self, packet: bytes) -> None:
        if self.dtls._state is not DtlsState.CONNECTED:  # it may close while paced
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        data = self._protect(packet)
        self._sendto(data, self._address)
        self._packets += 1
        self._bytes += len(data)

    def count(self) -> None:
        """Add what was sent to the transport's stats (getStats), as it would."""
        dtls: Any = self.dtls
        dtls._RTCDtlsTransport__tx_packets += self._packets
        dtls._RTCDtlsTransport__tx_bytes += self._bytes
        self._packets = self._bytes = 0


class LeanRtp:
    """A sender's RTP loop in place of aiortc's `_run_rtp` (and its `_retransmit`).

    aiortc builds an RtpPacket object per packet and serializes it, packetizes each
    VP8 frame again for each sender, and looks up properties and clocks per packet:
    in bench_fanout's profile, as much of the relay's CPU as SRTP and the socket's
    send together.
    This loop builds each header with one struct call around a prebuilt extension
    block, takes VP8 frames already cut once per layer (`vp8_chunks`), and keeps
    its resend history as the bytes it sent. What it sends is what aiortc would:
    the same header fields and extensions, the same VP8 descriptor, the same
    counters for the sender's reports (tests/media/test_lean_rtp.py).

    `send_now` sends a frame from the caller's task when nothing needs waiting for
    (media.fanout: the layer's own task, while this loop is idle), saving the loop's
    wake-up for each frame of each classroom. RED is packed by the sender's encoder
    (media.red), as aiortc would.
    """

    def __init__(self, sender: RTCRtpSender) -> None:
        self._sender: Any = sender
        # seq % RTP_HISTORY_SIZE -> (seq, RTP timestamp, packet bytes, header length)
        self._history: list[tuple[int, int, bytes, int] | None] = [None] * RTP_HISTORY_SIZE
        self._newest_timestamp = 0
        self._clock_rate = _VIDEO_CLOCK
        self.budget: Any = None  # media.pacer.ResendBudget, when resends are budgeted
        # Set when the loop starts, from the negotiated codec and extensions.
        self._codec: RTCRtpCodecParameters | None = None
        self._vp8 = self._opus = self._stamped = False
        self._before = self._after = b""
        self._first_byte = _RTP_VERSION
        self._header_bytes = _RTP_HEADER.size
        self._sequence_number = 0
        self._timestamp_origin = 0
        self._picture_id = 0
        self._octets = self._packets = 0
        self._wire: _Wire | None = None

    def install(self) -> None:
        sender = self._sender
        sender._run_rtp = self.run
        sender._retransmit = self.retransmit
        if sender.kind == "video":
            sender._run_rtcp = self.run_rtcp
        setattr(sender, _LEAN_MARK, self)

    async def run_rtcp(self) -> None:
        """A video sender's reports, every `VIDEO_REPORT_INTERVAL_S` (item 10)."""
        sender = self._sender
        sender._RTCRtpSender__rtcp_started.set()
        try:
            while True:
                # Spread over half to one and a half times the interval (RFC 3550 §6.3.1).
                await asyncio.sleep(VIDEO_REPORT_INTERVAL_S * (0.5 + random.random()))
                await sender._send_rtcp(self._report())
        except asyncio.CancelledError:
            pass
        await sender._send_rtcp([RtcpByePacket(sources=[sender._ssrc])])
        sender._RTCRtpSender__rtcp_exited.set()

    def _report(self) -> list[Any]:
        """An SR for now: the NTP time it leaves, the RTP time of that instant."""
        sender = self._sender
        ntp_timestamp = _ntp_time_now()
        rtp_timestamp = self._newest_timestamp
        if self._packets:
            # The newest frame's RTP time, moved on by the time since it went out
            # (the NTP time `_sent` keeps for aiortc's reports).
            elapsed = (ntp_timestamp - sender._RTCRtpSender__ntp_timestamp) / 2**32
            rtp_timestamp = (rtp_timestamp + round(elapsed * self._clock_rate)) & 0xFFFFFFFF
        packets: list[Any] = [
            RtcpSrPacket(
                ssrc=sender._ssrc,
                sender_info=RtcpSenderInfo(
                    ntp_timestamp=ntp_timestamp,
                    rtp_timestamp=rtp_timestamp,
                    packet_count=self._packets & 0xFFFFFFFF,
                    octet_count=self._octets & 0xFFFFFFFF,
                ),
            )
        ]
        # What aiortc's own handling of the answering reports reads (its RTT).
        sender._RTCRtpSender__lsr = (ntp_timestamp >> 16) & 0xFFFFFFFF
        sender._RTCRtpSender__lsr_time = time.time()
        cname = sender._RTCRtpSender__cname
        if cname is not None:
            packets.append(
                RtcpSdesPacket(
                    chunks=[RtcpSourceInfo(ssrc=sender._ssrc, items=[(1, cname.encode("utf8"))])]
                )
            )
        return packets

    def _start(self, codec: RTCRtpCodecParameters) -> None:
        sender = self._sender
        self._clock_rate = codec.clockRate
        self._vp8 = codec.mimeType.lower() == "video/vp8"
        self._opus = codec.mimeType.lower() == "audio/opus"
        self._before, self._after, self._stamped = _extension_block(
            sender._RTCRtpSender__rtp_header_extensions_map, sender._RTCRtpSender__mid
        )
        self._first_byte = _RTP_VERSION | (_RTP_EXTENSION if self._before else 0)
        self._header_bytes = (
            _RTP_HEADER.size + len(self._before) + (3 + len(self._after) if self._stamped else 0)
        )
        self._sequence_number = aiortc.rtcrtpsender.random_sequence_number()
        self._timestamp_origin = aiortc.rtcrtpsender.random32()
        self._picture_id = aiortc.rtcrtpsender.random16() & 0x7FFF
        self._codec = codec

    def _frame(self, data: Any) -> tuple[list[bytes], int] | None:
        """A frame's RTP payloads and timestamp (None: nothing to send)."""
        if self._vp8:
            chunks = getattr(data, "chunks", None)
            if chunks is None:
                chunks = vp8_chunks(bytes(data))
            if not chunks:
                return None
            pts = data.pts
            if data.time_base != VIDEO_TIME_BASE:
                pts = int(pts * data.time_base * _VIDEO_CLOCK)
            picture_id = self._picture_id
            self._picture_id = (picture_id + 1) & 0x7FFF
            pid = (0x80, 0x80 | picture_id >> 8, picture_id & 0xFF)
            payloads = [bytes((0x90, *pid)) + chunks[0]]
            if len(chunks) > 1:
                rest = bytes((0x80, *pid))
                payloads.extend(rest + chunk for chunk in chunks[1:])
        elif self._opus and data.time_base == AUDIO_TIME_BASE:
            # What aiortc's OpusEncoder.pack gives, without its Fraction arithmetic.
            payloads, pts = [bytes(data)], data.pts
        else:
            sender = self._sender
            encoder = sender._RTCRtpSender__encoder
            if encoder is None:
                encoder = aiortc.rtcrtpsender.get_encoder(self._codec)
                sender._RTCRtpSender__encoder = encoder
            payloads, pts = encoder.pack(data)
            if not payloads:
                return None
        return payloads, (self._timestamp_origin + pts) & 0xFFFFFFFF

    def _wire_to(self, transport: Any) -> _Wire | None:
        """The direct wire to an RTCDtlsTransport, ready for a frame; None for
        anything else (tests' stand-ins), which gets its `_send_rtp` called."""
        if not isinstance(transport, RTCDtlsTransport):
            return None
        wire = self._wire
        if wire is None or wire.dtls is not transport:
            wire = self._wire = _Wire(transport)
        wire.ready()
        return wire

    def _packet(self, payload: bytes, timestamp: int, marker: bool) -> bytes:
        """The RTP packet for a payload, with the next sequence number, kept for resends."""
        sequence_number = self._sequence_number
        self._sequence_number = (sequence_number + 1) & 0xFFFF
        header = _RTP_HEADER.pack(
            self._first_byte,
            self._codec.payloadType | _RTP_MARKER if marker else self._codec.payloadType,  # type: ignore[union-attr]
            sequence_number,
            timestamp,
            self._sender._ssrc,
        )
        if self._stamped:
            header += self._before + _abs_send_time().to_bytes(3, "big") + self._after
        else:
            header += self._before
        packet = header + payload
        history = self._history
        history[sequence_number % len(history)] = (
            sequence_number,
            timestamp,
            packet,
            len(header),
        )
        self._octets += len(payload)
        self._packets += 1
        return packet

    def _sent(self, timestamp: int, wire: _Wire | None) -> None:
        """What the sender's next report (RFC 3550 §6.4.1) says, once a frame."""
        if wire is not None:
            wire.count()
        self._newest_timestamp = timestamp
        sender = self._sender
        sender._RTCRtpSender__ntp_timestamp = _ntp_time_now()
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__octet_count = self._octets
        sender._RTCRtpSender__packet_count = self._packets

    async def run(self, codec: RTCRtpCodecParameters) -> None:
        sender = self._sender
        sender._RTCRtpSender__rtp_started.set()
        self._start(codec)
        try:
            while True:
                track = sender._RTCRtpSender__track
                if track is None:
                    await asyncio.sleep(0.02)
                    continue
                data = await track.recv()
                if not sender._enabled:
                    continue
                frame = self._frame(data)
                if frame is None:
                    continue
                payloads, timestamp = frame
                transport = sender._RTCRtpSender__transport
                pace = None
                if isinstance(transport, _PacedTransport):
                    pace, transport = transport.pace, transport._transport
                wire = self._wire_to(transport)
                last = len(payloads) - 1
                for i, payload in enumerate(payloads):
                    packet = self._packet(payload, timestamp, i == last)
                    if pace is not None:
                        await pace(len(packet))
                    if wire is not None:
                        wire.send(packet)
                    else:
                        await transport._send_rtp(packet)
                self._sent(timestamp, wire)
        except (asyncio.CancelledError, ConnectionError, MediaStreamError):
            pass
        except Exception:
            # aiortc's stop() waits for the exit below: never leave without it.
            logger.warning("RTP loop failed\n%s", traceback.format_exc())
        self._codec = None
        track = sender._RTCRtpSender__track
        if track is not None:
            track.stop()
            sender._RTCRtpSender__track = None
        sender._RTCRtpSender__encoder = None
        sender._RTCRtpSender__rtp_exited.set()

    def send_now(self, data: Any) -> bool:
        """Send one frame at once, if nothing needs waiting for: the loop runs (and,
        the caller makes sure, waits for its next frame), the transport is connected,
        and a paced sender's pacer has the tokens for the whole frame.

        False: nothing was done, the frame must go the loop's way. True: it was sent
        (or dropped on an unexpected error, logged: it must not be sent twice).
        """
        sender = self._sender
        if self._codec is None or not sender._enabled:
            return False
        transport = sender._RTCRtpSender__transport
        paced = transport if isinstance(transport, _PacedTransport) else None
        if paced is not None:
            transport = paced._transport
        draw = None
        try:
            wire = self._wire_to(transport)
            if wire is None:
                return False
            if paced is not None:
                if paced.waits:
                    sizes = self._packet_sizes(data)
                    if sizes is None or not paced.take_now(sizes):
                        return False
                else:
                    draw = paced.draw
        except ConnectionError:
            return False
        except Exception:
            logger.warning("RTP send failed\n%s", traceback.format_exc())
            return False
        try:
            frame = self._frame(data)
            if frame is None:
                return True
            payloads, timestamp = frame
            last = len(payloads) - 1
            for i, payload in enumerate(payloads):
                packet = self._packet(payload, timestamp, i == last)
                if draw is not None:
                    draw(len(packet))
                wire.send(packet)
            self._sent(timestamp, wire)
        except Exception:
            logger.warning("RTP send failed\n%s", traceback.format_exc())
        return True

    def _packet_sizes(self, data: Any) -> list[int] | None:
        """The sizes of the RTP packets a video frame will make (None: not known
        before packing)."""
        chunks = getattr(data, "chunks", None) if self._vp8 else None
        if chunks is None:
            return None
        extra = self._header_bytes + _VP8_DESCRIPTOR_BYTES
        return [len(chunk) + extra for chunk in chunks]

    @property
    def can_pad(self) -> bool:
        """Whether `padding` gives a packet (RTX and abs-send-time negotiated, started)."""
        return (
            self._codec is not None
            and self._stamped
            and self._sender._RTCRtpSender__rtx_payload_type is not None
        )

    @property
    def padding_packet_bytes(self) -> int:
        """The size of one padding packet (`padding`), header included."""
        return self._header_bytes + PADDING_BYTES

    def padding(self) -> bytes | None:
        """One padding-only packet on the RTX stream, stamped with the time it leaves
        (None: this sender cannot pad: no RTX, no abs-send-time, not started).

        What libwebrtc sends to probe a link when it has nothing to resend: RFC 3550
        §5.1 padding (the P bit, the count in the last byte) on the RFC 4588 stream,
        which the receiver counts in its estimate (abs-send-time timing it) and then
        drops. Only with abs-send-time: a receiver timing by RTP timestamps would
        read a padding packet's as a late frame.
        """
        if not self.can_pad:
            return None
        sender = self._sender
        rtx_type = sender._RTCRtpSender__rtx_payload_type
        sequence = sender._RTCRtpSender__rtx_sequence_number
        sender._RTCRtpSender__rtx_sequence_number = (sequence + 1) & 0xFFFF
        header = _RTP_HEADER.pack(
            self._first_byte | _RTP_PADDING,
            rtx_type,
            sequence,
            self._newest_timestamp,
            sender._rtx_ssrc,
        )
        stamp = _abs_send_time().to_bytes(3, "big")
        return b"".join((header, self._before, stamp, self._after, _PADDING))

    def pad(self, count: int) -> int:
        """Send up to `count` padding packets now; how many went out."""
        transport = self._sender._RTCRtpSender__transport
        if isinstance(transport, _PacedTransport):
            transport = transport._transport
        try:
            wire = self._wire_to(transport)
        except ConnectionError:
            return 0
        if wire is None:
            return 0
        sent = 0
        try:
            for _ in range(count):
                packet = self.padding()
                if packet is None:
                    break
                wire.send(packet)
                sent += 1
        except ConnectionError:
            pass
        wire.count()
        return sent

    async def retransmit(self, sequence_number: int) -> None:
        """Answer a NACK for one packet from the history, as RTX where negotiated."""
        entry = self._history[sequence_number % len(self._history)]
        if entry is None or entry[0] != sequence_number:
            return
        _, timestamp, packet, header_length = entry
        if self.budget is not None:
            # Its age from RTP timestamps (RFC 3550 §5.1): no send times need keeping.
            age_s = ((self._newest_timestamp - timestamp) & 0xFFFFFFFF) / self._clock_rate
            if not self.budget.allow(len(packet) - header_length, age_s):
                return
        sender: Any = self._sender
        rtx_type = sender._RTCRtpSender__rtx_payload_type
        if rtx_type is not None:
            # RFC 4588 §4: the RTX stream's own header, then the original sequence number.
            rtx_sequence = sender._RTCRtpSender__rtx_sequence_number
            sender._RTCRtpSender__rtx_sequence_number = (rtx_sequence + 1) & 0xFFFF
            header = _RTP_HEADER.pack(
                packet[0],
                (packet[1] & _RTP_MARKER) | rtx_type,
                rtx_sequence,
                timestamp,
                sender._rtx_ssrc,
            )
            packet = b"".join(
                (
                    header,
                    packet[_RTP_HEADER.size : header_length],
                    sequence_number.to_bytes(2, "big"),
                    packet[header_length:],
                )
            )
        await sender.transport._send_rtp(packet)


def lean_rtp(sender: RTCRtpSender) -> LeanRtp:
    """Give `sender` our RTP loop (call before it starts sending; idempotent)."""
    existing = getattr(sender, _LEAN_MARK, None)
    if isinstance(existing, LeanRtp):
        return existing
    lean = LeanRtp(sender)
    lean.install()
    return lean
