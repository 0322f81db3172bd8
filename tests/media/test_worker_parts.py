"""The parts of the relay workers that need no process: framing, settings, ports."""

from __future__ import annotations

import asyncio
import socket

import pytest

from media.settings import RelaySettings
from media.workers.channel import (
    HEADER,
    MAX_FRAME,
    Channel,
    ChannelClosed,
    receive_blocking,
    send_blocking,
)
from media.workers.gateway import worker_settings
from media.workers.worker import settings_from_json, settings_to_json


async def test_frames_cross_in_order_and_whole() -> None:
    a, b = socket.socketpair()
    left, right = await Channel.over(a), await Channel.over(b)
    sdp = "v=0\r\n" + "a=candidate:x\r\n" * 2000  # bigger than one read of the socket
    for n in range(3):
        left.send({"id": n, "op": "negotiate", "args": {"sdp": sdp, "name": "物理"}})
    received = [await right.receive() for _ in range(3)]
    assert [m["id"] for m in received] == [0, 1, 2]
    assert received[2]["args"] == {"sdp": sdp, "name": "物理"}
    await left.close()
    with pytest.raises(ChannelClosed):
        await right.receive()
    await right.close()


async def test_a_frame_announcing_too_much_closes_the_channel() -> None:
    a, b = socket.socketpair()
    a.sendall(HEADER.pack(MAX_FRAME + 1))
    right = await Channel.over(b)
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(right.receive(), 5)
    a.close()
    await right.close()


def test_the_greeting_crosses_blocking_sockets() -> None:
    a, b = socket.socketpair()
    with a, b:
        send_blocking(a, {"event": "ready", "pid": 7})
        assert receive_blocking(b) == {"event": "ready", "pid": 7}
        a.close()
        with pytest.raises(ChannelClosed):
            receive_blocking(b)


def test_relay_settings_survive_the_command_line() -> None:
    settings = RelaySettings(
        host_addresses=("127.0.0.1", "10.0.0.2"),
        stun_servers=("stun:stun.example:3478",),
        announced_address="203.0.113.5",
        ice_udp_port=40000,
        adaptive=False,
        allocation_interval_s=0.25,
    )
    assert settings_from_json(settings_to_json(settings)) == settings


@pytest.mark.parametrize(
    ("udp", "tcp", "index", "expected"),
    [
        (None, None, 3, (None, None)),
        (40000, None, 0, (40000, None)),
        (40000, None, 1, (40001, None)),
        (None, 3478, 2, (None, 3480)),
        (40000, 3478, 1, (40001, 3479)),
    ],
)
def test_each_worker_has_its_own_ice_ports(
    udp: int | None, tcp: int | None, index: int, expected: tuple[int | None, int | None]
) -> None:
    given = RelaySettings(ice_udp_port=udp, ice_tcp_port=tcp)
    chosen = worker_settings(given, index)
    assert (chosen.ice_udp_port, chosen.ice_tcp_port) == expected
    assert chosen.host_addresses == given.host_addresses
