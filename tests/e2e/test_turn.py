"""A classroom whose firewall drops UDP plays the lesson through TURN over TCP.

Chromium runs in a network namespace of its own, joined to the server's by a veth
pair, with every UDP packet dropped (nftables) both ways. coturn (Debian's) runs
beside the server with the secret it shares with it (`use-auth-secret`); the page
gets the TURN server and its short-lived credentials in its welcome
(signaling.ice). The teacher publishes by WHIP. The page must decode the teacher's
camera, over a candidate pair whose local side is a TURN relay.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from media.synthetic import MovingPicture, Tone
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
        or shutil.which("turnserver") is None
        or not Path(CHROMIUM).exists(),
        reason="needs root, iproute2, nftables, coturn and Debian's chromium",
    ),
]

SECRET = "turn-test-secret"
# Names and a /30 of this run's own, so that parallel runs do not meet.
TAG = os.getpid() % 10_000
SUBNET = f"10.{200 + TAG % 50}.{TAG % 250}"
SERVER_IP, ROOM_IP = f"{SUBNET}.1", f"{SUBNET}.2"
NS, VETH_OUT, VETH_IN = f"noudp{TAG}", f"vnu{TAG}a", f"vnu{TAG}b"

NO_UDP = """
table inet noudp {
  chain out { type filter hook output priority 0; meta l4proto udp drop; }
  chain in { type filter hook input priority 0; meta l4proto udp drop; }
}
"""


def sh(*args: str, stdin: str | None = None) -> None:
    subprocess.run(args, check=True, input=stdin, text=True, capture_output=True, timeout=10)


@pytest.fixture
def no_udp_namespace() -> Iterator[str]:
    sh("ip", "netns", "add", NS)
    try:
        sh("ip", "link", "add", VETH_OUT, "type", "veth", "peer", "name", VETH_IN)
        sh("ip", "link", "set", VETH_IN, "netns", NS)
        sh("ip", "addr", "add", f"{SERVER_IP}/30", "dev", VETH_OUT)
        sh("ip", "link", "set", VETH_OUT, "up")
        inside = ("ip", "netns", "exec", NS)
        sh(*inside, "ip", "addr", "add", f"{ROOM_IP}/30", "dev", VETH_IN)
        sh(*inside, "ip", "link", "set", VETH_IN, "up")
        sh(*inside, "ip", "link", "set", "lo", "up")
        sh(*inside, "nft", "-f", "-", stdin=NO_UDP)
        yield NS
    finally:
        subprocess.run(["ip", "link", "del", VETH_OUT], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=10)


def _free_port(host: str, kind: int = 1) -> int:
    import socket

    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def turn_and_server(no_udp_namespace: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    turn_port, http_port = _free_port(SERVER_IP), _free_port(SERVER_IP)
    log = open(tmp_path / "processes.log", "ab")  # noqa: SIM115
    coturn = subprocess.Popen(
        [
            "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls", "--simple-log",
            "--log-file=stdout", f"--listening-ip={SERVER_IP}", f"--relay-ip={SERVER_IP}",
            f"--listening-port={turn_port}", "--min-port=49152", "--max-port=65535",
            "--use-auth-secret", f"--static-auth-secret={SECRET}", "--realm=classroom.test",
            "--fingerprint",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    env = {
        **os.environ,
        "CLASSROOM_ADMIN_KEY": ADMIN_KEY,
        "CLASSROOM_DATA_DIR": str(tmp_path / "data"),
        "CLASSROOM_HOST": SERVER_IP,
        "CLASSROOM_PORT": str(http_port),
        "CLASSROOM_ICE_HOST_ADDRESSES": SERVER_IP,
        "CLASSROOM_TURN_URLS": f"turn:{SERVER_IP}:{turn_port}?transport=tcp",
        "CLASSROOM_TURN_SECRET": SECRET,
    }
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
                raise RuntimeError((tmp_path / "processes.log").read_text()[-3000:])
            time.sleep(0.2)
        yield base, turn_port
    finally:
        stop_group(server)
        stop_group(coturn)
        log.close()


@pytest.fixture
async def chromium_without_udp(no_udp_namespace: str, tmp_path: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    wrapper = tmp_path / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {no_udp_namespace} {CHROMIUM} "$@"\n')
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
  return {local: local.candidateType, relayProtocol: local.relayProtocol || null};
}"""


async def test_a_classroom_without_udp_plays_the_lesson_through_turn(
    turn_and_server: tuple[str, int], chromium_without_udp: Any
) -> None:
    base, _ = turn_and_server
    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        r = await http.post(
            "/api/lessons",
            json={"title": "TURN", "classrooms": ["Village A"]},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert r.status_code == 201, r.text
        lesson = r.json()
        whip = Client(http, f"/whip/{lesson['id']}", lesson["teacher"]["token"], (SERVER_IP,))
        try:
            await whip.publish(MovingPicture(320, 180, 15), Tone())
            page = await chromium_without_udp.new_page()
            await page.goto(base + "/classroom#token=" + lesson["classrooms"][0]["token"])
            frames = 0
            deadline = time.monotonic() + 40
            while frames < 10:
                assert time.monotonic() < deadline, "no camera frames through TURN"
                await asyncio.sleep(0.5)
                stats = await page.evaluate(
                    "() => window.__classroom && window.__classroom.inboundStats()"
                )
                frames = int(((stats or {}).get("teacher_camera") or {}).get("framesDecoded") or 0)
            pair = await page.evaluate(SELECTED_PAIR)
            assert pair == {"local": "relay", "relayProtocol": "tcp"}
        finally:
            await whip.stop()
