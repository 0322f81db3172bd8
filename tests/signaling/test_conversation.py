"""A lesson as its participants live it, message by message, over real WebSockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from media.gateway import LinkReport
from tests.signaling.conftest import (
    ADMIN,
    Clock,
    Running,
    connected,
    create_lesson,
    eventually,
    joined,
    make_settings,
    serve,
    snapshot,
)
from tests.signaling.fakes import ANSWER_SDP, FakeMedia

pytestmark = pytest.mark.timeout(30)


async def test_teacher_and_two_classrooms(srv: Running) -> None:
    lesson = await create_lesson(srv)
    lid = lesson["id"]
    a, b = lesson["classrooms"]
    async with joined(srv, lesson["teacher"]["token"]) as (teacher, welcome):
        assert welcome["you"] == {"id": "teacher", "role": "teacher", "name": "Teacher"}
        assert welcome["lesson"]["state"] == "scheduled"
        await teacher.event("lesson_started")
        await teacher.event("participant_joined", participant_id="teacher")
        async with joined(srv, a["token"]) as (va, wa), joined(srv, b["token"]) as (vb, _):
            assert wa["lesson"]["state"] == "live"
            await teacher.event("participant_joined", participant_id=a["id"])
            await teacher.event("participant_joined", participant_id=b["id"])
            await va.event("participant_joined", participant_id=a["id"])
            await va.event("participant_joined", participant_id=b["id"])
            await vb.event("participant_joined", participant_id=b["id"])

            await va.send({"type": "raise_hand", "student": "Li Wei"})
            hand = await teacher.event("hand_raised", classroom_id=a["id"], student="Li Wei")
            assert hand["seq"] > 0 and hand["at"] >= 0
            await vb.event("hand_raised", student="Li Wei")
            await va.event("hand_raised", student="Li Wei")

            # A classroom may not give the floor, to itself or anyone.
            await vb.send({"type": "grant_floor", "classroom_id": b["id"], "ref": "g1"})
            err = await vb.error("not_allowed")
            assert err["ref"] == "g1" and "grant the floor" in err["message"]

            await teacher.send({"type": "grant_floor", "classroom_id": a["id"]})
            await teacher.event("floor_granted", classroom_id=a["id"], student="Li Wei")
            await va.event("floor_granted", classroom_id=a["id"])
            await vb.event("floor_granted", classroom_id=a["id"])
            snap = await snapshot(srv, lid)
            assert snap["stage"]["classroom_id"] == a["id"] and snap["hands"] == []

            await teacher.send({"type": "revoke_floor"})
            await teacher.event("floor_revoked", classroom_id=a["id"], reason="revoked")
            await vb.event("floor_revoked")
            await va.event("floor_revoked")

            await vb.send({"type": "chat", "text": "谢谢老师"})
            for peer in (teacher, va, vb):
                await peer.event("chat_posted", text="谢谢老师", name="Village B")
            for peer in (teacher, va, vb):
                await peer.quiet()
        await teacher.event("participant_left")
        await teacher.event("participant_left")
    assert srv.media.stage_calls() == [a["id"], None]

    async def all_offline() -> bool:
        snap = await snapshot(srv, lid)
        return not any(p["online"] for p in snap["participants"])

    await eventually(all_offline)


async def test_offer_gets_the_relay_answer(srv: Running) -> None:
    lesson = await create_lesson(srv)
    async with joined(srv, lesson["classrooms"][0]["token"]) as (room, _):
        await room.event("participant_joined")
        await room.send({"type": "offer", "sdp": "v=0\r\n...", "ref": "o1"})
        await room.expect("answer", sdp=ANSWER_SDP, ref="o1")
        await room.send({"type": "offer", "sdp": "not sdp"})
        err = await room.error("bad_sdp")
        assert "SDP" in err["message"]
    assert srv.media.calls[0] == ("negotiate", lesson["id"], "classroom-1", "classroom")


async def test_an_offer_right_behind_the_join_is_answered_after_the_welcome(srv: Running) -> None:
    """The classroom page offers before its welcome has come (lesson_page.js,
    `offerEarly`): the server handles the join first, then the offer."""
    lesson = await create_lesson(srv)
    async with connected(srv) as room:
        token = lesson["classrooms"][0]["token"]
        await room.send({"type": "join", "token": token, "protocol": 1})
        await room.send({"type": "offer", "sdp": "v=0\r\n...", "ref": "early"})
        await room.expect("welcome", protocol=1)
        seen = [await room.recv() for _ in range(2)]
    answers = [m for m in seen if m["type"] == "answer"]
    assert answers == [{"type": "answer", "sdp": ANSWER_SDP, "ref": "early"}], seen
    assert srv.media.calls[0] == ("negotiate", lesson["id"], "classroom-1", "classroom")


async def test_hand_stays_raised_across_reconnect_and_missed_events_replay(srv: Running) -> None:
    lesson = await create_lesson(srv)
    a = lesson["classrooms"][0]
    async with joined(srv, a["token"]) as (room, _):
        await room.event("participant_joined")
        await room.send({"type": "raise_hand", "student": "Wang Fang"})
        seen = await room.event("hand_raised")
    async with joined(srv, lesson["teacher"]["token"]) as (teacher, _):
        kinds = await teacher.events(2)
        if kinds == ["participant_left", "lesson_started"]:  # the leave came first
            kinds += await teacher.events(1)
        assert kinds[-2:] == ["lesson_started", "participant_joined"]
        await teacher.send({"type": "chat", "text": "while you were away"})
        await teacher.event("chat_posted")
        async with joined(srv, a["token"], since=seen["seq"]) as (room, welcome):
            assert welcome["lesson"]["hands"][0]["student"] == "Wang Fang"
            # Missed events, in order, then the live ones.
            assert await room.events(5) == [
                "participant_left",
                "lesson_started",
                "participant_joined",
                "chat_posted",
                "participant_joined",
            ]
            await room.quiet()


async def test_second_connection_replaces_the_first(srv: Running) -> None:
    lesson = await create_lesson(srv)
    a = lesson["classrooms"][0]
    async with joined(srv, lesson["teacher"]["token"]) as (teacher, _):
        await teacher.events(2)
        async with joined(srv, a["token"]) as (old, _):
            await teacher.event("participant_joined", participant_id=a["id"])
            await old.event("participant_joined")
            await old.send({"type": "raise_hand", "student": "Zhang San"})
            await teacher.event("hand_raised")
            await old.event("hand_raised")
            async with joined(srv, a["token"]) as (new, welcome):
                await old.error("replaced")
                assert await old.closed() == (1008, "replaced")
                assert welcome["lesson"]["hands"][0]["student"] == "Zhang San"
                # No leave and no second join: the classroom never went away.
                await new.quiet()
                await teacher.quiet()
                snap = await snapshot(srv, lesson["id"])
                assert [p["online"] for p in snap["participants"]] == [True, False, True, False]
                await new.send({"type": "lower_hand"})
                await teacher.event("hand_lowered", student="Zhang San")
            await teacher.event("participant_left", participant_id=a["id"])
    assert ("disconnect", lesson["id"], a["id"]) in srv.media.calls


async def test_classroom_that_leaves_loses_the_floor(srv: Running) -> None:
    lesson = await create_lesson(srv)
    a = lesson["classrooms"][0]
    async with joined(srv, lesson["teacher"]["token"]) as (teacher, _):
        await teacher.events(2)
        async with joined(srv, a["token"]):
            await teacher.event("participant_joined")
            await teacher.send({"type": "grant_floor", "classroom_id": a["id"]})
            await teacher.event("floor_granted", student=None)
        await teacher.event("floor_revoked", reason="left")
        await teacher.event("participant_left", participant_id=a["id"])
    assert srv.media.stage_calls() == [a["id"], None]


async def test_end_lesson_closes_every_connection(srv: Running) -> None:
    lesson = await create_lesson(srv)
    a = lesson["classrooms"][0]
    async with joined(srv, lesson["teacher"]["token"]) as (teacher, _):
        await teacher.events(2)
        async with joined(srv, a["token"]) as (room, _):
            await teacher.event("participant_joined")
            await room.event("participant_joined")
            await teacher.send({"type": "grant_floor", "classroom_id": a["id"]})
            await teacher.event("floor_granted")
            await room.event("floor_granted")
            r = await srv.http.post(f"/api/lessons/{lesson['id']}/end", headers=ADMIN)
            assert r.status_code == 200 and r.json()["state"] == "ended"
            for peer in (teacher, room):
                await peer.event("floor_revoked", reason="ended")
                await peer.event("lesson_ended", by="admin")
                assert await peer.closed() == (1000, "lesson_ended")
    # The relay is told once, without clearing the stage first.
    assert srv.media.calls[-1] == ("end_lesson", lesson["id"])
    assert srv.media.stage_calls() == [a["id"]]
    async with connected(srv) as late:
        await late.send({"type": "join", "token": a["token"]})
        await late.error("lesson_ended")
        assert await late.closed() == (1008, "lesson_ended")


async def test_link_reports_reach_teacher_and_become_delivery_events(srv: Running) -> None:
    lesson = await create_lesson(srv)
    lid = lesson["id"]
    a, b = lesson["classrooms"]
    async with (
        joined(srv, lesson["teacher"]["token"]) as (teacher, _),
        joined(srv, a["token"]) as (va, _),
        joined(srv, b["token"]) as (vb, _),
    ):
        await teacher.events(4)
        await va.events(2)
        await vb.events(1)
        layers = {"teacher_camera": "low", "slides": "high", "teacher_audio": "high"}
        report = LinkReport(lid, a["id"], 420.0, 380.0, 0.05, 180.0, layers)
        await srv.media.push_report(report)
        link = await teacher.expect("link", participant_id=a["id"], estimate_kbps=420.0)
        assert link["layers"] == layers and link["rtt_ms"] == 180.0 and link["loss"] == 0.05
        await va.expect("link", participant_id=a["id"])  # a classroom sees its own link
        await teacher.event("delivery_changed", participant_id=a["id"], layers=layers)
        await va.event("delivery_changed")
        await vb.event("delivery_changed")  # ...but not another classroom's link message
        # The same layers again: a link message, no new event.
        await srv.media.push_report(report)
        await teacher.expect("link")
        await teacher.quiet()
        await vb.quiet()
        assert (await snapshot(srv, lid))["delivery"] == {a["id"]: layers}


async def test_two_apps_number_their_viewers_each_from_one(tmp_path: Path, clock: Clock) -> None:
    """A viewer's media id is numbered by its app: a second app in the same process
    starts again at 1, whatever the first one handed out."""
    async with (
        serve(make_settings(tmp_path / "one"), FakeMedia(), clock) as one,
        serve(make_settings(tmp_path / "two"), FakeMedia(), clock) as two,
    ):
        for srv in (one, two, one):
            lesson = await create_lesson(srv)
            async with joined(srv, lesson["observer"]["token"]) as (viewer, _):
                await viewer.event("participant_joined", role="observer")
                await viewer.send({"type": "offer", "sdp": "v=0\r\n", "ref": "o"})
                await viewer.expect("answer", ref="o")
        media_ids = [[c[2] for c in s.media.calls if c[0] == "negotiate"] for s in (one, two)]
        assert media_ids == [["observer~1", "observer~2"], ["observer~1"]]


async def test_an_observer_link_serves_several_viewers_at_once(srv: Running) -> None:
    """An inspector and a parent watch with the same link: nobody is replaced, each
    gets a peer connection of its own, and the observer leaves with the last one."""
    lesson = await create_lesson(srv)
    link = lesson["observer"]["token"]
    async with joined(srv, lesson["teacher"]["token"]) as (teacher, _):
        await teacher.events(2)
        async with joined(srv, link) as (inspector, _):
            await teacher.event("participant_joined", role="observer")
            await inspector.event("participant_joined", role="observer")
            async with joined(srv, link) as (parent, _):
                for viewer, ref in ((inspector, "i"), (parent, "p")):
                    await viewer.send({"type": "offer", "sdp": "v=0\r\n", "ref": ref})
                    await viewer.expect("answer", sdp=ANSWER_SDP, ref=ref)
                await inspector.quiet()
                await teacher.quiet()  # no second join, no replacement
                media_ids = [c[2] for c in srv.media.calls if c[0] == "negotiate"]
                assert len(set(media_ids)) == 2
                assert all(mid.startswith("observer~") for mid in media_ids)
                # Each viewer's link report reaches that viewer alone, under the
                # observer's id (its page compares it with its own `you.id`).
                layers = {"teacher_camera": "off", "slides": "low", "teacher_audio": "high"}
                report = LinkReport(
                    lesson["id"], str(media_ids[1]), 120.0, 110.0, 0.2, 600.0, layers
                )
                await srv.media.push_report(report)
                link = await parent.expect("link", estimate_kbps=120.0)
                assert link["participant_id"] == str(media_ids[1]).split("~")[0]
                await inspector.quiet()
                await teacher.quiet()  # not a classroom's delivery: no event either

            async def parent_pc_closed() -> bool:
                return ("disconnect", lesson["id"], media_ids[1]) in srv.media.calls

            await eventually(parent_pc_closed)
            snap = await snapshot(srv, lesson["id"])
            assert [p["online"] for p in snap["participants"] if p["role"] == "observer"] == [True]
        await teacher.event("participant_left", role="observer")


async def test_the_delivery_report_says_how_long_each_classroom_got_what(
    srv: Running, clock: Clock
) -> None:
    lesson = await create_lesson(srv)
    lid = lesson["id"]
    a, b = lesson["classrooms"]
    full = {"teacher_camera": "high", "slides": "high", "teacher_audio": "high"}
    audio_only = {"teacher_camera": "off", "slides": "off", "teacher_audio": "high"}
    async with joined(srv, lesson["teacher"]["token"]) as (teacher, _):
        await teacher.events(2)
        async with joined(srv, a["token"]):
            await teacher.event("participant_joined", participant_id=a["id"])
            for layers, seconds in ((full, 30), (audio_only, 12), (full, 18)):
                await srv.media.push_report(
                    LinkReport(lid, a["id"], 300.0, 250.0, 0.0, 600.0, layers)
                )
                await teacher.expect("link", participant_id=a["id"])
                await teacher.event("delivery_changed", participant_id=a["id"])
                clock.t += seconds
        await teacher.event("participant_left", participant_id=a["id"])
        r = await srv.http.get(f"/api/lessons/{lid}/delivery", headers=ADMIN)
        assert r.status_code == 200, r.text
        by_id = {c["participant_id"]: c for c in r.json()["classrooms"]}
        room = by_id[a["id"]]
        assert room["connected_s"] == 60
        assert room["level_s"] == {"full": 48, "audio_only": 12}
        assert room["audio_only_s"] == 12 and room["downgrades"] == 1 and room["upgrades"] == 1
        assert by_id[b["id"]]["connected_s"] == 0  # never came: reported, and empty
        # A token of another lesson may not read it.
        other = await create_lesson(srv)
        bad = await srv.http.get(
            f"/api/lessons/{lid}/delivery",
            headers={"Authorization": f"Bearer {other['teacher']['token']}"},
        )
        assert bad.status_code == 403


def reception(session: str, freezes: int, concealed: int, total: int) -> dict[str, object]:
    return {
        "type": "reception",
        "media_session": session,
        "video": {"freeze_count": freezes, "total_freezes_duration": freezes * 0.5, "frames_decoded": 300},
        "audio": {"concealed_samples": concealed, "total_samples_received": total, "concealment_events": concealed // 480},
    }  # fmt: skip


async def test_a_classrooms_reception_reaches_the_teacher_and_the_delivery_report(
    srv: Running, clock: Clock
) -> None:
    """What a classroom's browser counted is an event for the teacher and observers
    (other classrooms' links are spared it), one per classroom per interval, summed
    over its peer connections in the delivery report."""
    lesson = await create_lesson(srv)
    lid = lesson["id"]
    a, b = lesson["classrooms"]
    async with (
        joined(srv, lesson["teacher"]["token"]) as (teacher, _),
        joined(srv, lesson["observer"]["token"]) as (observer, _),
        joined(srv, a["token"]) as (va, _),
        joined(srv, b["token"]) as (vb, _),
    ):
        await teacher.events(5)
        await observer.events(3)
        await va.events(2)
        await vb.events(1)
        await va.send(reception("pc1", 1, 480, 48_000))
        event = await teacher.event("reception_reported", participant_id=a["id"])
        assert event["media_session"] == "pc1" and event["video"]["freeze_count"] == 1
        assert event["audio"]["concealment_events"] == 1
        await observer.event("reception_reported", participant_id=a["id"])
        # Too soon after the last one: dropped without a word, nothing recorded.
        seq = (await snapshot(srv, lid))["seq"]
        clock.t += 2
        await va.send(reception("pc1", 5, 4800, 96_000))
        await va.quiet()
        await teacher.quiet()
        assert (await snapshot(srv, lid))["seq"] == seq
        # After a reconnect the browser counts again from zero, in a new session; with
        # it, what the classroom decodes now, for the teacher's classroom table.
        clock.t += 10
        now = {"teacher_camera": {"state": "live", "width": 320, "height": 180, "fps": 15.0}}
        await va.send(reception("pc2", 2, 0, 48_000) | {"pictures": now})
        event = await teacher.event("reception_reported", media_session="pc2")
        assert event["pictures"] == now
        await observer.event("reception_reported")
        # No classroom is sent any reception report, not even its own...
        await va.quiet()
        await vb.quiet()
        # ...nor finds them among the events it missed.
        async with joined(srv, b["token"], since=0) as (again, _):
            await again.send({"type": "ping", "ref": "end"})
            kinds = []
            while (msg := await again.recv())["type"] == "event":
                kinds.append(msg["event"]["kind"])
            assert msg["ref"] == "end" and kinds[0] == "lesson_scheduled"
            assert "reception_reported" not in kinds and "participant_joined" in kinds
        r = await srv.http.get(f"/api/lessons/{lid}/delivery", headers=ADMIN)
        by_id = {c["participant_id"]: c for c in r.json()["classrooms"]}
        assert {k: by_id[a["id"]][k] for k in ("reported", "freezes", "freeze_s")} == {
            "reported": True, "freezes": 3, "freeze_s": 1.5,
        }  # fmt: skip
        assert by_id[a["id"]]["audio_concealed_ratio"] == 0.005  # 480 of 96 000 samples
        assert by_id[a["id"]]["audio_gap_events"] == 1
        # A classroom whose browser never reported is unknown, not perfect.
        assert by_id[b["id"]]["reported"] is False
        assert by_id[b["id"]]["freezes"] is None
        assert by_id[b["id"]]["audio_concealed_ratio"] is None
