"""A classroom whose firewall lets UDP through to one port only plays the lesson there.

Chromium runs in a network namespace of its own, joined to the server's by a veth
pair (as in tests/e2e/test_turn.py), where nftables drops every UDP packet except
those to and from the relay's one UDP port. The server runs with
CLASSROOM_ICE_UDP_PORT and neither TURN nor ICE-TCP: the relay offers that port only
(media.adapter.ice_udp), to the page and to the teacher's WHIP encoder alike, and
tells their packets apart by source address. The page must decode the teacher's
camera over a pair whose remote candidate, as the page sees it, is at that port.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import firewall

pytestmark = firewall.marks()

# A subnet, namespace and links of this test's own (test_turn's are 10.200-249).
NET = firewall.Net("oneudp", 150)


def one_udp_port(port: int) -> str:
    return f"""
table inet oneudp {{
  chain out {{ type filter hook output priority 0; meta l4proto udp udp dport != {port} drop; }}
  chain in {{ type filter hook input priority 0; meta l4proto udp udp sport != {port} drop; }}
}}
"""


@pytest.fixture
def ice_udp_port() -> int:
    return firewall.free_port("127.0.0.1", socket.SOCK_DGRAM)


@pytest.fixture
def one_port_namespace(ice_udp_port: int) -> Iterator[str]:
    with firewall.namespace(NET, one_udp_port(ice_udp_port)) as name:
        yield name


@pytest.fixture
def server_on_one_udp_port(
    one_port_namespace: str, ice_udp_port: int, tmp_path: Path
) -> Iterator[str]:
    with firewall.server(NET, {"CLASSROOM_ICE_UDP_PORT": str(ice_udp_port)}, tmp_path) as base:
        yield base


@pytest.fixture
async def chromium_behind_one_port(one_port_namespace: str, tmp_path: Path) -> AsyncIterator[Any]:
    async with firewall.chromium_in(one_port_namespace, tmp_path) as context:
        yield context


async def test_a_classroom_behind_one_open_udp_port_plays_the_lesson_there(
    server_on_one_udp_port: str, ice_udp_port: int, chromium_behind_one_port: Any
) -> None:
    async with firewall.lesson_playing(
        server_on_one_udp_port, NET, chromium_behind_one_port, "one UDP port"
    ) as page:
        pair = await firewall.selected_pair(page)
    assert set(map(tuple, pair["offered"])) == {("udp", ice_udp_port)}, pair
    assert pair["local"]["protocol"] == "udp", pair
    assert pair["remote"] == {
        "protocol": "udp", "type": "host", "port": ice_udp_port, "relayProtocol": None,
    }  # fmt: skip
