"""The lesson domain, table-driven: commands in, events out, state as a fold."""

from __future__ import annotations

from typing import Any

import pytest

from classroom import (
    ADMIN,
    SYSTEM,
    Command,
    DismissHand,
    DomainError,
    EndLesson,
    Event,
    GrantFloor,
    InvalidCommand,
    InvalidTransition,
    Join,
    Leave,
    Lesson,
    LessonState,
    LowerHand,
    NotAllowed,
    NoteDelivery,
    ParticipantSpec,
    PostChat,
    RaiseHand,
    ReportReception,
    RevokeFloor,
    Role,
)
from classroom.reception import REPORT_INTERVAL_S, AudioCounters, Picture, VideoCounters

T0 = 1_700_000_000.0


def new_lesson() -> Lesson:
    return Lesson.schedule(
        "L1",
        "Grade 5 Mathematics",
        [
            ParticipantSpec("t", Role.TEACHER, "Ms Li"),
            ParticipantSpec("a", Role.CLASSROOM, "Village A"),
            ParticipantSpec("b", Role.CLASSROOM, "Village B"),
            ParticipantSpec("o", Role.OBSERVER, "Inspector"),
        ],
        T0,
    )


Step = tuple[str, Command]


def run(lesson: Lesson, steps: list[Step]) -> list[Event]:
    out: list[Event] = []
    for i, (by, command) in enumerate(steps):
        out += lesson.handle(command, by=by, now=T0 + 10 + i)
    return out


LIVE: list[Step] = [("t", Join()), ("a", Join()), ("b", Join())]

VIDEO = VideoCounters(freeze_count=2, total_freezes_duration=1.5, frames_decoded=900)
AUDIO = AudioCounters(concealed_samples=480, total_samples_received=48_000, concealment_events=3)


def reception(
    video: VideoCounters | None = VIDEO, audio: AudioCounters | None = AUDIO, session: str = "s1"
) -> ReportReception:
    return ReportReception(session, video, audio)


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


# (steps before, actor, command, expected event kinds)
ACCEPTED: list[tuple[str, list[Step], str, Command, list[str]]] = [
    (
        "teacher's first join starts the lesson",
        [],
        "t",
        Join(),
        ["lesson_started", "participant_joined"],
    ),
    ("a classroom may join before the teacher", [], "a", Join(), ["participant_joined"]),
    (
        "teacher rejoin does not restart",
        [("t", Join()), ("t", Leave())],
        "t",
        Join(),
        ["participant_joined"],
    ),
    ("raise a hand for a student", LIVE, "a", RaiseHand("Wang Wei"), ["hand_raised"]),
    (
        "lower one's own hand",
        [*LIVE, ("a", RaiseHand("Wang Wei"))],
        "a",
        LowerHand(),
        ["hand_lowered"],
    ),
    (
        "teacher dismisses a hand",
        [*LIVE, ("a", RaiseHand("Wang Wei"))],
        "t",
        DismissHand("a"),
        ["hand_dismissed"],
    ),
    (
        "grant with a raised hand",
        [*LIVE, ("a", RaiseHand("Wang Wei"))],
        "t",
        GrantFloor("a"),
        ["floor_granted"],
    ),
    ("grant without a raised hand", LIVE, "t", GrantFloor("b"), ["floor_granted"]),
    (
        "grant to another replaces",
        [*LIVE, ("t", GrantFloor("a"))],
        "t",
        GrantFloor("b"),
        ["floor_revoked", "floor_granted"],
    ),
    ("revoke", [*LIVE, ("t", GrantFloor("a"))], "t", RevokeFloor(), ["floor_revoked"]),
    (
        "leaving loses the floor",
        [*LIVE, ("t", GrantFloor("a"))],
        "a",
        Leave(),
        ["floor_revoked", "participant_left"],
    ),
    ("classroom chats", LIVE, "a", PostChat("hello"), ["chat_posted"]),
    ("teacher chats", LIVE, "t", PostChat("welcome"), ["chat_posted"]),
    ("teacher ends", LIVE, "t", EndLesson(), ["lesson_ended"]),
    (
        "ending revokes the stage",
        [*LIVE, ("t", GrantFloor("a"))],
        "t",
        EndLesson(),
        ["floor_revoked", "lesson_ended"],
    ),
    ("admin ends", LIVE, ADMIN, EndLesson(), ["lesson_ended"]),
    (
        "system notes delivery",
        LIVE,
        SYSTEM,
        NoteDelivery("a", (("slides", "high"),), 300.0),
        ["delivery_changed"],
    ),
    ("observer joins", [], "o", Join(), ["participant_joined"]),
    ("classroom reports reception", LIVE, "a", reception(), ["reception_reported"]),
    ("reception: sound only", LIVE, "a", reception(video=None), ["reception_reported"]),
    (
        "reception long after the last one",
        [*LIVE, ("a", reception())],
        "a",
        reception(),
        ["reception_reported"],
    ),
]


@pytest.mark.parametrize(
    ("before", "by", "command", "expected"),
    [pytest.param(b, by, c, x, id=name) for name, b, by, c, x in ACCEPTED],
)
def test_accepted(before: list[Step], by: str, command: Command, expected: list[str]) -> None:
    lesson = new_lesson()
    run(lesson, before)
    assert kinds(lesson.handle(command, by=by, now=T0 + 100)) == expected


# (steps before, actor, command, error class, words the message contains)
REFUSED: list[tuple[str, list[Step], str, Command, type[DomainError], str]] = [
    ("classroom grants", LIVE, "a", GrantFloor("b"), NotAllowed, "classroom may not grant"),
    (
        "classroom revokes",
        [*LIVE, ("t", GrantFloor("a"))],
        "a",
        RevokeFloor(),
        NotAllowed,
        "may not revoke",
    ),
    (
        "classroom dismisses",
        [*LIVE, ("b", RaiseHand("X"))],
        "a",
        DismissHand("b"),
        NotAllowed,
        "may not dismiss",
    ),
    ("classroom ends", LIVE, "a", EndLesson(), NotAllowed, "may not end"),
    (
        "observer raises a hand",
        [*LIVE, ("o", Join())],
        "o",
        RaiseHand("X"),
        NotAllowed,
        "observer may not raise",
    ),
    (
        "observer chats",
        [*LIVE, ("o", Join())],
        "o",
        PostChat("hi"),
        NotAllowed,
        "observer may not chat",
    ),
    ("teacher raises a hand", LIVE, "t", RaiseHand("X"), NotAllowed, "teacher may not raise"),
    ("stranger", LIVE, "zz", PostChat("hi"), NotAllowed, "not a participant"),
    ("admin grants", LIVE, ADMIN, GrantFloor("a"), NotAllowed, "admin may not grant"),
    (
        "participant notes delivery",
        LIVE,
        "t",
        NoteDelivery("a", (), 1.0),
        NotAllowed,
        "may not report",
    ),
    ("teacher reports reception", LIVE, "t", reception(), NotAllowed, "teacher may not report"),
    (
        "observer reports reception",
        [*LIVE, ("o", Join())],
        "o",
        reception(),
        NotAllowed,
        "observer may not report",
    ),
    (
        "reception with more concealed than received",
        LIVE,
        "a",
        reception(audio=AudioCounters(10, 5, 1)),
        InvalidCommand,
        "cannot exceed",
    ),
    (
        "reception with a negative count",
        LIVE,
        "a",
        reception(video=VideoCounters(-1, 0.0, 10)),
        InvalidCommand,
        "freeze_count must be between 0",
    ),
    (
        "reception with a NaN duration",
        LIVE,
        "a",
        reception(video=VideoCounters(0, float("nan"), 10)),
        InvalidCommand,
        "total_freezes_duration must be between 0",
    ),
    (
        "reception with an absurd count",
        LIVE,
        "a",
        reception(audio=AudioCounters(0, 10**13, 0)),
        InvalidCommand,
        "between 0",
    ),
    ("reception with no session", LIVE, "a", reception(session=""), InvalidCommand, "session"),
    (
        "reception with nothing in it",
        LIVE,
        "a",
        reception(video=None, audio=None),
        InvalidCommand,
        "video or audio",
    ),
    (
        "reception after the end",
        [*LIVE, ("t", EndLesson())],
        "a",
        reception(),
        InvalidTransition,
        "has ended",
    ),
    (
        "grant to an unknown classroom",
        LIVE,
        "t",
        GrantFloor("nope"),
        InvalidCommand,
        "no such classroom",
    ),
    (
        "grant to the observer",
        [*LIVE, ("o", Join())],
        "t",
        GrantFloor("o"),
        InvalidCommand,
        "no such classroom",
    ),
    ("grant to the teacher", LIVE, "t", GrantFloor("t"), InvalidCommand, "no such classroom"),
    (
        "grant to an offline classroom",
        [("t", Join())],
        "t",
        GrantFloor("a"),
        InvalidTransition,
        "not connected",
    ),
    (
        "grant twice",
        [*LIVE, ("t", GrantFloor("a"))],
        "t",
        GrantFloor("a"),
        InvalidTransition,
        "already has the floor",
    ),
    (
        "revoke an empty stage",
        LIVE,
        "t",
        RevokeFloor(),
        InvalidTransition,
        "no classroom has the floor",
    ),
    (
        "raise twice",
        [*LIVE, ("a", RaiseHand("X"))],
        "a",
        RaiseHand("Y"),
        InvalidTransition,
        "already raised for X",
    ),
    (
        "raise while on stage",
        [*LIVE, ("t", GrantFloor("a"))],
        "a",
        RaiseHand("Y"),
        InvalidTransition,
        "already has the floor",
    ),
    ("raise with an empty name", LIVE, "a", RaiseHand("   "), InvalidCommand, "student's name"),
    ("raise with a long name", LIVE, "a", RaiseHand("x" * 41), InvalidCommand, "student's name"),
    ("lower with no hand", LIVE, "a", LowerHand(), InvalidTransition, "not raised"),
    ("dismiss with no hand", LIVE, "t", DismissHand("a"), InvalidTransition, "no hand raised"),
    ("empty chat", LIVE, "a", PostChat("  "), InvalidCommand, "chat message"),
    ("long chat", LIVE, "a", PostChat("x" * 501), InvalidCommand, "chat message"),
    ("join twice", LIVE, "a", Join(), InvalidTransition, "already connected"),
    ("leave when away", [("t", Join())], "a", Leave(), InvalidTransition, "not connected"),
    (
        "anything after the end",
        [*LIVE, ("t", EndLesson())],
        "a",
        RaiseHand("X"),
        InvalidTransition,
        "has ended",
    ),
    (
        "join after the end",
        [*LIVE, ("t", EndLesson())],
        "a",
        Join(),
        InvalidTransition,
        "has ended",
    ),
]


@pytest.mark.parametrize(
    ("before", "by", "command", "error", "words"),
    [pytest.param(b, by, c, err, w, id=name) for name, b, by, c, err, w in REFUSED],
)
def test_refused_changes_nothing(
    before: list[Step], by: str, command: Command, error: type[DomainError], words: str
) -> None:
    lesson = new_lesson()
    run(lesson, before)
    snapshot = lesson.snapshot()
    with pytest.raises(error) as raised:
        lesson.handle(command, by=by, now=T0 + 100)
    assert words in raised.value.message
    assert lesson.snapshot() == snapshot


# (seconds after the previous report, whether it is kept)
INTERVALS = [
    (1.0, False),
    (REPORT_INTERVAL_S - 0.1, False),
    (REPORT_INTERVAL_S, True),
    (10.0, True),
]


@pytest.mark.parametrize(("gap", "kept"), INTERVALS)
def test_one_reception_report_per_classroom_per_interval(gap: float, kept: bool) -> None:
    lesson = new_lesson()
    run(lesson, LIVE)
    first = lesson.handle(reception(), by="a", now=T0 + 50)
    assert kinds(first) == ["reception_reported"]
    # Another classroom is not held back by the first one's report.
    assert kinds(lesson.handle(reception(), by="b", now=T0 + 50 + gap)) == ["reception_reported"]
    # A new peer connection (another session) is still the same classroom.
    later = lesson.handle(reception(session="s2"), by="a", now=T0 + 50 + gap)
    assert kinds(later) == (["reception_reported"] if kept else [])
    # Dropping a report changes nothing, not even the sequence number.
    assert lesson.seq == first[0].seq + 1 + kept


def test_reception_event_carries_the_counters_and_survives_the_log() -> None:
    lesson = new_lesson()
    run(lesson, LIVE)
    (event,) = lesson.handle(reception(video=None), by="a", now=T0 + 50)
    assert event.to_dict() == {
        "kind": "reception_reported",
        "seq": event.seq,
        "at": 50.0,
        "participant_id": "a",
        "media_session": "s1",
        "video": None,
        "audio": {
            "concealed_samples": 480,
            "total_samples_received": 48_000,
            "concealment_events": 3,
        },
        "pictures": None,
    }
    # The interval is folded from the log: a lesson read back still drops a report too soon.
    again = Lesson.replay([Event.from_dict(ev.to_dict()) for ev in lesson.log])
    assert again.handle(reception(), by="a", now=T0 + 51) == []


def test_hand_queue_is_ordered_and_granting_answers_the_hand() -> None:
    lesson = new_lesson()
    run(lesson, [*LIVE, ("b", RaiseHand("Zhang San")), ("a", RaiseHand("Li Si"))])
    assert [(h.classroom_id, h.student) for h in lesson.hands] == [
        ("b", "Zhang San"),
        ("a", "Li Si"),
    ]
    (granted,) = lesson.handle(GrantFloor("a"), by="t", now=T0 + 50)
    assert granted.to_dict()["student"] == "Li Si"
    assert [h.classroom_id for h in lesson.hands] == ["b"]
    assert lesson.stage is not None and lesson.stage.student == "Li Si"


def test_a_raised_hand_survives_leaving_and_rejoining() -> None:
    lesson = new_lesson()
    run(lesson, [*LIVE, ("a", RaiseHand("Wang Wei")), ("a", Leave()), ("a", Join())])
    assert [(h.classroom_id, h.student) for h in lesson.hands] == [("a", "Wang Wei")]


def test_events_are_numbered_and_stamped_with_lesson_time() -> None:
    lesson = new_lesson()
    events = run(lesson, LIVE)
    assert [e.seq for e in lesson.log] == list(range(1, len(lesson.log) + 1))
    assert events[0].at == 10.0  # seconds since the lesson was scheduled
    assert lesson.latest_since(3, limit=100) == (lesson.log[3:], False)


def test_state_is_a_fold_over_the_serialized_log() -> None:
    lesson = new_lesson()
    run(
        lesson,
        [
            *LIVE,
            ("a", RaiseHand("Wang Wei")),
            ("b", RaiseHand("Zhang San")),
            ("t", GrantFloor("b")),
            ("a", PostChat("我们能听到")),
            (SYSTEM, NoteDelivery("a", (("teacher_camera", "low"),), 280.0)),
        ],
    )
    again = Lesson.replay(Event.from_dict(e.to_dict()) for e in lesson.log)
    assert again.snapshot() == lesson.snapshot()
    assert again.state is LessonState.LIVE


def test_a_resumed_lesson_keeps_its_stage_and_hands_but_nobody_is_connected() -> None:
    """After a restart: the classroom on stage keeps the floor and raised hands stay up;
    nobody is online and nothing is being sent until each reconnects."""
    lesson = new_lesson()
    run(
        lesson,
        [
            *LIVE,
            ("a", RaiseHand("Wang Wei")),
            ("t", GrantFloor("b")),
            (SYSTEM, NoteDelivery("a", (("teacher_camera", "low"),), 280.0)),
        ],
    )
    resumed = Lesson.resume(Event.from_dict(e.to_dict()) for e in lesson.log)
    snap, before = resumed.snapshot(), lesson.snapshot()
    assert not any(p["online"] for p in snap["participants"])
    assert snap["delivery"] == {}
    assert (snap["stage"], snap["hands"], snap["state"]) == (
        before["stage"],
        before["hands"],
        before["state"],
    )
    assert resumed.log == lesson.log
    # The one that was live is untouched, and each participant can join again.
    assert all(p["online"] for p in before["participants"] if p["id"] != "o")
    assert kinds(run(resumed, [("a", Join())])) == ["participant_joined"]


def test_end_clears_hands_stage_and_presence() -> None:
    lesson = new_lesson()
    run(lesson, [*LIVE, ("a", RaiseHand("X")), ("t", GrantFloor("b")), ("t", EndLesson())])
    snap: dict[str, Any] = lesson.snapshot()
    assert snap["state"] == "ended"
    assert snap["hands"] == [] and snap["stage"] is None
    assert not any(p["online"] for p in snap["participants"])


@pytest.mark.parametrize(
    ("participants", "title", "words"),
    [
        ([ParticipantSpec("a", Role.CLASSROOM, "A")], "Maths", "exactly one teacher"),
        (
            [ParticipantSpec("t", Role.TEACHER, "T"), ParticipantSpec("t", Role.CLASSROOM, "A")],
            "Maths",
            "unique",
        ),
        (
            [
                ParticipantSpec("t", Role.TEACHER, "T"),
                ParticipantSpec("a", Role.CLASSROOM, "A"),
                ParticipantSpec("b", Role.CLASSROOM, "A"),
            ],
            "Maths",
            "same name",
        ),
        ([ParticipantSpec("t", Role.TEACHER, "T")], "  ", "title"),
    ],
)
def test_schedule_refuses_bad_lessons(
    participants: list[ParticipantSpec], title: str, words: str
) -> None:
    with pytest.raises(InvalidCommand, match=words):
        Lesson.schedule("L", title, participants, T0)


def test_unknown_event_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        Event.from_dict({"kind": "nonsense", "seq": 1, "at": 0.0})


def chatty_lesson(chats: int) -> Lesson:
    """A live lesson whose log ends with `chats` chat lines (seq 6 on: scheduled,
    started and three joins come first)."""
    lesson = new_lesson()
    run(lesson, LIVE + [("t", PostChat(text=f"line {i}")) for i in range(chats)])
    return lesson


@pytest.mark.parametrize(
    ("since", "limit", "first", "count", "cut"),
    [
        (0, 5, 11, 5, True),  # 15 events after 0: the newest 5, older ones left out
        (10, 5, 11, 5, False),  # exactly 5 missed: all of them
        (12, 5, 13, 3, False),  # fewer missed than the limit
        (15, 5, None, 0, False),  # nothing missed
        (0, 100, 1, 15, False),
    ],
)
def test_a_rejoin_gets_at_most_the_newest_missed_events(
    since: int, limit: int, first: int | None, count: int, cut: bool
) -> None:
    lesson = chatty_lesson(10)
    assert lesson.seq == 15
    events, was_cut = lesson.latest_since(since, limit)
    assert [ev.seq for ev in events] == ([] if first is None else list(range(first, first + count)))
    assert was_cut is cut


def test_the_newest_missed_events_are_counted_after_the_audience_filter() -> None:
    lesson = chatty_lesson(10)
    odd = lesson.latest_since(0, 3, keep=lambda ev: ev.seq % 2 == 1)
    assert [ev.seq for ev in odd[0]] == [11, 13, 15] and odd[1] is True
    assert lesson.latest_since(0, 3, keep=lambda ev: False) == ([], False)


def test_reception_says_what_the_classroom_decodes_now() -> None:
    """The pictures a classroom's browser decodes at the moment of its report go into
    the event as sent: the teacher's table shows them, the delivery report ignores them."""
    lesson = new_lesson()
    run(lesson, LIVE)
    camera = Picture(state="live", width=320, height=180, fps=14.5)
    slides = Picture(state="frozen", width=1280, height=720, fps=0.0)
    report = ReportReception("s1", VIDEO, AUDIO, (("teacher_camera", camera), ("slides", slides)))
    (event,) = lesson.handle(report, by="a", now=T0 + 50)
    assert event.to_dict()["pictures"] == {
        "teacher_camera": {"state": "live", "width": 320, "height": 180, "fps": 14.5},
        "slides": {"state": "frozen", "width": 1280, "height": 720, "fps": 0.0},
    }
    assert Event.from_dict(event.to_dict()) == event


@pytest.mark.parametrize(
    "pictures",
    [
        (("stage_video", Picture("live", 640, 360, 15.0)),),
        (("teacher_camera", Picture("fine", 640, 360, 15.0)),),
        (("teacher_camera", Picture("live", 640, 99_999, 15.0)),),
        (("teacher_camera", Picture("live", 640, 360, -1.0)),),
    ],
    ids=["not a teacher's picture", "unknown state", "too tall", "negative fps"],
)
def test_reception_refuses_pictures_no_browser_decodes(
    pictures: tuple[tuple[str, Picture], ...],
) -> None:
    lesson = new_lesson()
    run(lesson, LIVE)
    with pytest.raises(InvalidCommand):
        lesson.handle(ReportReception("s1", VIDEO, AUDIO, pictures), by="a", now=T0 + 50)
