"""RED for the teacher's audio (RFC 2198): the wire format, and the relay sending it."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import re

import av
import pytest

from classroom.roles import Role
from media.adapter.red import sender_red
from media.pipeline.encoders import OPUS_FRAME_SAMPLES
from media.relay.relay import Relay
from media.slots import Slot
from media.synthetic import MovingPicture, SyntheticParticipant
from media.wire.red import MAX_BLOCK, Block, RedEncoder, pack, parse

from .conftest import LESSON, Join

pytestmark = pytest.mark.timeout(30)

OPUS = 111
T = 100_000


def opus_packet(pts: int, data: bytes) -> av.Packet:
    packet = av.Packet(data)
    packet.pts = pts
    packet.time_base = fractions.Fraction(1, 48000)
    return packet


@pytest.mark.parametrize(
    ("redundant", "kept"),
    [
        ([], 0),
        ([Block(OPUS, T - 960, b"a" * 70)], 1),
        ([Block(OPUS, T - 1920, b"a" * 70), Block(OPUS, T - 960, b"b" * 70)], 2),
        # Too old for the 14-bit offset, too long for the 10-bit length, not before.
        ([Block(OPUS, T - 20000, b"a" * 70)], 0),
        ([Block(OPUS, T - 960, b"a" * (MAX_BLOCK + 1))], 0),
        ([Block(OPUS, T, b"a" * 70)], 0),
    ],
)
def test_pack_and_parse_round_trip(redundant: list[Block], kept: int) -> None:
    payload = pack(OPUS, T, b"primary", redundant)
    blocks = parse(payload, T)
    assert blocks[-1] == Block(OPUS, T, b"primary")
    assert len(blocks) == kept + 1
    assert blocks[:-1] == [b for b in redundant if b in blocks]
    # One 4-byte header per redundant block, one byte for the primary's.
    assert len(payload) == 4 * kept + 1 + sum(len(b.data) for b in blocks)


def test_timestamps_wrap_around() -> None:
    earlier = Block(OPUS, 0xFFFFFFFF - 479, b"x")
    blocks = parse(pack(OPUS, 480, b"y", [earlier]), 480)
    assert blocks[0] == earlier


@pytest.mark.parametrize("broken", [b"", b"\x80\x00", b"\x80\x00\x04\x05\x6f"])
def test_a_truncated_payload_is_refused(broken: bytes) -> None:
    with pytest.raises(ValueError):
        parse(broken, 0)


def test_each_packet_carries_the_one_before() -> None:
    encoder = RedEncoder(OPUS, distance=1)
    first, ts1 = encoder.pack(opus_packet(960, b"one"))
    second, ts2 = encoder.pack(opus_packet(1920, b"two"))
    assert (ts1, ts2) == (960, 1920)
    assert parse(first[0], ts1) == [Block(OPUS, 960, b"one")]
    assert parse(second[0], ts2) == [Block(OPUS, 960, b"one"), Block(OPUS, 1920, b"two")]
    encoder.distance = 0
    third, ts3 = encoder.pack(opus_packet(2880, b"three"))
    assert parse(third[0], ts3) == [Block(OPUS, 2880, b"three")]


def offer_red(offer: str, red_type: int = 63) -> str:
    """Add `red/48000/2` carrying Opus to the offer's receiving audio sections, as
    Chromium offers it (aiortc, the synthetic classroom, does not)."""
    sections = re.split(r"(?=^m=)", offer, flags=re.M)
    out = []
    for section in sections:
        opus = re.search(r"^a=rtpmap:(\d+) opus/48000/2", section, flags=re.M)
        if section.startswith("m=audio") and "a=recvonly" in section and opus:
            pt = opus.group(1)
            section = re.sub(
                r"^(m=audio .*?)\r\n", rf"\1 {red_type}\r\n", section, count=1, flags=re.M
            )
            section += f"a=rtpmap:{red_type} red/48000/2\r\na=fmtp:{red_type} {pt}/{pt}\r\n"
        out.append(section)
    return "".join(out)


async def test_the_relay_sends_red_to_a_classroom_that_offers_it(relay: Relay, join: Join) -> None:
    await join("teacher", Role.TEACHER)
    room = SyntheticParticipant(Role.CLASSROOM, send_video=lambda: MovingPicture(320, 180, 15))
    try:
        answer = await relay.negotiate(
            LESSON, "room-a", Role.CLASSROOM, offer_red(await room.offer())
        )
        # The answer names RED first on the lesson's audio, carrying the offer's Opus.
        audio = [s for s in re.split(r"(?=^m=)", answer, flags=re.M) if s.startswith("m=audio")]
        teacher_audio = audio[1]  # microphone (sent by the classroom), then teacher audio
        assert teacher_audio.split("\r\n")[0].split()[3] == "63"
        assert re.search(r"^a=fmtp:63 (\d+)/\1\r$", teacher_audio, flags=re.M)
        await room.accept(answer)

        sender = relay.participant(LESSON, "room-a").sending.outgoing[Slot.TEACHER_AUDIO].sender
        for _ in range(100):
            encoder = sender_red(sender)
            if encoder is not None:
                break
            await asyncio.sleep(0.1)
        assert encoder is not None, "the teacher's audio never left as RED"
        sent: list[tuple[bytes, int]] = []
        pack_one = encoder.pack

        def recording(packet: av.Packet) -> tuple[list[bytes], int]:
            payloads, timestamp = pack_one(packet)
            sent.append((payloads[0], timestamp))
            return payloads, timestamp

        encoder.pack = recording  # type: ignore[method-assign]
        while len(sent) < 20:
            await asyncio.sleep(0.1)
        blocks = [parse(payload, ts) for payload, ts in sent]
        for before, after in itertools.pairwise(blocks):
            # The previous packet's Opus rides along, one packet time earlier.
            assert after[0] == before[-1]
            assert after[-1].timestamp - after[0].timestamp == OPUS_FRAME_SAMPLES
    finally:
        await room.close()


async def test_no_red_for_a_classroom_that_does_not_offer_it(relay: Relay, join: Join) -> None:
    await join("teacher", Role.TEACHER)
    room = await join("room-a", Role.CLASSROOM)
    await room.wait_frames(Slot.TEACHER_AUDIO, 25, timeout=10)
    sender = relay.participant(LESSON, "room-a").sending.outgoing[Slot.TEACHER_AUDIO].sender
    assert sender_red(sender) is None
