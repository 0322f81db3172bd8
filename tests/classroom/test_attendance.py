"""Attendance folded from a lesson's log: sessions, minutes, hands, floor, chat, and the
district's per-room weekly summary. A real Lesson driven by commands at hand-set times."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from classroom import commands as c
from classroom import events as e
from classroom.attendance import (
    ENDED,
    LEFT,
    OPEN,
    RESTART,
    Due,
    LessonAttendance,
    district_summary,
    lesson_attendance,
)
from classroom.lesson import Lesson
from classroom.roles import SYSTEM, Role

T0 = 1_700_000_000.0


def lesson() -> Lesson:
    specs = [
        e.ParticipantSpec("teacher", Role.TEACHER, "Teacher"),
        e.ParticipantSpec("observer", Role.OBSERVER, "Observer"),
        e.ParticipantSpec("a", Role.CLASSROOM, "石桥小学 · 五年级"),
        e.ParticipantSpec("b", Role.CLASSROOM, "河口小学 · 五年级"),
    ]
    return Lesson.schedule("l1", "五年级数学", specs, T0)


def run(lesson: Lesson, steps: list[tuple[float, str, c.Command]]) -> Lesson:
    for at, by, command in steps:
        lesson.handle(command, by, T0 + at)
    return lesson


def by_id(report: LessonAttendance) -> dict[str, dict[str, Any]]:
    data = report.to_dict()
    return {a["participant_id"]: a for a in data["attendees"]}


def test_a_whole_lesson() -> None:
    steps: list[tuple[float, str, c.Command]] = [
        (0, "teacher", c.Join()),
        (60, "a", c.Join()),
        (120, "b", c.Join()),
        (180, "a", c.RaiseHand("小明")),
        (200, "teacher", c.GrantFloor("a")),  # 小明 speaks for 100 s
        (300, "teacher", c.RevokeFloor()),
        (310, "a", c.RaiseHand("小红")),
        (320, "a", c.LowerHand()),
        (400, "b", c.PostChat("听得见")),
        (410, "teacher", c.PostChat("好")),
        (500, "b", c.Leave()),  # b drops for 100 s
        (600, "b", c.Join()),
        (700, "b", c.RaiseHand("小刚")),
        (750, "teacher", c.GrantFloor("b")),  # b holds the floor to the end
        (900, "observer", c.Join()),
        (1260, "teacher", c.EndLesson()),
    ]
    report = lesson_attendance(run(lesson(), steps).log, until_at=1260)
    people = by_id(report)
    assert list(people) == ["teacher", "a", "b"]  # the teacher first, no observer
    assert report.started_at == 0 and report.ended_at == 1260
    a, b, teacher = people["a"], people["b"], people["teacher"]
    assert a["connected_s"] == 1200 and a["minutes"] == 20.0
    assert [h["student"] for h in a["hands"]] == ["小明", "小红"]
    assert (a["floor_s"], a["floor_grants"], a["chat_count"]) == (100, 1, 0)
    assert [(s["joined_at"], s["left_at"], s["ended_by"]) for s in b["sessions"]] == [
        (120, 500, LEFT),
        (600, 1260, ENDED),
    ]
    assert b["connected_s"] == 1040 and b["minutes"] == 17.3
    assert (b["hands_raised"], b["floor_s"], b["chat_count"]) == (1, 510, 1)
    assert teacher["chat_count"] == 1 and teacher["connected_s"] == 1260
    # Wall-clock times: the lesson's origin plus lesson time.
    assert b["sessions"][1]["joined_unix"] == T0 + 600
    assert a["delivery"]["connected_s"] == 1200
    assert teacher["delivery"] is None


@pytest.mark.parametrize(
    ("steps", "until", "expected"),
    [
        # Never came: no session, not attended.
        ([(0, "teacher", c.Join())], 100, []),
        # Still connected while the lesson runs: open, counted up to now.
        ([(0, "teacher", c.Join()), (30, "a", c.Join())], 100, [(30, 100, OPEN)]),
        # A report asked for mid-lesson ignores what comes after it.
        (
            [(0, "teacher", c.Join()), (30, "a", c.Join()), (300, "a", c.Leave())],
            100,
            [(30, 100, OPEN)],
        ),
        # Joined before the teacher: counted from its own join.
        ([(5, "a", c.Join()), (10, "teacher", c.Join())], 70, [(5, 70, OPEN)]),
    ],
)
def test_sessions(
    steps: list[tuple[float, str, c.Command]], until: float, expected: list[object]
) -> None:
    report = lesson_attendance(run(lesson(), steps).log, until_at=until)
    a = by_id(report)["a"]
    got = [(s["joined_at"], s["left_at"], s["ended_by"]) for s in a["sessions"]]
    assert got == expected
    assert a["attended"] is bool(expected)


def test_a_server_restart_closes_the_session_where_the_room_was_last_seen() -> None:
    before = run(
        lesson(),
        [
            (0, "teacher", c.Join()),
            (10, "a", c.Join()),
            (40, SYSTEM, c.NoteDelivery("a", (("slides", "high"),), 500.0)),
            (100, "a", c.RaiseHand("小明")),
        ],
    )
    # The server stops at about 130 s; the log has no Leave. Resumed, the room is back at 200.
    resumed = Lesson.resume(before.log)
    run(resumed, [(190, "teacher", c.Join()), (200, "a", c.Join()), (260, "a", c.Leave())])
    a = by_id(lesson_attendance(resumed.log, until_at=300))["a"]
    got = [(s["joined_at"], s["left_at"], s["ended_by"]) for s in a["sessions"]]
    assert got == [(10, 100, RESTART), (200, 260, LEFT)]
    assert a["connected_s"] == 150


def test_the_floor_ends_when_its_classroom_leaves() -> None:
    steps: list[tuple[float, str, c.Command]] = [
        (0, "teacher", c.Join()),
        (0, "a", c.Join()),
        (10, "teacher", c.GrantFloor("a")),
        (70, "a", c.Leave()),
    ]
    a = by_id(lesson_attendance(run(lesson(), steps).log, until_at=100))["a"]
    assert (a["floor_s"], a["floor_grants"]) == (60, 1)


def test_a_log_must_start_with_the_lesson() -> None:
    with pytest.raises(ValueError, match="lesson_scheduled"):
        lesson_attendance([], until_at=0)


def due(room: str, entry: str, on: str, starts_on: str | None = None) -> Due:
    return Due(room, entry, date.fromisoformat(on), date.fromisoformat(starts_on or on))


def test_district_summary_by_room_and_week() -> None:
    today = date(2023, 12, 6)  # a Wednesday; weeks from Monday 2023-11-27 (2 weeks)
    rows = [
        due("ra", "e1", "2023-11-20"),  # before the window
        due("ra", "e1", "2023-11-27"),
        due("rb", "e1", "2023-11-27"),
        due("ra", "e1", "2023-12-04"),
        due("rb", "e1", "2023-12-04"),
        due("ra", "e2", "2023-12-07"),  # tomorrow: not due yet
        due("rb", "e3", "2023-11-24", starts_on="2023-11-28"),  # moved into the window
        due("rx", "e1", "2023-12-04"),  # a room not asked about
    ]
    held = {
        ("e1", date(2023, 11, 27), "ra"),
        ("e1", date(2023, 11, 27), "rb"),
        ("e1", date(2023, 12, 4), "ra"),
        ("e1", date(2023, 12, 4), "rb"),
    }
    attended = {("e1", date(2023, 11, 27), "ra"), ("e1", date(2023, 12, 4), "ra")}
    attended |= {("e1", date(2023, 12, 4), "rb")}
    ra, rb = district_summary(["ra", "rb"], rows, held, attended, today, weeks=2)
    assert [w.to_dict() for w in ra.weeks] == [
        {"week": "2023-11-27", "scheduled": 1, "held": 1, "attended": 1},
        {"week": "2023-12-04", "scheduled": 1, "held": 1, "attended": 1},
    ]
    assert ra.share == 1.0
    assert [w.to_dict() for w in rb.weeks] == [
        {"week": "2023-11-27", "scheduled": 2, "held": 1, "attended": 0},
        {"week": "2023-12-04", "scheduled": 1, "held": 1, "attended": 1},
    ]
    assert rb.share == round(1 / 3, 3)
    (nothing,) = district_summary(["rc"], rows, held, attended, today, weeks=1)
    assert nothing.share is None and nothing.scheduled == 0
