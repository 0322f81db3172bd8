"""The school admin's pages in a real Chromium: sign in, build a district, schedule a
weekly lesson, see a device link's QR code; and a lesson's attendance, from the
teacher's page after the lesson, down to the CSV Excel opens."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import ADMIN_KEY, Server, _http, screenshot, wait_connected

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SHANGHAI = ZoneInfo("Asia/Shanghai")


def in_card(page: Any, kind: str, name: str) -> Any:
    return page.locator(f"[data-testid={kind}][data-name='{name}']")


def qr_shown(page: Any) -> int:
    """The width of the link panel's QR code as the browser decoded it (0: none)."""
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=link-qr]');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    width: int = page.eval_on_selector("[data-testid=link-qr]", "i => i.naturalWidth")
    return width


def test_an_admin_builds_a_district_in_the_browser(
    server: Server, open_page: Callable[[str, str], Any]
) -> None:
    tag = secrets.token_hex(2)
    urban, rural = f"城关小学{tag}", f"石桥小学{tag}"
    page = open_page(server.base + "/admin", "admin")

    # A wrong key is refused and says so; the right one signs in.
    page.fill("[data-testid=admin-key]", "not-the-key")
    page.click("[data-testid=signin-submit]")
    page.wait_for_selector("[data-testid=signin-error]:has-text('管理密钥不正确')")
    page.fill("[data-testid=admin-key]", ADMIN_KEY)
    page.click("[data-testid=signin-submit]")
    page.wait_for_selector("[data-testid=signed-in]:visible")
    # The cookie is HttpOnly: no script of the page can read it.
    assert "classroom_admin" not in page.evaluate("document.cookie")

    def add_school(name: str, kind: str) -> None:
        page.fill("[data-testid=school-name]", name)
        page.select_option("[data-testid=school-kind]", kind)
        page.click("[data-testid=school-add]")
        in_card(page, "school", name).wait_for()

    add_school(urban, "urban")
    add_school(rural, "rural")
    card = in_card(page, "school", urban)
    card.locator("[data-testid=teacher-name]").fill("李老师")
    card.locator("[data-testid=teacher-add]").click()
    page.wait_for_selector("[data-testid=link-title]:has-text('李老师')")
    teacher_url = page.input_value("[data-testid=link-url]")
    assert "/teacher#teacher=" in teacher_url

    for room in ("五年级", "六年级"):
        card = in_card(page, "school", rural)
        card.locator("[data-testid=room-name]").fill(room)
        card.locator("[data-testid=room-add]").click()
        page.wait_for_selector(f"[data-testid=link-title]:has-text('{room}')")
        assert "/room#device=" in page.input_value("[data-testid=link-url]")
        assert qr_shown(page) > 100  # the device link as a QR code, for the projector PC
    screenshot(page, "admin-device-link-qr")

    for room in ("五年级", "六年级"):
        card = in_card(page, "school", urban)
        card.locator("[data-testid=pair-room]").select_option(label=f"{rural} · {room}")
        card.locator("[data-testid=pair-add]").click()
        in_card(page, "paired", f"{rural} · {room}").wait_for()

    # A weekly lesson from tomorrow at 09:00 (the district's time) for three more weeks.
    tomorrow = (datetime.now(SHANGHAI) + timedelta(days=1)).date()
    page.click("[data-testid=tab-timetable]")
    page.fill("[data-testid=tt-title]", "五年级数学")
    page.select_option("[data-testid=tt-teacher]", label=f"李老师 · {urban}")
    boxes = page.locator("[data-testid=tt-room]")
    assert boxes.count() == 2
    for i in range(2):
        boxes.nth(i).check()
    page.fill("[data-testid=tt-start]", f"{tomorrow.isoformat()}T09:00")
    page.fill("[data-testid=tt-until]", (tomorrow + timedelta(days=21)).isoformat())
    page.click("[data-testid=tt-add]")
    rows = page.locator("[data-testid=occurrence]", has_text="五年级数学")
    rows.first.wait_for()
    # The shared server may hold other tests' lessons: count this teacher's.
    assert rows.filter(has_text=rural).count() == 4
    assert rows.first.get_attribute("data-on") == tomorrow.isoformat()
    # The same room at the same time again: a clear refusal, nothing added.
    page.fill("[data-testid=tt-title]", "重复的课")
    for i in range(2):
        boxes.nth(i).check()
    page.fill("[data-testid=tt-start]", f"{tomorrow.isoformat()}T09:15")
    page.fill("[data-testid=tt-until]", "")
    page.click("[data-testid=tt-add]")
    page.wait_for_selector("[data-testid=tt-error]:has-text('already has 五年级数学')")
    assert page.locator("[data-testid=occurrence]", has_text="重复的课").count() == 0

    # Cancel the second week from the browser.
    second = rows.nth(1)
    second_on = second.get_attribute("data-on")
    second.locator("[data-testid=cancel-week]").click()
    page.wait_for_selector(f"[data-testid=occurrence][data-on='{second_on}']", state="detached")
    screenshot(page, "admin-timetable")

    # The session outlives a reload; signing out ends it.
    page.reload()
    page.wait_for_selector("[data-testid=signed-in]:visible")
    page.click("[data-testid=signout]")
    page.wait_for_selector("[data-testid=signin]:visible")
    status, _ = _http("GET", f"{server.base}/api/schools")
    assert status == 401


def test_attendance_of_a_lesson_with_two_rooms(
    server: Server, open_page: Callable[[str, str], Any]
) -> None:
    key = server.admin_key

    def post(path: str, body: Any = None, token: str = key, status: int = 201) -> Any:
        got, answer = _http("POST", server.base + path, body, token)
        assert got == status, answer
        return answer

    tag = secrets.token_hex(2)
    urban = post("/api/schools", {"name": f"城南小学{tag}", "kind": "urban"})
    village = post("/api/schools", {"name": f"河口小学{tag}", "kind": "rural"})
    teacher = post(f"/api/schools/{urban['id']}/teachers", {"name": "王老师"})
    rooms = [post(f"/api/schools/{village['id']}/rooms", {"name": n}) for n in ("一班", "二班")]
    for room in rooms:
        post(f"/api/schools/{urban['id']}/pairings", {"room_id": room["id"]})
    starts = (datetime.now(SHANGHAI) + timedelta(minutes=5)).replace(second=0, microsecond=0)
    entry = post(
        "/api/timetable",
        {
            "title": "科学课",
            "teacher_id": teacher["id"],
            "room_ids": [r["id"] for r in rooms],
            "starts_at": starts.replace(tzinfo=None).isoformat(),
            "duration_min": 40,
        },
    )
    started = post(
        f"/api/timetable/{entry['id']}/occurrences/{starts.date().isoformat()}/start",
        token=teacher["link"]["credential"],
        status=200,
    )
    teacher_page = open_page(server.url(started["teacher"]["url"]), "teacher")
    wait_connected(teacher_page)

    def classroom_token(room: dict[str, Any]) -> str:
        status, shown = _http(
            "GET", f"{server.base}/api/device/next", None, room["device"]["credential"]
        )
        assert status == 200 and shown["lesson"], shown
        return str(shown["lesson"]["token"])

    def join(token: str) -> Any:
        ws = stack.enter_context(
            connect(server.base.replace("http://", "ws://") + "/ws", open_timeout=10)
        )
        ws.send(json.dumps({"type": "join", "token": token, "protocol": 1}))
        while json.loads(ws.recv(timeout=10))["type"] != "welcome":
            pass
        return ws

    # Two projector PCs (synthetic clients speaking the protocol) for a measured time.
    with contextlib.ExitStack() as stack:
        one, two = (join(classroom_token(r)) for r in rooms)
        t0 = time.monotonic()
        time.sleep(6)
        two.close()
        two_s = time.monotonic() - t0
        time.sleep(6)
        one.close()
        one_s = time.monotonic() - t0

    teacher_page.click("[data-testid=end-lesson]")  # the confirm is accepted
    teacher_page.click("[data-testid=attendance-link]")
    teacher_page.wait_for_selector("[data-testid=attendance]:visible")
    shown = {
        r.get_attribute("data-name"): float(r.get_attribute("data-minutes") or 0)
        for r in teacher_page.locator("[data-testid=attendee]").all()
    }
    names = [f"河口小学{tag} · 一班", f"河口小学{tag} · 二班"]
    assert set(names) <= set(shown), shown
    screenshot(teacher_page, "attendance-page")

    with teacher_page.expect_download() as info:
        teacher_page.click("[data-testid=csv]")
    raw = Path(info.value.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM: Excel shows the Chinese
    rows = {r["教室/classroom"]: r for r in csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))}
    for name, measured, room in zip(names, (one_s, two_s), rooms, strict=True):
        row = rows[name]
        assert row["教室编号/room_id"] == room["id"]
        assert row["连接次数/sessions"] == "1"
        # 0.1 minute is the CSV's step; the server's clock and ours differ by far less.
        assert abs(float(row["在线分钟/minutes"]) - measured / 60) <= 0.07, (row, measured)
        assert float(row["在线分钟/minutes"]) == shown[name]
    # The JSON says it to the second.
    status, report = _http(
        "GET",
        f"{server.base}/api/lessons/{started['lesson_id']}/attendance",
        None,
        started["teacher"]["token"],
    )
    assert status == 200
    got = {a["name"]: a["connected_s"] for a in report["attendees"]}
    assert abs(got[names[0]] - one_s) < 1.5 and abs(got[names[1]] - two_s) < 1.5, got
