"""A classroom that cannot keep up is dropped with `too_slow`; the lesson goes on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from media.gateway import LinkReport
from signaling.settings import Settings
from signaling.ws import Connection
from tests.signaling.conftest import Running, joined, make_settings, snapshot

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, outbox_size=8)


class StuckTransport:
    """A client that joins, then stops reading: its sends never complete."""

    def __init__(self, token: str) -> None:
        self._frames: list[str] = [json.dumps({"type": "join", "token": token})]
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self._gone = asyncio.Event()
        self._stuck = asyncio.Event()

    async def receive(self) -> str | bytes | None:
        if self._frames:
            return self._frames.pop(0)
        await self._gone.wait()
        return None

    async def send(self, text: str) -> None:
        if self.sent:  # the welcome got through; then the link is stuck
            await self._stuck.wait()
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def test_slow_classroom_is_dropped_and_others_go_on(srv: Running) -> None:
    r = await srv.http.post(
        "/api/lessons",
        json={"title": "Slow", "classrooms": ["Slow village", "Fine village"]},
        headers={"Authorization": f"Bearer {srv.settings.admin_key.get_secret_value()}"},  # type: ignore[union-attr]
    )
    lesson = r.json()
    slow_room, fine_room = lesson["classrooms"]
    async with (
        joined(srv, lesson["teacher"]["token"]) as (teacher, _),
        joined(srv, fine_room["token"]) as (fine, _),
    ):
        await teacher.events(3)
        await fine.events(1)
        stuck = StuckTransport(slow_room["token"])
        slow = asyncio.create_task(Connection(stuck, srv.app.state.runtime.services).run())
        await teacher.event("participant_joined", participant_id=slow_room["id"])
        await fine.event("participant_joined", participant_id=slow_room["id"])
        # More events than the slow classroom's outbox holds.
        for i in range(12):
            await teacher.send({"type": "chat", "text": f"line {i}"})
        seen = []
        while len(seen) < 12:
            ev = await fine.event("chat_posted")
            seen.append(ev["text"])
        assert seen == [f"line {i}" for i in range(12)]
        async with asyncio.timeout(10):
            await slow
        left = [ev for ev in await _drain_until_left(teacher)]
        assert left[-1]["participant_id"] == slow_room["id"]
        # The lesson goes on for the others.
        await fine.send({"type": "raise_hand", "student": "Chen Jing"})
        await teacher.event("hand_raised", student="Chen Jing")
    assert stuck.sent and json.loads(stuck.sent[0])["type"] == "welcome"
    metrics = (await srv.http.get("/metrics")).text
    assert 'classroom_ws_dropped_total{reason="too_slow"} 1.0' in metrics
    snap = await snapshot(srv, lesson["id"])
    assert snap["state"] == "live"


async def _drain_until_left(peer: object) -> list[dict[str, object]]:
    from tests.signaling.conftest import Peer

    assert isinstance(peer, Peer)
    out: list[dict[str, object]] = []
    while True:
        msg = await peer.expect("event")
        if msg["event"]["kind"] == "participant_left":
            out.append(msg["event"])
            return out


async def test_a_slow_teacher_gets_the_newest_link_report_not_a_backlog(srv: Running) -> None:
    """Link reports are states: one still waiting in a slow reader's outbox is replaced
    by the newer one. A teacher's page that stalls while 50 reports of a classroom come
    (its outbox holds 8) is not dropped, and then reads the newest report only."""
    r = await srv.http.post(
        "/api/lessons",
        json={"title": "Slow teacher", "classrooms": ["Village"]},
        headers={"Authorization": f"Bearer {srv.settings.admin_key.get_secret_value()}"},  # type: ignore[union-attr]
    )
    lesson = r.json()
    room = lesson["classrooms"][0]
    async with joined(srv, room["token"]) as (classroom, _):
        await classroom.events(1)
        stuck = StuckTransport(lesson["teacher"]["token"])
        teacher = asyncio.create_task(Connection(stuck, srv.app.state.runtime.services).run())
        async with asyncio.timeout(10):
            while True:
                ev = (await classroom.expect("event"))["event"]
                if ev["kind"] == "participant_joined" and ev["participant_id"] == "teacher":
                    break
        for i in range(50):
            await srv.media.push_report(
                LinkReport(lesson["id"], room["id"], 100.0 + i, 90.0, 0.0, 40.0, {"slides": "low"})
            )
        # What the classroom itself is shown of its link (its own report) says they came.
        async with asyncio.timeout(10):
            while True:
                msg = await classroom.recv()
                if msg["type"] == "link" and msg["estimate_kbps"] == 149.0:
                    break
        assert not teacher.done()
        stuck._stuck.set()  # the teacher's page reads again
        async with asyncio.timeout(10):
            while not any('"estimate_kbps":149.0' in text for text in stuck.sent):
                await asyncio.sleep(0.01)
        links = [json.loads(t) for t in stuck.sent if json.loads(t)["type"] == "link"]
        # One send was under way as the page stalled; the rest waited as one place.
        assert len(links) <= 2 and links[-1]["estimate_kbps"] == 149.0
        stuck._gone.set()
        async with asyncio.timeout(10):
            await teacher
    metrics = (await srv.http.get("/metrics")).text
    assert 'reason="too_slow"' not in metrics
