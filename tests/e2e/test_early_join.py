"""The projector page joins from its first inline script, before its modules run.

On a satellite link the welcome then often arrives before the modules have run: it
waits in the early socket's inbox and is handled once the page's code has taken the
socket over and finished building itself. Here the modules are held back on purpose
(a delay put in front of the packed module), so that the order is forced, not hoped for.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import CHROMIUM_ARGS, raise_hand, wait_connected, wait_flowing

pytestmark = pytest.mark.e2e

HOLD_MS = 2500


@pytest.fixture
def browser_args() -> list[str]:
    """A page the test serves itself (route.fulfill) has no address of its own, and
    Chromium's local network access checks then refuse its socket to 127.0.0.1."""
    flags = [a for a in CHROMIUM_ARGS if not a.startswith("--disable-features=")]
    features = [a.split("=", 1)[1] for a in CHROMIUM_ARGS if a.startswith("--disable-features=")]
    return [*flags, "--disable-features=" + ",".join([*features, "LocalNetworkAccessChecks"])]


def _hold_the_modules(route: Any) -> None:
    response = route.fetch()
    html = response.text()
    held = html.replace(
        '<script type="module">',
        f'<script type="module">await new Promise((r) => setTimeout(r, {HOLD_MS}));',
        1,
    )
    assert held != html, "the classroom page is not packed: nothing to hold back"
    # The CSP allows the packed module by its hash, which the delay changes.
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-security-policy"}
    headers.pop("content-encoding", None)
    headers.pop("content-length", None)
    route.fulfill(status=response.status, headers=headers, body=held)


def test_a_welcome_that_comes_before_the_modules_waits_for_them(server, open_page, browser):
    lesson = server.create_lesson("早到的欢迎", ["石桥小学 五(1)班"])
    teacher = open_page(server.url(lesson["teacher"]["url"]), "teacher")
    wait_connected(teacher)
    room = browser.new_page()
    room.name = "classroom-held"
    logs: list[str] = []
    room.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
    room.on("pageerror", lambda e: logs.append(f"pageerror: {e}"))
    url = server.url(lesson["classrooms"][0]["url"])
    room.route(re.compile(r".*/classroom(\?.*)?$"), _hold_the_modules)
    room.goto(url)
    wait_connected(room, timeout_s=30)
    marks = room.evaluate(
        "() => Object.fromEntries(performance.getEntriesByType('mark').map(m => [m.name, m.startTime]))"
    )
    # The order this test is about: joined early, answered, then taken over.
    assert marks["early-join"] < marks["early-message"] < marks["early-socket-taken"], marks
    assert marks["early-socket-taken"] <= marks["welcome"], marks
    assert not [line for line in logs if line.startswith("pageerror")], logs
    wait_flowing(room, "teacher_camera")
    # The page works as any: the teacher sees its hand.
    raise_hand(room, "小明")
    room.wait_for_selector("[data-testid=hand-status][data-student=小明]")
    teacher.wait_for_selector("[data-testid=hand][data-student=小明]")
    room.close()
