"""A lesson in real browsers: the teacher reaches the classrooms, a hand goes up,
a classroom takes the stage, a reload keeps the hand, a wrong code is explained."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import (
    frames_decoded,
    screenshot,
    wait_connected,
    wait_flowing,
)

pytestmark = pytest.mark.e2e


def test_teacher_reaches_two_classrooms(server, open_page):
    lesson = server.create_lesson("五年级数学 分数的加法", ["石桥小学 五(1)班", "河口小学 五年级"])
    teacher = open_page(server.url(lesson["teacher"]["url"]), "teacher")
    wait_connected(teacher)
    rooms = [
        open_page(server.url(room["url"]), f"classroom-{i}")
        for i, room in enumerate(lesson["classrooms"], 1)
    ]
    for room in rooms:
        wait_connected(room)
    for room in rooms:
        video = wait_flowing(room, "teacher_camera")
        assert video["frameWidth"] > 0
        wait_flowing(room, "teacher_audio")
    # The teacher sees both classrooms online.
    teacher.wait_for_function(
        "() => document.querySelectorAll('[data-testid=classroom-row][data-online=true]').length === 2"
    )
    time.sleep(1)
    screenshot(teacher, "teacher")
    screenshot(rooms[0], "classroom")
