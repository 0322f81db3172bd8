"""The HTTP API: lessons, join codes, snapshots, ending, health, metrics, pages."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from signaling.settings import Settings
from tests.signaling.conftest import ADMIN, Clock, Running, create_lesson, make_settings, serve
from tests.signaling.fakes import FakeMedia

pytestmark = pytest.mark.timeout(30)


async def test_create_lesson_hands_out_links_and_codes(srv: Running) -> None:
    lesson = await create_lesson(srv, "语文", ["Village A", "Village B", "Village C"])
    assert lesson["title"] == "语文"
    assert (
        lesson["teacher"]["url"]
        == f"http://classroom.test/teacher#token={lesson['teacher']['token']}"
    )
    assert lesson["observer"]["url"].startswith("http://classroom.test/observer#token=")
    codes = [c["code"] for c in lesson["classrooms"]]
    assert all(re.fullmatch(r"\d{6}", code) for code in codes) and len(set(codes)) == 3
    assert [c["name"] for c in lesson["classrooms"]] == ["Village A", "Village B", "Village C"]
    assert lesson["classrooms"][0]["url"].startswith("http://classroom.test/classroom#token=")


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer wrong"}, 403, "not_allowed"),
        ({"Authorization": "Basic abc"}, 401, "unauthorized"),
    ],
)
async def test_create_lesson_needs_the_admin_key(
    srv: Running, headers: dict[str, str], status: int, code: str
) -> None:
    r = await srv.http.post(
        "/api/lessons", json={"title": "x", "classrooms": ["a"]}, headers=headers
    )
    assert (r.status_code, r.json()["code"]) == (status, code)


@pytest.mark.parametrize(
    "body",
    [
        {"title": "", "classrooms": ["a"]},
        {"title": "x", "classrooms": []},
        {"title": "x", "classrooms": ["Same", "Same"]},
        {"title": "x"},
        {"title": "x", "classrooms": ["a"] * 101},
    ],
)
async def test_create_lesson_refuses_bad_bodies(srv: Running, body: dict[str, object]) -> None:
    r = await srv.http.post("/api/lessons", json=body, headers=ADMIN)
    assert r.status_code == 422
    assert r.json()["code"] in {"invalid_request", "invalid_command"} and r.json()["message"]


async def test_join_by_code(srv: Running) -> None:
    lesson = await create_lesson(srv)
    room = lesson["classrooms"][1]
    r = await srv.http.post("/api/join", json={"code": room["code"]})
    assert r.status_code == 200
    body = r.json()
    assert body["lesson_id"] == lesson["id"] and body["participant_id"] == room["id"]
    assert body["role"] == "classroom" and body["name"] == "Village B"
    assert body["url"] == f"http://classroom.test/classroom#token={body['token']}"
    r = await srv.http.get(
        f"/api/lessons/{lesson['id']}", headers={"Authorization": f"Bearer {body['token']}"}
    )
    assert r.status_code == 200


async def test_wrong_codes_are_refused_then_rate_limited(srv: Running) -> None:
    lesson = await create_lesson(srv)
    real = {c["code"] for c in lesson["classrooms"]}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in real)
    for _ in range(10):
        r = await srv.http.post("/api/join", json={"code": wrong})
        assert (r.status_code, r.json()["code"]) == (404, "unknown_code")
    # Even the right code is refused for a while: guessing 6 digits must be slow.
    r = await srv.http.post("/api/join", json={"code": lesson["classrooms"][0]["code"]})
    assert (r.status_code, r.json()["code"]) == (429, "too_many_attempts")
    r = await srv.http.post("/api/join", json={"code": "12345"})
    assert r.status_code == 422


async def test_snapshot_needs_a_token_of_that_lesson(srv: Running, clock: Clock) -> None:
    lesson = await create_lesson(srv)
    url = f"/api/lessons/{lesson['id']}"
    r = await srv.http.get(url, headers={"Authorization": f"Bearer {lesson['observer']['token']}"})
    snap = r.json()
    assert snap["state"] == "scheduled" and snap["stage"] is None and snap["hands"] == []
    assert {p["role"] for p in snap["participants"]} == {"teacher", "observer", "classroom"}
    assert (await srv.http.get(url)).status_code == 401
    assert (await srv.http.get("/api/lessons/nope", headers=ADMIN)).status_code == 404
    clock.t += srv.settings.token_ttl_s
    r = await srv.http.get(url, headers={"Authorization": f"Bearer {lesson['observer']['token']}"})
    assert (r.status_code, r.json()["code"]) == (401, "token_expired")


async def test_end_lesson_teacher_or_admin_only(srv: Running) -> None:
    lesson = await create_lesson(srv)
    url = f"/api/lessons/{lesson['id']}/end"
    room = {"Authorization": f"Bearer {lesson['classrooms'][0]['token']}"}
    r = await srv.http.post(url, headers=room)
    assert (r.status_code, r.json()["code"]) == (403, "not_allowed")
    teacher = {"Authorization": f"Bearer {lesson['teacher']['token']}"}
    r = await srv.http.post(url, headers=teacher)
    assert r.status_code == 200 and r.json()["state"] == "ended"
    r = await srv.http.post(url, headers=ADMIN)
    assert (r.status_code, r.json()["code"]) == (409, "lesson_ended")
    assert ("end_lesson", lesson["id"]) in srv.media.calls


async def test_health_and_metrics(srv: Running) -> None:
    assert (await srv.http.get("/healthz")).json() == {"status": "ok"}
    await create_lesson(srv)
    text = (await srv.http.get("/metrics")).text
    assert "classroom_lessons_live 1.0" in text
    assert 'classroom_lesson_events_total{kind="lesson_scheduled"} 1.0' in text
    # What a soak watches for leaks: the loop's tasks, the process's memory and files.
    tasks = [line for line in text.splitlines() if line.startswith("classroom_asyncio_tasks ")]
    assert tasks and float(tasks[0].split()[1]) >= 1
    assert "process_resident_memory_bytes" in text and "process_open_fds" in text


async def test_pages_and_static_files(srv: Running) -> None:
    web = srv.settings.web_client_dir
    (web / "classroom.html").write_text("<h1>classroom</h1>")
    (web / "js").mkdir()
    (web / "js" / "protocol.js").write_text("export {}")
    (web / "__init__.py").write_text("")
    assert (await srv.http.get("/classroom")).text == "<h1>classroom</h1>"
    assert (await srv.http.get("/teacher")).status_code == 404
    assert (await srv.http.get("/static/js/protocol.js")).text == "export {}"
    assert (await srv.http.get("/static/__init__.py")).status_code == 404
    assert (await srv.http.get("/static/../admin.key")).status_code == 404


async def test_admin_key_generated_once_with_mode_0600(tmp_path: Path, clock: Clock) -> None:
    settings: Settings = make_settings(tmp_path, admin_key=None)
    async with serve(settings, FakeMedia(), clock) as srv:
        key_file = settings.data_dir / "admin.key"
        key = key_file.read_text().strip()
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(settings.data_dir / "token.key").st_mode) == 0o600
        r = await srv.http.post(
            "/api/lessons",
            json={"title": "x", "classrooms": ["a"]},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 201
    async with serve(settings, FakeMedia(), clock):
        assert key_file.read_text().strip() == key


async def test_the_web_clients_scripts_come_compressed(srv: Running) -> None:
    web = srv.settings.web_client_dir
    (web / "js").mkdir()
    (web / "js" / "big.js").write_text("export const x = 1;\n" * 500)
    response = await srv.http.get("/static/js/big.js", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.text == "export const x = 1;\n" * 500  # the client inflates it
