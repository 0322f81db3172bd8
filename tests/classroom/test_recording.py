"""Recording in the lesson domain: the server starts it, the teacher pauses it, the lesson's end stops it."""

from __future__ import annotations

import pytest

from classroom import (
    ADMIN,
    SYSTEM,
    Command,
    DomainError,
    EndLesson,
    InvalidTransition,
    Join,
    Lesson,
    NotAllowed,
    PauseRecording,
    RecordingState,
    ResumeRecording,
    StartRecording,
)
from tests.classroom.test_lesson import T0, Step, kinds, new_lesson, run

LIVE: list[Step] = [("t", Join()), ("a", Join())]
RECORDING: list[Step] = [*LIVE, (SYSTEM, StartRecording("r1"))]
PAUSED: list[Step] = [*RECORDING, ("t", PauseRecording())]


@pytest.mark.parametrize(
    ("before", "by", "command", "expected", "state"),
    [
        (LIVE, SYSTEM, StartRecording("r1"), ["recording_started"], RecordingState.RECORDING),
        (RECORDING, "t", PauseRecording(), ["recording_paused"], RecordingState.PAUSED),
        (PAUSED, "t", ResumeRecording(), ["recording_resumed"], RecordingState.RECORDING),
        # A restarted server records a new part; a pause the teacher asked for holds.
        (RECORDING, SYSTEM, StartRecording("r2"), ["recording_started"], RecordingState.RECORDING),
        (PAUSED, SYSTEM, StartRecording("r2"), ["recording_started"], RecordingState.PAUSED),
        (RECORDING, "t", EndLesson(), ["recording_stopped", "lesson_ended"], RecordingState.OFF),
        (PAUSED, ADMIN, EndLesson(), ["recording_stopped", "lesson_ended"], RecordingState.OFF),
        (LIVE, "t", EndLesson(), ["lesson_ended"], RecordingState.OFF),
    ],
)
def test_accepted(
    before: list[Step], by: str, command: Command, expected: list[str], state: RecordingState
) -> None:
    lesson = new_lesson()
    run(lesson, before)
    assert kinds(lesson.handle(command, by, T0 + 10)) == expected
    assert lesson.recording is state
    assert Lesson.replay(lesson.log).recording is state


@pytest.mark.parametrize(
    ("before", "by", "command", "error"),
    [
        # Only the teacher pauses: a classroom or an observer may not hide part of a lesson.
        (RECORDING, "a", PauseRecording(), NotAllowed),
        (RECORDING, "o", PauseRecording(), NotAllowed),
        (PAUSED, "a", ResumeRecording(), NotAllowed),
        # Only the server starts one, when the teacher publishes.
        (LIVE, "t", StartRecording("r1"), NotAllowed),
        ([], SYSTEM, StartRecording("r1"), InvalidTransition),  # not live yet
        (RECORDING, SYSTEM, StartRecording("r1"), InvalidTransition),
        (LIVE, "t", PauseRecording(), InvalidTransition),
        (PAUSED, "t", PauseRecording(), InvalidTransition),
        (RECORDING, "t", ResumeRecording(), InvalidTransition),
    ],
)
def test_refused(before: list[Step], by: str, command: Command, error: type[DomainError]) -> None:
    lesson = new_lesson()
    run(lesson, before)
    log = list(lesson.log)
    with pytest.raises(error):
        lesson.handle(command, by, T0 + 10)
    assert lesson.log == log


def test_snapshot_shows_the_recording() -> None:
    lesson = new_lesson()
    run(lesson, PAUSED)
    assert lesson.snapshot()["recording"] == {"id": "r1", "state": "paused"}
    assert new_lesson().snapshot()["recording"] is None
