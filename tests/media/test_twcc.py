"""Transport feedback on the wire (media.wire.twcc): hand-made messages and round trips."""

from __future__ import annotations

import random
import struct

import pytest

from media.wire import twcc


def _message(body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack("!BBH", 0x80 | twcc.FMT, twcc.RTPFB, len(body) // 4) + body


def _fixed(base: int, count: int, reference: int, fb_count: int) -> bytes:
    return struct.pack("!IIHHI", 1, 2, base, count, (reference << 8) | fb_count)


def test_a_run_and_a_one_bit_vector_read_as_the_draft_says() -> None:
    # 14 packets received (a run of "small delta"), then a one-bit vector for 6
    # more: received, lost, received, received, lost, lost.
    run = 0x2000 | 14
    vector = 0x8000 | 0b10110000000000
    deltas = bytes([4] * 17)  # 1 ms each
    data = _message(_fixed(100, 20, 1, 7) + struct.pack("!HH", run, vector) + deltas)
    [feedback] = twcc.transport_feedback(data)
    assert feedback.base_sequence == 100 and feedback.feedback_count == 7
    arrived = [a for _, a in feedback.packets]
    assert [s for s, _ in feedback.packets] == list(range(100, 120))
    assert arrived[:14] == [64_000 + 1000 * (k + 1) for k in range(14)]
    assert arrived[14:] == [79_000, None, 80_000, 81_000, None, None]


def test_a_two_bit_vector_carries_large_and_negative_deltas() -> None:
    # received small, received large (+300 ms), received large (-2 ms), lost.
    vector = 0xC000 | (1 << 12) | (2 << 10) | (2 << 8)
    deltas = bytes([8]) + struct.pack("!hh", 1200, -8)
    data = _message(_fixed(7, 4, 0, 0) + struct.pack("!H", vector) + deltas)
    [feedback] = twcc.transport_feedback(data)
    assert list(feedback.packets) == [(7, 2000), (8, 302_000), (9, 300_000), (10, None)]


@pytest.mark.parametrize(
    ("base", "arrivals"),
    [
        (0, [1_000_000, 1_000_250, None, 1_004_000]),
        # the sequence wraps; a gap past a small delta's 63.75 ms; a packet that
        # arrived before the one sent ahead of it
        (65_530, [5_000_000, None, None, 5_100_000, 5_099_000, 5_099_500, 5_200_000, 5_200_250]),
        (12, [None, 640_000]),
    ],
)
def test_what_is_built_parses_back(base: int, arrivals: list[int | None]) -> None:
    data = twcc.build(9, 10, base, arrivals, feedback_count=3)
    [feedback] = twcc.transport_feedback(data)
    assert feedback.sender_ssrc == 9 and feedback.media_ssrc == 10
    assert feedback.feedback_count == 3
    assert [s for s, _ in feedback.packets] == [(base + i) & 0xFFFF for i in range(len(arrivals))]
    # Arrival times are kept to 250 µs.
    assert [a for _, a in feedback.packets] == arrivals


def test_other_rtcp_in_a_compound_packet_is_skipped() -> None:
    receiver_report = struct.pack("!BBHI", 0x80, 201, 1, 5)
    nack = struct.pack("!BBHIIHH", 0x81, 205, 3, 5, 6, 10, 0)
    data = receiver_report + nack + twcc.build(5, 6, 40, [3_000, 3_500])
    [feedback] = twcc.transport_feedback(data)
    assert feedback.base_sequence == 40


def test_a_length_past_the_end_stops_the_walk() -> None:
    data = twcc.build(5, 6, 40, [3_000])
    assert twcc.transport_feedback(data[:-4]) == []


@pytest.mark.parametrize(
    "body",
    [
        b"\x00" * 8,  # shorter than the fixed part
        _fixed(0, 0, 0, 0),  # reports no packet
        _fixed(0, 3, 0, 0),  # no chunk for its packets
        _fixed(0, 6, 0, 0) + struct.pack("!H", 0x2006),  # no deltas for the run
        _fixed(0, 1, 0, 0) + struct.pack("!H", 0x6001) + b"\x00\x00",  # reserved symbol
    ],
)
def test_a_broken_message_is_an_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        twcc.transport_feedback(_message(body))


def test_mutated_messages_parse_or_raise_value_error_and_nothing_else() -> None:
    """What a participant may send: every byte flipped, cut or repeated, a few
    thousand times. The relay drops what does not parse (media.adapter.twcc)."""
    chance = random.Random(5)
    good = twcc.build(1, 2, 65_500, [None if i % 7 == 3 else 1_000 * i for i in range(60)])
    for _ in range(5000):
        data = bytearray(good)
        for _ in range(chance.randint(1, 6)):
            data[chance.randrange(len(data))] = chance.randrange(256)
        if chance.random() < 0.3:
            data = data[: chance.randrange(len(data))]
        if chance.random() < 0.2:
            data += data[4:]
        try:
            for feedback in twcc.transport_feedback(bytes(data)):
                assert len(feedback.packets) <= 0xFFFF
        except ValueError:
            pass


def test_a_message_that_says_it_reports_65535_packets_is_read_for_its_first_1024() -> None:
    """Found by scripts/fuzz_rtp.py: 20 bytes of run-length chunks listing 65,535
    packets "not received" took 35 ms to read, each time a participant sent one."""
    run_lost = 0x0000 | 0x1FFF  # 8,191 packets not received
    data = _message(_fixed(65_000, 0xFFFF, 0, 1) + struct.pack("!H", run_lost) * 9)
    [feedback] = twcc.transport_feedback(data)
    assert len(feedback.packets) == twcc.MAX_PACKETS
    assert feedback.packets[0] == (65_000, None)
    assert feedback.packets[-1] == ((65_000 + twcc.MAX_PACKETS - 1) & 0xFFFF, None)


def test_a_long_report_keeps_the_deltas_of_the_packets_it_reads() -> None:
    arrivals: list[int | None] = [1_000 * k for k in range(1, 2_001)]
    [feedback] = twcc.transport_feedback(twcc.build(1, 2, 7, arrivals))
    assert [a for _, a in feedback.packets] == arrivals[: twcc.MAX_PACKETS]
