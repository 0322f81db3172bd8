"""What the relay must do after some lesson events: the one place that decides it.

Pure: events in, cues out. `Lessons` plays the cues on the MediaGateway after the
events are stored and published, so the relay follows the log and never leads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from classroom.events import (
    DeckAttached,
    Event,
    FloorGranted,
    FloorRevoked,
    LessonEnded,
    PageTurned,
    ParticipantLeft,
)
from classroom.lesson import Lesson


@dataclass(frozen=True)
class SetStage:
    classroom_id: str | None


@dataclass(frozen=True)
class Disconnect:
    participant_id: str


@dataclass(frozen=True)
class EndLesson:
    pass


@dataclass(frozen=True)
class CoverScreen:
    """A deck page is shown (`covered`) or put away. The classroom and observer pages
    draw a shown page over the teacher's screen share, so the relay stops sending them
    the share meanwhile: on a 256 kbit/s link its bits go to the camera and the voice."""

    covered: bool


Cue = SetStage | Disconnect | EndLesson | CoverScreen


def cues_for(events: Sequence[Event]) -> list[Cue]:
    """The relay calls one batch of events (one command's) requires, in order.

    A revoke followed by a grant in the same batch (the floor passed from one
    classroom to another) is one stage change, not a clear and a set: the stage
    slots swap source once, without a gap. After the lesson ends, nothing but
    `end_lesson` is needed.
    """
    cues: list[Cue] = []
    for i, event in enumerate(events):
        match event:
            case FloorGranted(classroom_id=cid):
                cues.append(SetStage(cid))
            case FloorRevoked():
                later = events[i + 1 :]
                if not any(isinstance(ev, FloorGranted | LessonEnded) for ev in later):
                    cues.append(SetStage(None))
            case ParticipantLeft(participant_id=pid):
                cues.append(Disconnect(pid))
            case DeckAttached():
                cues.append(CoverScreen(True))
            case PageTurned(page=page):
                cues.append(CoverScreen(page > 0))
            case LessonEnded():
                cues.append(EndLesson())
    return cues


def resume_cues(lesson: Lesson) -> list[Cue]:
    """What a relay that takes a running lesson up (a restart, an adoption) is told
    first: who is on stage, and whether a deck page covers the screen share."""
    cues: list[Cue] = []
    if lesson.stage is not None:
        cues.append(SetStage(lesson.stage.classroom_id))
    if lesson.deck is not None and lesson.deck.page > 0:
        cues.append(CoverScreen(True))
    return cues
