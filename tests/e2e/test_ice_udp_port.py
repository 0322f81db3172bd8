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

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from media.synthetic import MovingPicture, Tone
from tests.e2e import test_turn as veth
from tests.e2e.conftest import ADMIN_KEY, CHROMIUM, CHROMIUM_ARGS, REPO, stop_group
from tests.signaling.whip_client import Client

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.netns,
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        os.geteuid() != 0
        or shutil.which("ip") is None
        or shutil.which("nft") is None
        or not Path(CHROMIUM).exists(),
        reason="needs root, iproute2, nftables and Debian's chromium",
    ),
]

# A subnet, namespace and links of this test's own (test_turn's are 200-249).
TAG = os.getpid() % 10_000
SUBNET = f"10.{150 + TAG % 50}.{TAG % 250}"
SERVER_IP, ROOM_IP = f"{SUBNET}.1", f"{SUBNET}.2"
NS, VETH_OUT, VETH_IN = f"oneudp{TAG}", f"vou{TAG}a", f"vou{TAG}b"


def one_udp_port(port: int) -> str:
    return f"""
table inet oneudp {{
  chain out {{ type filter hook output priority 0; meta l4proto udp udp dport != {port} drop; }}
  chain in {{ type filter hook input priority 0; meta l4proto udp udp sport != {port} drop; }}
}}
"""


@pytest.fixture
def ice_udp_port() -> int:
    return veth._free_port("127.0.0.1", socket.SOCK_DGRAM)


@pytest.fixture
def one_port_namespace(ice_udp_port: int) -> Iterator[str]:
    veth.sh("ip", "netns", "add", NS)
    try:
        veth.sh("ip", "link", "add", VETH_OUT, "type", "veth", "peer", "name", VETH_IN)
        veth.sh("ip", "link", "set", VETH_IN, "netns", NS)
        veth.sh("ip", "addr", "add", f"{SERVER_IP}/30", "dev", VETH_OUT)
        veth.sh("ip", "link", "set", VETH_OUT, "up")
        inside = ("ip", "netns", "exec", NS)
        veth.sh(*inside, "ip", "addr", "add", f"{ROOM_IP}/30", "dev", VETH_IN)
        veth.sh(*inside, "ip", "link", "set", VETH_IN, "up")
        veth.sh(*inside, "ip", "link", "set", "lo", "up")
        veth.sh(*inside, "nft", "-f", "-", stdin=one_udp_port(ice_udp_port))
        yield NS
    finally:
        subprocess.run(["ip", "link", "del", VETH_OUT], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=10)


@pytest.fixture
def server_on_one_udp_port(
    one_port_namespace: str, ice_udp_port: int, tmp_path: Path
) -> Iterator[str]:
    http_port = veth._free_port(SERVER_IP, socket.SOCK_STREAM)
    log = open(tmp_path / "server.log", "ab")  # noqa: SIM115
    env = {
        **os.environ,
        "CLASSROOM_ADMIN_KEY": ADMIN_KEY,
        "CLASSROOM_DATA_DIR": str(tmp_path / "data"),
        "CLASSROOM_HOST": SERVER_IP,
        "CLASSROOM_PORT": str(http_port),
        "CLASSROOM_ICE_HOST_ADDRESSES": SERVER_IP,
        "CLASSROOM_ICE_UDP_PORT": str(ice_udp_port),
    }
    for name in (
        "CLASSROOM_TURN_URLS",
        "CLASSROOM_TURN_SECRET",
        "CLASSROOM_STUN_URLS",
        "CLASSROOM_ICE_TCP_PORT",
    ):
        env.pop(name, None)
    server = subprocess.Popen(
        [sys.executable, "-m", "signaling", "serve"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://{SERVER_IP}:{http_port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "server.log").read_text()[-3000:])
            time.sleep(0.2)
        yield base
    finally:
        stop_group(server)
        log.close()


@pytest.fixture
async def chromium_behind_one_port(one_port_namespace: str, tmp_path: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    wrapper = tmp_path / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {one_port_namespace} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "profile"),
            executable_path=str(wrapper),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            yield context
        finally:
            await context.close()


SELECTED_PAIR = """async () => {
  const stats = await window.__classroom.pc.getStats();
  const byId = new Map([...stats.values()].map((s) => [s.id, s]));
  const transport = [...stats.values()].find((s) => s.type === "transport");
  const pair = transport && byId.get(transport.selectedCandidatePairId);
  if (!pair) return null;
  const local = byId.get(pair.localCandidateId);
  const remote = byId.get(pair.remoteCandidateId);
  const offered = [...stats.values()]
    .filter((s) => s.type === "remote-candidate" && s.candidateType === "host")
    .map((s) => [s.protocol, s.port]);
  return {
    local: local.protocol, remote: remote.protocol,
    remote_type: remote.candidateType, remote_port: remote.port, offered,
  };
}"""


async def test_a_classroom_behind_one_open_udp_port_plays_the_lesson_there(
    server_on_one_udp_port: str, ice_udp_port: int, chromium_behind_one_port: Any
) -> None:
    base = server_on_one_udp_port
    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        r = await http.post(
            "/api/lessons",
            json={"title": "One UDP port", "classrooms": ["Village A"]},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert r.status_code == 201, r.text
        lesson = r.json()
        whip = Client(http, f"/whip/{lesson['id']}", lesson["teacher"]["token"], (SERVER_IP,))
        try:
            await whip.publish(MovingPicture(320, 180, 15), Tone())
            page = await chromium_behind_one_port.new_page()
            await page.goto(base + "/classroom#token=" + lesson["classrooms"][0]["token"])
            frames = 0
            deadline = time.monotonic() + 40
            while frames < 10:
                assert time.monotonic() < deadline, "no camera frames through the one UDP port"
                await asyncio.sleep(0.5)
                stats = await page.evaluate(
                    "() => window.__classroom && window.__classroom.inboundStats()"
                )
                frames = int(((stats or {}).get("teacher_camera") or {}).get("framesDecoded") or 0)
            pair = await page.evaluate(SELECTED_PAIR)
            assert pair is not None
            assert set(map(tuple, pair.pop("offered"))) == {("udp", ice_udp_port)}
            assert pair == {
                "local": "udp",
                "remote": "udp",
                "remote_type": "host",
                "remote_port": ice_udp_port,
            }
        finally:
            await whip.stop()
