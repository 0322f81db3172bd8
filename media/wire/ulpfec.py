"""ULPFEC (RFC 5109) carried in RED (RFC 2198): video repaired without a round trip.

On a satellite link (600 ms round trip) a lost camera packet repaired by NACK and
resend holds the picture for 0.7-1.2 s, and 1 % loss means several such holds a
minute. One FEC packet sent after a few media packets carries the XOR of them: the
receiver rebuilds any one of them that was lost as soon as the FEC packet arrives.

As libwebrtc sends it, and as Chromium's receiver expects it:

- The FEC is computed over the plain media packets (payload type VP8), from byte 12
  on (CSRCs, header extensions and payload alike), with the header fields that vary
  (P, X, CC, M, PT, timestamp, length) XORed into the FEC header's recovery fields.
- Media and FEC packets then travel on the media SSRC and sequence, each wrapped in
  RED with a single block (a one-byte block header naming the payload type inside):
  the media's is VP8, the FEC packet's is ulpfec. Chromium feeds only RED-wrapped
  media to its FEC decoder, so with FEC on every media packet is wrapped too.
- A packet Chromium rebuilds is the plain media packet; a resend (RTX) of a media
  packet is of the plain packet as well.

`recover` is the receiver's side, for tests: it rebuilds one lost packet.
"""

from __future__ import annotations

import struct

from media.wire.rtp import HEADER

# The FEC header (10 bytes) and a level-0 header with a 16-bit mask (4 bytes), or a
# 48-bit one when the long-mask bit L is set (8 bytes).
FEC_HEADER = struct.Struct("!BBHIH")
_SHORT_LEVEL = struct.Struct("!HH")
_LONG_LEVEL = struct.Struct("!HHI")
LONG_MASK_BIT = 0x40
SHORT_SPAN = 16
LONG_SPAN = 48
_FIXED = HEADER.size  # 12: FEC protects everything after the fixed header


def protect(packets: list[bytes]) -> bytes:
    """The ULPFEC payload protecting `packets` (plain RTP packets of one SSRC whose
    sequence numbers lie within 48 of the first): FEC header, level-0 header, XOR."""
    if not packets:
        raise ValueError("nothing to protect")
    seqs = [struct.unpack_from("!H", p, 2)[0] for p in packets]
    base = seqs[0]
    offsets = [(s - base) & 0xFFFF for s in seqs]
    if min(offsets) != 0 or max(offsets) >= LONG_SPAN:
        raise ValueError("packets must lie within 48 sequence numbers after the first")
    long_mask = max(offsets) >= SHORT_SPAN
    span = LONG_SPAN if long_mask else SHORT_SPAN
    mask = 0
    for offset in offsets:
        mask |= 1 << (span - 1 - offset)
    bits = 0
    timestamps = 0
    lengths = 0
    protection = max(len(p) - _FIXED for p in packets)
    xor = 0
    for packet in packets:
        bits ^= ((packet[0] & 0x3F) << 8) | packet[1]  # P, X, CC ; M, PT
        timestamps ^= struct.unpack_from("!I", packet, 4)[0]
        lengths ^= len(packet) - _FIXED
        xor ^= int.from_bytes(packet[_FIXED:].ljust(protection, b"\0"), "big")
    first = ((bits >> 8) & 0x3F) | (LONG_MASK_BIT if long_mask else 0)
    header = FEC_HEADER.pack(first, bits & 0xFF, base, timestamps, lengths)
    if long_mask:
        level = _LONG_LEVEL.pack(protection, mask >> 32, mask & 0xFFFFFFFF)
    else:
        level = _SHORT_LEVEL.pack(protection, mask)
    return header + level + xor.to_bytes(protection, "big")


def protected_sequences(fec: bytes) -> list[int]:
    """The sequence numbers a ULPFEC payload protects."""
    first, _, base, _, _ = FEC_HEADER.unpack_from(fec)
    if first & LONG_MASK_BIT:
        _, high, low = _LONG_LEVEL.unpack_from(fec, FEC_HEADER.size)
        mask, span = (high << 32) | low, LONG_SPAN
    else:
        _, mask = _SHORT_LEVEL.unpack_from(fec, FEC_HEADER.size)
        span = SHORT_SPAN
    return [(base + i) & 0xFFFF for i in range(span) if mask & (1 << (span - 1 - i))]


def recover(fec: bytes, ssrc: int, received: dict[int, bytes]) -> bytes | None:
    """The one protected packet missing from `received` (plain packets by sequence
    number), rebuilt from a ULPFEC payload; None if none or more than one is missing."""
    protected = protected_sequences(fec)
    missing = [s for s in protected if s not in received]
    if len(missing) != 1:
        return None
    first, second, _, timestamps, lengths = FEC_HEADER.unpack_from(fec)
    level = _LONG_LEVEL if first & LONG_MASK_BIT else _SHORT_LEVEL
    protection = level.unpack_from(fec, FEC_HEADER.size)[0]
    body = fec[FEC_HEADER.size + level.size :]
    bits = ((first & 0x3F) << 8) | second
    xor = int.from_bytes(body[:protection], "big")
    for seq in protected:
        packet = received.get(seq)
        if packet is None:
            continue
        bits ^= ((packet[0] & 0x3F) << 8) | packet[1]
        timestamps ^= struct.unpack_from("!I", packet, 4)[0]
        lengths ^= len(packet) - _FIXED
        xor ^= int.from_bytes(packet[_FIXED:].ljust(protection, b"\0"), "big")
    if lengths > protection:
        return None
    header = HEADER.pack(0x80 | (bits >> 8), bits & 0xFF, missing[0], timestamps, ssrc)
    return header + xor.to_bytes(protection, "big")[:lengths]


def red_wrap(packet: bytes, header_length: int, red_type: int) -> bytes:
    """A plain RTP packet as a RED packet of one block (RFC 2198 §3, F bit clear):
    the header with RED's payload type (the marker kept), then the block header
    naming the packet's own payload type, then its payload."""
    inner = packet[1] & 0x7F
    return b"".join(
        (
            packet[:1],
            bytes(((packet[1] & 0x80) | red_type,)),
            packet[2:header_length],
            bytes((inner,)),
            packet[header_length:],
        )
    )


def red_unwrap(packet: bytes, header_length: int) -> bytes:
    """The plain packet inside a one-block RED packet (the receiver's side, for tests)."""
    inner = packet[header_length] & 0x7F
    return b"".join(
        (
            packet[:1],
            bytes(((packet[1] & 0x80) | inner,)),
            packet[2:header_length],
            packet[header_length + 1 :],
        )
    )
