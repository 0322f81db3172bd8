"""A classroom behind a school's firewall: the parts the firewall tests share.

Chromium runs in a network namespace of its own, joined to the server's by a veth
pair, where nftables drops what the test's firewall drops. The server runs outside,
with the ICE settings under test; the teacher publishes by WHIP; the page must decode
the teacher's camera, and `selected_pair` says over what. Each test module names its
own namespace, links and /30 (`Net`), so that parallel runs do not meet.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from media.synthetic import MovingPicture, Tone
from tests.e2e.conftest import ADMIN_KEY, CHROMIUM, CHROMIUM_ARGS, REPO, stop_group
from tests.signaling.whip_client import Client


def marks(*tools: str) -> list[pytest.MarkDecorator]:
    """A firewall test's marks: e2e, netns, 90 s at most, and skipped without root,
    iproute2, nftables, Debian's Chromium and the other `tools` it runs."""
    needs = ["ip", "nft", *tools]
    return [
        pytest.mark.e2e,
        pytest.mark.netns,
        pytest.mark.timeout(90),
        pytest.mark.skipif(
            os.geteuid() != 0
            or any(shutil.which(tool) is None for tool in needs)
            or not Path(CHROMIUM).exists(),
            reason=f"needs root, {', '.join(needs)} and Debian's chromium",
        ),
    ]


# What a server may inherit from the environment that would change the path under test.
ICE_SETTINGS = (
    "CLASSROOM_TURN_URLS",
    "CLASSROOM_TURN_SECRET",
    "CLASSROOM_STUN_URLS",
    "CLASSROOM_ICE_TCP_PORT",
    "CLASSROOM_ICE_UDP_PORT",
)


@dataclass(frozen=True)
class Net:
    """A namespace and the /30 joining it to the server: `subnet_base` picks the second
    octet's range (each module its own), the process id the rest."""

    name: str
    subnet_base: int

    @property
    def tag(self) -> int:
        return os.getpid() % 10_000

    @property
    def subnet(self) -> str:
        return f"10.{self.subnet_base + self.tag % 50}.{self.tag % 250}"

    @property
    def server_ip(self) -> str:
        return f"{self.subnet}.1"

    @property
    def room_ip(self) -> str:
        return f"{self.subnet}.2"

    @property
    def namespace(self) -> str:
        return f"{self.name}{self.tag}"

    @property
    def links(self) -> tuple[str, str]:
        return f"v{self.name[:2]}{self.tag}a", f"v{self.name[:2]}{self.tag}b"


def sh(*args: str, stdin: str | None = None) -> None:
    subprocess.run(args, check=True, input=stdin, text=True, capture_output=True, timeout=10)


def free_port(host: str, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def namespace(net: Net, ruleset: str) -> Iterator[str]:
    """The namespace, its veth link to the server's side, and the firewall's rules."""
    outside, inside_link = net.links
    sh("ip", "netns", "add", net.namespace)
    try:
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside_link)
        sh("ip", "link", "set", inside_link, "netns", net.namespace)
        sh("ip", "addr", "add", f"{net.server_ip}/30", "dev", outside)
        sh("ip", "link", "set", outside, "up")
        inside = ("ip", "netns", "exec", net.namespace)
        sh(*inside, "ip", "addr", "add", f"{net.room_ip}/30", "dev", inside_link)
        sh(*inside, "ip", "link", "set", inside_link, "up")
        sh(*inside, "ip", "link", "set", "lo", "up")
        sh(*inside, "nft", "-f", "-", stdin=ruleset)
        yield net.namespace
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", net.namespace], capture_output=True, timeout=10)


@contextmanager
def server(net: Net, settings: Mapping[str, str], tmp_path: Path) -> Iterator[str]:
    """The server on the namespace's far side, with `settings` for ICE; its base URL."""
    http_port = free_port(net.server_ip)
    env = {k: v for k, v in os.environ.items() if k not in ICE_SETTINGS}
    env.update(
        CLASSROOM_ADMIN_KEY=ADMIN_KEY,
        CLASSROOM_DATA_DIR=str(tmp_path / "data"),
        CLASSROOM_HOST=net.server_ip,
        CLASSROOM_PORT=str(http_port),
        CLASSROOM_ICE_HOST_ADDRESSES=net.server_ip,
        **settings,
    )
    log_path = tmp_path / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "signaling", "serve"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        base = f"http://{net.server_ip}:{http_port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log_path.read_text()[-3000:])
                time.sleep(0.2)
            yield base
        finally:
            stop_group(proc)


@asynccontextmanager
async def chromium_in(namespace_name: str, tmp_path: Path) -> AsyncIterator[Any]:
    """A Chromium whose every packet goes through the namespace (and its firewall)."""
    from playwright.async_api import async_playwright

    wrapper = tmp_path / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace_name} {CHROMIUM} "$@"\n')
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


@asynccontextmanager
async def lesson_playing(base: str, net: Net, browser: Any, through: str) -> AsyncIterator[Any]:
    """A lesson whose teacher publishes by WHIP, and a classroom page in `browser` that
    has decoded ten frames of the teacher's camera (within 40 s, or fails `through`)."""
    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        r = await http.post(
            "/api/lessons",
            json={"title": through, "classrooms": ["Village A"]},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert r.status_code == 201, r.text
        lesson = r.json()
        whip = Client(http, f"/whip/{lesson['id']}", lesson["teacher"]["token"], (net.server_ip,))
        try:
            await whip.publish(MovingPicture(320, 180, 15), Tone())
            page = await browser.new_page()
            await page.goto(base + "/classroom#token=" + lesson["classrooms"][0]["token"])
            frames = 0
            deadline = time.monotonic() + 40
            while frames < 10:
                assert time.monotonic() < deadline, f"no camera frames through {through}"
                await asyncio.sleep(0.5)
                stats = await page.evaluate(
                    "() => window.__classroom && window.__classroom.inboundStats()"
                )
                frames = int(((stats or {}).get("teacher_camera") or {}).get("framesDecoded") or 0)
            yield page
        finally:
            await whip.stop()


_SELECTED_PAIR = """async () => {
  const stats = await window.__classroom.pc.getStats();
  const byId = new Map([...stats.values()].map((s) => [s.id, s]));
  const transport = [...stats.values()].find((s) => s.type === "transport");
  const pair = transport && byId.get(transport.selectedCandidatePairId);
  if (!pair) return null;
  const side = (c) => ({protocol: c.protocol, type: c.candidateType, port: c.port,
                        relayProtocol: c.relayProtocol || null});
  const offered = [...stats.values()]
    .filter((s) => s.type === "remote-candidate" && s.candidateType === "host")
    .map((s) => [s.protocol, s.port]);
  return {local: side(byId.get(pair.localCandidateId)),
          remote: side(byId.get(pair.remoteCandidateId)), offered};
}"""


async def selected_pair(page: Any) -> dict[str, Any]:
    """The page's selected candidate pair as its getStats() tells it: each side's
    protocol, type, port and relay protocol, and the host candidates it was offered."""
    pair: dict[str, Any] | None = await page.evaluate(_SELECTED_PAIR)
    assert pair is not None, "no selected candidate pair"
    return pair
