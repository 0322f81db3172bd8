"""Transport-wide congestion control on the wire
(draft-holmer-rmcat-transport-wide-cc-extensions-01).

The sender numbers every RTP packet of a transport (media, resends, padding) in one
16-bit sequence carried in a header extension; the receiver answers with RTCP
transport feedback (RTPFB, FMT 15): for each number in a range, whether the packet
arrived and when, to 250 µs. Bytes only: the arrival times are the receiver's clock,
in microseconds from an origin of its own; only their differences mean anything.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
# The rtcp-fb value that asks the receiver for transport feedback (RFC 4585 §4.2).
RTCP_FB = "transport-cc"
RTPFB = 205
FMT = 15
# The reference time counts 64 ms; receive deltas count 250 µs (§3.1).
REFERENCE_US = 64_000
DELTA_US = 250
# Status symbols (§3.1.1).
NOT_RECEIVED = 0
SMALL_DELTA = 1
LARGE_DELTA = 2
_FIXED = struct.Struct("!IIHHI")  # sender SSRC, media SSRC, base, count, ref time | fb count
_MAX_RUN = 0x1FFF
# The most packets read from one message. Its count is 16 bits, and a run-length
# chunk says 8,191 "not received" in two bytes: a 20-byte message could make the
# relay list 65,535 packets, 35 ms of its event loop (scripts/fuzz_rtp.py). A
# receiver reports every 50-100 ms, a few dozen packets; one that reports more
# after an outage loses the tail of the report, which only the next one repeats.
MAX_PACKETS = 1024


@dataclass(frozen=True)
class TransportFeedback:
    """One transport feedback message: each packet's arrival, in sequence order."""

    sender_ssrc: int
    media_ssrc: int
    base_sequence: int
    # The receiver's count of feedback messages, mod 256: a gap says one was lost.
    feedback_count: int
    # (16-bit transport sequence number, arrival in µs on the receiver's clock, or
    # None for a packet reported as not received), for each packet of the range.
    packets: tuple[tuple[int, int | None], ...]


def transport_feedback(data: bytes) -> list[TransportFeedback]:
    """The transport feedback messages in a compound RTCP packet (others are skipped).

    Raises ValueError on a message that does not parse; a compound packet whose
    lengths run past its end stops there.
    """
    found = []
    at = 0
    while at + 4 <= len(data):
        first, kind, words = struct.unpack_from("!BBH", data, at)
        end = at + 4 + words * 4
        if end > len(data):
            break
        if kind == RTPFB and first & 0x1F == FMT:
            body = data[at + 4 : end]
            if first & 0x20 and body:  # padding (RFC 3550 §6.4.1)
                body = body[: len(body) - body[-1]]
            found.append(parse(body))
        at = end
    return found


def parse(body: bytes) -> TransportFeedback:
    """A transport feedback message from its body (after the 4-byte RTCP header)."""
    if len(body) < _FIXED.size:
        raise ValueError("transport feedback is truncated")
    sender, media, base, count, reference = _FIXED.unpack_from(body)
    if count == 0:
        raise ValueError("transport feedback reports no packet")
    reference_us = _signed(reference >> 8, 24) * REFERENCE_US
    at = _FIXED.size
    # Every chunk is walked (the deltas follow the last one), but only the first
    # MAX_PACKETS packets' symbols are kept: their deltas come first.
    kept = min(count, MAX_PACKETS)
    symbols: list[int] = []
    seen = 0
    while seen < count:
        if at + 2 > len(body):
            raise ValueError("transport feedback's status chunks are truncated")
        chunk = int.from_bytes(body[at : at + 2], "big")
        at += 2
        if not chunk & 0x8000:  # a run of one symbol
            run = min(chunk & _MAX_RUN, count - seen)
            symbols.extend([(chunk >> 13) & 0x3] * min(run, kept - len(symbols)))
            seen += run
            continue
        if not chunk & 0x4000:  # 14 one-bit symbols
            vector = [(chunk >> (13 - i)) & 0x1 for i in range(14)]
        else:  # 7 two-bit symbols
            vector = [(chunk >> (12 - 2 * i)) & 0x3 for i in range(7)]
        symbols.extend(vector[: max(0, kept - len(symbols))])
        seen += len(vector)
    arrival = reference_us
    packets: list[tuple[int, int | None]] = []
    for i, symbol in enumerate(symbols):
        sequence = (base + i) & 0xFFFF
        if symbol == NOT_RECEIVED:
            packets.append((sequence, None))
            continue
        if symbol == SMALL_DELTA:
            if at + 1 > len(body):
                raise ValueError("transport feedback's deltas are truncated")
            arrival += body[at] * DELTA_US
            at += 1
        elif symbol == LARGE_DELTA:
            if at + 2 > len(body):
                raise ValueError("transport feedback's deltas are truncated")
            arrival += _signed(int.from_bytes(body[at : at + 2], "big"), 16) * DELTA_US
            at += 2
        else:
            raise ValueError("transport feedback has a reserved status symbol")
        packets.append((sequence, arrival))
    return TransportFeedback(sender, media, base, reference & 0xFF, tuple(packets))


def build(
    sender_ssrc: int,
    media_ssrc: int,
    base_sequence: int,
    arrivals: list[int | None],
    feedback_count: int = 0,
) -> bytes:
    """A whole RTCP transport feedback packet (header included) for `arrivals`: µs on
    the receiver's clock, or None for a packet not received, from `base_sequence` on.

    What a receiver sends; the relay builds them only in tests. Two-bit status
    vectors throughout: simple, and any receiver's parser reads them.
    """
    if not arrivals:
        raise ValueError("transport feedback must report a packet")
    first = next((a for a in arrivals if a is not None), 0)
    reference = first // REFERENCE_US
    previous = reference * REFERENCE_US
    symbols: list[int] = []
    deltas = b""
    for arrival in arrivals:
        if arrival is None:
            symbols.append(NOT_RECEIVED)
            continue
        delta = (arrival - previous) // DELTA_US
        previous += delta * DELTA_US
        if 0 <= delta <= 0xFF:
            symbols.append(SMALL_DELTA)
            deltas += bytes((delta,))
        else:
            symbols.append(LARGE_DELTA)
            deltas += (delta & 0xFFFF).to_bytes(2, "big")
    chunks = b""
    for at in range(0, len(symbols), 7):
        group = symbols[at : at + 7] + [NOT_RECEIVED] * (7 - len(symbols[at : at + 7]))
        chunk = 0xC000
        for i, symbol in enumerate(group):
            chunk |= symbol << (12 - 2 * i)
        chunks += chunk.to_bytes(2, "big")
    body = (
        _FIXED.pack(
            sender_ssrc,
            media_ssrc,
            base_sequence & 0xFFFF,
            len(arrivals),
            ((reference & 0xFFFFFF) << 8) | (feedback_count & 0xFF),
        )
        + chunks
        + deltas
    )
    body += bytes(-len(body) % 4)
    return struct.pack("!BBH", 0x80 | FMT, RTPFB, len(body) // 4) + body


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value
