"""Restart the server: lesson, hand queue, stage and event log are all still there."""

from __future__ import annotations

import sqlite3

import pytest

from signaling.settings import Settings
from tests.signaling.conftest import ADMIN, Clock, create_lesson, joined, serve, snapshot
from tests.signaling.fakes import FakeMedia

pytestmark = pytest.mark.timeout(30)


async def test_restart_keeps_lesson_hands_stage_and_log(settings: Settings, clock: Clock) -> None:
    first_media = FakeMedia()
    async with serve(settings, first_media, clock) as srv:
        lesson = await create_lesson(srv, classrooms=["A", "B", "C"])
        lid = lesson["id"]
        a, b, c = lesson["classrooms"]
        async with (
            joined(srv, lesson["teacher"]["token"]) as (teacher, _),
            joined(srv, a["token"]) as (va, _),
            joined(srv, b["token"]) as (vb, _),
        ):
            await teacher.events(4)
            await va.send({"type": "raise_hand", "student": "Li Wei"})
            await teacher.event("hand_raised")
            await vb.send({"type": "raise_hand", "student": "Wang Fang"})
            await teacher.event("hand_raised")
            clock.t += 30
            await teacher.send({"type": "grant_floor", "classroom_id": b["id"]})
            await teacher.event("floor_granted", classroom_id=b["id"], student="Wang Fang")
            await teacher.send({"type": "chat", "text": "Wang Fang, please"})
            await teacher.event("chat_posted")
            before = await snapshot(srv, lid)
            # The server stops while everyone is connected (a deploy, a crash).
            srv.server.should_exit = True
            await teacher.closed()
    assert first_media.closed

    second_media = FakeMedia()
    async with serve(settings, second_media, clock) as srv:
        after = await snapshot(srv, lid)
        # Nobody is connected after a restart; everything else is as it was.
        assert [p["online"] for p in after["participants"]] == [False] * 5
        for p in before["participants"]:
            p["online"] = False
        assert after == before
        assert after["hands"][0]["student"] == "Li Wei"
        assert after["stage"]["classroom_id"] == b["id"]
        # The relay is told who is on stage again.
        assert second_media.stage_calls() == [b["id"]]
        # Join codes still work, and the same tokens reconnect with the missed log.
        r = await srv.http.post("/api/join", json={"code": c["code"]})
        assert r.status_code == 200 and r.json()["participant_id"] == c["id"]
        async with joined(srv, b["token"], since=0) as (vb, welcome):
            assert welcome["lesson"]["stage"]["classroom_id"] == b["id"]
            kinds = await vb.events(before["seq"])
            assert kinds[0] == "lesson_scheduled" and kinds[-1] == "chat_posted"
            await vb.event("participant_joined", participant_id=b["id"])
        r = await srv.http.post(f"/api/lessons/{lid}/end", headers=ADMIN)
        assert r.status_code == 200

    db = sqlite3.connect(settings.data_dir / "classroom.sqlite3")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        seqs = [row[0] for row in db.execute("SELECT seq FROM events WHERE lesson_id = ?", (lid,))]
        assert seqs == list(range(1, len(seqs) + 1))
        assert db.execute("SELECT ended FROM lessons WHERE id = ?", (lid,)).fetchone()[0] == 1
    finally:
        db.close()

    # An ended lesson is still readable, and its codes are free again.
    async with serve(settings, FakeMedia(), clock) as srv:
        snap = await snapshot(srv, lid)
        assert snap["state"] == "ended"
        r = await srv.http.post("/api/join", json={"code": c["code"]})
        assert r.status_code == 404
