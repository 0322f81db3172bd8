"""Courseware as a teacher would try it in Chromium: a 20-page PDF uploaded on the teacher's
page, pre-synced by two classroom pages (the teacher sees both ready), pages turned and
pointed at, both classrooms on the same page within a second, a late classroom on the
current page at once, and the replay showing each page at its time."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import pymupdf
import pytest

from tests.e2e.conftest import _http, screenshot, wait_connected

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PAGES = 20
# What the issue asks is 1 s from the turn to the page on screen; asserted with room for
# a busy 2-core machine running other tests (the measured figures are printed).
SHOWN_WITHIN_S = 3.0


def make_pdf(path: Path) -> Path:
    doc = pymupdf.open()
    for n in range(1, PAGES + 1):
        page = doc.new_page(width=960, height=540)  # 16:9, as slides are
        page.draw_rect(page.rect, color=(0.1, 0.3, 0.6), width=8)
        page.insert_text((60, 120), f"Page {n}", fontsize=72)
        page.insert_text((60, 220), f"1/{n + 1} + 1/{n + 2} = ?", fontsize=40)
        page.insert_text((60, 480), "the quick brown fox jumps over the lazy dog " * 2, fontsize=11)
    doc.save(path)
    return path


def _open(browser: Any, url: str, name: str, opened: list[Any], viewport: Any = None) -> Any:
    """A page with its console kept for a failure's report; at most three open at once."""
    assert sum(not p.is_closed() for p in opened) < 3
    page = browser.new_page()
    if viewport:
        page.set_viewport_size(viewport)
    page.name = name
    page.logs = []
    page.on("console", lambda m: page.logs.append(f"[{name}] {m.type}: {m.text}"))
    page.on("pageerror", lambda e: page.logs.append(f"[{name}] pageerror: {e}"))
    page.on("dialog", lambda d: d.accept())
    page.goto(url)
    opened.append(page)
    return page


def shown_page(page: Any) -> int:
    return int(page.get_attribute("[data-testid=deck-frame]", "data-page") or 0)


def wait_page(page: Any, n: int, timeout_s: float = 10) -> None:
    page.wait_for_selector(f"[data-testid=deck-frame][data-page='{n}']", timeout=timeout_s * 1000)


def shown_at(page: Any, deck_id: str, n: int) -> float:
    return float(page.evaluate(f"() => window.__deck.frame.shownAt['{deck_id}/{n}']"))


def test_a_deck_pre_synced_turned_pointed_late_joined_and_replayed(
    server: Any, browser: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    opened: list[Any] = []
    request.node.funcargs["open_page"] = type("Pages", (), {"pages": opened})()
    lesson = server.create_lesson("五年级数学 课件", ["石桥小学", "河口小学", "山顶小学"])
    teacher = _open(browser, server.url(lesson["teacher"]["url"]), "teacher", opened)
    wait_connected(teacher)
    # The projector PCs are on before class: full HD, as the projector is.
    hd = {"width": 1920, "height": 1080}
    rooms = [
        _open(browser, server.url(lesson["classrooms"][i]["url"]), f"classroom-{i + 1}", opened, hd)
        for i in (0, 1)
    ]
    for room in rooms:
        wait_connected(room)

    # The teacher uploads the deck on the page.
    started = time.monotonic()
    teacher.set_input_files("[data-testid=deck-file]", str(make_pdf(tmp_path / "分数.pdf")))
    teacher.wait_for_selector("[data-testid=deck-upload-status][data-state=done]", timeout=30_000)
    uploaded_s = time.monotonic() - started
    assert "20" in teacher.inner_text("[data-testid=deck-upload-status]")
    deck_id = teacher.evaluate("() => window.__classroom.view.deck.id")

    # Both classrooms pre-sync the 20 pages; the teacher sees both ready.
    teacher.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid=deck-ready-room]')]
                   .filter((li) => li.dataset.ready === '20').length === 2""",
        timeout=30_000,
    )
    synced_s = time.monotonic() - started
    ready_text = teacher.inner_text("[data-testid=deck-ready]")
    assert ready_text.count("课件就绪 20/20") == 2, ready_text
    for room in rooms:
        wait_page(room, 1)
        # Sharp at 1920x1080: the page is drawn from a 1920 px image, never stretched up.
        natural, drawn = room.evaluate(
            """() => { const img = document.querySelector('[data-testid=deck-page]');
                       return [img.naturalWidth, img.getBoundingClientRect().width]; }"""
        )
        assert natural == 1920 and 0 < drawn <= 1920
        # Cached in the browser: every page is in the Cache API.
        cached = room.evaluate(
            "async () => (await (await caches.open('classroom-deck-v1')).keys()).length"
        )
        assert cached >= PAGES

    # The teacher turns pages (the button, then the clicker's PageDown) and points.
    latencies: list[float] = []
    for n in (2, 3, 4, 5):
        if n % 2:
            teacher.keyboard.press("PageDown")
        else:
            teacher.click("[data-testid=deck-next]")
        for room in rooms:
            wait_page(room, n)
        sent = float(teacher.evaluate(f"() => window.__teacherDeck.turnedAt[{n}]"))
        latencies += [(shown_at(room, deck_id, n) - sent) / 1000 for room in rooms]
        if n == 3:
            time.sleep(3.2)  # chapters closer than 3 s are one: let page 3 be its own
    assert shown_page(rooms[0]) == shown_page(rooms[1]) == 5
    box = teacher.query_selector("[data-testid=deck-frame]").bounding_box()
    teacher.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)
    teacher.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.25, steps=3)
    for room in rooms:
        room.wait_for_function(
            """() => { const p = document.querySelector('[data-testid=deck-pointer]');
                       return !p.hidden && Math.abs(parseFloat(p.style.left) - 75) < 2
                              && Math.abs(parseFloat(p.style.top) - 25) < 2; }""",
            timeout=5_000,
        )
    screenshot(rooms[0], "courseware-classroom")
    screenshot(teacher, "courseware-teacher")
    assert max(latencies) < SHOWN_WITHIN_S, latencies

    # A classroom that joins late shows the current page first (it missed the pre-sync).
    rooms[1].close()
    time.sleep(3.2)
    teacher.click("[data-testid=deck-next]")
    for room in rooms[:1]:
        wait_page(room, 6)
    late_opened = time.monotonic()
    late = _open(browser, server.url(lesson["classrooms"][2]["url"]), "classroom-3", opened, hd)
    wait_page(late, 6, timeout_s=15)
    late_s = time.monotonic() - late_opened
    assert late.evaluate("() => window.__classroom.view.deck.pointer") is None

    # The lesson ends; the replay shows each page at its time, a chapter per page.
    late.close()
    rooms[0].close()
    status, _ = _http(
        "POST", f"{server.base}/api/lessons/{lesson['id']}/end", token=lesson["teacher"]["token"]
    )
    assert status == 200
    replay = _open(
        browser, f"{server.base}/replay#token={lesson['teacher']['token']}", "replay", opened
    )
    replay.wait_for_selector("[data-testid=chapter][data-kind=page]")
    pages = replay.eval_on_selector_all(
        "[data-testid=chapter][data-kind=page]", "els => els.map((e) => e.textContent)"
    )
    assert any("第 3 页" in p for p in pages) and any("第 6 页" in p for p in pages), pages
    for n in (3, 6, 5):
        chapter = replay.query_selector(
            f"[data-testid=chapter][data-kind=page]:has-text('第 {n} 页')"
        )
        if chapter is None:
            continue  # page 5's turn may fold into page 4's chapter (turned within 3 s)
        chapter.click()
        wait_page(replay, n)
    replay.wait_for_selector("[data-testid=replay-deck-tile]:not([hidden])")
    screenshot(replay, "courseware-replay")
    print(
        f"\ncourseware: upload+render {uploaded_s:.1f} s, pre-sync of 2 classrooms "
        f"{synced_s:.1f} s after the upload began; page shown after the turn: "
        f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
        f"({len(latencies)} turns x rooms); late joiner on the current page {late_s:.1f} s after opening"
    )
