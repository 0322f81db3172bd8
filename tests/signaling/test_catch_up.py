"""A rejoin's catch-up is bounded: the snapshot, and at most the newest missed events."""

from __future__ import annotations

import json

import pytest

from classroom import PostChat
from signaling.settings import Settings
from tests.signaling.conftest import Clock, create_lesson, joined, serve
from tests.signaling.fakes import FakeMedia


# The default, and a district's lower setting (CLASSROOM_CATCH_UP_MAX_EVENTS).
@pytest.mark.parametrize("catch_up_max_events", [None, 7])
async def test_a_rejoin_after_a_long_lesson_gets_the_newest_events_and_says_so(
    settings: Settings, media: FakeMedia, clock: Clock, catch_up_max_events: int | None
) -> None:
    if catch_up_max_events is not None:
        settings = settings.model_copy(update={"catch_up_max_events": catch_up_max_events})
    most = settings.catch_up_max_events
    async with serve(settings, media, clock) as srv:
        lesson = await create_lesson(srv)
        teacher, room = lesson["teacher"], lesson["classrooms"][0]
        lessons = srv.app.state.runtime.lessons
        async with joined(srv, teacher["token"]) as (t, _):
            await t.events(2)  # lesson_started, participant_joined
            for i in range(2 * most):
                await lessons.execute(lesson["id"], PostChat(text=f"第 {i} 行"), "teacher")
            async with joined(srv, room["token"], since=0) as (r, welcome):
                seq = welcome["lesson"]["seq"]
                backlog = [await r.expect("event") for _ in range(most)]
                # The newest events up to the snapshot, in order; the welcome says where
                # they start, and the older ones are in the snapshot only.
                seqs = [m["event"]["seq"] for m in backlog]
                assert seqs == list(range(seq - most + 1, seq + 1))
                assert welcome["missed_from"] == seqs[0]
                assert backlog[-1]["event"]["text"] == f"第 {2 * most - 1} 行"
                # Then the live events, starting with this classroom's own arrival.
                assert (await r.event("participant_joined"))["seq"] == seq + 1
                # What a rejoin costs: the snapshot, and a backlog that does not grow with
                # the lesson.
                assert len(json.dumps(welcome)) < 5_000
                assert sum(len(json.dumps(m)) for m in backlog) < 200 * most

            # A short absence misses fewer: all of it comes, and nothing is said cut.
            async with joined(srv, room["token"], since=seq) as (r, welcome):
                assert welcome["missed_from"] is None
                kinds = [(await r.expect("event"))["event"]["kind"] for _ in range(2)]
                assert kinds == ["participant_joined", "participant_left"] or kinds == [
                    "participant_left",
                    "participant_joined",
                ]
