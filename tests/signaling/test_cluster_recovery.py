"""The log a node adopting a lesson rebuilds it from (signaling.cluster.recovery)."""

from __future__ import annotations

import pytest

from classroom import commands as c
from classroom.events import Event, ParticipantSpec
from classroom.lesson import Lesson
from classroom.roles import Role
from signaling.cluster.recovery import rebuild


def _log() -> list[Event]:
    """Six events: scheduled, two joins, a hand, the floor, a chat line."""
    specs = [
        ParticipantSpec("teacher", Role.TEACHER, "Teacher"),
        ParticipantSpec("classroom-1", Role.CLASSROOM, "Village A"),
    ]
    lesson = Lesson.schedule("l1", "Physics", specs, 0.0)
    for command, by in [
        (c.Join(), "teacher"),
        (c.Join(), "classroom-1"),
        (c.RaiseHand("Zhao Lei"), "classroom-1"),
        (c.GrantFloor("classroom-1"), "teacher"),
        (c.PostChat("page 12"), "teacher"),
    ]:
        lesson.handle(command, by, 1.0)
    return lesson.log


LOG = _log()


def _seqs(events: list[Event]) -> list[int]:
    return [ev.seq for ev in events]


@pytest.mark.parametrize(
    ("stream", "stored", "events", "to_store"),
    [
        # Both agree: nothing to write.
        (LOG, LOG, LOG, []),
        # The node died between the store's commit and the stream's write.
        (LOG[:4], LOG, LOG, []),
        # A per-node store lagging the shared stream: the stream's events are kept.
        (LOG, LOG[:3], LOG, LOG[3:]),
        # A stream whose Redis write failed in the middle: the store fills the gap.
        ([*LOG[:2], *LOG[3:]], LOG, LOG, []),
        # Nothing past a gap in both: the log is never rebuilt with a hole.
        ([*LOG[:2], LOG[5]], LOG[:2], LOG[:2], []),
        # An empty stream (Redis restarted): the store alone.
        ([], LOG, LOG, []),
    ],
    ids=["agree", "stream-behind", "store-behind", "stream-gap", "gap-in-both", "no-stream"],
)
def test_rebuild(
    stream: list[Event], stored: list[Event], events: list[Event], to_store: list[Event]
) -> None:
    rebuilt = rebuild(stream, stored)
    assert _seqs(rebuilt.events) == _seqs(events)
    assert _seqs(rebuilt.missing_in_store) == _seqs(to_store)
    # What is rebuilt is a lesson: the fold takes it, and the stage is there.
    if len(rebuilt.events) == len(LOG):
        lesson = Lesson.resume(rebuilt.events)
        assert lesson.stage is not None and lesson.stage.classroom_id == "classroom-1"


def test_the_stores_copy_wins_where_both_hold_an_event() -> None:
    other = Lesson.replay(LOG[:5])
    other.handle(c.PostChat("a different line"), "teacher", 1.0)
    rebuilt = rebuild(other.log, LOG)
    assert rebuilt.events[5] is LOG[5]
