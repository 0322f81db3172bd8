"""Two `classroom serve` nodes sharing lessons through a real `redis-server`.

Redis (on a free loopback port, nothing saved) and both server processes are started
here and stopped by their PIDs. Both nodes share one data dir, so one SQLite file:
the lesson's record. A lesson lives on node A, where it was created; participants
connect to either node.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from classroom.roles import Role
from media.slots import Slot
from media.synthetic import MovingPicture, SyntheticParticipant
from scripts.redis_server import RedisServer
from tests.signaling.test_process import ADMIN_KEY, Client, _free_port

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]
REPO = Path(__file__).resolve().parents[2]
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
# A node's liveness, shorter than the default 2 s and 0.5 s: a killed node's lessons move
# sooner, and the tests wait less; still three beats a TTL on a busy machine.
NODE_TTL_S = 1.2
NODE_BEAT_S = 0.3


class Node:
    """A `python -m signaling serve` process of this checkout, one of the cluster."""

    def __init__(self, data_dir: Path, redis_url: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        env = dict(
            os.environ,
            CLASSROOM_ADMIN_KEY=ADMIN_KEY,
            CLASSROOM_ICE_HOST_ADDRESSES="127.0.0.1",
            CLASSROOM_REDIS_URL=redis_url,
            CLASSROOM_NODE_TTL_S=str(NODE_TTL_S),
            CLASSROOM_NODE_BEAT_S=str(NODE_BEAT_S),
        )
        cmd = [sys.executable, "-m", "signaling", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--data-dir", str(data_dir)]  # fmt: skip
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the object
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"node exited: {self.output()[-3000:]}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            assert time.monotonic() < deadline, "node did not start"
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.output()


@pytest.fixture(scope="module")
def nodes() -> Iterator[tuple[Node, Node]]:
    redis = RedisServer()
    data = Path(tempfile.mkdtemp(prefix="cluster-"))
    a = b = None
    try:
        a = Node(data, redis.url)
        a.ready()  # first: it makes the database and the keys the other one reads
        b = Node(data, redis.url)
        b.ready()
        yield a, b
        for node in (a, b):
            output = node.stop()
            assert "Traceback" not in output, output
    finally:
        for node in (a, b):
            if node is not None:
                node.kill()
        redis.stop()
        shutil.rmtree(data, ignore_errors=True)


async def _lesson(node: Node, classrooms: list[str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=node.url, timeout=5) as http:
        body = {"title": "Physics", "classrooms": classrooms}
        r = await http.post("/api/lessons", json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
        return dict(r.json())


@contextlib.asynccontextmanager
async def joined(
    node: Node, token: str, since: int | None = None
) -> AsyncIterator[tuple[Client, dict[str, Any]]]:
    async with connect(node.ws_url, open_timeout=5, close_timeout=2) as ws:
        client = Client(ws)
        msg: dict[str, Any] = {"type": "join", "protocol": 1, "token": token}
        if since is not None:
            msg["since"] = since
        await client.send(msg)
        welcome = await client.recv()
        assert welcome["type"] == "welcome", welcome
        yield client, welcome


async def _snapshot(node: Node, lesson_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=node.url, timeout=5) as http:
        r = await http.get(f"/api/lessons/{lesson_id}", headers=ADMIN)
        assert r.status_code == 200, r.text
        return dict(r.json())


async def test_a_teacher_on_one_node_and_classrooms_on_the_other_see_each_other(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    lesson = await _lesson(a, ["Village A", "Village B"])
    lid, room, other = lesson["id"], lesson["classrooms"][0], lesson["classrooms"][1]
    # The code of a lesson made on A a moment ago works on B.
    async with httpx.AsyncClient(base_url=b.url, timeout=5) as http:
        r = await http.post("/api/join", json={"code": room["code"]})
        assert r.status_code == 200, r.text
        assert r.json()["participant_id"] == room["id"]
    async with (
        joined(a, lesson["teacher"]["token"]) as (teacher, _),
        joined(b, room["token"]) as (village, welcome),
    ):
        assert welcome["lesson"]["id"] == lid and welcome["you"]["name"] == "Village A"
        await _until(teacher, "participant_joined", participant_id=room["id"])
        # Presence: the lesson as either node reads it has the classroom online.
        for node in (a, b):
            online = {p["id"] for p in (await _snapshot(node, lid))["participants"] if p["online"]}
            assert online == {"teacher", room["id"]}

        await village.send({"type": "raise_hand", "student": "Zhao Lei"})
        hand = await teacher.until("hand_raised")
        assert hand["event"]["student"] == "Zhao Lei"
        await village.until("hand_raised")  # its own event comes back to it, from A
        await teacher.send({"type": "grant_floor", "classroom_id": room["id"]})
        granted = await village.until("floor_granted")
        assert granted["event"]["classroom_id"] == room["id"]
        await village.send({"type": "chat", "text": "谢谢老师"})
        await _until(teacher, "chat_posted", text="谢谢老师")
        await teacher.send({"type": "chat", "text": "Welcome, village A"})
        await _until(village, "chat_posted", text="Welcome, village A")
        # A refusal by the lesson's node reaches the participant on the other one.
        await village.send({"type": "grant_floor", "classroom_id": other["id"], "ref": "g"})
        refused = await village.until("error")
        assert (refused["code"], refused["ref"]) == ("not_allowed", "g")
        stage = (await _snapshot(b, lid))["stage"]
        assert stage is not None and stage["classroom_id"] == room["id"]

        # A new connection of the classroom, on A, replaces the one on B.
        async with joined(a, room["token"]):
            replaced = await village.until("error")
            assert replaced["code"] == "replaced"

        # The lesson ended through B: the teacher on A is told, and its socket closed.
        async with httpx.AsyncClient(base_url=b.url, timeout=5) as http:
            r = await http.post(f"/api/lessons/{lid}/end", headers=ADMIN)
            assert r.status_code == 200, r.text
        await teacher.until("lesson_ended")


async def test_a_rejoin_with_since_on_the_other_node_gets_what_it_missed(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    lesson = await _lesson(a, ["Village A"])
    room = lesson["classrooms"][0]
    async with joined(a, lesson["teacher"]["token"]) as (teacher, _):
        async with joined(a, room["token"]) as (village, _):
            await village.send({"type": "raise_hand", "student": "Sun Li"})
            seen = (await village.until("hand_raised"))["event"]["seq"]
        await teacher.until("participant_left")
        await teacher.send({"type": "chat", "text": "page 12, everyone"})
        await teacher.until("chat_posted")
        # Back on B, where nothing of this lesson was served yet: the missed events come
        # from the lesson's stream, then the snapshot's later events from its channel.
        async with joined(b, room["token"], since=seen) as (village, welcome):
            kinds = [m["event"]["kind"] for m in [await village.recv() for _ in range(2)]]
            assert kinds == ["participant_left", "chat_posted"]
            assert welcome["missed_from"] is None
            assert welcome["lesson"]["seq"] == seen + 2
            rejoined = await village.until("participant_joined")
            assert rejoined["event"]["seq"] == seen + 3
            await teacher.until("participant_joined")
        # Its connection on B closed: the lesson's node records that it left.
        await _until(teacher, "participant_left", participant_id=room["id"])


async def test_a_classroom_on_the_other_node_receives_the_teachers_camera(
    nodes: tuple[Node, Node],
) -> None:
    """Its offer, sent to B, is answered by A's relay; its frames come from A."""
    a, b = nodes
    lesson = await _lesson(a, ["Village A"])
    teacher_peer = SyntheticParticipant(Role.TEACHER, send_video=lambda: MovingPicture(160, 96, 10))
    room_peer = SyntheticParticipant(Role.CLASSROOM, send_video=lambda: MovingPicture(64, 64, 5))
    try:
        async with (
            joined(a, lesson["teacher"]["token"]) as (teacher, _),
            joined(b, lesson["classrooms"][0]["token"]) as (village, _),
        ):
            await teacher.send({"type": "offer", "sdp": await teacher_peer.offer(), "ref": "t"})
            await teacher_peer.accept((await teacher.until("answer"))["sdp"])
            await village.send({"type": "offer", "sdp": await room_peer.offer(), "ref": "v"})
            answer = await village.until("answer")
            assert answer["ref"] == "v"
            await room_peer.accept(answer["sdp"])
            video = await room_peer.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=20)
            assert video.sizes == {(160, 96)}
            # A's relay knows the classroom: the teacher on A is sent its link reports.
            report = await _next_link(teacher, lesson["classrooms"][0]["id"])
            assert report["estimate_kbps"] > 0
    finally:
        await room_peer.close()
        await teacher_peer.close()


async def _until(client: Client, kind: str, **fields: Any) -> dict[str, Any]:
    """The next event of this kind with these fields (others are skipped)."""
    while True:
        event = (await client.until(kind))["event"]
        if all(event.get(k) == v for k, v in fields.items()):
            return dict(event)


async def _next_link(client: Client, participant_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            msg = dict(json.loads(await client.ws.recv()))
            if msg["type"] == "link" and msg["participant_id"] == participant_id:
                return msg


async def test_when_the_lessons_node_is_killed_the_other_node_takes_the_lesson_over(
    nodes: tuple[Node, Node],
) -> None:
    """B's participants stay connected: until B adopted the lesson (about a TTL,
    CLASSROOM_NODE_TTL_S) what they send is refused with
    `lesson_unavailable`, then B runs it; a new connection is welcomed by B.
    (The media and the recording: tests/signaling/test_failover.py.)"""
    a, b = nodes
    lesson = await _lesson(a, ["Village A"])
    async with joined(b, lesson["classrooms"][0]["token"]) as (village, _):
        a.kill()
        async with asyncio.timeout(20):
            for attempt in itertools.count():
                await village.send({"type": "lower_hand", "ref": f"h{attempt}"})
                answer = await village.until("error")  # events (B's rejoin) are skipped
                assert answer["ref"] == f"h{attempt}"
                if answer["code"] == "invalid_transition":
                    break  # run by B: there is no hand to lower
                assert answer["code"] == "lesson_unavailable", answer
                await asyncio.sleep(0.2)
        await village.send({"type": "raise_hand", "student": "Zhao Lei"})
        await _until(village, "hand_raised", student="Zhao Lei")
    async with joined(b, lesson["teacher"]["token"]) as (_, welcome):
        assert welcome["lesson"]["hands"][0]["student"] == "Zhao Lei"
