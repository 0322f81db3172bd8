"""ICE over TCP (media.wire.ice_tcp, media.adapter.ice_tcp): framing, the candidate,
matching a connection to its session by its first check; then an aioice session
reached over the port by a client that speaks RFC 4571 on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aioice import Connection, stun
from aioice.candidate import Candidate, candidate_priority
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from media.adapter.hooks import gather_on
from media.adapter.ice_sessions import match_session, offering, unmapped
from media.adapter.ice_tcp import PassiveTcpPort
from media.adapter.peer import answer
from media.wire.ice_tcp import Deframer, PassiveCandidate, frame, local_ufrag, passive_priority
from media.wire.sdp import announce

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize(
    ("packet", "framed"),
    [
        (b"", b"\x00\x00"),
        (b"abc", b"\x00\x03abc"),
        (b"x" * 300, b"\x01\x2c" + b"x" * 300),
        (b"y" * 0xFFFF, b"\xff\xff" + b"y" * 0xFFFF),
    ],
)
def test_a_packet_is_framed_with_its_length_in_two_bytes(packet: bytes, framed: bytes) -> None:
    assert frame(packet) == framed


def test_a_packet_too_long_for_two_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 65535"):
        frame(b"z" * 0x10000)


PACKETS = [b"stun", b"", b"d" * 1200, b"s" * 70]
STREAM = b"".join(frame(p) for p in PACKETS)


@pytest.mark.parametrize(
    "cuts",
    [
        [len(STREAM)],  # all in one read
        [1] * len(STREAM),  # a byte at a time
        [1, 5, 3],  # the first length cut in two
        [6, 2, 1203, len(STREAM)],  # a read ends right after a length
        [len(STREAM) - 1, 1],  # the last byte late
    ],
    ids=["whole", "bytewise", "split-length", "after-length", "last-byte-late"],
)
def test_the_deframer_gives_back_each_packet_however_the_stream_was_cut(cuts: list[int]) -> None:
    deframer = Deframer()
    received: list[bytes] = []
    at = 0
    for size in cuts:
        received += deframer.feed(STREAM[at : at + size])
        at += size
    received += deframer.feed(STREAM[at:])
    assert received == PACKETS
    assert deframer.pending == 0


def test_a_partial_packet_stays_pending() -> None:
    deframer = Deframer()
    assert deframer.feed(b"\x00\x05abc") == []
    assert deframer.pending == 5
    assert deframer.feed(b"de\x00") == [b"abcde"]
    assert deframer.pending == 1


# Priorities as Chromium writes them (type << 24 | local << 8 | 256 - component):
# TURN relays over UDP, TCP and TLS have type preferences 2, 1 and 0.
CHROMIUM_TURN_UDP = (2 << 24) | (32542 << 8) | 255
CHROMIUM_TURN_TCP = (1 << 24) | (32542 << 8) | 255
CHROMIUM_TURN_TLS = (0 << 24) | (32542 << 8) | 255


@pytest.mark.parametrize(
    ("other", "ours_first"),
    [
        (candidate_priority(1, "host"), False),  # the relay's UDP host candidate
        (candidate_priority(1, "srflx"), False),
        (CHROMIUM_TURN_UDP, False),
        (CHROMIUM_TURN_TCP, True),
        (CHROMIUM_TURN_TLS, True),
    ],
    ids=["udp-host", "udp-srflx", "turn-udp", "turn-tcp", "turn-tls"],
)
def test_tcp_comes_after_every_udp_path_and_before_turn_over_tcp(
    other: int, ours_first: bool
) -> None:
    # A pair's priority is led by the lower of its two candidates' (RFC 8445 §6.1.2.3),
    # and the browser's active TCP candidate is above both: ours decides.
    assert (passive_priority(1) > other) is ours_first


def test_the_passive_priority_follows_rfc_6544() -> None:
    # type 1; local preference 2^13 * 4 (passive host) + 8191; component 1.
    assert passive_priority(1) == (1 << 24) + ((4 << 13) + 8191 << 8) + 255 == 27262975


@pytest.mark.parametrize(
    ("candidate", "address", "port", "component"),
    [
        (PassiveCandidate("203.0.113.7", 443), "203.0.113.7", 443, 1),
        (PassiveCandidate("10.1.2.3", 3478, component=2), "10.1.2.3", 3478, 2),
        (PassiveCandidate("2001:db8::1", 8443), "2001:db8::1", 8443, 1),
    ],
)
def test_the_candidate_line_says_tcp_passive_and_both_stacks_read_it(
    candidate: PassiveCandidate, address: str, port: int, component: int
) -> None:
    line = candidate.sdp()
    fields = line.split(" ")
    assert fields[1:] == [
        str(component),
        "tcp",
        str(passive_priority(component)),
        address,
        str(port),
        "typ",
        "host",
        "tcptype",
        "passive",
    ]
    parsed = Candidate.from_sdp(line)
    assert (parsed.transport, parsed.tcptype, parsed.host, parsed.port) == (
        "tcp",
        "passive",
        address,
        port,
    )
    written = candidate_from_sdp(line)
    assert (written.protocol, written.tcpType, written.type) == ("tcp", "passive", "host")


def test_the_foundation_is_one_per_address() -> None:
    a, b = PassiveCandidate("10.0.0.1", 443), PassiveCandidate("10.0.0.1", 8443)
    assert a.foundation == b.foundation != PassiveCandidate("10.0.0.2", 443).foundation


@pytest.mark.parametrize(
    ("username", "ufrag"),
    [("abcd:wxyz", "abcd"), ("Ab+/:12", "Ab+/"), ("abcd", None), (":wxyz", None), ("abcd:", None)],
)
def test_a_check_names_the_receivers_ufrag_first(username: str, ufrag: str | None) -> None:
    assert local_ufrag(username) == ufrag


@dataclass
class Session:
    local_username: str
    local_password: str


ALICE = Session("alic", "a" * 22)
ALICE_AGAIN = Session("alic", "b" * 22)  # the same 4-character ufrag drawn twice
BOB = Session("bobb", "c" * 22)


def check(
    username: str | None,
    key: str | None,
    method: stun.Method = stun.Method.BINDING,
    kind: stun.Class = stun.Class.REQUEST,
) -> stun.Message:
    message = stun.Message(message_method=method, message_class=kind)
    if username is not None:
        message.attributes["USERNAME"] = username
    if key is not None:
        message.add_message_integrity(key.encode())
    # As it arrives: parsed from bytes.
    return stun.parse_message(bytes(message))


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (check("alic:peer", "a" * 22), ALICE),
        (check("alic:peer", "b" * 22), ALICE_AGAIN),
        (check("bobb:peer", "c" * 22), BOB),
        (check("bobb:peer", "a" * 22), None),  # Bob's ufrag, Alice's password
        (check("carl:peer", "a" * 22), None),  # nobody's ufrag
        (check("alic:peer", None), None),  # no MESSAGE-INTEGRITY
        (check(None, "a" * 22), None),  # no USERNAME
        (check("alic", "a" * 22), None),  # no remote ufrag
        (check("alic:peer", "a" * 22, kind=stun.Class.RESPONSE), None),
        (check("alic:peer", "a" * 22, method=stun.Method.ALLOCATE), None),
    ],
    ids=[
        "alice",
        "same-ufrag-other-password",
        "bob",
        "wrong-password",
        "unknown-ufrag",
        "unsigned",
        "no-username",
        "no-colon",
        "a-response",
        "not-binding",
    ],
)
def test_a_connection_joins_the_session_its_first_check_authenticates_with(
    message: stun.Message, expected: Session | None
) -> None:
    assert match_session(message, [ALICE, ALICE_AGAIN, BOB]) is expected


# --- an aioice session reached over the port, by a client that frames by hand ---------

CLIENT_UFRAG, CLIENT_PASSWORD = "clnt", "p" * 22


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    length = int.from_bytes(await reader.readexactly(2), "big")
    return await reader.readexactly(length)


@pytest.fixture(params=[("127.0.0.1",), ()], ids=["on-its-address", "every-interface"])
async def port(request: pytest.FixtureRequest) -> AsyncIterator[PassiveTcpPort]:
    # Unset addresses (the default) bind every interface, IPv4 and IPv6 in one socket.
    tcp = PassiveTcpPort(0, request.param, match_timeout_s=0.5)
    await tcp.start()
    yield tcp
    await tcp.close()


async def gathered(port: PassiveTcpPort) -> Connection:
    connection = Connection(ice_controlling=False, components=1)
    with gather_on(("127.0.0.1",)), offering(port):
        await connection.gather_candidates()
    connection.remote_username, connection.remote_password = CLIENT_UFRAG, CLIENT_PASSWORD
    return connection


async def test_the_session_gathers_a_passive_candidate_at_the_port(port: PassiveTcpPort) -> None:
    connection = await gathered(port)
    tcp = [c for c in connection.local_candidates if c.transport == "tcp"]
    assert [(c.host, c.port, c.tcptype) for c in tcp] == [("127.0.0.1", port.port, "passive")]
    await connection.close()


@pytest.mark.parametrize(
    ("address", "plain"),
    [("::ffff:10.0.0.2", "10.0.0.2"), ("10.0.0.2", "10.0.0.2"), ("2001:db8::2", "2001:db8::2")],
)
def test_an_ipv4_peer_of_a_dual_stack_socket_is_named_by_its_ipv4_address(
    address: str, plain: str
) -> None:
    assert unmapped(address) == plain


async def test_media_flows_both_ways_over_the_stream_the_browser_opened(
    port: PassiveTcpPort,
) -> None:
    connection = await gathered(port)
    connecting = asyncio.create_task(connection.connect())
    reader, writer = await asyncio.open_connection("127.0.0.1", port.port)
    try:
        # The browser's check, nominating (it is the controlling agent).
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{connection.local_username}:{CLIENT_UFRAG}"
        request.attributes["PRIORITY"] = 1845501695
        request.attributes["ICE-CONTROLLING"] = 1
        request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity(connection.local_password.encode())
        request.add_fingerprint()
        writer.write(frame(bytes(request)))
        # Its answer, and the relay's own check back over the same stream (a
        # triggered check), which the browser answers.
        answered = False
        while not connecting.done():
            message = stun.parse_message(await asyncio.wait_for(read_frame(reader), 5))
            if message.transaction_id == request.transaction_id:
                assert message.message_class == stun.Class.RESPONSE
                assert message.attributes["XOR-MAPPED-ADDRESS"] == writer.get_extra_info("sockname")
                answered = True
            elif message.message_class == stun.Class.REQUEST:
                response = stun.Message(
                    message_method=stun.Method.BINDING,
                    message_class=stun.Class.RESPONSE,
                    transaction_id=message.transaction_id,
                )
                response.attributes["XOR-MAPPED-ADDRESS"] = ("127.0.0.1", port.port)
                response.add_message_integrity(CLIENT_PASSWORD.encode())
                writer.write(frame(bytes(response)))
                await asyncio.wait_for(asyncio.shield(connecting), 5)
        assert answered
        await connecting
        await connection.send(b"from the relay")
        while (packet := await asyncio.wait_for(read_frame(reader), 5))[:1] in (b"\x00", b"\x01"):
            pass  # STUN (a retransmitted check) may come first
        assert packet == b"from the relay"
        writer.write(frame(b"\x80from the classroom"))  # RTP-like: not STUN
        assert await asyncio.wait_for(connection.recv(), 5) == b"\x80from the classroom"
    finally:
        writer.close()
        connecting.cancel()
        await connection.close()


@pytest.mark.parametrize(
    "first",
    [
        frame(b"\x80not a check at all"),
        frame(bytes(check("nobd:clnt", "q" * 22))),
        b"",  # says nothing: closed after the match timeout
    ],
    ids=["not-stun", "stranger", "silent"],
)
async def test_a_connection_that_is_not_a_sessions_check_is_closed(
    port: PassiveTcpPort, first: bytes
) -> None:
    connection = await gathered(port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port.port)
    writer.write(first)
    assert await asyncio.wait_for(reader.read(), 3) == b""  # closed, unanswered
    writer.close()
    assert connection._protocols and all(
        p.local_candidate.transport == "udp" for p in connection._protocols
    )
    await connection.close()


async def test_unmatched_connections_are_bounded() -> None:
    tcp = PassiveTcpPort(0, ("127.0.0.1",), max_unmatched=2, match_timeout_s=5)
    await tcp.start()
    streams = [await asyncio.open_connection("127.0.0.1", tcp.port) for _ in range(3)]
    try:
        assert await asyncio.wait_for(streams[2][0].read(), 3) == b""
    finally:
        for _, writer in streams:
            writer.close()
        await tcp.close()


def test_a_port_already_taken_stops_the_start() -> None:
    first = PassiveTcpPort(0, ("127.0.0.1",))
    try:
        with pytest.raises(OSError):
            PassiveTcpPort(first.port, ("127.0.0.1",))
    finally:
        asyncio.run(first.close())


OFFER = (Path(__file__).parent / "chromium_offer.sdp").read_text()


@pytest.mark.parametrize("offered", [True, False], ids=["ice-tcp", "udp-only"])
async def test_the_relays_answer_carries_the_passive_candidate_when_set(
    port: PassiveTcpPort, offered: bool
) -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="sendonly")
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setRemoteDescription(RTCSessionDescription(OFFER, "offer"))
        sdp = await answer(pc, ("127.0.0.1",), port if offered else None)
    finally:
        await pc.close()
    candidates = [line for line in sdp.split("\r\n") if line.startswith("a=candidate:")]
    tcp = [line for line in candidates if " tcp " in line]
    assert any(" udp " in line for line in candidates)
    # Bundled: one transport, so one passive candidate, written in each m-section.
    passive = f" 1 tcp {passive_priority(1)} 127.0.0.1 {port.port} typ host tcptype passive"
    assert tcp == ([tcp[0]] * 2 if offered else [])
    assert not offered or tcp[0].endswith(passive)
    if offered:
        # Behind 1:1 NAT the public address is written in, the port kept.
        public = announce(sdp, "203.0.113.9")
        assert f"203.0.113.9 {port.port} typ host tcptype passive" in public
