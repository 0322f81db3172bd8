"""The replay page in Chromium: a lesson recorded from a real aiortc teacher (media.synthetic)
on the real server, then played: the video decodes frames, time advances, a chapter seeks."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.asyncio.client import connect

from classroom.roles import Role
from media.synthetic import SyntheticParticipant
from tests.e2e.conftest import _http, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def _record(base: str, lesson: dict[str, Any]) -> str:
    """An 11 s lesson: the teacher publishes, a classroom (publishing too) has the floor
    from 4 s to 9 s (longer than the 3 s that folds two chapters into one, with room for
    a busy machine)."""
    ws_url = base.replace("http", "ws") + "/ws"
    room = lesson["classrooms"][0]
    teacher = SyntheticParticipant(Role.TEACHER)
    speaker = SyntheticParticipant(Role.CLASSROOM, decode=False)
    try:
        async with (
            connect(ws_url, open_timeout=5, close_timeout=2, max_queue=None) as ws,
            connect(ws_url, open_timeout=5, close_timeout=2, max_queue=None) as classroom,
        ):
            await ws.send(json.dumps({"type": "join", "token": lesson["teacher"]["token"]}))
            await classroom.send(json.dumps({"type": "join", "token": room["token"]}))
            await classroom.send(json.dumps({"type": "offer", "sdp": await speaker.offer()}))
            async with asyncio.timeout(20):
                while (msg := json.loads(await classroom.recv()))["type"] != "answer":
                    pass
                await speaker.accept(msg["sdp"])
            await ws.send(json.dumps({"type": "offer", "sdp": await teacher.offer()}))
            async with asyncio.timeout(20):
                while True:
                    msg = json.loads(await ws.recv())
                    if msg["type"] == "answer":
                        await teacher.accept(msg["sdp"])
                    elif msg.get("event", {}).get("kind") == "recording_started":
                        rid = str(msg["event"]["recording_id"])
                        break
            await asyncio.sleep(4)
            await ws.send(json.dumps({"type": "grant_floor", "classroom_id": room["id"]}))
            await asyncio.sleep(5)
            await ws.send(json.dumps({"type": "revoke_floor"}))
            await asyncio.sleep(2)
            await ws.send(json.dumps({"type": "end_lesson"}))
            async with asyncio.timeout(10):
                while json.loads(await ws.recv()).get("event", {}).get("kind") != "lesson_ended":
                    pass
    finally:
        await teacher.close()
        await speaker.close()
    return rid


def test_replay_plays_and_a_chapter_seeks(server, open_page):
    lesson = server.create_lesson("五年级数学 回放", ["石桥小学"])
    # Its own thread: Playwright's sync API keeps an event loop on this one.
    with ThreadPoolExecutor(1) as pool:
        rid = pool.submit(asyncio.run, _record(server.base, lesson)).result(timeout=60)
    status, info = _http(
        "GET", f"{server.base}/api/recordings/{rid}", token=lesson["teacher"]["token"]
    )
    assert status == 200, info
    assert [c["kind"] for c in info["chapters"]] == ["start", "floor_granted", "floor_revoked"]

    page = open_page(f"{server.base}/replay#token={lesson['teacher']['token']}", "replay")
    page.wait_for_selector("[data-testid=chapter]")
    assert "石桥小学 发言" in page.inner_text("[data-testid=chapters]")
    page.evaluate("() => window.__replay.replay.master.play()")
    # Plays: time advances and the camera decodes frames; the slides follow.
    page.wait_for_function(
        """() => { const v = document.querySelector('[data-testid=replay-camera]');
                   return v.currentTime > 1.5 && v.getVideoPlaybackQuality().totalVideoFrames > 10; }""",
        timeout=15_000,
    )
    page.wait_for_function(
        """() => { const v = document.querySelector('[data-testid=replay-slides]');
                   return !v.closest('.rtile').hidden && v.getVideoPlaybackQuality().totalVideoFrames > 2; }""",
        timeout=10_000,
    )
    # Each picture says what it is.
    assert page.inner_text("[data-testid=replay-camera-label]") == "老师"
    assert page.inner_text("[data-testid=replay-slides-label]") == "课件"
    # A chapter click seeks: "back to the teacher" is at 7 s.
    revoked = page.query_selector("[data-testid=chapter][data-kind=floor_revoked]")
    target = float(revoked.get_attribute("data-t"))
    revoked.click()
    page.wait_for_function(
        f"""() => {{ const r = window.__replay.replay;
                    return Math.abs(r.now - {target}) < 1.0 && !r.master.paused; }}""",
        timeout=10_000,
    )
    page.wait_for_selector("[data-testid=chapter][data-kind=floor_revoked].current")
    # The stage turn, seen again, is labelled with the classroom that spoke.
    granted = page.query_selector("[data-testid=chapter][data-kind=floor_granted]")
    granted.click()
    page.wait_for_selector("[data-testid=replay-stage-tile]:not([hidden])", timeout=10_000)
    page.wait_for_selector("[data-testid=replay-stage-label]:has-text('石桥小学')")
    # The offline copy comes; then English, one click.
    page.wait_for_selector("[data-testid=offline-status][data-state=done]", timeout=40_000)
    assert page.get_attribute("[data-testid=offline-download]", "href")
    page.click("[data-testid=lang-toggle]")
    page.wait_for_selector("[data-testid=chapters]:has-text('Back to the teacher')")
    time.sleep(0.5)
    screenshot(page, "replay-en")


def test_replay_refuses_a_bad_link(server, open_page):
    page = open_page(f"{server.base}/replay#token=not.a.token", "replay")
    page.wait_for_selector("[data-testid=replay-error]:not([hidden])")
    assert "链接无效" in page.inner_text("[data-testid=replay-error]")
