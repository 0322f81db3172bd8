"""The teacher sees every classroom: one mosaic, each tile named, in a real browser."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import open_lesson, raise_hand, screenshot, wait_flowing

pytestmark = pytest.mark.e2e


def test_the_teacher_sees_the_classrooms(server, open_page):
    _, teacher, rooms = open_lesson(server, open_page, "科学 观察植物", ["石桥小学", "河口小学"])

    # One picture for all of them, at the mosaic's size, decoded by the teacher's page.
    mosaic = wait_flowing(teacher, "classrooms", timeout_s=30)
    assert (mosaic["frameWidth"], mosaic["frameHeight"]) == (960, 540), mosaic
    # Each classroom's name over its own tile (two side by side).
    teacher.wait_for_function(
        "() => document.querySelectorAll('[data-testid=mosaic-cell]').length === 2",
        timeout=15_000,
    )
    names = teacher.eval_on_selector_all(
        "[data-testid=mosaic-cell]", "cells => cells.map(c => c.textContent)"
    )
    assert sorted(names) == sorted(["石桥小学", "河口小学"])
    boxes = teacher.eval_on_selector_all(
        "[data-testid=mosaic-cell]",
        "cells => cells.map(c => { const r = c.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })",
    )
    assert len({(round(x), round(y)) for x, y, _, _ in boxes}) == 2  # two places
    assert all(w > 50 and h > 30 for _, _, w, h in boxes)

    # A raised hand outlines its classroom's tile.
    raise_hand(rooms[1], "李华")
    teacher.wait_for_selector("[data-testid=mosaic-cell].hand:has-text('河口小学')")
    screenshot(teacher, "teacher-mosaic")

    # On stage, a classroom leaves the mosaic: the teacher sees it on the stage.
    room_id = rooms[1].evaluate("() => window.__classroom.you.id")
    teacher.click(f"[data-testid=classroom-row][data-id='{room_id}'] [data-testid=call-on]")
    teacher.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=mosaic-cell]')]"
        ".map(c => c.textContent).join() === '石桥小学'",
        timeout=15_000,
    )
