"""ULPFEC in RED (media.wire.ulpfec): the bytes RFC 5109 names, and every single loss
rebuilt from them."""

from __future__ import annotations

import random
import struct

import pytest

from media.wire import ulpfec
from media.wire.rtp import HEADER

VP8, RED, FEC = 96, 123, 127
SSRC = 0x1234


def packet(seq: int, ts: int, payload: bytes, marker: bool = False, ext: bytes = b"") -> bytes:
    first = 0x90 if ext else 0x80
    header = HEADER.pack(first, VP8 | (0x80 if marker else 0), seq & 0xFFFF, ts, SSRC)
    return header + ext + payload


def test_the_fec_payload_is_the_rfc_5109_layout() -> None:
    """Worked by hand: two packets, the second with the marker bit."""
    one = packet(100, 1000, b"\x01\x02")
    two = packet(101, 1000, b"\x04", marker=True)
    assert ulpfec.protect([one, two]) == bytes.fromhex(
        "00"  # E=0, L=0, P, X, CC recovery 0
        "80"  # M recovery 1, PT recovery 96 ^ 96
        "0064"  # SN base 100
        "00000000"  # TS recovery 1000 ^ 1000
        "0003"  # length recovery 2 ^ 1
        "0002"  # protection length: the longest payload
        "c000"  # mask: SN base and SN base + 1
        "0502"  # 01 02 ^ 04 00
    )


def frames(rng: random.Random, count: int, start: int = 65530) -> list[bytes]:
    """Packets as a camera sends them: header extensions, sizes that vary, a marker
    at each frame's end, sequence numbers that wrap."""
    out = []
    for i in range(count):
        ext = b"\xbe\xde\x00\x01" + bytes([0x22, rng.randrange(256), 1, 2])
        size = rng.randrange(1, 1100)
        out.append(
            packet(start + i, 90_000 + 6000 * (i // 3), rng.randbytes(size), i % 3 == 2, ext)
        )
    return out


@pytest.mark.parametrize("count", [1, 2, 4, 16, 17, 48])
def test_any_one_lost_packet_is_rebuilt_exactly(count: int) -> None:
    rng = random.Random(count)
    group = frames(rng, count)
    fec = ulpfec.protect(group)
    assert bool(fec[0] & ulpfec.LONG_MASK_BIT) == (count > 16)
    by_seq = {struct.unpack_from("!H", p, 2)[0]: p for p in group}
    assert ulpfec.protected_sequences(fec) == list(by_seq)
    for lost, original in by_seq.items():
        others = {s: p for s, p in by_seq.items() if s != lost}
        assert ulpfec.recover(fec, SSRC, others) == original


def test_interleaved_groups_each_rebuild_their_own() -> None:
    """Two FEC packets over alternate packets: two losses next to each other both
    come back."""
    group = frames(random.Random(7), 8, start=10)
    evens, odds = ulpfec.protect(group[0::2]), ulpfec.protect(group[1::2])
    received = {struct.unpack_from("!H", p, 2)[0]: p for p in group}
    del received[13], received[14]
    assert ulpfec.recover(evens, SSRC, received) == group[4]
    assert ulpfec.recover(odds, SSRC, received) == group[3]


def test_two_losses_in_one_group_or_none_rebuild_nothing() -> None:
    group = frames(random.Random(3), 4, start=0)
    fec = ulpfec.protect(group)
    everything = {i: p for i, p in enumerate(group)}
    assert ulpfec.recover(fec, SSRC, everything) is None
    assert ulpfec.recover(fec, SSRC, {0: group[0], 1: group[1]}) is None


@pytest.mark.parametrize(
    "group",
    [[], [packet(0, 0, b"a"), packet(48, 0, b"b")], [packet(5, 0, b"a"), packet(4, 0, b"")]],
)
def test_groups_it_cannot_protect_are_refused(group: list[bytes]) -> None:
    with pytest.raises(ValueError):
        ulpfec.protect(group)


def test_red_wraps_one_block_and_keeps_the_marker() -> None:
    ext = b"\xbe\xde\x00\x01\x22\x01\x02\x03"
    plain = packet(9, 77, b"payload", marker=True, ext=ext)
    header_length = HEADER.size + len(ext)
    red = ulpfec.red_wrap(plain, header_length, RED)
    assert red[1] == 0x80 | RED
    assert red[header_length] == VP8  # F bit clear: the only block
    assert red[header_length + 1 :] == b"payload"
    assert ulpfec.red_unwrap(red, header_length) == plain
