"""Relay workers (media.workers): the gateway with real worker processes and real aiortc
peers on 127.0.0.1. Every worker process is started by the gateway and ended by it, or
by the test, by its PID."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from classroom.roles import Role
from media.gateway import MediaError
from media.recorder import manifest as manifests
from media.settings import RelaySettings
from media.slots import Slot
from media.synthetic import SyntheticParticipant
from media.workers.gateway import WorkerFault, WorkerGateway

pytestmark = [pytest.mark.timeout(90), pytest.mark.e2e]


@pytest.fixture
async def gateway() -> AsyncIterator[WorkerGateway]:
    settings = RelaySettings(host_addresses=("127.0.0.1",), encoder_threads=2)
    gateway = await asyncio.to_thread(WorkerGateway, settings, 2)
    try:
        yield gateway
    finally:
        await gateway.close()
        for pid in gateway.pids:
            assert not _alive(pid), f"worker {pid} outlived the gateway"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped; reaping is the gateway's job.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


async def _join(
    gateway: WorkerGateway, lesson: str, who: str, role: Role, peers: list[SyntheticParticipant]
) -> SyntheticParticipant:
    peer = SyntheticParticipant(role)
    peers.append(peer)
    await peer.accept(await gateway.negotiate(lesson, who, role, await peer.offer()))
    return peer


async def test_two_lessons_on_two_workers_each_carry_their_teacher(
    gateway: WorkerGateway, tmp_path: Path
) -> None:
    peers: list[SyntheticParticipant] = []
    try:
        await _join(gateway, "L1", "t1", Role.TEACHER, peers)
        await _join(gateway, "L2", "t2", Role.TEACHER, peers)
        assert {gateway.worker_of("L1"), gateway.worker_of("L2")} == {0, 1}
        room1 = await _join(gateway, "L1", "r1", Role.CLASSROOM, peers)
        room2 = await _join(gateway, "L2", "r2", Role.CLASSROOM, peers)
        # The same placement holds for the lesson's later participants.
        assert gateway.loads()[0].peers == gateway.loads()[1].peers == 2
        handle = gateway.start_recording("L1", tmp_path / "rec", {"id": "rec"})
        for room in (room1, room2):
            await room.wait_frames(Slot.TEACHER_CAMERA, 15, timeout=30)
            audio = await room.wait_frames(Slot.TEACHER_AUDIO, 25, timeout=30)
            assert audio.nonsilent_frames >= 20
        assert gateway.has_peer("L1", "r1") and gateway.has_peer("L2", "r2")
        reports = gateway.link_reports()
        async with asyncio.timeout(10):
            seen = set()
            while len(seen) < 2:
                report = await anext(reports)
                seen.add(report.participant_id)
        assert handle.now() > 0
        manifest = await gateway.stop_recording("L1")
        assert manifest is not None and manifest["state"] == "finished"
        assert manifests.read(tmp_path / "rec") is not None
        assert {f["name"] for f in manifest["files"]} >= {"camera.webm"}

        # A deck page over the screen share reaches the lesson's worker: no more slides.
        await room1.wait_frames(Slot.SLIDES, 3, timeout=30)
        await gateway.cover_screen("L1", True)
        await asyncio.sleep(0.5)  # what was in flight lands
        slides = room1.received[Slot.SLIDES].frames
        await asyncio.sleep(1.0)  # the absence of frames can only be waited for
        assert room1.received[Slot.SLIDES].frames == slides

        await gateway.disconnect("L2", "r2")
        assert not gateway.has_peer("L2", "r2")
    finally:
        for peer in peers:
            await peer.close()


async def test_a_dead_workers_lesson_moves_to_the_live_one_and_only_it(
    gateway: WorkerGateway,
) -> None:
    """A worker killed by its PID: its lesson is freed and signaling told (`on_moved`);
    the pages' new offers place it on the live worker, where it plays; the other
    worker's lesson never stopped. With no live worker left, an offer is refused."""
    moved: list[str] = []

    async def on_moved(lesson_id: str) -> None:
        moved.append(lesson_id)

    gateway.on_moved = on_moved
    peers: list[SyntheticParticipant] = []
    try:
        await _join(gateway, "L1", "t1", Role.TEACHER, peers)
        await _join(gateway, "L2", "t2", Role.TEACHER, peers)
        survivor = await _join(gateway, "L2", "r2", Role.CLASSROOM, peers)
        dead = gateway.worker_of("L1")
        assert dead is not None
        os.kill(gateway.pids[dead], signal.SIGKILL)
        async with asyncio.timeout(10):
            while not moved:
                await asyncio.sleep(0.05)
        assert moved == ["L1"] and not gateway.loads()[dead].running
        assert not gateway.has_peer("L1", "t1") and gateway.worker_of("L1") is None

        # The lost lesson's teacher and classroom offer again: the live worker takes it.
        await _join(gateway, "L1", "t1", Role.TEACHER, peers)
        room = await _join(gateway, "L1", "r1", Role.CLASSROOM, peers)
        assert gateway.worker_of("L1") == 1 - dead
        await room.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=30)
        before = survivor.received[Slot.TEACHER_CAMERA].frames
        await survivor.wait_frames(Slot.TEACHER_CAMERA, before + 15, timeout=30)

        # The last worker dies too: nothing is left to move to, and an offer says so.
        os.kill(gateway.pids[1 - dead], signal.SIGKILL)
        async with asyncio.timeout(10):
            while gateway.loads()[1 - dead].running:
                await asyncio.sleep(0.05)
        late = SyntheticParticipant(Role.CLASSROOM)
        peers.append(late)
        with pytest.raises(MediaError, match="unavailable"):
            await gateway.negotiate("L1", "r1", Role.CLASSROOM, await late.offer())
        # Leaving or ending a lesson with no media is quiet.
        await gateway.disconnect("L2", "t2")
        await gateway.end_lesson("L2")
        assert moved == ["L1"]
    finally:
        for peer in peers:
            await peer.close()


async def test_a_port_taken_stops_the_start_with_its_reason() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        settings = RelaySettings(host_addresses=("127.0.0.1",), ice_udp_port=port)
        with pytest.raises(MediaError, match=r"relay worker 0 did not start: .*in use"):
            await asyncio.to_thread(WorkerGateway, settings, 2)


async def test_a_request_the_relay_fails_on_is_answered_and_the_worker_goes_on(
    gateway: WorkerGateway,
) -> None:
    worker = gateway._workers[0]
    with pytest.raises(WorkerFault, match="the relay failed: KeyError"):
        await gateway._ask(worker, "no_such_request", {})
    assert gateway.loads()[0].running
    peers: list[SyntheticParticipant] = []
    try:
        await _join(gateway, "L1", "t1", Role.TEACHER, peers)
        assert gateway.has_peer("L1", "t1")
    finally:
        for peer in peers:
            await peer.close()
