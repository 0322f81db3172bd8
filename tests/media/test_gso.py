"""A frame's datagrams in one UDP segmentation offload send: which runs qualify, and
real sockets receiving exactly the datagrams sent, with or without the offload."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from classroom.roles import Role
from media.adapter.gso import OFFLOAD, Offload, batch_sender, send_segmented
from media.adapter.ice_udp import SharedSocketView, SharedUdpPort
from media.relay.relay import Relay
from media.slots import Slot
from media.wire.gso import MAX_BYTES, MAX_SEGMENTS, batches

from .conftest import Join

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("sizes", "runs"),
    [
        ([], []),
        ([1200], [(0, 1, 1200)]),
        # A VP8 frame: full-size packets, a shorter last one.
        ([1200, 1200, 1200, 400], [(0, 4, 1200)]),
        ([1200, 1200], [(0, 2, 1200)]),
        # A shorter datagram ends the run; the next one starts another.
        ([1200, 400, 1200, 1200], [(0, 2, 1200), (2, 4, 1200)]),
        ([1200, 400, 400], [(0, 2, 1200), (2, 3, 400)]),
        # A longer one cannot follow (the segment size is the run's first).
        ([400, 1200, 1200], [(0, 1, 400), (1, 3, 1200)]),
        # Two frames' worth of audio alike: equal sizes batch.
        ([80, 80, 80], [(0, 3, 80)]),
        ([100, 90, 80], [(0, 2, 100), (2, 3, 80)]),
    ],
)
def test_runs_of_equal_datagrams_and_one_shorter_last(
    sizes: list[int], runs: list[tuple[int, int, int]]
) -> None:
    assert batches(sizes) == runs


def test_the_kernels_limits_cut_a_long_run() -> None:
    assert batches([1000] * (MAX_SEGMENTS + 3)) == [
        (0, MAX_SEGMENTS, 1000),
        (MAX_SEGMENTS, MAX_SEGMENTS + 3, 1000),
    ]
    per_run = MAX_BYTES // 1400
    assert batches([1400] * (per_run + 1)) == [(0, per_run, 1400), (per_run, per_run + 1, 1400)]
    assert batches([5, 5, 5, 5], max_segments=3, max_bytes=100) == [(0, 3, 5), (3, 4, 5)]
    assert batches([5, 5, 5, 5], max_segments=10, max_bytes=12) == [(0, 2, 5), (2, 4, 5)]


def test_every_datagram_is_in_exactly_one_run_in_order() -> None:
    sizes = [1300, 1300, 700, 1300, 90, 90, 1300, 1300, 1300, 1300, 12, 1300]
    runs = batches(sizes)
    assert [i for start, end, _ in runs for i in range(start, end)] == list(range(len(sizes)))
    for start, end, segment in runs:
        run = sizes[start:end]
        assert all(size == segment for size in run[:-1]) and run[-1] <= segment


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2.0)
    yield sender, receiver
    sender.close()
    receiver.close()


def frame(sizes: list[int]) -> list[bytes]:
    return [bytes([i]) * size for i, size in enumerate(sizes)]


def received(receiver: socket.socket, count: int) -> list[bytes]:
    return [receiver.recv(65536) for _ in range(count)]


def test_the_receiver_gets_the_same_datagrams_with_fewer_sends(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    datagrams = frame([1200, 1200, 1200, 400, 1200, 1200, 60])
    alone: list[bytes] = []
    offload = Offload(enabled=True)

    def one(datagram: bytes, addr: Any) -> None:
        alone.append(datagram)
        sender.sendto(datagram, addr)

    send_segmented(sender, datagrams, receiver.getsockname(), one, offload)
    assert received(receiver, len(datagrams)) == datagrams
    assert offload.enabled
    assert offload.sends == 2 and alone == []


def test_without_the_offload_each_datagram_goes_alone(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    datagrams = frame([1200, 1200, 300])
    alone: list[bytes] = []

    def one(datagram: bytes, addr: Any) -> None:
        alone.append(datagram)
        sender.sendto(datagram, addr)

    send_segmented(sender, datagrams, receiver.getsockname(), one, Offload(enabled=False))
    assert received(receiver, 3) == datagrams == alone


class Refusing:
    """A socket whose kernel or device will not segment (as EIO from a device
    without checksum offload)."""

    def __init__(self, error: int) -> None:
        self.error = error
        self.calls = 0

    def sendmsg(self, *args: Any) -> int:
        self.calls += 1
        raise OSError(self.error, "refused")


@pytest.mark.parametrize(
    ("error", "still_on"),
    [(errno.EIO, False), (errno.EINVAL, False), (errno.EAGAIN, True), (errno.ENOBUFS, True)],
)
def test_a_refusal_turns_the_offload_off_and_nothing_is_lost(error: int, still_on: bool) -> None:
    refusing = Refusing(error)
    offload = Offload(enabled=True)
    alone: list[bytes] = []
    datagrams = frame([1000, 1000, 10])
    send_segmented(refusing, datagrams, ("127.0.0.1", 9), lambda d, a: alone.append(d), offload)  # type: ignore[arg-type]
    # Whatever the socket said, the datagrams go the transport's way (which queues
    # a full buffer, as asyncio does).
    assert alone == datagrams
    assert offload.enabled is still_on
    send_segmented(refusing, datagrams, ("127.0.0.1", 9), lambda d, a: alone.append(d), offload)  # type: ignore[arg-type]
    assert refusing.calls == (2 if still_on else 1)


async def test_an_asyncio_transport_batches_only_with_nothing_queued(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, receiver = pair
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        send = batch_sender(transport)
        datagrams = frame([1200, 1200, 500])
        send(datagrams, receiver.getsockname())
        assert received(receiver, 3) == datagrams
        # Something already queued on the transport goes first: the frame queues
        # behind it instead of overtaking it.
        queued: Any = transport
        queued._buffer.append((b"first", receiver.getsockname()))
        queued._buffer_size += 5
        send(frame([1200, 1200]), receiver.getsockname())
        assert len(queued._buffer) == 3
    finally:
        transport.abort()


async def test_the_shared_udp_port_batches_through_its_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, receiver = pair
    port = SharedUdpPort(0, ("127.0.0.1",))
    try:
        share: Any = type("Share", (), {"receiver": None})()
        send = batch_sender(SharedSocketView(port._sockets[0], share))
        datagrams = frame([1100, 1100, 1100, 90])
        send(datagrams, receiver.getsockname())
        assert received(receiver, 4) == datagrams
    finally:
        await port.close()


def test_a_transport_that_frames_each_datagram_gets_them_one_by_one() -> None:
    sent: list[bytes] = []

    class Framed:
        def sendto(self, data: bytes, addr: Any = None) -> None:
            sent.append(data)

    datagrams = frame([1200, 1200, 5])
    batch_sender(Framed())(datagrams, None)
    assert sent == datagrams


async def test_a_classroom_decodes_the_frames_the_relay_sent_segmented(
    relay: Relay, join: Join
) -> None:
    await join("teacher", Role.TEACHER)
    room = await join("room-a", Role.CLASSROOM)
    before = OFFLOAD.sends
    # Keyframes and the first layer's frames are several packets each: those go in
    # one send each; the classroom decodes them as before.
    video = await room.wait_frames(Slot.TEACHER_CAMERA, 30, timeout=15)
    assert video.sizes == {(640, 360)}
    assert OFFLOAD.sends > before
