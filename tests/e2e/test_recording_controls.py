"""The teacher's recording controls in Chromium against the real server: the badge says
the lesson is recorded once the teacher publishes, pause and resume reach the server,
and after the lesson the teacher's page links to the replay, which plays."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import _http, screenshot, wait_connected

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _server_recording(server, lesson_id: str) -> dict:
    status, snapshot = _http(
        "GET", f"{server.base}/api/lessons/{lesson_id}", token=server.admin_key
    )
    assert status == 200, snapshot
    return snapshot["recording"]


def test_teacher_pauses_resumes_and_finds_the_replay(server, open_page):
    lesson = server.create_lesson("五年级数学 录制", ["石桥小学"])
    teacher = open_page(server.url(lesson["teacher"]["url"]), "teacher")
    wait_connected(teacher)

    # Recorded from the teacher's first answered offer: the badge, with a running clock.
    badge = "[data-testid=recording]"
    teacher.wait_for_selector(f"{badge}[data-state=recording]:not([hidden])")
    assert "录制中" in teacher.inner_text(badge)
    teacher.wait_for_function(
        "() => /^0:0[4-9]$/.test(document.querySelector('[data-testid=recording-time]').textContent)",
        timeout=10_000,
    )
    assert _server_recording(server, lesson["id"])["state"] == "recording"
    screenshot(teacher, "teacher-recording")

    # Pause: the badge says so, its clock stops, and the server agrees.
    teacher.click("[data-testid=pause-recording]")
    teacher.wait_for_selector(f"{badge}[data-state=paused]")
    assert "录制已暂停" in teacher.inner_text(badge)
    assert teacher.is_hidden("[data-testid=pause-recording]")
    assert _server_recording(server, lesson["id"])["state"] == "paused"
    stopped_at = teacher.inner_text("[data-testid=recording-time]")
    time.sleep(1.5)
    assert teacher.inner_text("[data-testid=recording-time]") == stopped_at
    # English, one click: the badge and the button follow.
    teacher.click("[data-testid=lang-toggle]")
    teacher.wait_for_selector(f"{badge}:has-text('Recording paused')")
    assert teacher.inner_text("[data-testid=resume-recording]") == "Resume recording"
    screenshot(teacher, "teacher-recording-paused-en")
    teacher.click("[data-testid=lang-toggle]")

    # A refused action shows as the others do (here: resuming twice, sent at once).
    teacher.evaluate(
        "() => { const c = window.__classroom.connection; c.resumeRecording(); c.resumeRecording(); }"
    )
    teacher.wait_for_selector(f"{badge}[data-state=recording]")
    teacher.wait_for_selector("[data-testid=error]:has-text('not paused')")
    assert _server_recording(server, lesson["id"])["state"] == "recording"
    assert teacher.is_visible("[data-testid=pause-recording]")
    time.sleep(2)  # a little more picture after the pause

    # The lesson ends: the teacher's page offers the replay of this lesson's recording.
    teacher.click("[data-testid=end-lesson]")
    link = teacher.wait_for_selector("[data-testid=lesson-ended] [data-testid=replay-link]")
    assert link.inner_text() == "观看本课回放"
    assert link.get_attribute("href") == f"/replay#token={lesson['teacher']['token']}"
    assert _server_recording(server, lesson["id"])["state"] == "off"
    # Nothing of the live lesson is left over it: no banner, no badge, no end button.
    assert teacher.locator("[data-testid=error]").count() == 0
    assert teacher.is_hidden(badge) and teacher.is_hidden("[data-testid=end-lesson]")
    screenshot(teacher, "teacher-ended-replay-link")
    teacher.click("[data-testid=lang-toggle]")
    teacher.wait_for_selector("[data-testid=replay-link]:has-text('Watch the replay')")
    teacher.click("[data-testid=lang-toggle]")

    # ...which plays (as tests/e2e/test_replay.py checks it).
    replay = open_page(server.base + link.get_attribute("href"), "replay")
    replay.wait_for_selector("[data-testid=chapter]")
    replay.evaluate("() => window.__replay.replay.master.play()")
    replay.wait_for_function(
        """() => { const v = document.querySelector('[data-testid=replay-camera]');
                   return v.currentTime > 1.5 && v.getVideoPlaybackQuality().totalVideoFrames > 10; }""",
        timeout=15_000,
    )
    # The pause is left out of the recording, and the lesson going on is a chapter.
    kinds = replay.eval_on_selector_all(
        "[data-testid=chapter]", "els => els.map((e) => e.dataset.kind)"
    )
    assert "recording_resumed" in kinds, kinds
