"""The real `classroom serve --workers 2` with `CLASSROOM_WORKER_MAX_PEERS=2`: one lesson
spread over both relay workers (media.workers.follower), aiortc teacher and classrooms on
127.0.0.1. Each worker offers its own UDP port (the setting plus its index), so an
answer says which worker serves a page. The server is started and stopped by this test,
by its PID; the killed worker too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

import httpx
import pytest

from classroom.roles import Role
from media.slots import Slot
from media.synthetic import SyntheticParticipant
from scripts.bench_failover import relay_workers
from tests.signaling.test_process import ADMIN_KEY, Server
from tests.signaling.test_workers_process import _two_free_udp_ports, gone, join, udp_port

pytestmark = [pytest.mark.timeout(180), pytest.mark.e2e]

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def _more(peer: SyntheticParticipant, slot: Slot, count: int) -> int:
    """`count` more frames decoded on `slot`; how many of them were not silent."""
    reception = peer.received[slot]
    before = reception.nonsilent_frames
    await peer.wait_frames(slot, reception.frames + count, timeout=40)
    return reception.nonsilent_frames - before


async def test_a_lesson_spans_two_workers_and_its_follower_dies(tmp_path: Path) -> None:
    base = _two_free_udp_ports()
    env = {"CLASSROOM_ICE_UDP_PORT": str(base), "CLASSROOM_WORKER_MAX_PEERS": "2"}
    server = Server(tmp_path / "data", ["--workers", "2"], env)
    try:
        await server.ready()
        workers = relay_workers(server.proc.pid)
        assert sorted(workers) == [0, 1], server.output()[-2000:]
        ws_url = server.url.replace("http", "ws") + "/ws"
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.url, timeout=10)
            )
            body = {"title": "物理", "classrooms": ["A", "B", "C"]}
            lesson = (await http.post("/api/lessons", json=body, headers=ADMIN)).json()
            teacher = await join(stack, ws_url, lesson["teacher"]["token"], Role.TEACHER)
            answer = await teacher.offer()
            assert answer["type"] == "answer", answer
            home = udp_port(answer["sdp"]) - base
            rooms = []
            for entry in lesson["classrooms"]:
                room = await join(stack, ws_url, entry["token"], Role.CLASSROOM)
                reply = await room.offer()
                assert reply["type"] == "answer", reply
                rooms.append((room, udp_port(reply["sdp"]) - base))
            # The teacher and A fill the home worker; B and C are served by the other.
            assert [at for _, at in rooms] == [home, 1 - home, 1 - home]
            near, far, far2 = (room for room, _ in rooms)
            for room in (near, far, far2):
                await room.peer.wait_frames(Slot.TEACHER_CAMERA, 20, timeout=40)
                assert await _more(room.peer, Slot.TEACHER_AUDIO, 25) >= 20

            # B (on the follower) takes the floor: the teacher sees it, and the teacher, A
            # and C hear it (each allocator may leave the stage's video off on a link it
            # has not yet measured; its sound goes first).
            await teacher.ws.send(
                json.dumps({"type": "grant_floor", "classroom_id": "classroom-2"})
            )
            granted = await far.expect(lambda m: m.get("event", {}).get("kind") == "floor_granted")
            assert granted["event"]["classroom_id"] == "classroom-2"
            await _more(teacher.peer, Slot.STAGE_VIDEO, 10)
            for member in (teacher, near, far2):
                assert await _more(member.peer, Slot.STAGE_AUDIO, 25) >= 20
            await teacher.ws.send(json.dumps({"type": "revoke_floor"}))

            # The follower dies: B and C are told to offer again and are served again:
            # by the worker started in the dead one's slot (the same port) once it is up,
            # or by the home past its capacity while it starts. The teacher and A play on.
            killed = workers[1 - home]
            os.kill(killed, signal.SIGKILL)
            assert await gone([killed], within_s=10)
            for member in (far, far2):
                await member.expect(lambda m: m["type"] == "media_moved", timeout=20)
                await member.peer.close()
                member.peer = SyntheticParticipant(Role.CLASSROOM)
                again = await member.offer()
                assert again["type"] == "answer", again
                assert udp_port(again["sdp"]) - base in (0, 1)
                await member.peer.wait_frames(Slot.TEACHER_CAMERA, 20, timeout=40)
            assert await _more(near.peer, Slot.TEACHER_AUDIO, 50) >= 40
            # Only the follower's classrooms were moved.
            for member in (teacher, near):
                assert not any(m["type"] == "media_moved" for m in member.messages)
    finally:
        output = server.stop()
    assert server.proc.returncode in (0, -signal.SIGTERM), output[-3000:]
    assert "Traceback" not in output, output[-3000:]
