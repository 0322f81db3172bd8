"""A classroom whose firewall drops UDP plays the lesson through TURN over TCP.

Chromium runs in a network namespace of its own, joined to the server's by a veth
pair, with every UDP packet dropped (nftables) both ways. coturn (Debian's) runs
beside the server with the secret it shares with it (`use-auth-secret`); the page
gets the TURN server and its short-lived credentials in its welcome
(signaling.ice). The teacher publishes by WHIP. The page must decode the teacher's
camera, over a candidate pair whose local side is a TURN relay.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import firewall
from tests.e2e.conftest import stop_group

pytestmark = firewall.marks("turnserver")

SECRET = "turn-test-secret"
NET = firewall.Net("noudp", 200)

NO_UDP = """
table inet noudp {
  chain out { type filter hook output priority 0; meta l4proto udp drop; }
  chain in { type filter hook input priority 0; meta l4proto udp drop; }
}
"""


@pytest.fixture
def no_udp_namespace() -> Iterator[str]:
    with firewall.namespace(NET, NO_UDP) as name:
        yield name


@pytest.fixture
async def chromium_without_udp(no_udp_namespace: str, tmp_path: Path) -> AsyncIterator[Any]:
    async with firewall.chromium_in(no_udp_namespace, tmp_path) as context:
        yield context


@pytest.fixture
def turn_and_server(no_udp_namespace: str, tmp_path: Path) -> Iterator[str]:
    turn_port = firewall.free_port(NET.server_ip)
    with open(tmp_path / "coturn.log", "ab") as log:
        coturn = subprocess.Popen(
            [
                "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls", "--simple-log",
                "--log-file=stdout", f"--listening-ip={NET.server_ip}",
                f"--relay-ip={NET.server_ip}", f"--listening-port={turn_port}",
                "--min-port=49152", "--max-port=65535", "--use-auth-secret",
                f"--static-auth-secret={SECRET}", "--realm=classroom.test", "--fingerprint",
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            settings = {
                "CLASSROOM_TURN_URLS": f"turn:{NET.server_ip}:{turn_port}?transport=tcp",
                "CLASSROOM_TURN_SECRET": SECRET,
            }
            with firewall.server(NET, settings, tmp_path) as base:
                yield base
        finally:
            stop_group(coturn)


async def test_a_classroom_without_udp_plays_the_lesson_through_turn(
    turn_and_server: str, chromium_without_udp: Any
) -> None:
    async with firewall.lesson_playing(turn_and_server, NET, chromium_without_udp, "TURN") as page:
        pair = await firewall.selected_pair(page)
    assert pair["local"]["type"] == "relay" and pair["local"]["relayProtocol"] == "tcp", pair
