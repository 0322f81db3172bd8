"""Every place the relay reaches into aiortc's (and aioice's) private API.

aiortc 1.16 is pinned (pyproject.toml) and tests/media/test_aiortc_internals.py
checks each assumption below, so an upgrade that changes one fails loudly there
instead of silently here:

1. In packet mode (a track's recv() returns an av.Packet), RTCRtpSender only packs;
   PLI/FIR set a flag that only the frame-encoding path reads, and REMB lands on an
   encoder that packet mode never uses. We wrap the sender's RTCP handler to see
   those messages ourselves, then let aiortc handle them as before (NACK
   retransmission from its RTP history keeps working, RTT keeps being computed).
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
4. A sender writes every packet through `sender.transport._send_rtp()`, looking
   its private `__transport` up each time: a proxy there paces it (media.pacer).
6. aioice checks ICE consent (RFC 7675) every ~5 s with a single STUN request
   that it gives up on after its initial 0.5 s timeout, and closes the connection
   after six failures. On a satellite link (600 ms round trip and more) every
   check fails and the classroom is cut off after 30 s. Consent requests (the
   only ones aioice sends with `retransmissions=0`) get two retransmissions, so
   an answer is awaited 3.5 s (a late answer to the first try counts).
5. A sender answers a NACK from its private history with `_retransmit(seq)`; the
   history keeps `RTP_HISTORY_SIZE` packets (128 in aiortc: about a second of
   720p, short for a 600 ms satellite round trip). We wrap `_retransmit` to skip
   packets too old to help and to keep resends within a budget, and make the
   history longer.
7. RED (RFC 2198, media.red) is no codec of aiortc's. Where the browser offers
   it, we put it first in the audio sender's negotiated codecs (its private
   `_codecs`, between the offer and the answer) so the answer names it and the
   sender sends with it; the sender builds its encoder with the `get_encoder` it
   finds in its module's namespace, which we wrap to hand RED a `RedEncoder`.
8. A sender stamps each RTP packet with `aiortc.clock.current_ntp_time()` twice
   (abs-send-time, and the time its next SR reports), which aiortc computes through
   datetime objects: about a microsecond per packet and classroom. We make it read
   `time.time_ns()` instead (`fast_ntp_clock`); aiortc looks the module attribute
   up at each call.
9. Every sender sends a report (RTCP SR + SDES) about once a second, even one
   that sends nothing: a slot with no source now (no slides shared yet, nobody on
   stage), three of a classroom's five. Each report costs building, SRTCP and a
   send, and the classroom's answer costs as much again. We wrap the sender's
   `_send_rtcp` so that a sender whose packet count has not moved reports only
   every `IDLE_REPORT_INTERVAL_S`.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aioice.ice
import aiortc.clock
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
from aiortc import RTCRtpCodecParameters, RTCRtpSender, RTCRtpTransceiver
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    RtpPacket,
    is_rtcp,
    unpack_remb_fci,
)

from media.red import RedEncoder

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


# SRs remembered per sender for the round trip: about 16 s of reports, well past
# any round trip worth measuring.
SR_MEMORY = 16


def hook_sender_rtcp(
    sender: RTCRtpSender, on_keyframe_request: Callable[[], None]
) -> SenderFeedback:
    """Watch the RTCP a sender receives; return the feedback record it keeps updated."""
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
                            feedback.rtts += 1
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
# anyway (a satellite link's 600 ms round trip and a late NACK fit). A longer
# history is garbage the collector walks for every classroom.
RTP_HISTORY_SIZE = 256


def lengthen_history() -> None:
    """Make every sender keep `RTP_HISTORY_SIZE` packets (aiortc reads the module global)."""
    aiortc.rtcrtpsender.RTP_HISTORY_SIZE = RTP_HISTORY_SIZE  # type: ignore[attr-defined]


class _PacedTransport:
    """Stands in for a sender's RTCDtlsTransport; everything but sending passes through."""

    def __init__(self, transport: Any, send: Callable[[bytes], Awaitable[None]]) -> None:
        self._transport = transport
        self._send = send

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    async def _send_rtp(self, data: bytes) -> None:
        await self._send(data)


def pace_sender(sender: RTCRtpSender, pacer: Any, *, wait: bool) -> None:
    """Route a sender's packets through `pacer` (media.pacer.Pacer).

    `wait`: video waits for its turn; audio (wait=False) is sent at once and only
    draws from the budget. RTCP is never held back.
    """
    transport = sender._RTCRtpSender__transport  # type: ignore[attr-defined]
    if isinstance(transport, _PacedTransport):
        transport = transport._transport

    async def send(data: bytes) -> None:
        if is_rtcp(data):
            pass
        elif wait:
            await pacer.wait(len(data))
        else:
            pacer.consume(len(data))
        await transport._send_rtp(data)

    sender._RTCRtpSender__transport = _PacedTransport(transport, send)  # type: ignore[attr-defined]


def budget_resends(sender: RTCRtpSender, budget: Any, clock_rate: int) -> None:
    """Answer NACKs only within `budget` (media.pacer.ResendBudget) and while still useful.

    A packet's age is read from RTP timestamps (RFC 3550 §5.1): the newest sent
    minus the requested one, so no send times need keeping.
    """
    original: Callable[[int], Awaitable[None]] = sender._retransmit

    async def retransmit(sequence_number: int) -> None:
        history: dict[int, RtpPacket] = sender._RTCRtpSender__rtp_history  # type: ignore[attr-defined]
        size = aiortc.rtcrtpsender.RTP_HISTORY_SIZE  # type: ignore[attr-defined]
        packet = history.get(sequence_number % size)
        if packet is None or packet.sequence_number != sequence_number:
            return
        newest = sender._RTCRtpSender__rtp_timestamp  # type: ignore[attr-defined]
        age_s = ((newest - packet.timestamp) & 0xFFFFFFFF) / clock_rate
        if budget.allow(len(packet.payload), age_s):
            await original(sequence_number)

    sender._retransmit = retransmit  # type: ignore[method-assign]


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


# --- 8. the NTP clock ------------------------------------------------------------------

# Seconds from the NTP epoch (1900) to the Unix epoch (1970), RFC 5905 §6.
NTP_UNIX_OFFSET_S = 2_208_988_800


def _ntp_time_now() -> int:
    """The current time as a 64-bit NTP timestamp (RFC 3550 §4), as aiortc's clock gives it."""
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    return ((seconds + NTP_UNIX_OFFSET_S) << 32) | ((nanoseconds << 32) // 1_000_000_000)


def fast_ntp_clock() -> None:
    """Make aiortc read the NTP time without datetime objects (idempotent)."""
    aiortc.clock.current_ntp_time = _ntp_time_now


# --- 9. idle senders' reports ---------------------------------------------------------

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
