"""One UDP port for all peers (media.adapter.ice_udp): the demultiplexer's table with a
hand-advanced clock; then the relay with two aiortc classrooms and a teacher, all
reaching it through the one port at once."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aioice import Connection, stun
from aiortc import RTCPeerConnection, RTCSessionDescription

from classroom.roles import Role
from media.adapter.ice_tcp import PassiveTcpPort
from media.adapter.ice_udp import QUIET_S, SessionShare, SharedUdpPort, UdpDemux
from media.adapter.peer import answer
from media.relay.relay import Relay
from media.settings import RelaySettings
from media.slots import Slot
from media.synthetic import MovingPicture, SyntheticParticipant

from .conftest import LESSON

OFFER = (Path(__file__).parent / "chromium_offer.sdp").read_text()

pytestmark = pytest.mark.timeout(30)


@dataclass(eq=False)
class Session:
    local_username: str
    local_password: str


@dataclass(eq=False)
class Share:
    """What a session receives through: here, only a name."""

    name: str
    transactions: set[bytes] = field(default_factory=set)


ALICE, BOB = Session("alic", "a" * 22), Session("bobb", "b" * 22)
SHARES = {ALICE: Share("alice"), BOB: Share("bob")}
HERE, THERE, ELSEWHERE = ("10.0.0.2", 50000), ("10.0.0.3", 50001), ("10.0.0.4", 50002)
MEDIA = b"\x80\x60" + b"\x00" * 100  # RTP (and DTLS, 20-63, alike): not STUN


def check(username: str, password: str) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    message.attributes["USERNAME"] = username
    message.add_message_integrity(password.encode())
    message.add_fingerprint()
    return bytes(message)


def demux(
    sessions: list[Session] | None = None, *, max_addresses: int = 8
) -> UdpDemux[Session, Share]:
    live = [ALICE, BOB] if sessions is None else sessions
    return UdpDemux(
        lambda: live,
        SHARES.get,
        lambda tid: next((s for s in SHARES.values() if tid in s.transactions), None),
        max_addresses=max_addresses,
    )


@pytest.mark.parametrize(
    ("first", "routed"),
    [
        (check("alic:peer", "a" * 22), "alice"),
        (check("bobb:peer", "b" * 22), "bob"),
        (check("bobb:peer", "a" * 22), None),  # Bob's ufrag, Alice's password
        (check("carl:peer", "a" * 22), None),  # nobody's ufrag
        (MEDIA, None),  # SRTP from an address no check let in
        (b"\x16\xfe\xfd" + b"\x00" * 40, None),  # a DTLS ClientHello, alike
        (b"\x00\x01garbage", None),  # looks like STUN, is not
        (b"", None),
    ],
    ids=[
        "alice",
        "bob",
        "wrong-password",
        "unknown-ufrag",
        "media",
        "dtls",
        "broken-stun",
        "empty",
    ],
)
def test_a_stranger_is_let_in_only_by_a_sessions_check(first: bytes, routed: str | None) -> None:
    table = demux()
    share = table.route(first, HERE, now=0)
    assert (share.name if share else None) == routed
    assert table.bound(HERE) is share
    assert table.dropped == (routed is None)


def test_once_let_in_everything_from_the_address_goes_to_its_session() -> None:
    table = demux()
    assert table.route(check("alic:peer", "a" * 22), HERE, now=0) is SHARES[ALICE]
    assert table.route(MEDIA, HERE, now=1) is SHARES[ALICE]
    assert table.route(MEDIA, THERE, now=1) is None  # another address is not
    # A check for nobody from a known address stays with its session (which answers
    # it with an error); an authenticated one for another session moves the address.
    assert table.route(check("carl:peer", "c" * 22), HERE, now=2) is SHARES[ALICE]
    assert table.route(check("bobb:peer", "b" * 22), HERE, now=3) is SHARES[BOB]
    assert table.route(MEDIA, HERE, now=4) is SHARES[BOB]


def test_a_response_to_the_relays_own_check_reaches_it_without_binding() -> None:
    table = demux()
    response = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE)
    SHARES[BOB].transactions.add(response.transaction_id)
    try:
        assert table.route(bytes(response), THERE, now=0) is SHARES[BOB]
        other = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE)
        assert table.route(bytes(other), THERE, now=0) is None
        assert table.bound(THERE) is None and table.route(MEDIA, THERE, now=0) is None
    finally:
        SHARES[BOB].transactions.clear()


def test_a_closed_sessions_addresses_are_forgotten() -> None:
    table = demux()
    table.route(check("alic:peer", "a" * 22), HERE, now=0)
    table.route(check("alic:peer", "a" * 22), THERE, now=0)
    table.route(check("bobb:peer", "b" * 22), ELSEWHERE, now=0)
    table.forget(SHARES[ALICE])
    assert table.route(MEDIA, HERE, now=1) is None
    assert table.route(MEDIA, THERE, now=1) is None
    assert table.route(MEDIA, ELSEWHERE, now=1) is SHARES[BOB]
    assert len(table) == 1


def test_a_session_no_longer_live_lets_no_one_in() -> None:
    table = demux([BOB])  # Alice's session closing: not listed
    assert table.route(check("alic:peer", "a" * 22), HERE, now=0) is None


def test_when_the_table_is_full_the_address_quiet_longest_makes_room() -> None:
    table = demux(max_addresses=3)
    addresses = [("10.0.1.1", 1000 + i) for i in range(4)]
    for i, address in enumerate(addresses[:3]):
        table.route(check("alic:peer", "a" * 22), address, now=i)
    table.route(MEDIA, addresses[0], now=5)  # the first speaks again: the second is quietest
    assert table.route(check("bobb:peer", "b" * 22), addresses[3], now=6) is SHARES[BOB]
    assert len(table) == 3
    assert [table.bound(a) is not None for a in addresses] == [True, False, True, True]


def test_an_address_quiet_past_consent_is_forgotten() -> None:
    table = demux()
    table.route(check("alic:peer", "a" * 22), HERE, now=0)
    table.route(check("alic:peer", "a" * 22), THERE, now=0)
    table.route(MEDIA, THERE, now=QUIET_S)  # still sending
    assert table.expire(now=QUIET_S + 1) == 1
    assert table.bound(HERE) is None and table.bound(THERE) is SHARES[ALICE]


# --- the relay, with every peer on the one port -------------------------------------


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    relay = Relay(
        RelaySettings(
            host_addresses=("127.0.0.1",), ice_udp_port=0, encoder_threads=2, adaptive=False
        )
    )
    yield relay
    await relay.close()


def candidate_ports(sdp: str) -> set[tuple[str, int]]:
    lines = [line.split() for line in sdp.split("\r\n") if line.startswith("a=candidate:")]
    return {(fields[2].lower(), int(fields[5])) for fields in lines}


async def test_two_classrooms_get_the_teacher_through_the_one_port_at_once(relay: Relay) -> None:
    port = relay.ice_udp
    assert port is not None
    teacher = SyntheticParticipant(Role.TEACHER)
    rooms = [
        SyntheticParticipant(Role.CLASSROOM, send_video=lambda: MovingPicture(320, 180, 15))
        for _ in range(2)
    ]
    everyone = [teacher, *rooms]
    try:
        answers = []
        for name, peer in zip(("teacher", "room-a", "room-b"), everyone, strict=True):
            answers.append(await relay.negotiate(LESSON, name, peer.role, await peer.offer()))
        # Only the one port is offered, to everyone.
        assert all(candidate_ports(sdp) == {("udp", port.port)} for sdp in answers)
        # The classrooms connect at the same time.
        await asyncio.gather(*(p.accept(sdp) for p, sdp in zip(everyone, answers, strict=True)))
        for room in rooms:
            await room.wait_frames(Slot.TEACHER_CAMERA, 15, timeout=15)
            await room.wait_frames(Slot.TEACHER_AUDIO, 20, timeout=10)
        assert port.bound_addresses() == 3
        # Each session talks through its share of the port, and has no socket of its own.
        for name in ("teacher", "room-a", "room-b"):
            connection = relay_connection(relay, name)
            assert [type(p) for p in connection._protocols] == [SessionShare]
            assert connection._nominated[1].protocol.local_candidate.port == port.port
        # A classroom that leaves takes its address with it; the other plays on.
        await relay.disconnect(LESSON, "room-a")
        assert port.bound_addresses() == 2
        decoded = rooms[1].received[Slot.TEACHER_CAMERA].frames
        await rooms[1].wait_frames(Slot.TEACHER_CAMERA, decoded + 10, timeout=10)
    finally:
        for peer in everyone:
            await peer.close()


def relay_connection(relay: Relay, participant_id: str) -> Connection:
    participant = relay._lessons[LESSON].participants[participant_id]
    transport = participant.pc.getTransceivers()[0].sender.transport
    connection: Connection = transport.transport._connection
    return connection


def test_a_port_already_taken_stops_the_start() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        with pytest.raises(OSError):
            SharedUdpPort(taken.getsockname()[1], ("127.0.0.1",))


async def test_with_the_tcp_port_beside_it_the_answer_offers_each_once() -> None:
    udp = SharedUdpPort(0, ("127.0.0.1",))
    tcp = PassiveTcpPort(0, ("127.0.0.1",))
    pc = RTCPeerConnection()
    try:
        await udp.start()
        pc.addTransceiver("video", direction="sendonly")
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setRemoteDescription(RTCSessionDescription(OFFER, "offer"))
        sdp = await answer(pc, ("127.0.0.1",), tcp, udp)
    finally:
        await pc.close()
        await tcp.close()
        await udp.close()
    assert candidate_ports(sdp) == {("udp", udp.port), ("tcp", tcp.port)}
