"""A lesson bigger than one relay worker (media.workers.follower): the gateway with real
worker processes, a capacity of two peers each, and real aiortc peers on 127.0.0.1.
Every worker process is started by the gateway and ended by it, or by the test, by its
PID."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from classroom.roles import Role
from media.gateway import LinkReport
from media.settings import RelaySettings
from media.slots import Slot
from media.synthetic import SyntheticParticipant
from media.workers.gateway import WorkerGateway

pytestmark = [pytest.mark.timeout(120), pytest.mark.e2e]


@pytest.fixture
async def gateway() -> AsyncIterator[WorkerGateway]:
    settings = RelaySettings(host_addresses=("127.0.0.1",), encoder_threads=2)
    gateway = await asyncio.to_thread(WorkerGateway, settings, 2, max_peers=2)
    try:
        yield gateway
    finally:
        await gateway.close()


async def _report_of(
    reports: AsyncIterator[LinkReport], participant_id: str, test: object
) -> LinkReport:
    async with asyncio.timeout(20):
        while True:
            report = await anext(reports)
            if report.participant_id == participant_id and test(report):  # type: ignore[operator]
                return report


async def _more(peer: SyntheticParticipant, slot: Slot, count: int, timeout: float = 30) -> None:
    """`count` more frames decoded on `slot` from now."""
    await peer.wait_frames(slot, peer.received[slot].frames + count, timeout=timeout)


async def test_a_lesson_past_one_workers_capacity_spans_two(gateway: WorkerGateway) -> None:
    peers: list[SyntheticParticipant] = []
    reports = gateway.link_reports()
    try:
        teacher = await SyntheticParticipant.joined(gateway, "L", "t", Role.TEACHER, peers)
        home = gateway.worker_of("L")
        assert home is not None
        near = await SyntheticParticipant.joined(gateway, "L", "r1", Role.CLASSROOM, peers)
        # The home has its two peers: the next classrooms go to the other worker.
        far = await SyntheticParticipant.joined(gateway, "L", "r2", Role.CLASSROOM, peers)
        far2 = await SyntheticParticipant.joined(gateway, "L", "r3", Role.CLASSROOM, peers)
        follower = 1 - home
        assert gateway.serving("L", "t") == gateway.serving("L", "r1") == home
        assert gateway.serving("L", "r2") == gateway.serving("L", "r3") == follower
        assert gateway.followers("L") == [follower]
        assert gateway.loads()[home].peers == gateway.loads()[follower].peers == 2
        assert gateway.has_peer("L", "r2")

        # The follower's classrooms get the teacher's camera and voice, decoded.
        for room in (near, far, far2):
            await room.wait_frames(Slot.TEACHER_CAMERA, 15, timeout=40)
            audio = await room.wait_frames(Slot.TEACHER_AUDIO, 25, timeout=30)
            assert audio.nonsilent_frames >= 20
        # Its own allocator chose its layers, and it reports them.
        report = await _report_of(reports, "r2", lambda r: r.layers.get("teacher_camera"))
        assert report.layers["teacher_camera"] in ("high", "mid", "low", "min")
        # Its camera went up to the home: a tile in the teacher's mosaic.
        await _report_of(reports, "t", lambda r: {"r2", "r3"} <= set(r.previews))

        # The follower's classroom on stage: the teacher sees it; the teacher, the home's
        # classroom and the follower's other classroom hear it (an allocator may leave the
        # stage's video off on a link it has not measured yet; its sound goes first);
        # nobody hears it once revoked.
        await gateway.set_stage("L", "r2")
        await _more(teacher, Slot.STAGE_VIDEO, 10)
        for room in (teacher, near, far2):
            before = room.received[Slot.STAGE_AUDIO].nonsilent_frames
            await _more(room, Slot.STAGE_AUDIO, 25)
            assert room.received[Slot.STAGE_AUDIO].nonsilent_frames >= before + 20
        await gateway.set_stage("L", None)
        await asyncio.sleep(1.0)  # what was in flight lands
        heard = near.received[Slot.STAGE_AUDIO].nonsilent_frames
        await _more(near, Slot.TEACHER_AUDIO, 50)
        assert near.received[Slot.STAGE_AUDIO].nonsilent_frames == heard

        # The follower's last classroom leaving gives its pull back.
        await gateway.disconnect("L", "r2")
        assert gateway.followers("L") == [follower]
        await gateway.disconnect("L", "r3")
        assert gateway.followers("L") == []
        # A classroom given the floor before its offer (a page that offers again) spans
        # again: the new pull is told the stage, and its microphone goes up.
        await gateway.set_stage("L", "r4")
        again = await SyntheticParticipant.joined(gateway, "L", "r4", Role.CLASSROOM, peers)
        assert gateway.followers("L") == [follower]
        await again.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=40)
        heard = near.received[Slot.STAGE_AUDIO].nonsilent_frames
        async with asyncio.timeout(30):
            while near.received[Slot.STAGE_AUDIO].nonsilent_frames < heard + 20:
                await _more(near, Slot.STAGE_AUDIO, 1)
        # The end of the lesson frees both workers.
        await gateway.end_lesson("L")
        assert gateway.followers("L") == [] and gateway.worker_of("L") is None
        assert all(load.peers == 0 for load in gateway.loads().values())
    finally:
        for peer in peers:
            await peer.close()


async def test_a_dead_follower_s_classrooms_are_placed_again(gateway: WorkerGateway) -> None:
    """The follower killed by its PID: only its classrooms are told to offer again
    (`on_peers_moved`), the home's go on; their new offers are served (at the home,
    past its capacity, since no other worker is left), and play."""
    moved: list[tuple[str, frozenset[str]]] = []
    whole: list[str] = []

    async def on_peers_moved(lesson_id: str, participants: frozenset[str]) -> None:
        moved.append((lesson_id, participants))

    async def on_moved(lesson_id: str) -> None:
        whole.append(lesson_id)

    gateway.on_peers_moved = on_peers_moved
    gateway.on_moved = on_moved
    peers: list[SyntheticParticipant] = []
    try:
        await SyntheticParticipant.joined(gateway, "L", "t", Role.TEACHER, peers)
        near = await SyntheticParticipant.joined(gateway, "L", "r1", Role.CLASSROOM, peers)
        await SyntheticParticipant.joined(gateway, "L", "r2", Role.CLASSROOM, peers)
        home = gateway.worker_of("L")
        assert home is not None and gateway.followers("L") == [1 - home]
        os.kill(gateway.pids[1 - home], signal.SIGKILL)
        async with asyncio.timeout(10):
            while not moved:
                await asyncio.sleep(0.05)
        assert moved == [("L", frozenset({"r2"}))] and whole == []
        assert not gateway.has_peer("L", "r2") and gateway.followers("L") == []
        assert gateway.has_peer("L", "r1")

        room = await SyntheticParticipant.joined(gateway, "L", "r2", Role.CLASSROOM, peers)
        assert gateway.serving("L", "r2") == home
        await room.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=40)
        await _more(near, Slot.TEACHER_AUDIO, 50)
    finally:
        for peer in peers:
            await peer.close()


async def test_a_dead_home_moves_the_whole_lesson_and_its_follower_lets_go(
    gateway: WorkerGateway,
) -> None:
    """The home killed: the lesson moves as today (`on_moved`); the follower's pull is
    dropped, and the pages' new offers place the whole lesson on the live worker."""
    whole: list[str] = []

    async def on_moved(lesson_id: str) -> None:
        whole.append(lesson_id)

    gateway.on_moved = on_moved
    peers: list[SyntheticParticipant] = []
    try:
        await SyntheticParticipant.joined(gateway, "L", "t", Role.TEACHER, peers)
        await SyntheticParticipant.joined(gateway, "L", "r1", Role.CLASSROOM, peers)
        await SyntheticParticipant.joined(gateway, "L", "r2", Role.CLASSROOM, peers)
        home = gateway.worker_of("L")
        assert home is not None and gateway.followers("L") == [1 - home]
        os.kill(gateway.pids[home], signal.SIGKILL)
        async with asyncio.timeout(10):
            while not whole:
                await asyncio.sleep(0.05)
        assert gateway.followers("L") == [] and not gateway.has_peer("L", "r2")

        # Everyone offers again: the live worker is the new home, and with its two
        # peers taken and no other worker alive, takes the last classroom too.
        await SyntheticParticipant.joined(gateway, "L", "t", Role.TEACHER, peers)
        await SyntheticParticipant.joined(gateway, "L", "r1", Role.CLASSROOM, peers)
        room = await SyntheticParticipant.joined(gateway, "L", "r2", Role.CLASSROOM, peers)
        assert gateway.worker_of("L") == 1 - home == gateway.serving("L", "r2")
        await room.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=40)
    finally:
        for peer in peers:
            await peer.close()


async def test_classrooms_offering_at_once_are_spread_by_capacity(
    gateway: WorkerGateway,
) -> None:
    """A lesson's start: its classrooms offer together, before any is answered; the
    offers in flight count, so the home still takes no more than its capacity."""
    peers: list[SyntheticParticipant] = []
    try:
        await SyntheticParticipant.joined(gateway, "L", "t", Role.TEACHER, peers)
        rooms = await asyncio.gather(
            *(
                SyntheticParticipant.joined(gateway, "L", f"r{n}", Role.CLASSROOM, peers)
                for n in range(3)
            )
        )
        home = gateway.worker_of("L")
        assert home is not None
        served = [gateway.serving("L", f"r{n}") for n in range(3)]
        assert served.count(home) == 1 and served.count(1 - home) == 2, served
        assert gateway.loads()[home].peers == gateway.loads()[1 - home].peers == 2
        for room in rooms:
            await room.wait_frames(Slot.TEACHER_AUDIO, 25, timeout=40)
    finally:
        for peer in peers:
            await peer.close()
