"""Which relay calls a batch of events requires: pure, table-driven."""

from __future__ import annotations

import pytest

from classroom.events import (
    ChatPosted,
    Event,
    FloorGranted,
    FloorRevoked,
    LessonEnded,
    ParticipantLeft,
)
from signaling.media_cues import Cue, Disconnect, EndLesson, SetStage, cues_for


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
    ],
)
def test_cues(events: list[Event], cues: list[Cue]) -> None:
    assert cues_for(events) == cues
