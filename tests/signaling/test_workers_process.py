"""The real `classroom serve --workers 2`: signaling in one process, the media in two
relay worker processes, aiortc teachers and classrooms on 127.0.0.1.

Two lessons land on different workers (each worker offers its own UDP port, the setting
plus its index, so an answer says which worker took it); each plays its teacher to its
classroom and records; a worker killed by its PID takes its lesson's media only, which
moves to the live worker (its pages told to offer again, its recording in a second
segment) and a new worker takes its slot (its port, a new PID, counted in /metrics);
the server, stopped or killed, leaves no worker behind. The server is started and stopped by
these tests, by its PID; the killed worker too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from classroom.roles import Role
from media.slots import Slot
from media.synthetic import SyntheticParticipant
from scripts.bench_failover import relay_workers
from tests.signaling.test_process import ADMIN_KEY, Server

pytestmark = [pytest.mark.timeout(150), pytest.mark.e2e]

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _two_free_udp_ports() -> int:
    """A port P with P + 1 free too (the two workers' shared UDP ports)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError("no two free UDP ports side by side")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def gone(pids: list[int], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


class Member:
    """A participant's WebSocket and its aiortc peer; every message is read and kept."""

    def __init__(self, ws: ClientConnection, role: Role) -> None:
        self.ws = ws
        self.peer = SyntheticParticipant(role)
        self.messages: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                self.messages.append(json.loads(raw))
                self._arrived.set()

    async def expect(self, test: Any, timeout: float = 20) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for msg in self.messages:
                    if test(msg):
                        self.messages.remove(msg)
                        return msg
                self._arrived.clear()
                await self._arrived.wait()

    async def offer(self) -> dict[str, Any]:
        """Send an offer; the answer (accepted) or the error that came instead."""
        await self.ws.send(json.dumps({"type": "offer", "sdp": await self.peer.offer()}))
        reply = await self.expect(lambda m: m["type"] in ("answer", "error"), timeout=40)
        if reply["type"] == "answer":
            await self.peer.accept(reply["sdp"])
        return reply

    async def close(self) -> None:
        self._reader.cancel()
        await self.peer.close()
        await self.ws.close()


async def join(stack: contextlib.AsyncExitStack, url: str, token: str, role: Role) -> Member:
    ws = await stack.enter_async_context(connect(url, open_timeout=5, close_timeout=2))
    await ws.send(json.dumps({"type": "join", "token": token}))
    member = Member(ws, role)
    stack.push_async_callback(member.close)
    await member.expect(lambda m: m["type"] == "welcome")
    return member


def udp_port(answer_sdp: str) -> int:
    ports = {
        int(p) for p in re.findall(r"a=candidate:\S+ 1 udp \d+ \S+ (\d+) typ host", answer_sdp)
    }
    assert len(ports) == 1, answer_sdp
    return ports.pop()


async def test_two_lessons_on_two_workers_and_one_worker_killed(tmp_path: Path) -> None:
    base = _two_free_udp_ports()
    data = tmp_path / "data"
    server = Server(data, ["--workers", "2"], {"CLASSROOM_ICE_UDP_PORT": str(base)})
    workers: dict[int, int] = {}
    try:
        await server.ready()
        workers = relay_workers(server.proc.pid)
        assert sorted(workers) == [0, 1], server.output()[-2000:]
        ws_url = server.url.replace("http", "ws") + "/ws"
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.url, timeout=10)
            )
            lessons, teachers, rooms, worker_of = [], [], [], []
            for title in ("物理", "化学"):
                body = {"title": title, "classrooms": ["A"]}
                lesson = (await http.post("/api/lessons", json=body, headers=ADMIN)).json()
                teacher = await join(stack, ws_url, lesson["teacher"]["token"], Role.TEACHER)
                answer = await teacher.offer()
                assert answer["type"] == "answer", answer
                room_token = lesson["classrooms"][0]["token"]
                room = await join(stack, ws_url, room_token, Role.CLASSROOM)
                room_answer = await room.offer()
                assert room_answer["type"] == "answer", room_answer
                # The lesson's classroom is answered by the same worker as its teacher.
                assert udp_port(room_answer["sdp"]) == udp_port(answer["sdp"])
                worker_of.append(udp_port(answer["sdp"]) - base)
                lessons.append(lesson)
                teachers.append(teacher)
                rooms.append(room)
            assert sorted(worker_of) == [0, 1]

            recordings = []
            for teacher in teachers:
                started = await teacher.expect(
                    lambda m: m.get("event", {}).get("kind") == "recording_started"
                )
                recordings.append(data / "recordings" / started["event"]["recording_id"])
            for room in rooms:
                await room.peer.wait_frames(Slot.TEACHER_CAMERA, 20, timeout=40)
                audio = await room.peer.wait_frames(Slot.TEACHER_AUDIO, 25, timeout=40)
                assert audio.nonsilent_frames >= 20
            for folder in recordings:
                assert (folder / "camera.webm").stat().st_size > 0

            # The first lesson's worker dies: the second lesson plays on, the server lives.
            killed = workers[worker_of[0]]
            os.kill(killed, signal.SIGKILL)
            assert await gone([killed], within_s=10)
            survivor = rooms[1].peer.received[Slot.TEACHER_CAMERA]
            await rooms[1].peer.wait_frames(Slot.TEACHER_CAMERA, survivor.frames + 30, 40)
            assert (await http.get("/healthz")).status_code == 200
            # The lost lesson moves to the live worker: its teacher and classroom are told
            # `media_moved` and offer again, as their pages do, and the picture is back.
            # (To the live worker, or to the new one in the dead one's slot if it is up
            # already: both are live; teacher and classroom go to the same one.)
            moved_to = set()
            for member, role in ((teachers[0], Role.TEACHER), (rooms[0], Role.CLASSROOM)):
                await member.expect(lambda m: m["type"] == "media_moved", timeout=20)
                await member.peer.close()
                member.peer = SyntheticParticipant(role)
                again = await member.offer()
                assert again["type"] == "answer", again
                moved_to.add(udp_port(again["sdp"]))
            assert len(moved_to) == 1 and moved_to <= {base, base + 1}
            await rooms[0].peer.wait_frames(Slot.TEACHER_CAMERA, 20, timeout=40)
            # Its lesson went on meanwhile: a hand goes up.
            await rooms[0].ws.send(json.dumps({"type": "raise_hand", "student": "王芳"}))
            await rooms[0].expect(lambda m: m.get("event", {}).get("kind") == "hand_raised")
            # Its recording: the dead worker's segment repaired, the next one on the live
            # worker (the repair remuxes in the background: a few seconds at most).
            lesson_recordings = f"/api/lessons/{lessons[0]['id']}/recordings"
            async with asyncio.timeout(20):
                while True:
                    listed = (await http.get(lesson_recordings, headers=ADMIN)).json()
                    states = sorted(r["state"] for r in listed["recordings"])
                    if states == ["interrupted", "recording"]:
                        break
                    await asyncio.sleep(0.5)
            # A new worker (a new PID) took the dead one's slot, and /metrics says so.
            async with asyncio.timeout(30):
                while len(relay_workers(server.proc.pid)) < 2 or "alive 2.0" not in (
                    metrics := (await http.get("/metrics")).text
                ):
                    await asyncio.sleep(0.2)
            restarted = relay_workers(server.proc.pid)
            assert restarted[worker_of[1]] == workers[worker_of[1]]
            assert restarted[worker_of[0]] != killed
            assert "classroom_relay_workers_alive 2.0" in metrics
            assert "classroom_relay_worker_restarts_total 1.0" in metrics
            assert "classroom_relay_workers_held_back 0.0" in metrics
            workers[2] = restarted[worker_of[0]]
            # A new lesson goes to the least loaded: the new worker, on the dead one's
            # port; or, if the moved lesson went to it, a tie (two peers each), to worker 0.
            expected = base + worker_of[0] if moved_to == {base + worker_of[1]} else base
            body = {"title": "生物", "classrooms": ["A"]}
            third = (await http.post("/api/lessons", json=body, headers=ADMIN)).json()
            teacher = await join(stack, ws_url, third["teacher"]["token"], Role.TEACHER)
            answer = await teacher.offer()
            assert answer["type"] == "answer", answer
            assert udp_port(answer["sdp"]) == expected
    finally:
        output = server.stop()
    # uvicorn ends a graceful stop by raising the signal it was stopped with again.
    assert server.proc.returncode in (0, -signal.SIGTERM), output[-3000:]
    assert "Finished server process" in output
    assert await gone(list(workers.values()), within_s=5), "a worker outlived the server"
    # The live worker finalized its recording as the server stopped.
    manifest = json.loads((recordings[1] / "manifest.json").read_text())
    assert manifest["state"] == "finished"
    assert "Traceback" not in output, output[-3000:]


async def test_a_killed_server_leaves_no_worker(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", ["--workers", "2"])
    try:
        await server.ready()
        workers = relay_workers(server.proc.pid)
        assert len(workers) == 2
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
        assert await gone(list(workers.values()), within_s=20), "workers outlived the server"
    finally:
        server.stop()
