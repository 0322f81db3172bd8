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

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from media.synthetic import MovingPicture, Tone
from tests.e2e import test_turn as no_udp
from tests.e2e.conftest import ADMIN_KEY, CHROMIUM, REPO, stop_group
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

SERVER_IP = no_udp.SERVER_IP
# The namespace whose UDP is dropped, and Chromium inside it.
no_udp_namespace = no_udp.no_udp_namespace
chromium_without_udp = no_udp.chromium_without_udp


@pytest.fixture
def server_with_ice_tcp(no_udp_namespace: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    import socket

    http_port = no_udp._free_port(SERVER_IP)
    ice_tcp_port = no_udp._free_port(SERVER_IP, socket.SOCK_STREAM)
    log = open(tmp_path / "server.log", "ab")  # noqa: SIM115
    env = {
        **os.environ,
        "CLASSROOM_ADMIN_KEY": ADMIN_KEY,
        "CLASSROOM_DATA_DIR": str(tmp_path / "data"),
        "CLASSROOM_HOST": SERVER_IP,
        "CLASSROOM_PORT": str(http_port),
        "CLASSROOM_ICE_HOST_ADDRESSES": SERVER_IP,
        "CLASSROOM_ICE_TCP_PORT": str(ice_tcp_port),
    }
    for name in ("CLASSROOM_TURN_URLS", "CLASSROOM_TURN_SECRET", "CLASSROOM_STUN_URLS"):
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
        yield base, ice_tcp_port
    finally:
        stop_group(server)
        log.close()


SELECTED_PAIR = """async () => {
  const stats = await window.__classroom.pc.getStats();
  const byId = new Map([...stats.values()].map((s) => [s.id, s]));
  const transport = [...stats.values()].find((s) => s.type === "transport");
  const pair = transport && byId.get(transport.selectedCandidatePairId);
  if (!pair) return null;
  const local = byId.get(pair.localCandidateId);
  const remote = byId.get(pair.remoteCandidateId);
  return {
    local: local.protocol, remote: remote.protocol,
    remote_type: remote.candidateType, remote_port: remote.port,
  };
}"""


async def test_a_classroom_without_udp_plays_the_lesson_over_ice_tcp(
    server_with_ice_tcp: tuple[str, int], chromium_without_udp: Any
) -> None:
    base, ice_tcp_port = server_with_ice_tcp
    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        r = await http.post(
            "/api/lessons",
            json={"title": "ICE-TCP", "classrooms": ["Village A"]},
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
                assert time.monotonic() < deadline, "no camera frames over ICE-TCP"
                await asyncio.sleep(0.5)
                stats = await page.evaluate(
                    "() => window.__classroom && window.__classroom.inboundStats()"
                )
                frames = int(((stats or {}).get("teacher_camera") or {}).get("framesDecoded") or 0)
            pair = await page.evaluate(SELECTED_PAIR)
            assert pair == {
                "local": "tcp",
                "remote": "tcp",
                "remote_type": "host",
                "remote_port": ice_tcp_port,
            }
        finally:
            await whip.stop()
