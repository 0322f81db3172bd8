"""The real `classroom serve` process, driven over real HTTP and WebSockets.

It builds the real media relay (nothing here sends an offer, so no media flows).
Started and stopped by this test, by its PID.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

pytestmark = [pytest.mark.timeout(60), pytest.mark.e2e]
ADMIN_KEY = "process-test-admin-key-0123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`args`, `env`: more options for `classroom serve` (--workers 2, CLASSROOM_...)."""

    def __init__(
        self, data_dir: Path, args: Sequence[str] = (), env: Mapping[str, str] | None = None
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(
            os.environ,
            CLASSROOM_ADMIN_KEY=ADMIN_KEY,
            CLASSROOM_ICE_HOST_ADDRESSES="127.0.0.1",
            **(env or {}),
        )
        # `python -m signaling` is the `classroom` console script without needing it installed.
        cmd = [sys.executable, "-m", "signaling", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--data-dir", str(data_dir), *args]  # fmt: skip
        # Its output goes to a file: a pipe nobody reads until the end fills up in a
        # long run, and the server then blocks on its next log line.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the object
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    async def ready(self) -> None:
        async with httpx.AsyncClient(timeout=1.0) as http:
            for _ in range(150):
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited: {self.output()[-2000:]}")
                try:
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("server did not start")

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        return self.output()


class Client:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    async def recv(self) -> dict[str, Any]:
        return dict(json.loads(await asyncio.wait_for(self.ws.recv(), 5)))

    async def until(self, kind: str) -> dict[str, Any]:
        """Skip to the next event of this kind (or error/welcome of this type)."""
        for _ in range(20):
            msg = await self.recv()
            if msg["type"] == kind or msg.get("event", {}).get("kind") == kind:
                return msg
        raise AssertionError(f"no {kind}")


async def _join(ws_url: str, token: str, stack: Any) -> Client:
    ws = await stack.enter_async_context(connect(ws_url, open_timeout=5, close_timeout=5))
    client = Client(ws)
    await client.send({"type": "join", "protocol": 1, "token": token})
    assert (await client.recv())["type"] == "welcome"
    return client


async def test_classroom_serve(tmp_path: Path) -> None:
    from contextlib import AsyncExitStack

    data = tmp_path / "data"
    server = Server(data)
    try:
        await server.ready()
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            r = await http.post(
                "/api/lessons", json={"title": "Physics", "classrooms": ["A", "B"]}, headers=admin
            )
            assert r.status_code == 201
            lesson = r.json()
            lid = lesson["id"]
            a, b = lesson["classrooms"]
            assert lesson["teacher"]["url"].startswith(f"{server.url}/teacher#token=")
            joined_b = (await http.post("/api/join", json={"code": b["code"]})).json()
            ws_url = server.url.replace("http", "ws") + "/ws"
            async with AsyncExitStack() as stack:
                teacher = await _join(ws_url, lesson["teacher"]["token"], stack)
                va = await _join(ws_url, a["token"], stack)
                vb = await _join(ws_url, joined_b["token"], stack)
                await va.send({"type": "raise_hand", "student": "Zhao Lei"})
                hand = await teacher.until("hand_raised")
                assert hand["event"]["student"] == "Zhao Lei"
                await vb.send({"type": "grant_floor", "classroom_id": b["id"]})
                refused = await vb.until("error")
                assert refused["code"] == "not_allowed"
                await teacher.send({"type": "grant_floor", "classroom_id": a["id"]})
                assert (await va.until("floor_granted"))["event"]["student"] == "Zhao Lei"
                await teacher.send({"type": "revoke_floor"})
                await vb.until("floor_revoked")
                await vb.send({"type": "raise_hand", "student": "Sun Li"})
                await teacher.until("hand_raised")
                await teacher.send({"type": "grant_floor", "classroom_id": b["id"]})
                await teacher.until("floor_granted")
                before = (await http.get(f"/api/lessons/{lid}", headers=admin)).json()
                assert before["stage"]["classroom_id"] == b["id"]
                metrics = (await http.get("/metrics")).text
                assert "classroom_ws_connections 3.0" in metrics
                # Stop the server while everyone is connected.
                output = server.stop()
                # uvicorn re-raises the SIGTERM it handled, after a clean shutdown.
                assert server.proc.returncode in (0, -signal.SIGTERM), output
                assert "Application shutdown complete" in output, output
                assert "Traceback" not in output, output
    finally:
        server.stop()

    server = Server(data)
    try:
        await server.ready()
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            after = (await http.get(f"/api/lessons/{lid}", headers=admin)).json()
        for p in before["participants"]:
            p["online"] = False
        assert after == before
    finally:
        server.stop()
