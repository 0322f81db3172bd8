"""The delivery report: time at each layer per classroom, from the lesson's events."""

from __future__ import annotations

import pytest

from classroom import events as e
from classroom.delivery import delivery_report, level


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ({"teacher_camera": "high", "slides": "high"}, "full"),
        ({"teacher_camera": "mid", "slides": "low"}, "full"),
        ({"teacher_camera": "low", "slides": "high"}, "low"),
        ({"teacher_camera": "off", "slides": "high"}, "slides_audio"),
        ({"teacher_camera": "off", "slides": "off", "teacher_audio": "high"}, "audio_only"),
    ],
)
def test_level(layers: dict[str, str], expected: str) -> None:
    assert level(layers) == expected


def joined(seq: int, at: float, pid: str) -> e.Event:
    return e.ParticipantJoined(seq=seq, at=at, participant_id=pid, role="classroom", name=pid)


def left(seq: int, at: float, pid: str) -> e.Event:
    return e.ParticipantLeft(seq=seq, at=at, participant_id=pid, role="classroom", name=pid)


def changed(seq: int, at: float, pid: str, camera: str, slides: str) -> e.Event:
    return e.DeliveryChanged(
        seq=seq,
        at=at,
        participant_id=pid,
        layers={"teacher_camera": camera, "slides": slides, "teacher_audio": "high"},
        estimate_kbps=0.0,
    )


def test_time_at_each_layer_while_connected() -> None:
    log = [
        joined(1, 10, "a"),
        changed(2, 11, "a", "high", "high"),
        changed(3, 31, "a", "off", "off"),  # the link collapsed: audio only for 10 s
        changed(4, 41, "a", "low", "high"),
        left(5, 51, "a"),
        joined(6, 61, "a"),  # away for 10 s: not counted
        changed(7, 61, "a", "high", "high"),
    ]
    (a,) = delivery_report(log, until_at=71, classrooms={"a": "Village A"})
    report = a.to_dict()
    assert report["connected_s"] == 51  # 10..51 and 61..71
    assert report["layer_s"]["teacher_camera"] == {"high": 30, "off": 10, "low": 10}
    assert report["level_s"] == {"unknown": 1, "full": 30, "audio_only": 10, "low": 10}
    assert report["audio_only_s"] == 10
    assert (report["downgrades"], report["upgrades"]) == (1, 1)


def test_the_end_of_the_lesson_closes_the_books() -> None:
    log = [
        joined(1, 0, "a"),
        changed(2, 0, "a", "mid", "high"),
        e.LessonEnded(seq=3, at=20, by="t"),
    ]
    (a,) = delivery_report(log, until_at=100, classrooms={"a": "A"})
    assert a.connected_s == 20


def test_other_participants_are_ignored_and_absent_classrooms_reported_empty() -> None:
    log = [joined(1, 0, "t"), changed(2, 0, "t", "high", "high")]
    (b,) = delivery_report(log, until_at=10, classrooms={"b": "B"})
    assert b.connected_s == 0 and b.layer_s == {}
