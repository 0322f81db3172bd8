"""Packets that aiortc's parsers choke on, from a connected classroom (media.adapter.guard).

Each was found by scripts/fuzz_rtp.py: it ended the relay's receive loop for the
classroom's connection (its camera and microphone stopped reaching the relay, its
feedback went unheard) with a traceback in the log.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct

import pytest

from classroom.roles import Role
from media.relay.relay import Relay
from media.slots import Slot
from scripts.fuzz_rtp import ABS_SEND_TIME, Attacker, dead_tasks

from .conftest import LESSON, Join

pytestmark = pytest.mark.timeout(30)


def _extension_id(sdp: str, uri: str) -> int:
    found = re.search(rf"^a=extmap:(\d+) {re.escape(uri)}", sdp, re.M)
    assert found, uri
    return int(found.group(1))


def _rtp_with_extension(ssrc: int, seq: int, element: bytes) -> bytes:
    element += bytes(-len(element) % 4)
    header = struct.pack("!BBHII", 0x90, 96, seq, 0, ssrc)
    return header + struct.pack("!HH", 0xBEDE, len(element) // 4) + element + b"\x10\x00\x00"


def _remb_listing_more_ssrcs_than_it_holds() -> bytes:
    fci = b"REMB" + bytes((5, 0x04, 0x00, 0x00))  # says 5 SSRCs, holds none
    body = struct.pack("!II", 1, 0) + fci
    return struct.pack("!BBH", 0x80 | 15, 206, len(body) // 4) + body


@pytest.mark.parametrize(
    "case", ["abs_send_time_of_one_byte", "remb_ssrc_count", "stun_attribute_too_short"]
)
async def test_a_packet_aiortc_cannot_parse_is_dropped_and_the_connection_goes_on(
    relay: Relay, join: Join, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The STUN case: aioice's parser raised struct.error on it, which aioice's datagram
    handler does not expect, and the event loop logged the traceback."""
    await join("teacher", Role.TEACHER)
    room = await join("room-a", Role.CLASSROOM)
    await room.wait_frames(Slot.TEACHER_CAMERA, 5, timeout=10)
    camera = relay.ladder(LESSON, "room-a", Slot.CAMERA)
    assert camera is not None
    attacker = Attacker(room)
    if case == "stun_attribute_too_short":
        # Not SRTP: straight to the relay's ICE socket, as the fuzzer's junk goes.
        await attacker.send(_stun_with_a_short_attribute(), "raw")
    else:
        if case == "abs_send_time_of_one_byte":
            ext_id = _extension_id(room.pc.remoteDescription.sdp, ABS_SEND_TIME)
            packet = _rtp_with_extension(12345, 1, bytes(((ext_id << 4) | 0, 7)))
        else:
            packet = _remb_listing_more_ssrcs_than_it_holds()
        assert await attacker.send(packet, "protect")  # libsrtp takes it: it reaches aiortc
    await asyncio.sleep(0.3)

    assert dead_tasks(relay, LESSON) == []
    frames = camera.frames_in
    await asyncio.sleep(1.0)
    assert camera.frames_in > frames  # the classroom's camera still reaches the relay
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_packets_under_hundreds_of_ssrcs_leave_the_connection_closable(
    relay: Relay, join: Join
) -> None:
    """Found by scripts/fuzz_rtp.py: aiortc reported on every SSRC a receiver ever
    heard; past ~60 the report was too long to protect, the receiver's RTCP task
    ended unseen, and closing the connection waited for it forever."""
    await join("teacher", Role.TEACHER)
    room = await join("room-a", Role.CLASSROOM)
    await room.wait_frames(Slot.TEACHER_CAMERA, 5, timeout=10)
    found = re.search(r"^a=rtpmap:(\d+) opus/", room.pc.remoteDescription.sdp, re.M)
    assert found
    opus = int(found.group(1))
    attacker = Attacker(room)
    for ssrc in range(1_000, 1_100):
        for seq in (1, 2):
            header = struct.pack("!BBHII", 0x80, opus, seq, 960 * seq, ssrc)
            assert await attacker.send(header + bytes(20), "protect")
    await asyncio.sleep(2.0)  # past a receiver report or two

    assert dead_tasks(relay, LESSON) == []
    async with asyncio.timeout(5):
        await relay.disconnect(LESSON, "room-a")
    assert not relay.has_peer(LESSON, "room-a")


def _stun_with_a_short_attribute() -> bytes:
    """A Binding request whose ICE-CONTROLLING (a 64-bit tie-breaker) holds four bytes."""
    attribute = struct.pack("!HH", 0x802A, 4) + bytes(4)
    return struct.pack("!HHI", 0x0001, len(attribute), 0x2112A442) + bytes(12) + attribute


def test_a_stun_message_that_does_not_parse_is_not_stun() -> None:
    from aioice import stun

    from media.adapter.guard import guard_stun

    guard_stun()
    guard_stun()  # once is enough; twice changes nothing
    with pytest.raises(ValueError, match="does not parse"):
        stun.parse_message(_stun_with_a_short_attribute())
    good = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    assert stun.parse_message(bytes(good)).transaction_id == good.transaction_id
