"""A classroom whose firewall drops UDP plays the lesson over ICE-TCP, with no TURN.

The namespace, its veth pair and the nftables rule that drops every UDP packet are
the TURN test's (tests/e2e/test_turn.py); so is the Chromium started inside it. The
server runs with CLASSROOM_ICE_TCP_PORT and no TURN server: the relay's answer
carries a passive TCP candidate (media.adapter.ice_tcp), and the page's only way to
the relay is to connect to it from its active TCP candidate. The teacher publishes
by WHIP. The page must decode the teacher's camera over a candidate pair whose
candidates are both TCP.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import firewall
from tests.e2e.test_turn import NET, chromium_without_udp, no_udp_namespace

pytestmark = firewall.marks()

# The TURN test's namespace whose UDP is dropped, and the Chromium inside it.
__all__ = ["chromium_without_udp", "no_udp_namespace"]


@pytest.fixture
def ice_tcp_port(no_udp_namespace: str) -> int:
    return firewall.free_port(NET.server_ip, socket.SOCK_STREAM)


@pytest.fixture
def server_with_ice_tcp(ice_tcp_port: int, tmp_path: Path) -> Iterator[str]:
    with firewall.server(NET, {"CLASSROOM_ICE_TCP_PORT": str(ice_tcp_port)}, tmp_path) as base:
        yield base


async def test_a_classroom_without_udp_plays_the_lesson_over_ice_tcp(
    server_with_ice_tcp: str, ice_tcp_port: int, chromium_without_udp: Any
) -> None:
    async with firewall.lesson_playing(
        server_with_ice_tcp, NET, chromium_without_udp, "ICE-TCP"
    ) as page:
        pair = await firewall.selected_pair(page)
    assert pair["local"]["protocol"] == "tcp", pair
    assert pair["remote"] == {
        "protocol": "tcp", "type": "host", "port": ice_tcp_port, "relayProtocol": None,
    }  # fmt: skip
