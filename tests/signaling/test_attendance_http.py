"""Attendance, the district summary and the admin's session cookie over HTTP, against
the app built by its factory, with a hand-moved clock and real WebSocket clients."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from signaling.admin_session import COOKIE, SESSION_TTL_S
from tests.signaling.conftest import (
    ADMIN,
    ADMIN_KEY,
    Clock,
    Peer,
    Running,
    eventually,
    joined,
    make_settings,
    serve,
    snapshot,
)
from tests.signaling.fakes import FakeMedia
from tests.signaling.test_schools import at, bearer, device, district, weekly

pytestmark = pytest.mark.timeout(30)


async def until(peer: Peer, kind: str) -> None:
    while (msg := await peer.recv())["type"] != "event" or msg["event"]["kind"] != kind:
        assert msg["type"] != "_closed", msg


async def hold_a_lesson(srv: Running, clock: Clock) -> dict[str, Any]:
    """The first week of a weekly lesson: the teacher from 08:55, room A from 09:00 to
    09:30 (it drops for 5 minutes at 09:10), room B from 09:02 to the end at 09:40."""
    at(clock, "2023-11-15T08:00:00")
    w = await district(srv)
    entry = await weekly(srv, w)
    teacher_link = bearer(w["teacher"]["link"]["credential"])
    at(clock, "2023-11-20T08:55:00")
    r = await srv.http.post(
        f"/api/timetable/{entry['id']}/occurrences/2023-11-20/start", headers=teacher_link
    )
    assert r.status_code == 200, r.text
    started = r.json()
    lesson_id = started["lesson_id"]
    token_a = (await device(srv, w["ra"]))["lesson"]["token"]
    token_b = (await device(srv, w["rb"]))["lesson"]["token"]

    async def offline(pid: str) -> bool:
        people = (await snapshot(srv, lesson_id))["participants"]
        return not next(p["online"] for p in people if p["id"] == pid)

    pa, pb = (c["participant_id"] for c in started["classrooms"])
    async with joined(srv, started["teacher"]["token"]):
        at(clock, "2023-11-20T09:00:00")
        async with joined(srv, token_a) as (room_a, _):
            at(clock, "2023-11-20T09:02:00")
            async with joined(srv, token_b) as (room_b, _):
                await room_a.send({"type": "raise_hand", "student": "小明"})
                await room_b.send({"type": "chat", "text": "听得见"})
                await until(room_b, "chat_posted")  # the hand and the line are in
                at(clock, "2023-11-20T09:10:00")
            # (B left at 09:10 in this block; it comes back below.)
            await eventually(lambda: offline(pb))
            async with joined(srv, token_b):
                at(clock, "2023-11-20T09:30:00")
            # The clock moves on only once the server has seen B leave at 09:30.
            await eventually(lambda: offline(pb))
        await eventually(lambda: offline(pa))
        at(clock, "2023-11-20T09:40:00")
        r = await srv.http.post(
            f"/api/lessons/{lesson_id}/end", headers=bearer(started["teacher"]["token"])
        )
        assert r.status_code == 200, r.text
    return {"w": w, "entry": entry, "started": started, "a": pa, "b": pb}


async def test_attendance_of_an_occurrence(srv: Running, clock: Clock) -> None:
    held = await hold_a_lesson(srv, clock)
    started, w = held["started"], held["w"]
    lesson_id = started["lesson_id"]
    teacher_token = bearer(started["teacher"]["token"])

    r = await srv.http.get(f"/api/lessons/{lesson_id}/attendance", headers=teacher_token)
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["entry_id"], report["on"], report["state"]) == (
        held["entry"]["id"],
        "2023-11-20",
        "ended",
    )
    people = {a["participant_id"]: a for a in report["attendees"]}
    a, b = people[held["a"]], people[held["b"]]
    assert (a["room_id"], b["room_id"]) == (w["ra"]["id"], w["rb"]["id"])
    assert [(s["joined"], s["left"]) for s in a["sessions"]] == [
        ("2023-11-20T09:00:00+08:00", "2023-11-20T09:30:00+08:00")
    ]
    assert a["minutes"] == 30.0 and a["hands"] == [{"student": "小明", "at": 420.0}]
    assert [s["ended_by"] for s in b["sessions"]] == ["left", "left"]
    assert b["minutes"] == 28.0 and b["chat_count"] == 1  # 09:02-09:10 and 09:10-09:30
    assert people["teacher"]["minutes"] == 45.0

    r = await srv.http.get(f"/api/lessons/{lesson_id}/attendance.csv", headers=ADMIN)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")  # the BOM that tells Excel it is UTF-8
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    by_room = {row["教室/classroom"]: row for row in rows}
    assert by_room["石桥小学 · 五年级"]["在线分钟/minutes"] == "30.0"
    assert by_room["河口小学 · 五年级"]["在线分钟/minutes"] == "28.0"
    assert by_room["石桥小学 · 五年级"]["举手学生/students"] == "小明"
    assert by_room["石桥小学 · 五年级"]["首次进入/first_joined"] == "2023-11-20 09:00:00"
    assert by_room["河口小学 · 五年级"]["连接次数/sessions"] == "2"

    # Nobody else reads it: a classroom's token, no credential, a wrong key, another id.
    r = await srv.http.get(f"/api/lessons/{lesson_id}/attendance")
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    r = await srv.http.get(f"/api/lessons/{lesson_id}/attendance", headers=bearer("wrong"))
    assert (r.status_code, r.json()["code"]) == (403, "bad_token")
    r = await srv.http.get("/api/lessons/lnope/attendance.csv", headers=ADMIN)
    assert (r.status_code, r.json()["code"]) == (404, "not_found")

    # The district summary: week 1 held and attended by both; week 2 timetabled, not held.
    at(clock, "2023-11-28T10:00:00")
    r = await srv.http.get("/api/district/summary?weeks=2", headers=ADMIN)
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary["weeks"] == ["2023-11-20", "2023-11-27"]
    rooms = {room["room_id"]: room for room in summary["rooms"]}
    assert rooms[w["ra"]["id"]]["weeks"] == [
        {"week": "2023-11-20", "scheduled": 1, "held": 1, "attended": 1},
        {"week": "2023-11-27", "scheduled": 1, "held": 0, "attended": 0},
    ]
    assert rooms[w["ra"]["id"]]["share"] == 0.5
    assert rooms[w["rc"]["id"]]["share"] is None  # never timetabled
    for bad in ("0", "54", "x"):
        r = await srv.http.get(f"/api/district/summary?weeks={bad}", headers=ADMIN)
        assert (r.status_code, r.json()["code"]) == (422, "invalid_request")
    r = await srv.http.get("/api/district/summary", headers=teacher_token)
    assert (r.status_code, r.json()["code"]) == (403, "not_allowed")

    for bad in ("0", "367", "x"):
        r = await srv.http.get(f"/api/lessons?days={bad}", headers=ADMIN)
        assert (r.status_code, r.json()["code"]) == (422, "invalid_request")
    # The admin's list of lessons leads to it.
    r = await srv.http.get("/api/lessons?days=30", headers=ADMIN)
    (listed,) = r.json()["lessons"]
    assert (listed["id"], listed["entry_id"], listed["state"]) == (
        lesson_id,
        held["entry"]["id"],
        "ended",
    )


async def test_a_classroom_token_does_not_read_attendance(srv: Running, clock: Clock) -> None:
    r = await srv.http.post(
        "/api/lessons", json={"title": "Ad hoc", "classrooms": ["A", "B"]}, headers=ADMIN
    )
    lesson = r.json()
    classroom = bearer(lesson["classrooms"][0]["token"])
    r = await srv.http.get(f"/api/lessons/{lesson['id']}/attendance", headers=classroom)
    assert (r.status_code, r.json()["code"]) == (403, "not_allowed")
    # An ad-hoc lesson has attendance too, with no rooms; nobody came yet.
    r = await srv.http.get(f"/api/lessons/{lesson['id']}/attendance", headers=ADMIN)
    report = r.json()
    assert report["entry_id"] is None and report["state"] == "live"
    assert [a["attended"] for a in report["attendees"]] == [False, False, False]


# -- the admin's session cookie --------------------------------------------------------


def cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


async def sign_in(srv: Running, key: str = ADMIN_KEY, **headers: str) -> Any:
    r = await srv.http.post("/api/admin/session", json={"key": key}, headers=headers)
    srv.http.cookies.clear()  # each request below says which cookie it sends
    return r


async def test_the_session_cookie(srv: Running, clock: Clock) -> None:
    r = await sign_in(srv, "not-the-key")
    assert (r.status_code, r.json()["code"]) == (403, "wrong_key")
    assert "set-cookie" not in r.headers
    r = await sign_in(srv, origin="http://evil.example")
    assert (r.status_code, r.json()["code"]) == (403, "cross_origin")

    r = await sign_in(srv)
    assert r.status_code == 200, r.text
    set_cookie = r.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
    assert "Path=/api" in set_cookie and "Secure" not in set_cookie  # public URL is http
    value = r.cookies[COOKIE]
    assert ADMIN_KEY not in value
    me = await srv.http.get("/api/admin/session", headers=cookie(value))
    assert me.json()["signed_in"] is True

    # The cookie opens the admin's API in place of the key; the key still works.
    r = await srv.http.get("/api/schools", headers=cookie(value))
    assert r.status_code == 200, r.text
    school = {"name": "城关小学", "kind": "urban"}
    r = await srv.http.post("/api/schools", json=school, headers=cookie(value))
    assert r.status_code == 201, r.text
    # Same origin (the Origin a browser sends from this server's own page).
    same = cookie(value) | {"Origin": srv.url}
    r = await srv.http.post(
        "/api/schools", json={"name": "石桥小学", "kind": "rural"}, headers=same
    )
    assert r.status_code == 201, r.text
    # Another site's page: refused, and nothing is made.
    evil = cookie(value) | {"Origin": "http://evil.example"}
    r = await srv.http.post("/api/schools", json={"name": "坏学校", "kind": "rural"}, headers=evil)
    assert (r.status_code, r.json()["code"]) == (403, "cross_origin")
    r = await srv.http.delete("/api/schools/sx", headers=evil)
    assert r.status_code == 403
    names = [
        s["name"] for s in (await srv.http.get("/api/schools", headers=ADMIN)).json()["schools"]
    ]
    assert sorted(names) == ["城关小学", "石桥小学"]

    # A forged, altered or malformed cookie opens nothing, and breaks nothing.
    forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    later = str(int(value.split(".")[0]) + 3600) + value[value.index(".") :]
    for bad in (forged, later, "abc", "1.2.3", '"x', ""):
        r = await srv.http.get("/api/schools", headers=cookie(bad))
        assert (r.status_code, r.json()["code"]) == (401, "unauthorized"), bad
    r = await srv.http.get("/api/schools", headers={"Cookie": "a=b; ; =; classroom_admin"})
    assert r.status_code == 401
    # The QR code of a link, for the admin only.
    r = await srv.http.post(
        "/api/admin/qr", json={"text": "http://x/room#device=r1.s"}, headers=cookie(value)
    )
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
    assert r.content.lstrip().startswith(b"<?xml") and b"<svg" in r.content
    r = await srv.http.post("/api/admin/qr", json={"text": "x"})
    assert r.status_code == 401
    r = await srv.http.post("/api/admin/qr", json={"text": "x" * 501}, headers=ADMIN)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_request")

    # Signing out ends it: the same value is refused from then on.
    r = await srv.http.delete("/api/admin/session", headers=cookie(value))
    assert r.status_code == 204 and "Max-Age=0" in r.headers["set-cookie"]
    r = await srv.http.get("/api/schools", headers=cookie(value))
    assert r.status_code == 401

    # A new session expires after SESSION_TTL_S.
    value = (await sign_in(srv)).cookies[COOKIE]
    clock.t += SESSION_TTL_S - 1
    assert (await srv.http.get("/api/schools", headers=cookie(value))).status_code == 200
    clock.t += 2
    assert (await srv.http.get("/api/schools", headers=cookie(value))).status_code == 401
    me = await srv.http.get("/api/admin/session", headers=cookie(value))
    assert me.json()["signed_in"] is False


async def test_the_cookie_is_secure_behind_https(tmp_path: Path, clock: Clock) -> None:
    settings = make_settings(tmp_path, public_url="https://school.example")
    async with serve(settings, FakeMedia(), clock) as srv:
        r = await sign_in(srv)
        assert r.status_code == 200
        assert "Secure" in r.headers["set-cookie"]
        # The public URL's host is ours too (a TLS proxy in front).
        value = r.cookies[COOKIE]
        headers = cookie(value) | {"Origin": "https://school.example"}
        r = await srv.http.post(
            "/api/schools", json={"name": "城关小学", "kind": "urban"}, headers=headers
        )
        assert r.status_code == 201, r.text
