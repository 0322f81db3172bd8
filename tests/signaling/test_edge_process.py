"""A real origin (`classroom serve`) and a real county edge (`classroom edge`), each its
own process on 127.0.0.1: a classroom of the edge's school gets the teacher's camera
from the edge, while its hand still goes through the origin; its own camera goes up
to the origin, to its tile in the teacher's mosaic and to the stage when it has the
floor.

Both processes are started and stopped by this test, by their PIDs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from classroom.roles import Role
from media.pipeline.mosaic import Tiles
from media.slots import Slot
from media.synthetic import MovingPicture, SyntheticParticipant
from signaling import keys
from signaling.edge.protocol import CLOSE_BAD_TOKEN, PATH
from signaling.lessons import TEACHER_ID
from signaling.settings import Settings
from signaling.tokens import TokenIssuer

from .test_process import ADMIN_KEY, Client, Server, _free_port

pytestmark = [pytest.mark.timeout(150), pytest.mark.e2e]
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
EDGE = "county-a"


class Process:
    """A process started here, its output in a file, stopped by its PID."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the object
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        return self.output()


def udp_ports(pid: int) -> set[int]:
    """The UDP ports a process has sockets bound to (its fds' inodes in /proc/net/udp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def candidate_ports(sdp: str) -> set[int]:
    return {int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate")}


async def post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> Any:
    r = await http.post(path, json=body, headers=ADMIN)
    assert r.status_code in (200, 201), r.text
    return r.json()


async def a_district(http: httpx.AsyncClient) -> dict[str, Any]:
    """An urban school and two rural ones, the far one with two rooms; a lesson for the
    three rooms that starts in five minutes (the server's time zone is UTC)."""
    urban = await post(http, "/api/schools", {"name": "Town", "kind": "urban"})
    far = await post(http, "/api/schools", {"name": "Hill", "kind": "rural"})
    near = await post(http, "/api/schools", {"name": "River", "kind": "rural"})
    teacher = await post(http, f"/api/schools/{urban['id']}/teachers", {"name": "Li"})
    far_room = await post(http, f"/api/schools/{far['id']}/rooms", {"name": "Grade 5"})
    near_room = await post(http, f"/api/schools/{near['id']}/rooms", {"name": "Grade 5"})
    far_room2 = await post(http, f"/api/schools/{far['id']}/rooms", {"name": "Grade 6"})
    for room in (far_room, near_room, far_room2):
        await post(http, f"/api/schools/{urban['id']}/pairings", {"room_id": room["id"]})
    starts = datetime.now(UTC).replace(tzinfo=None, microsecond=0) + timedelta(minutes=5)
    entry = await post(
        http,
        "/api/timetable",
        {
            "title": "Maths",
            "teacher_id": teacher["id"],
            "room_ids": [far_room["id"], near_room["id"], far_room2["id"]],
            "starts_at": starts.isoformat(),
            "duration_min": 45,
        },
    )
    return {"far": far, "far_room": far_room, "near_room": near_room, "far_room2": far_room2,
            "entry": entry, "on": starts.date().isoformat()}  # fmt: skip


async def join_ws(ws_url: str, token: str, stack: AsyncExitStack) -> Client:
    ws = await stack.enter_async_context(connect(ws_url, open_timeout=5, close_timeout=5))
    client = Client(ws)
    await client.send({"type": "join", "protocol": 1, "token": token})
    assert (await client.recv())["type"] == "welcome"
    return client


async def media_of(client: Client, participant: SyntheticParticipant) -> str:
    await client.send({"type": "offer", "sdp": await participant.offer(), "ref": "o1"})
    answer = await client.until("answer")
    sdp = str(answer["sdp"])
    await participant.accept(sdp)
    return sdp


async def until(client: Client, kind: str) -> dict[str, Any]:
    """The next message or event of this kind: a teacher gets a link report of each
    classroom every second, more than `Client.until` skips."""
    for _ in range(200):
        msg = await client.recv()
        if msg["type"] == kind or msg.get("event", {}).get("kind") == kind:
            return msg
    raise AssertionError(f"no {kind}")


async def mosaic_tiles(teacher_ws: Client, teacher_id: str, wanted: str) -> Tiles:
    """The teacher's mosaic layout, once `wanted` has a tile in it (the teacher's own
    link reports say who is in which tile)."""
    for _ in range(200):
        msg = await teacher_ws.recv()
        previews = msg.get("previews") or []
        if msg["type"] == "link" and msg["participant_id"] == teacher_id and wanted in previews:
            tiles = Tiles()
            tiles.positions = list(previews)
            assert tiles.columns == msg["preview_columns"]
            return tiles
    raise AssertionError(f"{wanted} has no tile in the teacher's mosaic")


def tile_shows_a_picture(mosaic: Any, tiles: Tiles, participant_id: str) -> bool:
    """Whether the tile shows a camera: the synthetic one is a gradient, an empty
    tile is one flat grey."""
    x, y, width, height = tiles.box(tiles.positions.index(participant_id))
    luma = mosaic.to_ndarray(format="gray")[y : y + height, x : x + width]
    return float(luma.std()) > 20.0


async def test_a_classroom_of_an_edge_school_plays_the_lesson_from_the_edge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "origin"
    # The lesson starts in five minutes of UTC, for every process started here.
    monkeypatch.setenv("CLASSROOM_TIME_ZONE", "UTC")
    env = dict(os.environ, CLASSROOM_ICE_HOST_ADDRESSES="127.0.0.1")
    first = Server(data)
    try:
        await first.ready()
        async with httpx.AsyncClient(base_url=first.url, timeout=10) as http:
            w = await a_district(http)
    finally:
        first.stop()

    # The admin routes the far school to the edge and makes the edge's token.
    made = subprocess.run(
        [sys.executable, "-m", "signaling", "edge-token", EDGE, "--data-dir", str(data)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    token = made.stdout.strip().splitlines()[-1]
    port = _free_port()
    origin = Process(
        [sys.executable, "-m", "signaling", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--data-dir", str(data)],
        env | {"CLASSROOM_ADMIN_KEY": ADMIN_KEY,
               "CLASSROOM_EDGE_SCHOOLS": f"{w['far']['id']}={EDGE}"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    edge = Process(
        [sys.executable, "-m", "signaling", "edge", "--origin", url, "--token", token], env
    )
    peers: list[SyntheticParticipant] = []
    try:
        for _ in range(300):
            if f"edge {EDGE} linked" in origin.output():
                break
            assert origin.proc.poll() is None, origin.output()[-2000:]
            assert edge.proc.poll() is None, edge.output()[-2000:]
            await asyncio.sleep(0.1)
        assert f"edge {EDGE} linked" in origin.output(), (origin.output(), edge.output())

        async with httpx.AsyncClient(base_url=url, timeout=10) as http, AsyncExitStack() as stack:
            start = f"/api/timetable/{w['entry']['id']}/occurrences/{w['on']}/start"
            started = await post(http, start, {})
            ws_url = url.replace("http", "ws") + "/ws"
            teacher_ws = await join_ws(ws_url, started["teacher"]["token"], stack)

            async def room_token(room: dict[str, Any]) -> str:
                r = await http.get(
                    "/api/device/next",
                    headers={"Authorization": f"Bearer {room['device']['credential']}"},
                )
                return str(r.json()["lesson"]["token"])

            far_ws = await join_ws(ws_url, await room_token(w["far_room"]), stack)
            near_ws = await join_ws(ws_url, await room_token(w["near_room"]), stack)
            far2_ws = await join_ws(ws_url, await room_token(w["far_room2"]), stack)

            teacher = SyntheticParticipant(Role.TEACHER)
            peers.append(teacher)
            teacher_answer = await media_of(teacher_ws, teacher)
            rooms = []
            for _ in range(3):
                room = SyntheticParticipant(
                    Role.CLASSROOM, send_video=lambda: MovingPicture(320, 180, 15)
                )
                peers.append(room)
                rooms.append(room)
            far_answer = await media_of(far_ws, rooms[0])
            near_answer = await media_of(near_ws, rooms[1])
            far2_answer = await media_of(far2_ws, rooms[2])

            # Both classrooms play the teacher's camera and hear the tone.
            for room in rooms:
                video = await room.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=30)
                assert video.sizes  # decoded pictures
                audio = await room.wait_frames(Slot.TEACHER_AUDIO, 20, timeout=30)
                assert audio.nonsilent_frames >= 10

            # The far school's media is answered by the edge's process, the other's and
            # the teacher's by the origin's.
            edge_ports, origin_ports = udp_ports(edge.proc.pid), udp_ports(origin.proc.pid)
            assert candidate_ports(far_answer) <= edge_ports
            assert candidate_ports(far2_answer) <= edge_ports
            assert not candidate_ports(far_answer) & origin_ports
            assert candidate_ports(near_answer) <= origin_ports
            assert candidate_ports(teacher_answer) <= origin_ports
            assert "edge pulls lesson" in edge.output()

            # Hands and events go through the origin, from either classroom.
            await far_ws.send({"type": "raise_hand", "student": "Zhao Lei"})
            hand = await until(teacher_ws, "hand_raised")
            assert hand["event"]["student"] == "Zhao Lei"
            # The far classroom's link, measured by the edge, reaches the teacher.
            far_id = started["classrooms"][0]["participant_id"]
            for _ in range(40):
                msg = await teacher_ws.recv()
                if msg["type"] == "link" and msg["participant_id"] == far_id:
                    assert msg["layers"]["teacher_camera"] != "off"
                    break
            else:
                raise AssertionError("no link report of the edge's classroom")

            # The far classroom's camera went up to the origin: it has a tile in the
            # teacher's mosaic, with its picture in it (not the empty tile's grey).
            teacher_id = TEACHER_ID
            tiles = await mosaic_tiles(teacher_ws, teacher_id, far_id)
            assert "edge sends" in edge.output()
            await teacher.wait_frames(Slot.CLASSROOMS, 5, timeout=30)
            for _ in range(100):
                picture = teacher.received[Slot.CLASSROOMS].last
                assert picture is not None
                if tile_shows_a_picture(picture, tiles, far_id):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the edge classroom's tile shows no picture")

            # The teacher gives it the floor: its camera and sound reach the teacher, the
            # origin's classroom and the edge's other classroom (back down the edge's
            # pull), not itself.
            await teacher_ws.send({"type": "grant_floor", "classroom_id": far_id})
            await until(teacher_ws, "floor_granted")
            for peer in (teacher, rooms[1], rooms[2]):
                video = await peer.wait_frames(Slot.STAGE_VIDEO, 10, timeout=30)
                assert video.sizes  # decoded pictures, of whichever layer its link takes
                audio = peer.received[Slot.STAGE_AUDIO]
                for _ in range(300):
                    if audio.nonsilent_frames >= 10:
                        break
                    await asyncio.sleep(0.1)
                assert audio.nonsilent_frames >= 10, audio
            assert rooms[0].received[Slot.STAGE_VIDEO].frames == 0
            # The teacher's link takes the top layer: the picture as the classroom sent it.
            assert (320, 180) in teacher.received[Slot.STAGE_VIDEO].sizes

            # Revoked: the stage goes quiet for everyone (frames already on their way
            # are let through first).
            await teacher_ws.send({"type": "revoke_floor"})
            await until(teacher_ws, "floor_revoked")
            await asyncio.sleep(1.5)
            watched = [(p, slot) for p in (teacher, rooms[1], rooms[2])
                       for slot in (Slot.STAGE_VIDEO, Slot.STAGE_AUDIO)]  # fmt: skip
            before = [p.received[slot].frames for p, slot in watched]
            await asyncio.sleep(2.0)
            assert [p.received[slot].frames for p, slot in watched] == before

        for peer in peers:
            await peer.close()
        peers.clear()
    finally:
        for peer in peers:
            await peer.close()
        edge_log = edge.stop()
        origin_log = origin.stop()
    assert "Traceback" not in edge_log, edge_log
    assert "Traceback" not in origin_log, origin_log


async def test_a_forged_expired_or_revoked_edge_token_is_refused(tmp_path: Path) -> None:
    port = _free_port()
    data = tmp_path / "origin"
    proc = Process(
        [sys.executable, "-m", "signaling", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--data-dir", str(data)],
        dict(os.environ, CLASSROOM_ADMIN_KEY=ADMIN_KEY, CLASSROOM_EDGE_SCHOOLS="s1=county-a"),
    )  # fmt: skip
    link = f"ws://127.0.0.1:{port}{PATH}"
    try:
        async with httpx.AsyncClient(timeout=1.0) as http:
            for _ in range(150):
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        secret = keys.token_secret(Settings(data_dir=data))
        expired, _ = TokenIssuer(secret, 60, lambda: time.time() - 10_000).issue_edge("a", 60)
        forged, _ = TokenIssuer("x" * 32, 60, time.time).issue_edge("county-a", 3600)
        participant = TokenIssuer(secret, 3600, time.time).issue("lesson", "room", Role.CLASSROOM)
        good, _ = TokenIssuer(secret, 60, time.time).issue_edge("county-a", 3600)
        for token, reason in (
            (forged, "not valid"),
            (expired, "expired"),
            (participant, "not valid"),
        ):
            async with connect(link, open_timeout=5) as ws:
                await ws.send(json.dumps({"type": "hello", "version": 1, "token": token}))
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == CLOSE_BAD_TOKEN
            assert reason in closed.value.rcvd.reason
        async with connect(link, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "hello", "version": 1, "token": good}))
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert welcome == {"type": "welcome", "edge": "county-a"}

            # The admin revokes the edge's tokens: its open link is closed, with why.
            subprocess.run(
                [sys.executable, "-m", "signaling", "edge-token", "county-a", "--revoke",
                 "--data-dir", str(data)],
                capture_output=True, text=True, check=True, timeout=30,
            )  # fmt: skip
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 20)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == CLOSE_BAD_TOKEN
            assert "revoked" in closed.value.rcvd.reason
        # That token is refused from now on; a token made after the revocation is good.
        async with connect(link, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "hello", "version": 1, "token": good}))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None
            assert "revoked" in closed.value.rcvd.reason
        made = subprocess.run(
            [sys.executable, "-m", "signaling", "edge-token", "county-a", "--data-dir", str(data)],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        fresh = made.stdout.strip().splitlines()[-1]
        async with connect(link, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "hello", "version": 1, "token": fresh}))
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert welcome == {"type": "welcome", "edge": "county-a"}
    finally:
        output = proc.stop()
    assert "Traceback" not in output, output
