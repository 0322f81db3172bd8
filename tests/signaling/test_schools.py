"""Schools, rooms, teachers, pairings, the timetable, device links and calendar feeds,
over HTTP against the app built by its factory, with a hand-moved clock."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest

from signaling.settings import Settings
from tests.signaling.conftest import ADMIN, Clock, Running, create_lesson, joined, serve
from tests.signaling.fakes import FakeMedia

pytestmark = pytest.mark.timeout(30)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(clock: Clock, text: str) -> None:
    """Set the clock to a wall-clock time in Shanghai."""
    clock.t = datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


async def post(srv: Running, path: str, body: dict[str, Any], status: int = 201) -> Any:
    r = await srv.http.post(path, json=body, headers=ADMIN)
    assert r.status_code == status, r.text
    return r.json()


async def district(srv: Running) -> dict[str, Any]:
    """An urban school with a teacher; two rural schools with a room each, both taught
    by the urban school; a third rural room nobody pairs with."""
    urban = await post(srv, "/api/schools", {"name": "城关小学", "kind": "urban"})
    a = await post(srv, "/api/schools", {"name": "石桥小学", "kind": "rural"})
    b = await post(srv, "/api/schools", {"name": "河口小学", "kind": "rural"})
    c = await post(srv, "/api/schools", {"name": "山顶小学", "kind": "rural"})
    teacher = await post(srv, f"/api/schools/{urban['id']}/teachers", {"name": "李老师"})
    ra = await post(srv, f"/api/schools/{a['id']}/rooms", {"name": "五年级"})
    rb = await post(srv, f"/api/schools/{b['id']}/rooms", {"name": "五年级"})
    rc = await post(srv, f"/api/schools/{c['id']}/rooms", {"name": "五年级"})
    for room in (ra, rb):
        await post(srv, f"/api/schools/{urban['id']}/pairings", {"room_id": room["id"]})
    return {"urban": urban, "teacher": teacher, "ra": ra, "rb": rb, "rc": rc}


async def weekly(srv: Running, w: dict[str, Any], **kw: Any) -> dict[str, Any]:
    body = {
        "title": "五年级数学",
        "teacher_id": w["teacher"]["id"],
        "room_ids": [w["ra"]["id"], w["rb"]["id"]],
        "starts_at": "2023-11-20T09:00:00",
        "duration_min": 45,
        "repeat": {"weekly_until": "2023-12-11"},
    } | kw
    return dict(await post(srv, "/api/timetable", body))


async def device(srv: Running, room: dict[str, Any], status: int = 200) -> Any:
    r = await srv.http.get("/api/device/next", headers=bearer(room["device"]["credential"]))
    assert r.status_code == status, r.text
    return r.json()


async def test_a_week_of_a_school(srv: Running, clock: Clock) -> None:
    at(clock, "2023-11-15T08:00:00")
    w = await district(srv)
    assert w["ra"]["device_url"].startswith("http://classroom.test/room#device=")
    assert w["teacher"]["link"]["url"].startswith("http://classroom.test/teacher#teacher=")
    entry = await weekly(srv, w)
    assert entry["occurrences"] == ["2023-11-20", "2023-11-27", "2023-12-04", "2023-12-11"]

    # Before the lesson, each projector shows the room and its next lessons.
    shown = await device(srv, w["ra"])
    assert shown["room"]["name"] == "五年级" and shown["room"]["school"] == "石桥小学"
    assert shown["lesson"] is None
    first = shown["next"][0]
    assert first["starts_at"] == "2023-11-20T09:00:00+08:00"
    assert (first["title"], first["teacher"]["name"], first["school"]["name"]) == (
        "五年级数学",
        "李老师",
        "城关小学",
    )
    # The next two weeks.
    assert first["state"] == "scheduled" and len(shown["next"]) == 2

    # The teacher lists the lessons with their own link, and starts the first one.
    teacher = bearer(w["teacher"]["link"]["credential"])
    r = await srv.http.get("/api/timetable?from=2023-11-20&days=1", headers=teacher)
    assert [o["on"] for o in r.json()["occurrences"]] == ["2023-11-20"]
    start = f"/api/timetable/{entry['id']}/occurrences/2023-11-20/start"
    at(clock, "2023-11-20T08:40:00")
    r = await srv.http.post(start, headers=teacher)
    assert (r.status_code, r.json()["code"]) == (409, "invalid_transition")
    assert "15 minutes before" in r.json()["message"]
    at(clock, "2023-11-20T08:50:00")
    r = await srv.http.post(start, headers=teacher)
    assert r.status_code == 200, r.text
    started = r.json()
    assert [c["name"] for c in started["classrooms"]] == ["石桥小学 · 五年级", "河口小学 · 五年级"]
    # Again (a reloaded page): the same lesson.
    again = await srv.http.post(start, headers=teacher)
    assert again.json()["lesson_id"] == started["lesson_id"]

    # Both projectors now get what they need to join by themselves.
    for room, classroom in zip((w["ra"], w["rb"]), started["classrooms"], strict=True):
        live = (await device(srv, room))["lesson"]
        assert live["lesson_id"] == started["lesson_id"]
        assert live["participant_id"] == classroom["participant_id"]
        async with joined(srv, live["token"]) as (_, welcome):
            assert welcome["you"]["id"] == classroom["participant_id"]
            assert welcome["you"]["role"] == "classroom"
    # A room not in the lesson is not let in.
    await post(srv, f"/api/schools/{w['urban']['id']}/pairings", {"room_id": w["rc"]["id"]})
    assert (await device(srv, w["rc"]))["lesson"] is None

    # The lesson ends: the rooms wait for the next week again.
    r = await srv.http.post(
        f"/api/lessons/{started['lesson_id']}/end", headers=bearer(started["teacher"]["token"])
    )
    assert r.status_code == 200
    shown = await device(srv, w["ra"])
    assert shown["lesson"] is None and shown["next"][0]["state"] == "ended"
    assert shown["next"][1]["on"] == "2023-11-27"
    r = await srv.http.post(start, headers=teacher)
    assert (r.status_code, r.json()["code"]) == (409, "lesson_ended")


async def test_bad_input_is_refused_and_changes_nothing(srv: Running, clock: Clock) -> None:
    at(clock, "2023-11-15T08:00:00")
    w = await district(srv)
    entry = await weekly(srv, w)
    r = await srv.http.get("/api/timetable?days=60", headers=ADMIN)
    before = r.json()
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        # Village A's room already has maths at 09:00 on 2023-11-27.
        (
            {"room_ids": [w["ra"]["id"]], "starts_at": "2023-11-27T09:30:00", "repeat": None},
            409,
            "overlap",
            "五年级 already has 五年级数学 at 2023-11-27 09:00",
        ),
        ({"starts_at": "2023-11-14T09:00:00"}, 422, "invalid_command", "in the past"),
        # The room of a school the urban school is not paired with.
        (
            {"room_ids": [w["rc"]["id"]], "starts_at": "2023-11-21T09:00:00"},
            422,
            "invalid_command",
            "another school's room",
        ),
        ({"duration_min": 600}, 422, "invalid_command", "5 to 240 minutes"),
        ({"teacher_id": "nobody"}, 404, "not_found", "no such teacher"),
        ({"starts_at": "not a time"}, 422, "invalid_request", "starts_at"),
    ]
    for change, status, code, message in cases:
        body = {
            "title": "语文",
            "teacher_id": w["teacher"]["id"],
            "room_ids": [w["ra"]["id"]],
            "starts_at": "2023-11-21T09:00:00",
            "duration_min": 45,
        } | change
        r = await srv.http.post("/api/timetable", json=body, headers=ADMIN)
        assert (r.status_code, r.json()["code"]) == (status, code), (change, r.text)
        assert message in r.json()["message"]
    # The same time given with an offset is read in Shanghai time: an overlap too.
    r = await srv.http.post(
        "/api/timetable",
        json={
            "title": "语文",
            "teacher_id": w["teacher"]["id"],
            "room_ids": [w["rb"]["id"]],
            "starts_at": "2023-11-20T01:30:00Z",
            "duration_min": 45,
        },
        headers=ADMIN,
    )
    assert (r.status_code, r.json()["code"]) == (409, "overlap")
    # Pairing a room with a rural school, or an urban school's room, is refused.
    r = await srv.http.post(
        f"/api/schools/{w['ra']['school_id']}/pairings",
        json={"room_id": w["rb"]["id"]},
        headers=ADMIN,
    )
    assert (r.status_code, r.json()["code"]) == (422, "invalid_command")
    # A week moved onto another lesson's time, or into the past.
    week = f"/api/timetable/{entry['id']}/occurrences/2023-11-27"
    r = await srv.http.put(week, json={"moved_to": "2023-11-13T09:00:00"}, headers=ADMIN)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_command")
    r = await srv.http.put(
        week, json={"cancelled": True, "moved_to": "2023-11-28T09:00:00"}, headers=ADMIN
    )
    assert (r.status_code, r.json()["code"]) == (422, "invalid_request")
    r = await srv.http.get("/api/timetable?days=60", headers=ADMIN)
    assert r.json() == before

    # A rotated device link: the old one is refused with a clear error, the new works.
    rotated = await post(srv, f"/api/rooms/{w['ra']['id']}/device", {}, status=200)
    refused = await device(srv, w["ra"], status=403)
    assert refused["code"] == "device_link_revoked" and "new link" in refused["message"]
    assert (await device(srv, rotated))["room"]["id"] == w["ra"]["id"]
    r = await srv.http.delete(f"/api/rooms/{w['ra']['id']}/device", headers=ADMIN)
    assert r.status_code == 204
    assert (await device(srv, rotated, status=403))["code"] == "device_link_revoked"
    r = await srv.http.get("/api/device/next", headers=bearer("rnothing.secret"))
    assert (r.status_code, r.json()["code"]) == (403, "bad_device_link")


async def test_weeks_are_cancelled_and_moved(srv: Running, clock: Clock) -> None:
    at(clock, "2023-11-15T08:00:00")
    w = await district(srv)
    entry = await weekly(srv, w)
    base = f"/api/timetable/{entry['id']}/occurrences"
    r = await srv.http.put(f"{base}/2023-11-27", json={"cancelled": True}, headers=ADMIN)
    assert r.status_code == 200 and "2023-11-27" not in r.json()["occurrences"]
    r = await srv.http.put(
        f"{base}/2023-12-04", json={"moved_to": "2023-12-05T14:00:00"}, headers=ADMIN
    )
    assert r.status_code == 200
    r = await srv.http.get(f"/api/timetable?room_id={w['rb']['id']}&days=60", headers=ADMIN)
    assert [(o["on"], o["starts_at"], o["moved"]) for o in r.json()["occurrences"]] == [
        ("2023-11-20", "2023-11-20T09:00:00+08:00", False),
        ("2023-12-04", "2023-12-05T14:00:00+08:00", True),
        ("2023-12-11", "2023-12-11T09:00:00+08:00", False),
    ]
    # Undo the cancellation: the week is back.
    r = await srv.http.delete(f"{base}/2023-11-27", headers=ADMIN)
    assert r.status_code == 200 and "2023-11-27" in r.json()["occurrences"]


async def test_calendar_feeds(srv: Running, clock: Clock) -> None:
    at(clock, "2023-11-15T08:00:00")
    w = await district(srv)
    entry = await weekly(srv, w)
    await srv.http.put(
        f"/api/timetable/{entry['id']}/occurrences/2023-12-04",
        json={"moved_to": "2023-12-05T14:00:00"},
        headers=ADMIN,
    )
    cred = w["teacher"]["link"]["credential"]
    r = await srv.http.get(f"/api/teachers/{w['teacher']['id']}/timetable.ics?access={cred}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
    cal = icalendar.Calendar.from_ical(r.content)
    events = cal.walk("VEVENT")
    assert [e.decoded("dtstart") for e in events] == [
        datetime(2023, 11, 20, 9, tzinfo=SHANGHAI),
        datetime(2023, 11, 27, 9, tzinfo=SHANGHAI),
        datetime(2023, 12, 5, 14, tzinfo=SHANGHAI),
        datetime(2023, 12, 11, 9, tzinfo=SHANGHAI),
    ]
    assert str(events[0]["summary"]) == "五年级数学"
    assert str(events[0]["location"]) == "石桥小学 五年级, 河口小学 五年级"
    assert cal.walk("VTIMEZONE")[0]["tzid"] == "Asia/Shanghai"
    # The rural school's feed has the lessons in its room.
    r = await srv.http.get(f"/api/schools/{w['ra']['school_id']}/timetable.ics", headers=ADMIN)
    assert len(icalendar.Calendar.from_ical(r.content).walk("VEVENT")) == 4
    r = await srv.http.get(f"/api/schools/{w['rc']['school_id']}/timetable.ics", headers=ADMIN)
    assert icalendar.Calendar.from_ical(r.content).walk("VEVENT") == []
    # Another teacher's link opens neither feed nor lesson.
    other = await post(srv, f"/api/schools/{w['urban']['id']}/teachers", {"name": "王老师"})
    r = await srv.http.get(
        f"/api/teachers/{w['teacher']['id']}/timetable.ics",
        headers=bearer(other["link"]["credential"]),
    )
    assert (r.status_code, r.json()["code"]) == (403, "not_allowed")
    at(clock, "2023-11-20T09:00:00")
    r = await srv.http.post(
        f"/api/timetable/{entry['id']}/occurrences/2023-11-20/start",
        headers=bearer(other["link"]["credential"]),
    )
    assert (r.status_code, r.json()["code"]) == (403, "not_allowed")


ENTRY = {
    "title": "x",
    "teacher_id": "t",
    "room_ids": ["r"],
    "starts_at": "2030-01-01T09:00:00",
    "duration_min": 45,
}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/schools", {"name": "x", "kind": "urban"}),
        ("GET", "/api/schools", None),
        ("POST", "/api/timetable", ENTRY),
        ("DELETE", "/api/rooms/r1", None),
        ("POST", "/api/rooms/r1/device", None),
        ("GET", "/api/timetable", None),
    ],
)
async def test_the_admin_key_is_needed(
    srv: Running, method: str, path: str, body: dict[str, Any] | None
) -> None:
    r = await srv.http.request(method, path, json=body)
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    r = await srv.http.request(method, path, json=body, headers=bearer("wrong"))
    assert (r.status_code, r.json()["code"]) == (403, "not_allowed")


async def test_rename_list_and_delete(srv: Running, clock: Clock) -> None:
    at(clock, "2023-11-15T08:00:00")
    w = await district(srv)
    r = await srv.http.patch(
        f"/api/rooms/{w['ra']['id']}", json={"name": " 六年级 "}, headers=ADMIN
    )
    assert r.json()["name"] == "六年级"
    r = await srv.http.patch(
        f"/api/schools/{w['urban']['id']}", json={"name": "石桥小学"}, headers=ADMIN
    )
    assert (r.status_code, r.json()["code"]) == (409, "conflict")
    r = await srv.http.get("/api/schools", headers=ADMIN)
    urban = next(s for s in r.json()["schools"] if s["kind"] == "urban")
    assert [t["name"] for t in urban["teachers"]] == ["李老师"]
    assert {x["name"] for x in urban["teaches"]} == {"六年级", "五年级"}
    # A room without history goes, with its pairing.
    r = await srv.http.delete(f"/api/rooms/{w['rb']['id']}", headers=ADMIN)
    assert r.json() == {"id": w["rb"]["id"], "archived": False}
    r = await srv.http.get(f"/api/schools/{w['urban']['id']}", headers=ADMIN)
    assert [x["id"] for x in r.json()["teaches"]] == [w["ra"]["id"]]
    # A room timetabled ahead stays; once its lesson was held, it is archived.
    entry = await weekly(srv, w, room_ids=[w["ra"]["id"]], repeat=None)
    r = await srv.http.delete(f"/api/rooms/{w['ra']['id']}", headers=ADMIN)
    assert (r.status_code, r.json()["code"]) == (409, "conflict")
    at(clock, "2023-11-20T09:00:00")
    started = (
        await srv.http.post(
            f"/api/timetable/{entry['id']}/occurrences/2023-11-20/start", headers=ADMIN
        )
    ).json()
    await srv.http.post(f"/api/lessons/{started['lesson_id']}/end", headers=ADMIN)
    at(clock, "2023-11-21T09:00:00")
    r = await srv.http.delete(f"/api/rooms/{w['ra']['id']}", headers=ADMIN)
    assert r.json() == {"id": w["ra"]["id"], "archived": True}
    # Its lesson is still there; its device link opens nothing.
    r = await srv.http.get(f"/api/lessons/{started['lesson_id']}", headers=ADMIN)
    assert r.status_code == 200 and r.json()["state"] == "ended"
    assert (await device(srv, w["ra"], status=403))["message"] == "this room was removed"


async def test_restart_keeps_the_district_and_upgrades_an_old_database(
    settings: Settings, clock: Clock
) -> None:
    at(clock, "2023-11-15T08:00:00")
    async with serve(settings, FakeMedia(), clock) as srv:
        old = await create_lesson(srv, "Before schools")
        await srv.http.post(f"/api/lessons/{old['id']}/end", headers=ADMIN)
    # A database as the first release left it: no schema version, no school tables.
    db = sqlite3.connect(settings.data_dir / "classroom.sqlite3")
    with db:
        for table in (
            "occurrence_lessons",
            "occurrence_changes",
            "timetable_entries",
            "pairings",
            "teachers",
            "rooms",
            "schools",
        ):
            db.execute(f"DROP TABLE {table}")
        db.execute("PRAGMA user_version = 0")
    db.close()

    async with serve(settings, FakeMedia(), clock) as srv:
        r = await srv.http.get(f"/api/lessons/{old['id']}", headers=ADMIN)
        assert r.json()["title"] == "Before schools"
        w = await district(srv)
        entry = await weekly(srv, w)
        await srv.http.put(
            f"/api/timetable/{entry['id']}/occurrences/2023-11-27",
            json={"cancelled": True},
            headers=ADMIN,
        )
        at(clock, "2023-11-20T09:00:00")
        started = await srv.http.post(
            f"/api/timetable/{entry['id']}/occurrences/2023-11-20/start", headers=ADMIN
        )
        assert started.status_code == 200
        before = await device(srv, w["ra"])

    async with serve(settings, FakeMedia(), clock) as srv:
        after = await device(srv, w["ra"])
        # The running lesson came back with the server; the device is let in again.
        assert after["lesson"]["lesson_id"] == before["lesson"]["lesson_id"]
        assert [o["on"] for o in after["next"]] == ["2023-11-20"]
        r = await srv.http.get("/api/timetable?days=60", headers=ADMIN)
        assert [o["on"] for o in r.json()["occurrences"]] == [
            "2023-11-20",
            "2023-12-04",
            "2023-12-11",
        ]
        r = await srv.http.get(
            "/api/timetable?from=2023-11-20&days=1",
            headers=bearer(w["teacher"]["link"]["credential"]),
        )
        assert r.json()["occurrences"][0]["state"] == "live"
    db = sqlite3.connect(settings.data_dir / "classroom.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone() == (2,)
    db.close()


async def test_a_waiting_device_hears_its_lesson_start_at_once(srv: Running, clock: Clock) -> None:
    """`?wait=`: the projector's request is answered when the teacher starts the lesson,
    not at the end of its wait nor at its next poll."""
    at(clock, "2023-11-15T08:00:00")
    w = await district(srv)
    entry = await weekly(srv, w)
    at(clock, "2023-11-20T08:50:00")
    room = bearer(w["ra"]["device"]["credential"])
    # Nothing changes: the answer comes at the end of the wait, with no lesson.
    began = time.monotonic()
    r = await srv.http.get("/api/device/next?wait=0.3", headers=room)
    assert r.status_code == 200 and r.json()["lesson"] is None
    assert time.monotonic() - began >= 0.3
    for bad in ("-1", "26", "soon"):
        r = await srv.http.get(f"/api/device/next?wait={bad}", headers=room)
        assert r.status_code == 422, bad

    waiting = asyncio.create_task(srv.http.get("/api/device/next?wait=20", headers=room))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    began = time.monotonic()
    start = f"/api/timetable/{entry['id']}/occurrences/2023-11-20/start"
    r = await srv.http.post(start, headers=bearer(w["teacher"]["link"]["credential"]))
    assert r.status_code == 200, r.text
    answer = (await asyncio.wait_for(waiting, 5)).json()
    assert time.monotonic() - began < 2
    assert answer["lesson"]["lesson_id"] == r.json()["lesson_id"]

    # Revoked while it waits: the answer says so.
    other = await post(srv, "/api/schools", {"name": "山脚小学", "kind": "rural"})
    lonely = await post(srv, f"/api/schools/{other['id']}/rooms", {"name": "一年级"})
    waiting = asyncio.create_task(
        srv.http.get("/api/device/next?wait=20", headers=bearer(lonely["device"]["credential"]))
    )
    await asyncio.sleep(0.2)
    r = await srv.http.delete(f"/api/rooms/{lonely['id']}/device", headers=ADMIN)
    assert r.status_code == 204
    refused = await asyncio.wait_for(waiting, 5)
    assert (refused.status_code, refused.json()["code"]) == (403, "device_link_revoked")


async def test_a_stopping_server_answers_its_waiting_devices(
    settings: Settings, media: FakeMedia, clock: Clock
) -> None:
    """uvicorn waits for open requests when it stops: a device's wait must not hold it."""
    at(clock, "2023-11-15T08:00:00")
    async with serve(settings, media, clock) as srv:
        w = await district(srv)
        room = bearer(w["ra"]["device"]["credential"])
        waiting = asyncio.create_task(srv.http.get("/api/device/next?wait=25", headers=room))
        await asyncio.sleep(0.2)
        began = time.monotonic()
        srv.server.should_exit = True
        r = await asyncio.wait_for(waiting, 5)
        assert r.status_code == 200 and r.json()["lesson"] is None
        assert time.monotonic() - began < 3
