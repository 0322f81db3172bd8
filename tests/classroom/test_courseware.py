"""The deck in a lesson, table-driven: attach, turn, point, ink, readiness; a fold."""

from __future__ import annotations

from typing import Any

import pytest

from classroom import ADMIN, Command, DomainError, Join, Lesson, ParticipantSpec, Role
from classroom import commands as c
from classroom.courseware import MAX_INK_POINTS, MAX_STROKES
from classroom.events import Event

T0 = 1_700_000_000.0
DECK = "a" * 64
OTHER = "b" * 64


def attach(deck: str = DECK, pages: int = 20) -> c.AttachDeck:
    return c.AttachDeck(deck, "Fractions.pdf", pages, 1920, 1080)


def new_lesson() -> Lesson:
    lesson = Lesson.schedule(
        "L1",
        "Maths",
        [
            ParticipantSpec("t", Role.TEACHER, "Ms Li"),
            ParticipantSpec("a", Role.CLASSROOM, "Village A"),
            ParticipantSpec("o", Role.OBSERVER, "Inspector"),
        ],
        T0,
    )
    for who in ("t", "a"):
        lesson.handle(Join(), who, T0 + 1)
    return lesson


def run(lesson: Lesson, steps: list[tuple[str, Command]]) -> list[Event]:
    out: list[Event] = []
    for i, (by, command) in enumerate(steps):
        out += lesson.handle(command, by, T0 + 10 + i)
    return out


def fields(event: Event) -> dict[str, Any]:
    d = event.to_dict()
    for k in ("seq", "at"):
        d.pop(k)
    return d


STROKE = ((0.1, 0.2), (0.30004, 0.4))

# (name, steps before, actor, command, expected events' fields)
ACCEPTED: list[tuple[str, list[tuple[str, Command]], str, Command, list[dict[str, Any]]]] = [
    (
        "teacher attaches",
        [],
        "t",
        attach(),
        [
            {
                "kind": "deck_attached",
                "deck_id": DECK,
                "name": "Fractions.pdf",
                "pages": 20,
                "width": 1920,
                "height": 1080,
            }
        ],
    ),
    (
        "admin attaches before class",
        [],
        ADMIN,
        attach(),
        [
            {
                "kind": "deck_attached",
                "deck_id": DECK,
                "name": "Fractions.pdf",
                "pages": 20,
                "width": 1920,
                "height": 1080,
            }
        ],
    ),
    (
        "another deck replaces it",
        [("t", attach())],
        "t",
        attach(OTHER, 3),
        [
            {
                "kind": "deck_attached",
                "deck_id": OTHER,
                "name": "Fractions.pdf",
                "pages": 3,
                "width": 1920,
                "height": 1080,
            }
        ],
    ),
    (
        "turn to page 5",
        [("t", attach())],
        "t",
        c.TurnPage(5),
        [{"kind": "page_turned", "deck_id": DECK, "page": 5}],
    ),
    (
        "the last page",
        [("t", attach())],
        "t",
        c.TurnPage(20),
        [{"kind": "page_turned", "deck_id": DECK, "page": 20}],
    ),
    (
        "put the deck away",
        [("t", attach())],
        "t",
        c.TurnPage(0),
        [{"kind": "page_turned", "deck_id": DECK, "page": 0}],
    ),
    ("the page shown already: nothing", [("t", attach())], "t", c.TurnPage(1), []),
    (
        "point",
        [("t", attach())],
        "t",
        c.PointAt(0.5, 0.123456),
        [{"kind": "pointer_moved", "deck_id": DECK, "page": 1, "x": 0.5, "y": 0.1235}],
    ),
    (
        "the same spot: nothing",
        [("t", attach()), ("t", c.PointAt(0.5, 0.5))],
        "t",
        c.PointAt(0.5, 0.5),
        [],
    ),
    (
        "hide the pointer",
        [("t", attach()), ("t", c.PointAt(0.5, 0.5))],
        "t",
        c.PointAt(None, None),
        [{"kind": "pointer_moved", "deck_id": DECK, "page": 1, "x": None, "y": None}],
    ),
    ("hide a hidden pointer: nothing", [("t", attach())], "t", c.PointAt(None, None), []),
    (
        "ink",
        [("t", attach()), ("t", c.TurnPage(3))],
        "t",
        c.DrawInk(STROKE, "blue"),
        [
            {
                "kind": "ink_drawn",
                "deck_id": DECK,
                "page": 3,
                "color": "blue",
                "points": [[0.1, 0.2], [0.3, 0.4]],
            }
        ],
    ),
    (
        "clear ink",
        [("t", attach()), ("t", c.DrawInk(STROKE))],
        "t",
        c.ClearInk(),
        [{"kind": "ink_cleared", "deck_id": DECK, "page": 1}],
    ),
    ("clear a clean page: nothing", [("t", attach())], "t", c.ClearInk(), []),
    (
        "classroom ready 5/20",
        [("t", attach())],
        "a",
        c.ReportCourseware(DECK, 5, 20),
        [
            {
                "kind": "courseware_reported",
                "participant_id": "a",
                "deck_id": DECK,
                "ready": 5,
                "total": 20,
            }
        ],
    ),
    (
        "the same report again: nothing",
        [("t", attach()), ("a", c.ReportCourseware(DECK, 5, 20))],
        "a",
        c.ReportCourseware(DECK, 5, 20),
        [],
    ),
    (
        "a report on a replaced deck: dropped",
        [("t", attach()), ("t", attach(OTHER))],
        "a",
        c.ReportCourseware(DECK, 20, 20),
        [],
    ),
]


@pytest.mark.parametrize(
    ("name", "before", "by", "command", "expected"), ACCEPTED, ids=[a[0] for a in ACCEPTED]
)
def test_accepted(
    name: str,
    before: list[tuple[str, Command]],
    by: str,
    command: Command,
    expected: list[dict[str, Any]],
) -> None:
    lesson = new_lesson()
    run(lesson, before)
    events = lesson.handle(command, by, T0 + 100)
    assert [fields(e) for e in events] == expected
    # State is a fold over the events: replaying the log gives the same lesson.
    assert Lesson.replay(lesson.log).snapshot() == lesson.snapshot()


LONG = tuple((0.5, 0.5) for _ in range(MAX_INK_POINTS + 1))

# (name, steps before, actor, command, error code, words in the message)
REFUSED: list[tuple[str, list[tuple[str, Command]], str, Command, str, str]] = [
    ("a classroom attaches", [], "a", attach(), "not_allowed", "attach a deck"),
    ("an observer turns", [("t", attach())], "o", c.TurnPage(2), "not_allowed", "turn"),
    ("a classroom points", [("t", attach())], "a", c.PointAt(0.1, 0.1), "not_allowed", "point"),
    ("a classroom draws", [("t", attach())], "a", c.DrawInk(STROKE), "not_allowed", "draw"),
    (
        "the teacher reports readiness",
        [("t", attach())],
        "t",
        c.ReportCourseware(DECK, 1, 20),
        "not_allowed",
        "report",
    ),
    (
        "not a sha-256",
        [],
        "t",
        c.AttachDeck("abc", "x.pdf", 2, 1920, 1080),
        "invalid_command",
        "SHA-256",
    ),
    ("no pages", [], "t", attach(pages=0), "invalid_command", "pages"),
    ("too many pages", [], "t", attach(pages=301), "invalid_command", "pages"),
    ("no name", [], "t", c.AttachDeck(DECK, "  ", 2, 1920, 1080), "invalid_command", "name"),
    (
        "a huge page",
        [],
        "t",
        c.AttachDeck(DECK, "x", 2, 100_000, 1080),
        "invalid_command",
        "pixels",
    ),
    ("the same deck again", [("t", attach())], "t", attach(), "invalid_transition", "already"),
    ("turn without a deck", [], "t", c.TurnPage(1), "invalid_transition", "no deck"),
    (
        "past the last page",
        [("t", attach())],
        "t",
        c.TurnPage(21),
        "invalid_command",
        "pages 1 to 20",
    ),
    ("a negative page", [("t", attach())], "t", c.TurnPage(-1), "invalid_command", "pages 1 to 20"),
    (
        "point off the page",
        [("t", attach())],
        "t",
        c.PointAt(1.5, 0.5),
        "invalid_command",
        "0 to 1",
    ),
    (
        "point at nan",
        [("t", attach())],
        "t",
        c.PointAt(float("nan"), 0.5),
        "invalid_command",
        "0 to 1",
    ),
    ("half a pointer", [("t", attach())], "t", c.PointAt(0.5, None), "invalid_command", "both"),
    (
        "point at a put-away deck",
        [("t", attach()), ("t", c.TurnPage(0))],
        "t",
        c.PointAt(0.5, 0.5),
        "invalid_transition",
        "put away",
    ),
    (
        "ink in an unknown colour",
        [("t", attach())],
        "t",
        c.DrawInk(STROKE, "pink"),
        "invalid_command",
        "ink is",
    ),
    ("an empty stroke", [("t", attach())], "t", c.DrawInk(()), "invalid_command", "points"),
    ("too long a stroke", [("t", attach())], "t", c.DrawInk(LONG), "invalid_command", "points"),
    (
        "a stroke off the page",
        [("t", attach())],
        "t",
        c.DrawInk(((0.1, 2.0),)),
        "invalid_command",
        "0 to 1",
    ),
    (
        "too many strokes",
        [("t", attach()), *[("t", c.DrawInk(STROKE)) for _ in range(MAX_STROKES)]],
        "t",
        c.DrawInk(STROKE),
        "invalid_transition",
        "clear it",
    ),
    (
        "more ready than the deck has",
        [("t", attach())],
        "a",
        c.ReportCourseware(DECK, 21, 20),
        "invalid_command",
        "0 to all",
    ),
    (
        "the wrong total",
        [("t", attach())],
        "a",
        c.ReportCourseware(DECK, 3, 30),
        "invalid_command",
        "20 pages",
    ),
]


@pytest.mark.parametrize(
    ("name", "before", "by", "command", "code", "words"), REFUSED, ids=[r[0] for r in REFUSED]
)
def test_refused(
    name: str, before: list[tuple[str, Command]], by: str, command: Command, code: str, words: str
) -> None:
    lesson = new_lesson()
    run(lesson, before)
    snapshot = lesson.snapshot()
    with pytest.raises(DomainError) as err:
        lesson.handle(command, by, T0 + 100)
    assert err.value.code == code
    assert words in err.value.message
    assert lesson.snapshot() == snapshot  # a refusal changes nothing


def test_snapshot_carries_the_page_the_pointer_and_the_ink_for_a_late_joiner() -> None:
    lesson = new_lesson()
    run(
        lesson,
        [
            ("t", attach()),
            ("a", c.ReportCourseware(DECK, 20, 20)),
            ("t", c.TurnPage(7)),
            ("t", c.PointAt(0.25, 0.75)),
            ("t", c.DrawInk(STROKE, "green")),
        ],
    )
    snap = lesson.snapshot()
    assert snap["deck"] == {
        "id": DECK,
        "name": "Fractions.pdf",
        "pages": 20,
        "width": 1920,
        "height": 1080,
        "page": 7,
        "pointer": {"x": 0.25, "y": 0.75},
        "ink": [{"color": "green", "points": [[0.1, 0.2], [0.3, 0.4]]}],
    }
    assert snap["courseware"] == {"a": {"deck_id": DECK, "ready": 20, "total": 20}}
    # Turning the page takes the pointer and the ink with the old page.
    run(lesson, [("t", c.TurnPage(8))])
    assert lesson.snapshot()["deck"]["pointer"] is None
    assert lesson.snapshot()["deck"]["ink"] == []
    # A new deck: what the classrooms held was the old one's.
    run(lesson, [("t", attach(OTHER, 3))])
    assert lesson.snapshot()["courseware"] == {}
    assert lesson.snapshot()["deck"]["page"] == 1
    # A restarted server finds it all in the log.
    assert Lesson.resume(lesson.log).snapshot()["deck"] == lesson.snapshot()["deck"]


def test_events_round_trip_through_their_stored_form() -> None:
    lesson = new_lesson()
    events = run(
        lesson,
        [
            ("t", attach()),
            ("t", c.PointAt(0.5, 0.5)),
            ("t", c.DrawInk(STROKE)),
            ("a", c.ReportCourseware(DECK, 2, 20)),
        ],
    )
    import json

    assert [Event.from_dict(json.loads(json.dumps(e.to_dict()))) for e in events] == events
