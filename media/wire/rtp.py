"""RTP packets as bytes (RFC 3550), with the few extras the relay's senders write:
RTX resends (RFC 4588), padding-only packets (RFC 3550 §5.1), NTP and
abs-send-time stamps. Times come in as arguments: nothing here reads a clock.
"""

from __future__ import annotations

import struct

# The fixed header: V/P/X/CC, M/PT, sequence number, timestamp, SSRC (RFC 3550 §5.1).
HEADER = struct.Struct("!BBHII")
VERSION = 0x80
PADDING_BIT = 0x20
EXTENSION_BIT = 0x10
MARKER_BIT = 0x80
# A padding packet's padding: the most its one-byte count can say (RFC 3550 §5.1).
PADDING_BYTES = 255
PADDING = bytes(PADDING_BYTES - 1) + bytes((PADDING_BYTES,))
# Seconds from the NTP epoch (1900) to the Unix epoch (1970), RFC 5905 §6.
NTP_UNIX_OFFSET_S = 2_208_988_800
# abs-send-time is 3 bytes: NTP seconds in 6.18 fixed point.
ABS_SEND_TIME_BYTES = 3


def header(first_byte: int, second_byte: int, sequence: int, timestamp: int, ssrc: int) -> bytes:
    return HEADER.pack(first_byte, second_byte, sequence, timestamp, ssrc)


def ntp_time(unix_ns: int) -> int:
    """A Unix time in nanoseconds as a 64-bit NTP timestamp (RFC 3550 §4)."""
    seconds, nanoseconds = divmod(unix_ns, 1_000_000_000)
    return ((seconds + NTP_UNIX_OFFSET_S) << 32) | ((nanoseconds << 32) // 1_000_000_000)


def abs_send_time(unix_ns: int) -> bytes:
    """The abs-send-time header extension's value: NTP seconds in 6.18 fixed point,
    24 bits (the NTP epoch is a whole number of 64 s before the Unix one)."""
    return ((unix_ns << 18) // 1_000_000_000 & 0xFFFFFF).to_bytes(3, "big")


def middle_32(ntp_timestamp: int) -> int:
    """The middle 32 bits of an NTP timestamp: what a report block's LSR echoes
    (RFC 3550 §6.4.1)."""
    return (ntp_timestamp >> 16) & 0xFFFFFFFF


def rtx(
    packet: bytes, header_length: int, rtx_payload_type: int, rtx_sequence: int, rtx_ssrc: int
) -> bytes:
    """A sent packet as its RFC 4588 §4 resend: the RTX stream's own header, the
    original's extensions, then the original sequence number before the payload."""
    sequence = packet[2:4]
    timestamp = int.from_bytes(packet[4:8], "big")
    return b"".join(
        (
            HEADER.pack(
                packet[0],
                (packet[1] & MARKER_BIT) | rtx_payload_type,
                rtx_sequence,
                timestamp,
                rtx_ssrc,
            ),
            packet[HEADER.size : header_length],
            sequence,
            packet[header_length:],
        )
    )
