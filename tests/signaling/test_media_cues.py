"""Which relay calls a batch of events requires: pure, table-driven."""

from __future__ import annotations

import pytest

from classroom import Join, Lesson, ParticipantSpec, Role
from classroom import commands as c
from classroom.events import (
    ChatPosted,
    DeckAttached,
    Event,
    FloorGranted,
    FloorRevoked,
    LessonEnded,
    PageTurned,
    ParticipantLeft,
)
from signaling.media_cues import (
    CoverScreen,
    Cue,
    Disconnect,
    EndLesson,
    SetStage,
    cues_for,
    resume_cues,
)

DECK = "a" * 64


def granted(cid: str) -> FloorGranted:
    return FloorGranted(seq=1, at=0, classroom_id=cid, student=None)


def revoked(cid: str, reason: str = "revoked") -> FloorRevoked:
    return FloorRevoked(seq=1, at=0, classroom_id=cid, reason=reason)


def left(pid: str) -> ParticipantLeft:
    return ParticipantLeft(seq=1, at=0, participant_id=pid, role="classroom", name="A")


@pytest.mark.parametrize(
    ("events", "cues"),
    [
        ([granted("c1")], [SetStage("c1")]),
        ([revoked("c1")], [SetStage(None)]),
        # The floor passes from c1 to c2: one swap, no gap.
        ([revoked("c1", "replaced"), granted("c2")], [SetStage("c2")]),
        ([revoked("c1", "left"), left("c1")], [SetStage(None), Disconnect("c1")]),
        ([revoked("c1", "ended"), LessonEnded(seq=1, at=0, by="teacher")], [EndLesson()]),
        ([ChatPosted(seq=1, at=0, participant_id="t", name="T", text="hi")], []),
        # A deck page shown covers the screen share on the pages; put away, it does not.
        (
            [DeckAttached(seq=1, at=0, deck_id=DECK, name="x.pdf", pages=3, width=4, height=3)],
            [CoverScreen(True)],
        ),
        ([PageTurned(seq=1, at=0, deck_id=DECK, page=2)], [CoverScreen(True)]),
        ([PageTurned(seq=1, at=0, deck_id=DECK, page=0)], [CoverScreen(False)]),
    ],
)
def test_cues(events: list[Event], cues: list[Cue]) -> None:
    assert cues_for(events) == cues


def _lesson(*steps: tuple[str, c.Command]) -> Lesson:
    lesson = Lesson.schedule(
        "L1",
        "Maths",
        [ParticipantSpec("t", Role.TEACHER, "Ms Li"), ParticipantSpec("a", Role.CLASSROOM, "A")],
        0.0,
    )
    for who in ("t", "a"):
        lesson.handle(Join(), who, 1.0)
    for i, (by, command) in enumerate(steps):
        lesson.handle(command, by, 2.0 + i)
    return lesson


ATTACH = ("t", c.AttachDeck(DECK, "x.pdf", 3, 1920, 1080))


@pytest.mark.parametrize(
    ("steps", "cues"),
    [
        ((), []),
        ((ATTACH,), [CoverScreen(True)]),
        ((ATTACH, ("t", c.TurnPage(0))), []),
        (
            (("a", c.RaiseHand("Zhao")), ("t", c.GrantFloor("a")), ATTACH),
            [SetStage("a"), CoverScreen(True)],
        ),
    ],
)
def test_a_relay_that_takes_a_lesson_up_is_told_its_stage_and_deck(
    steps: tuple[tuple[str, c.Command], ...], cues: list[Cue]
) -> None:
    assert resume_cues(_lesson(*steps)) == cues
