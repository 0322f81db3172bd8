"""A sender's RTP loop in place of aiortc's: the last hop of every packet.

aiortc's RTP loop (`RTCRtpSender._run_rtp`) builds an RtpPacket object per packet
and per classroom, packetizes each VP8 frame again for each classroom, and reads
the NTP time through datetime objects, twice a packet: in bench_fanout's profile,
as much of the relay's CPU as SRTP and the socket's send together. `LeanRtp.install`
replaces, on one sender, these private methods of aiortc's:

- `_run_rtp` (`LeanRtp.run`): takes VP8 frames cut once per layer
  (media.pipeline.fanout.SenderPacket), builds each header with one struct call
  around a prebuilt extension block, protects and sends each packet itself
  (media.adapter.transport.Wire), and keeps the private state aiortc's reports,
  stats and stop() read: the counters and times of the last packet sent, the
  track, the encoder, the started and exited events. A frame may also be sent by
  `send_now`, outside the loop, while the loop waits for it; both go through
  `_make_packets` and `_sent`, the one place where packets are made and counted.
- `_retransmit` (`LeanRtp.retransmit`): aiortc keeps 128 packets (about a second
  of 720p, short for a 600 ms satellite round trip) and resends every one asked
  for. Ours keeps `RTP_HISTORY_SIZE`, skips packets too old to help and keeps
  resends within a budget (media.control.pacer.ResendBudget).
- `_run_rtcp`, for video: reports four times a second
  (media.adapter.rtcp.FrequentReports), from the counts kept here.
- `_send_rtcp` (`LeanRtp.send_rtcp`): aiortc's goes through four coroutines
  (the DTLS transport, the ICE transport, aioice's connection and protocol) for
  each report; ours protects and sends it in one call (media.adapter.transport.
  send_rtcp), as PacedTransport already did for paced senders. The hooks of
  media.adapter.rtcp wrap it as they wrapped aiortc's.

It also sends a probe's padding (`pad`): padding-only packets on the sender's RTX
stream, whose payload type, SSRC and sequence number aiortc keeps privately
(`__rtx_payload_type`, `_rtx_ssrc`, `__rtx_sequence_number`, shared with resends).

Stamps on the wire (the SR's NTP time, abs-send-time) are wall-clock time, as
RFC 3550 §4 and receivers expect; nothing here measures time.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import aiortc.rtcrtpsender
import aiortc.rtp
from aiortc import RTCRtpCodecParameters, RTCRtpSender
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport

from media.adapter.rtcp import FrequentReports
from media.adapter.transport import MAX_RTP_BYTES, Wire, send_rtcp, unpaced
from media.adapter.ulpfec import FecTypes
from media.wire import rtp, ulpfec, vp8
from media.wire.rates import AUDIO_TIME_BASE, VIDEO_CLOCK_RATE, VIDEO_TIME_BASE

logger = logging.getLogger(__name__)

# Packets kept per sender for resending: at 1.2 Mbit/s, 256 packets are about 2 s,
# twice aiortc's 128 and past the 1 s after which the resend budget refuses a packet
# anyway (a satellite link's 600 ms round trip and a late NACK fit).
RTP_HISTORY_SIZE = 256
_LEAN_MARK = "_classroom_lean_rtp"
# With FEC on (`LeanRtp.fec_on`), one FEC packet for every FEC_PACKETS_PER media
# packets (interleaved: two losses in a row are both rebuilt), sent once a group
# has that many packets or FEC_GROUP_FRAMES frames: a camera layer of one packet a
# frame waits at most 270 ms at 15 fps for its repair, and pays about a quarter more.
FEC_PACKETS_PER = 4
FEC_GROUP_FRAMES = 4
# An FEC packet is as long as the longest it covers plus its headers: one over
# full-size packets must still fit a 1500-byte IP packet (MAX_RTP_BYTES).
# aiortc's private helpers, looked up once (random start values, the packers).
_aiortc_sender: Any = aiortc.rtcrtpsender


class ResendBudget(Protocol):
    """What the sender needs of media.control.pacer.ResendBudget."""

    def allow(self, size: int, age_s: float) -> bool: ...


@dataclass(frozen=True)
class ExtensionLayout:
    """A sender's RTP header extension block (RFC 8285) around the values written as
    each packet leaves: the bytes before and after abs-send-time's 3 (if that is not
    negotiated, the whole block is `before`), and where in the packet the transport
    sequence number goes (media.adapter.twcc; None: not negotiated)."""

    before: bytes
    after: bytes
    stamped: bool
    twcc_at: int | None


def extension_block(
    extensions_map: aiortc.rtp.HeaderExtensionsMap, mid: str | None
) -> ExtensionLayout:
    """The layout of a sender's extension block, built by aiortc's own map from the
    negotiated ids (so the layout is aiortc's), with zeros where values go."""

    def block(abs_send_time: int, sequence: int) -> bytes:
        values = aiortc.rtp.HeaderExtensions(
            mid=mid, abs_send_time=abs_send_time, transport_sequence_number=sequence
        )
        profile, data = extensions_map.set(values)
        if not data:
            return b""
        return profile.to_bytes(2, "big") + (len(data) // 4).to_bytes(2, "big") + data

    base = block(0, 0)
    if not base:
        return ExtensionLayout(b"", b"", False, None)
    numbered = block(0, 0xFFFF)
    twcc_at = None
    if numbered != base:
        at = next(i for i, (a, b) in enumerate(zip(base, numbered, strict=True)) if a != b)
        twcc_at = rtp.HEADER.size + at
    timed = block(0xFFFFFF, 0)
    if timed == base:
        return ExtensionLayout(base, b"", False, twcc_at)
    at = next(i for i, (a, b) in enumerate(zip(base, timed, strict=True)) if a != b)
    return ExtensionLayout(base[:at], base[at + rtp.ABS_SEND_TIME_BYTES :], True, twcc_at)


class LeanRtp:
    """One sender's RTP loop, resends, reports and padding (see the module docstring).

    What it sends is what aiortc would: the same header fields and extensions, the
    same VP8 descriptor, the same counters for the sender's reports
    (tests/media/test_lean_rtp.py). RED is packed by the sender's encoder
    (media.wire.red), as aiortc would.
    """

    def __init__(self, sender: RTCRtpSender) -> None:
        self._sender: Any = sender
        # seq % RTP_HISTORY_SIZE -> (seq, RTP timestamp, packet bytes, header length)
        self._history: list[tuple[int, int, bytes, int] | None] = [None] * RTP_HISTORY_SIZE
        self._newest_timestamp = 0
        self._clock_rate = VIDEO_CLOCK_RATE
        self.budget: ResendBudget | None = None
        # Set when the loop starts, from the negotiated codec and extensions.
        self._codec: RTCRtpCodecParameters | None = None
        self._payload_type = 0
        self._vp8 = self._opus = self._stamped = False
        self._before = self._after = b""
        self._first_byte = rtp.VERSION
        self._header_bytes = rtp.HEADER.size
        self._sequence_number = 0
        self._timestamp_origin = 0
        self._picture_id = 0
        self._octets = self._packets = 0
        self._wire: Wire | None = None
        self._twcc_at: int | None = None
        # ULPFEC in RED (media.adapter.ulpfec): negotiated, and wanted now.
        self.fec_types: FecTypes | None = None
        self.fec_on = False
        self._fec_group: list[bytes] = []
        self._fec_frames = 0

    @classmethod
    def install(cls, sender: RTCRtpSender) -> LeanRtp:
        """Give `sender` this RTP loop, resends and (video) reports in place of
        aiortc's; call before it starts sending. Idempotent."""
        existing = getattr(sender, _LEAN_MARK, None)
        if isinstance(existing, LeanRtp):
            return existing
        lean = cls(sender)
        target: Any = sender
        target._run_rtp = lean.run
        target._retransmit = lean.retransmit
        target._send_rtcp = lean.send_rtcp
        if sender.kind == "video":
            target._run_rtcp = FrequentReports(sender, lean).run
        setattr(sender, _LEAN_MARK, lean)
        return lean

    # --- the loop and the frame sent at once: one way of making packets ------------

    async def run(self, codec: RTCRtpCodecParameters) -> None:
        """aiortc's `_run_rtp`: pull a frame from the track, send its packets, paced."""
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
                transport, paced = unpaced(sender._RTCRtpSender__transport)
                wire = self._wire_to(transport)
                for packet in self._make_packets(*frame):
                    if paced is not None:
                        await paced.pace(len(packet))
                    if wire is not None:
                        wire.send(packet)
                    else:
                        await transport._send_rtp(packet)
                self._sent(frame[1], wire)
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

    async def send_rtcp(self, packets: list[Any]) -> None:
        """aiortc's `_send_rtcp`: the packets as one compound packet, sent at once."""
        payload = b"".join(bytes(packet) for packet in packets)
        transport, _ = unpaced(self._sender._RTCRtpSender__transport)
        try:
            if isinstance(transport, RTCDtlsTransport):
                send_rtcp(transport, payload)
            else:
                await transport._send_rtp(payload)
        except ConnectionError:
            pass

    def send_now(self, data: Any) -> bool:
        """Send one frame at once, if nothing needs waiting for: the loop runs (and,
        the caller makes sure, waits for its next frame), the transport is connected,
        and a paced sender's pacer has the tokens for the whole frame.

        False: nothing was done, the frame must go the loop's way. True: it was sent
        (or dropped on an unexpected error, logged: it must not be sent twice).
        """
        if self._codec is None or not self._sender._enabled:
            return False
        transport, paced = unpaced(self._sender._RTCRtpSender__transport)
        draw: Callable[[int], None] | None = None
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
            wire.send_all(self._make_packets(*frame), draw)
            self._sent(frame[1], wire)
        except Exception:
            logger.warning("RTP send failed\n%s", traceback.format_exc())
        return True

    def _start(self, codec: RTCRtpCodecParameters) -> None:
        sender = self._sender
        self._clock_rate = codec.clockRate
        self._payload_type = codec.payloadType or 0
        self._vp8 = codec.mimeType.lower() == "video/vp8"
        self._opus = codec.mimeType.lower() == "audio/opus"
        layout = extension_block(
            sender._RTCRtpSender__rtp_header_extensions_map, sender._RTCRtpSender__mid
        )
        self._before, self._after, self._stamped = layout.before, layout.after, layout.stamped
        self._twcc_at = layout.twcc_at
        self._first_byte = rtp.VERSION | (rtp.EXTENSION_BIT if self._before else 0)
        self._header_bytes = (
            rtp.HEADER.size
            + len(self._before)
            + (rtp.ABS_SEND_TIME_BYTES + len(self._after) if self._stamped else 0)
        )
        self._sequence_number = _aiortc_sender.random_sequence_number()
        self._timestamp_origin = _aiortc_sender.random32()
        self._picture_id = _aiortc_sender.random16() & 0x7FFF
        self._codec = codec

    def _frame(self, data: Any) -> tuple[list[bytes], int] | None:
        """A frame's RTP payloads and timestamp (None: nothing to send)."""
        if self._vp8:
            chunks = getattr(data, "chunks", None)
            if chunks is None:
                chunks = vp8.chunks(bytes(data))
            if not chunks:
                return None
            pts = data.pts
            time_base = data.time_base
            if time_base is not VIDEO_TIME_BASE and time_base != VIDEO_TIME_BASE:
                pts = int(pts * data.time_base * VIDEO_CLOCK_RATE)
            picture_id = self._picture_id
            self._picture_id = (picture_id + 1) & 0x7FFF
            first, rest = vp8.descriptors(picture_id)
            payloads = [first + chunks[0]]
            payloads.extend(rest + chunk for chunk in chunks[1:])
        elif self._opus and (
            data.time_base is AUDIO_TIME_BASE or data.time_base == AUDIO_TIME_BASE
        ):
            # What aiortc's OpusEncoder.pack gives, without its Fraction arithmetic.
            payloads, pts = [bytes(data)], data.pts
        else:
            sender = self._sender
            encoder = sender._RTCRtpSender__encoder
            if encoder is None:
                encoder = _aiortc_sender.get_encoder(self._codec)
                sender._RTCRtpSender__encoder = encoder
            payloads, pts = encoder.pack(data)
            if not payloads:
                return None
        return payloads, (self._timestamp_origin + pts) & 0xFFFFFFFF

    def _make_packets(self, payloads: list[bytes], timestamp: int) -> Iterator[bytes]:
        """A frame's RTP packets, each made as it is asked for (its abs-send-time is
        the moment it leaves), numbered, counted and kept for resends; with FEC on,
        wrapped in RED and followed, at a group's end, by its FEC packets."""
        last = len(payloads) - 1
        history = self._history
        fec = self.fec_types if self.fec_on and self._vp8 else None
        if fec is None and self._fec_group:
            self._fec_group, self._fec_frames = [], 0
        for i, payload in enumerate(payloads):
            sequence_number = self._sequence_number
            self._sequence_number = (sequence_number + 1) & 0xFFFF
            header = rtp.HEADER.pack(
                self._first_byte,
                self._payload_type | rtp.MARKER_BIT if i == last else self._payload_type,
                sequence_number,
                timestamp,
                self._sender._ssrc,
            )
            if self._stamped:
                header += self._before + rtp.abs_send_time(time.time_ns()) + self._after
            else:
                header += self._before
            packet = header + payload
            history[sequence_number % len(history)] = (
                sequence_number,
                timestamp,
                packet,
                len(header),
            )
            self._octets += len(payload)
            self._packets += 1
            if fec is None:
                yield packet
            else:
                # Resends are of the plain packet (media.wire.ulpfec).
                self._fec_group.append(packet)
                yield ulpfec.red_wrap(packet, len(header), fec.red)
        if fec is not None:
            self._fec_frames += 1
            group = self._fec_group
            if len(group) >= FEC_PACKETS_PER or self._fec_frames >= FEC_GROUP_FRAMES:
                self._fec_group, self._fec_frames = [], 0
                yield from self._fec_packets(group, timestamp, fec)

    def _fec_packets(self, group: list[bytes], timestamp: int, fec: FecTypes) -> Iterator[bytes]:
        """The FEC packets for a group of media packets (media.wire.ulpfec), on the
        media's SSRC and sequence, each wrapped in RED; not kept for resends."""
        longest = max(len(packet) for packet in group)
        size = self._header_bytes + 1 + ulpfec.FEC_HEADER.size + 8 + longest - rtp.HEADER.size
        if len(group) > ulpfec.LONG_SPAN or size > MAX_RTP_BYTES:
            return  # too long a group: NACK repairs it
        count = -(-len(group) // FEC_PACKETS_PER)
        for j in range(count):
            payload = bytes((fec.ulpfec,)) + ulpfec.protect(group[j::count])
            sequence_number = self._sequence_number
            self._sequence_number = (sequence_number + 1) & 0xFFFF
            header = rtp.HEADER.pack(
                self._first_byte, fec.red, sequence_number, timestamp, self._sender._ssrc
            )
            if self._stamped:
                header += self._before + rtp.abs_send_time(time.time_ns()) + self._after
            else:
                header += self._before
            self._octets += len(payload)
            self._packets += 1
            yield header + payload

    def _sent(self, timestamp: int, wire: Wire | None) -> None:
        """What the sender's next report (RFC 3550 §6.4.1) says, once a frame."""
        if wire is not None:
            wire.count()
        self._newest_timestamp = timestamp
        sender = self._sender
        sender._RTCRtpSender__ntp_timestamp = rtp.ntp_time(time.time_ns())
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__octet_count = self._octets
        sender._RTCRtpSender__packet_count = self._packets

    def _wire_to(self, transport: Any) -> Wire | None:
        """The direct wire to an RTCDtlsTransport, ready for a frame; None for
        anything else (tests' stand-ins), which gets its `_send_rtp` called."""
        if not isinstance(transport, RTCDtlsTransport):
            return None
        wire = self._wire
        if wire is None or wire.dtls is not transport:
            wire = self._wire = Wire(transport, self._twcc_at)
        wire.ready()
        return wire

    def _packet_sizes(self, data: Any) -> list[int] | None:
        """The sizes of the RTP packets a video frame will make (None: not known
        before packing)."""
        chunks = getattr(data, "chunks", None) if self._vp8 else None
        if chunks is None or self.fec_on:
            return None  # with FEC, each packet is paced as it is made
        extra = self._header_bytes + vp8.DESCRIPTOR_BYTES
        return [len(chunk) + extra for chunk in chunks]

    # --- what the reports say (media.adapter.rtcp.FrequentReports) -------------------

    @property
    def packets(self) -> int:
        return self._packets

    @property
    def octets(self) -> int:
        return self._octets

    @property
    def newest_timestamp(self) -> int:
        return self._newest_timestamp

    @property
    def clock_rate(self) -> int:
        return self._clock_rate

    # --- padding and resends ----------------------------------------------------------

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
        return self._header_bytes + rtp.PADDING_BYTES

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
        header = rtp.HEADER.pack(
            self._first_byte | rtp.PADDING_BIT,
            sender._RTCRtpSender__rtx_payload_type,
            self._next_rtx_sequence(),
            self._newest_timestamp,
            sender._rtx_ssrc,
        )
        stamp = rtp.abs_send_time(time.time_ns())
        return b"".join((header, self._before, stamp, self._after, rtp.PADDING))

    def pad(self, count: int) -> int:
        """Send up to `count` padding packets now; how many went out."""
        transport, _ = unpaced(self._sender._RTCRtpSender__transport)
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
        sender = self._sender
        rtx_type = sender._RTCRtpSender__rtx_payload_type
        if rtx_type is not None:
            packet = rtp.rtx(
                packet, header_length, rtx_type, self._next_rtx_sequence(), sender._rtx_ssrc
            )
        transport, paced = unpaced(sender._RTCRtpSender__transport)
        if paced is not None:
            await paced.pace(len(packet))
        try:
            # Through the wire, numbered like any packet (media.adapter.twcc).
            wire = self._wire_to(transport)
            if wire is None:
                await transport._send_rtp(packet)
            else:
                wire.send(packet)
                wire.count()
        except ConnectionError:
            pass  # closed meanwhile: nobody is waiting for it

    def _next_rtx_sequence(self) -> int:
        sender = self._sender
        sequence: int = sender._RTCRtpSender__rtx_sequence_number
        sender._RTCRtpSender__rtx_sequence_number = (sequence + 1) & 0xFFFF
        return sequence


def lean_rtp(sender: RTCRtpSender) -> LeanRtp:
    """The sender's LeanRtp, installed now if it was not (`LeanRtp.install`)."""
    return LeanRtp.install(sender)


def budget_resends(sender: RTCRtpSender, budget: ResendBudget) -> None:
    """Answer NACKs only within `budget` (media.control.pacer.ResendBudget) and while
    still useful. The sender must run our RTP loop: its history knows each packet's age.
    """
    lean = getattr(sender, _LEAN_MARK, None)
    if not isinstance(lean, LeanRtp):
        raise TypeError("resends are budgeted on senders that run LeanRtp")
    lean.budget = budget
