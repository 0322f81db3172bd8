"""The delivery report: time at each layer per classroom, from the lesson's events."""

from __future__ import annotations

import pytest

from classroom import events as e
from classroom.delivery import delivery_report, level
from classroom.reception import AudioCounters, VideoCounters


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


# -- what the classroom's browser counted -------------------------------------------------

V = tuple[int, float, int]  # freeze_count, total_freezes_duration, frames_decoded
A = tuple[int, int, int]  # concealed_samples, total_samples_received, concealment_events


def reported(
    seq: int,
    at: float,
    session: str,
    video: V | None = None,
    audio: A | None = None,
    pid: str = "a",
) -> e.Event:
    return e.ReceptionReported(
        seq=seq,
        at=at,
        participant_id=pid,
        media_session=session,
        video=None if video is None else VideoCounters(*video).to_dict(),
        audio=None if audio is None else AudioCounters(*audio).to_dict(),
    )


UNKNOWN = {
    "reported": False,
    "freezes": None,
    "freeze_s": None,
    "audio_concealed_ratio": None,
    "audio_gap_events": None,
}

# (reports after the classroom joined at 0, expected report fields)
RECEPTION: list[tuple[str, list[e.Event], dict[str, object]]] = [
    ("never reported: unknown, not perfect", [], UNKNOWN),
    (
        "one session: its last report holds everything",
        [
            reported(2, 10, "s1", (1, 0.5, 100), (0, 48_000, 0)),
            reported(3, 20, "s1", (2, 1.25, 200), (960, 96_000, 4)),
        ],
        {
            "reported": True,
            "freezes": 2,
            "freeze_s": 1.2,
            "audio_concealed_ratio": 0.01,
            "audio_gap_events": 4,
        },
    ),
    (
        "a reconnect's new session adds to the old one",
        [
            reported(2, 10, "s1", (2, 1.0, 100), (480, 48_000, 2)),
            reported(3, 20, "s2", (1, 3.0, 50), (0, 48_000, 0)),
        ],
        {
            "reported": True,
            "freezes": 3,
            "freeze_s": 4.0,
            "audio_concealed_ratio": 0.005,
            "audio_gap_events": 2,
        },
    ),
    (
        "counters going back in one session: counting started again, nothing lost",
        [
            reported(2, 10, "s1", (3, 2.0, 900), (100, 1_000, 5)),
            reported(3, 20, "s1", (1, 0.5, 100), (0, 1_000, 0)),
            reported(4, 30, "s1", (2, 1.0, 200), (0, 2_000, 0)),
        ],
        {
            "reported": True,
            "freezes": 5,
            "freeze_s": 3.0,
            "audio_concealed_ratio": 0.0333,
            "audio_gap_events": 5,
        },
    ),
    (
        "sound only: the pictures stay unknown",
        [reported(2, 10, "s1", audio=(0, 48_000, 0))],
        {
            "reported": True,
            "freezes": None,
            "freeze_s": None,
            "audio_concealed_ratio": 0.0,
            "audio_gap_events": 0,
        },
    ),
    (
        "no sample received yet: no ratio to speak of",
        [reported(2, 10, "s1", (0, 0.0, 0), (0, 0, 0))],
        {
            "reported": True,
            "freezes": 0,
            "freeze_s": 0.0,
            "audio_concealed_ratio": None,
            "audio_gap_events": 0,
        },
    ),
    (
        "a report after the end of the report's window does not count",
        [
            reported(2, 10, "s1", (1, 1.0, 10), (0, 10, 0)),
            reported(3, 200, "s1", (9, 9.0, 90), (9, 90, 9)),
        ],
        {
            "reported": True,
            "freezes": 1,
            "freeze_s": 1.0,
            "audio_concealed_ratio": 0.0,
            "audio_gap_events": 0,
        },
    ),
    (
        "another participant's report is not this classroom's",
        [reported(2, 10, "s1", (1, 1.0, 10), (0, 10, 0), pid="b")],
        UNKNOWN,
    ),
]


@pytest.mark.parametrize(
    ("log", "expected"), [pytest.param(log, x, id=name) for name, log, x in RECEPTION]
)
def test_what_the_browser_counted(log: list[e.Event], expected: dict[str, object]) -> None:
    (a,) = delivery_report([joined(1, 0, "a"), *log], until_at=100, classrooms={"a": "A"})
    report = a.to_dict()
    assert {k: report[k] for k in expected} == expected
