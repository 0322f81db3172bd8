"""A lesson's node dies and another node adopts the lesson (real `redis-server`, real
node processes, aiortc participants on loopback).

The lesson lives on node A; the teacher's and a classroom's WebSockets are on node B,
their media on A, and a second classroom's WebSocket is on A. A is killed (SIGKILL): B
adopts the lesson, tells every connection to offer again, and the classroom receives the
teacher's camera again, from B's relay; the second classroom reconnects to B; the hands,
the stage and every acknowledged event are there, and the recording goes on in a second
segment listed after the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from classroom import commands as c
from classroom.events import Event
from classroom.roles import Role
from media.slots import Slot
from media.synthetic import MovingPicture, SyntheticParticipant
from scripts.redis_server import RedisServer
from signaling.bus import Envelope
from signaling.cluster.lessons import ClusterLessons
from signaling.cluster.node import RUNNING, Node, node_key, placement_key
from signaling.metrics import Metrics
from signaling.store import Store
from tests.signaling.fakes import FakeMedia
from tests.signaling.test_cluster import (
    ADMIN,
    NODE_BEAT_S,
    NODE_TTL_S,
    Client,
    _lesson,
    joined,
)
from tests.signaling.test_cluster import (
    Node as NodeProcess,
)

pytestmark = [
    pytest.mark.e2e,  # a redis-server, and node processes
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


async def _next(client: Client, kind: str, timeout: float = 15) -> dict[str, Any]:
    """The next message of this type (or event of this kind); others are skipped."""
    async with asyncio.timeout(timeout):
        while True:
            msg = dict(json.loads(await client.ws.recv()))
            if msg["type"] == kind or msg.get("event", {}).get("kind") == kind:
                return msg


async def _offer(client: Client, peer: SyntheticParticipant, ref: str) -> None:
    await client.send({"type": "offer", "sdp": await peer.offer(), "ref": ref})
    answer = await _next(client, "answer", timeout=20)
    await peer.accept(answer["sdp"])


async def _get(node: NodeProcess, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=node.url, timeout=5) as http:
        r = await http.get(path, headers=ADMIN)
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.mark.timeout(120)
async def test_a_killed_nodes_lesson_moves_to_the_other_node(redis_server: RedisServer) -> None:
    data = Path(tempfile.mkdtemp(prefix="failover-"))
    a = NodeProcess(data, redis_server.url)
    b: NodeProcess | None = None
    peers: list[SyntheticParticipant] = []

    def peer(role: Role, width: int) -> SyntheticParticipant:
        made = SyntheticParticipant(role, send_video=lambda: MovingPicture(width, 96, 10))
        peers.append(made)
        return made

    try:
        a.ready()
        b = NodeProcess(data, redis_server.url)
        b.ready()
        lesson = await _lesson(a, ["Village A", "Village B"])
        lid = lesson["id"]
        room, other = lesson["classrooms"]
        async with (
            joined(b, lesson["teacher"]["token"]) as (teacher, _),
            joined(b, room["token"]) as (village, _),
            joined(a, other["token"]) as (village_b, _),
        ):
            await _offer(teacher, peer(Role.TEACHER, 160), "t")
            room_peer = peer(Role.CLASSROOM, 64)
            await _offer(village, room_peer, "v")
            await room_peer.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=30)
            # Hands and the stage, each acknowledged (its event came back) before the kill.
            acked: dict[int, str] = {}
            for client, msg, kind in [
                (village, {"type": "raise_hand", "student": "Zhao Lei"}, "hand_raised"),
                (teacher, {"type": "grant_floor", "classroom_id": room["id"]}, "floor_granted"),
                (village_b, {"type": "raise_hand", "student": "Li Na"}, "hand_raised"),
                (teacher, {"type": "chat", "text": "page 12, everyone"}, "chat_posted"),
            ]:
                await client.send(msg)
                acked[(await _next(client, kind))["event"]["seq"]] = kind
            recordings = (await _get(b, f"/api/lessons/{lid}/recordings"))["recordings"]
            assert [r["state"] for r in recordings] == ["recording"]
            await asyncio.sleep(2)  # a recording with something in it

            a.kill()
            killed = time.monotonic()
            # Every connection of the lesson is told to offer again; the new offers are
            # answered by B, which now holds the lesson.
            await _next(teacher, "media_moved", timeout=20)
            await _next(village, "media_moved", timeout=20)
            await _offer(teacher, peer(Role.TEACHER, 176), "t2")
            room_peer = peer(Role.CLASSROOM, 64)
            await _offer(village, room_peer, "v2")
            video = await room_peer.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=30)
            assert video.sizes == {(176, 96)}  # the new teacher peer's picture, via B
            print(f"video back {time.monotonic() - killed:.1f} s after the kill")

            snapshot = await _get(b, f"/api/lessons/{lid}")
            assert snapshot["state"] == "live"
            assert snapshot["stage"]["classroom_id"] == room["id"]
            assert [h["classroom_id"] for h in snapshot["hands"]] == [other["id"]]
            assert snapshot["seq"] > max(acked)
            online = {p["id"] for p in snapshot["participants"] if p["online"]}
            assert online == {"teacher", room["id"]}  # Village B's connection died with A
            # Village B's WebSocket was on A: it closed with A, and a new one on B (where a
            # load balancer would send it) is refused until B adopted the lesson, then
            # welcomed with its hand where it was. Its commands are run by B.
            with pytest.raises(ConnectionClosed):
                await _next(village_b, "pong")
            async with _rejoin(b, other["token"], max(acked)) as (village_b, welcome):
                assert [h["classroom_id"] for h in welcome["lesson"]["hands"]] == [other["id"]]
                await village_b.send({"type": "chat", "text": "still here"})
                await _next(teacher, "chat_posted")

        # No acknowledged event lost: a rejoin from before them is sent each, as it was.
        async with joined(b, room["token"], since=min(acked) - 1) as (again, welcome):
            replayed: dict[int, str] = {}
            while True:
                event = (await _next(again, "event"))["event"]
                if event["seq"] > welcome["lesson"]["seq"]:
                    break
                replayed[event["seq"]] = event["kind"]
            assert acked.items() <= replayed.items()

        # The recording: the first segment, cut by the kill, repaired; the second, B's.
        async with asyncio.timeout(30):
            while True:
                recordings = (await _get(b, f"/api/lessons/{lid}/recordings"))["recordings"]
                if [r["state"] for r in recordings] == ["interrupted", "recording"]:
                    break
                await asyncio.sleep(0.5)
        assert recordings[0]["started_at"] < recordings[1]["started_at"]
        assert recordings[0]["duration"] > 0
        output = b.stop()
        assert "adopted lesson" in output and "Traceback" not in output, output[-3000:]
    finally:
        for made in peers:
            await made.close()
        a.kill()
        if b is not None:
            b.kill()
        shutil.rmtree(data, ignore_errors=True)


@contextlib.asynccontextmanager
async def _rejoin(
    node: NodeProcess, token: str, since: int
) -> AsyncIterator[tuple[Client, dict[str, Any]]]:
    """Join with `since` until welcomed, as a page reconnects (a few seconds at most)."""
    refusals = []
    async with asyncio.timeout(20):
        while True:
            async with connect(node.ws_url, open_timeout=5, close_timeout=2) as ws:
                client = Client(ws)
                await client.send({"type": "join", "protocol": 1, "token": token, "since": since})
                answer = await client.recv()
                if answer["type"] == "welcome":
                    assert set(refusals) <= {"lesson_unavailable"}, refusals
                    yield client, answer
                    return
                refusals.append(answer["code"])
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def _nodes(url: str, count: int) -> AsyncIterator[list[Node]]:
    nodes = [
        Node(
            Redis.from_url(url, decode_responses=True),
            SyncRedis.from_url(url, decode_responses=True),
            f"n{i}",
            ttl_s=NODE_TTL_S,
            beat_s=NODE_BEAT_S,
        )
        for i in range(count)
    ]
    try:
        for node in nodes:
            await node.start()
        yield nodes
    finally:
        for node in nodes:
            await node.close()


async def _pause_beat(node: Node) -> None:
    """Stop the node's heartbeat thread, and let its liveness key go (as after its TTL)."""
    node._beating.clear()
    if node._beater is not None:
        await asyncio.to_thread(node._beater.join)
    await node.redis.delete(node_key(node.id))


@pytest.mark.timeout(30)
async def test_of_the_surviving_nodes_exactly_one_adopts_each_lesson(
    redis_server: RedisServer,
) -> None:
    """Node n0 holds 20 lessons and dies; n1, n2 and n3 all see them orphaned and race
    to adopt each one at once: every lesson gets exactly one new node."""
    async with _nodes(redis_server.url, 4) as (dead, *survivors):
        lessons = [f"l{i:02d}" for i in range(20)]
        for lesson_id in lessons:
            assert await dead.claim(lesson_id, new=True)
        assert await survivors[0].orphans() == {}
        # n0 dies: its heartbeat stops, and its liveness key is gone (as after its TTL).
        await _pause_beat(dead)
        seen = [await s.orphans() for s in survivors]
        assert all(found == dict.fromkeys(lessons, "n0") for found in seen)

        async def race(lesson_id: str) -> list[bool]:
            return list(await asyncio.gather(*(s.take_over(lesson_id, "n0") for s in survivors)))

        results = await asyncio.gather(*(race(lesson_id) for lesson_id in lessons))
        assert all(sum(won) == 1 for won in results)
        for lesson_id, won in zip(lessons, results, strict=True):
            winner = survivors[won.index(True)]
            assert await survivors[0].redis.get(placement_key(lesson_id)) == winner.id
            assert [s.owns(lesson_id) for s in survivors] == won
        assert await survivors[1].orphans() == {}


@pytest.mark.timeout(30)
async def test_a_node_that_stalled_gives_up_a_lesson_another_adopted(
    redis_server: RedisServer,
) -> None:
    """n0 is presumed dead (its key expired) while it still runs: n1 adopts its lesson,
    and n0's next renewal finds the placement n1's and lets the lesson go."""
    async with _nodes(redis_server.url, 2) as (slow, other):
        lost: list[str] = []
        slow.lost = lost.append
        assert await slow.claim("l1", new=True)
        await _pause_beat(slow)
        assert await other.orphans() == {"l1": "n0"}
        assert await other.take_over("l1", "n0")
        slow._beating.set()  # n0's beat again, as after a stall
        slow._beater = threading.Thread(
            target=slow._beat, args=(asyncio.get_running_loop(),), daemon=True
        )
        slow._beater.start()
        # The heartbeat (every beat) notices; well within the node's TTL.
        async with asyncio.timeout(NODE_TTL_S * 4):
            while not lost:
                await asyncio.sleep(0.05)
        assert lost == ["l1"] and not slow.owns("l1")
        assert await other.redis.get(placement_key("l1")) == "n1"


@pytest.mark.timeout(30)
async def test_a_nodes_liveness_lives_its_ttl_renewed_each_beat(redis_server: RedisServer) -> None:
    """The key lives the node's TTL (not rounded to whole seconds), outlives it while the
    node beats, and is gone about a TTL after the beat stops."""
    async with _nodes(redis_server.url, 2) as (node, survivor):
        assert 0 < await node.redis.pttl(node_key(node.id)) <= NODE_TTL_S * 1000
        await asyncio.sleep(NODE_TTL_S * 2)
        assert await survivor.alive(node.id)
        node._beating.clear()
        if node._beater is not None:
            await asyncio.to_thread(node._beater.join)
        async with asyncio.timeout(NODE_TTL_S * 4):
            while await survivor.alive(node.id):
                await asyncio.sleep(0.02)


def test_a_node_whose_beat_does_not_fit_its_ttl_is_refused() -> None:
    with pytest.raises(ValueError, match="must fit 3x"):
        Node(None, None, "n0", ttl_s=1.0, beat_s=0.5)  # type: ignore[arg-type]


@pytest.mark.timeout(30)
async def test_a_node_writes_again_the_placement_redis_forgot(redis_server: RedisServer) -> None:
    """Redis restarted without its data: the lesson's node writes its placement and the
    running set again at its next beat, rather than leaving the lesson to nobody."""
    async with _nodes(redis_server.url, 1) as (node,):
        lost: list[str] = []
        node.lost = lost.append
        assert await node.claim("l1", new=True)
        await node.redis.flushdb()
        async with asyncio.timeout(NODE_TTL_S * 4):
            while await node.redis.get(placement_key("l1")) != "n0":
                await asyncio.sleep(0.05)
        assert await node.redis.smembers(RUNNING) == {"l1"}
        assert node.owns("l1") and lost == []


class _Attendee:
    """A connection served by a node, as the lessons see it (signaling.lessons.Attendee)."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []
        self.replaced = False

    def welcome(self, snapshot: dict[str, Any], backlog: list[Event], cut: bool) -> None:
        pass

    def deliver(self, envelope: Envelope) -> None:
        self.messages.append(envelope)

    def replace(self) -> None:
        self.replaced = True


async def _until_true(check: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


@pytest.mark.timeout(60)
async def test_a_stalled_node_hands_its_connections_to_the_node_that_adopted(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """n0 holds a lesson and serves a classroom's connection; its liveness lapses (a
    partition from Redis, a stall) and n1 adopts the lesson. When n0 beats again it lets
    the lesson go: its relay ends it, and the classroom's connection, still on n0, is
    attached at n1, which runs its commands and counts it online."""
    stores = [Store(tmp_path / "classroom.sqlite3") for _ in range(2)]
    medias = [FakeMedia(), FakeMedia()]
    metrics = [Metrics(), Metrics()]
    async with _nodes(redis_server.url, 2) as nodes:
        members = []
        for store, media, node, m in zip(stores, medias, nodes, metrics, strict=True):
            await store.open()
            member = ClusterLessons(store, node, media, time.time, m, 500)
            member.start()
            await member.load()
            members.append(member)
        first, second = members
        # What the recordings hear (signaling.recordings.Recordings.given_up): n0's
        # segment is stopped before its relay lets the lesson go.
        given_up: list[tuple[str, bool]] = []

        async def record_give_up(lesson_id: str) -> None:
            given_up.append((lesson_id, ("end_lesson", lesson_id) in medias[0].calls))

        first.give_up_listeners.append(record_give_up)
        # What each node keeps of the lesson's peers (its WHIP and WHEP resources) is
        # let go: on the adopter, and on the node that gave it up.
        let_go: tuple[list[str], list[str]] = ([], [])
        first.moved_listeners.append(let_go[0].append)
        second.moved_listeners.append(let_go[1].append)
        try:
            created = await first.create("Physics", ["Village A"])
            lid = created.lesson.lesson_id
            room = _Attendee()
            await first.attach(lid, "classroom-1", room, None)
            await first.execute(lid, c.RaiseHand("Zhao Lei"), "classroom-1")

            await _pause_beat(nodes[0])
            await _until_true(lambda: nodes[1].owns(lid))
            nodes[0]._beating.set()  # n0 beats again
            nodes[0]._beater = threading.Thread(
                target=nodes[0]._beat, args=(asyncio.get_running_loop(),), daemon=True
            )
            nodes[0]._beater.start()
            await _until_true(lambda: not nodes[0].owns(lid))
            await _until_true(lambda: ("end_lesson", lid) in medias[0].calls)
            assert given_up == [(lid, False)]
            moved = "classroom_lessons_moved_total"
            assert metrics[0].registry.get_sample_value(moved, {"how": "given_up"}) == 1
            assert metrics[1].registry.get_sample_value(moved, {"how": "adopted"}) == 1

            assert any(m.type == "media_moved" for m in room.messages)
            await _until_true(lambda: bool(let_go[0] and let_go[1]))
            assert set(let_go[0]) == {lid} and let_go[1] == [lid]
            held = second.live(lid)
            assert held is not None and [h.student for h in held.hands] == ["Zhao Lei"]
            await _until_true(lambda: held.participants["classroom-1"].online)
            events = await first.execute(lid, c.LowerHand(), "classroom-1")
            assert [ev.kind for ev in events] == ["hand_lowered"]
            assert second.live(lid) is held and held.hands == []
            assert not room.replaced
        finally:
            for member in members:
                await member.close()
            for store in stores:
                await store.close()
