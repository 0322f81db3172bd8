"""A rejoin's catch-up is bounded: the snapshot, and at most the newest missed events."""

from __future__ import annotations

import json

from classroom import PostChat
from signaling.lessons import MAX_CATCH_UP
from tests.signaling.conftest import Running, create_lesson, joined


async def test_a_rejoin_after_a_long_lesson_gets_the_newest_events_and_says_so(
    srv: Running,
) -> None:
    lesson = await create_lesson(srv)
    teacher, room = lesson["teacher"], lesson["classrooms"][0]
    lessons = srv.app.state.runtime.lessons
    async with joined(srv, teacher["token"]) as (t, _):
        await t.events(2)  # lesson_started, participant_joined
        for i in range(2 * MAX_CATCH_UP):
            await lessons.execute(lesson["id"], PostChat(text=f"第 {i} 行"), "teacher")
        async with joined(srv, room["token"], since=0) as (r, welcome):
            seq = welcome["lesson"]["seq"]
            backlog = [await r.expect("event") for _ in range(MAX_CATCH_UP)]
            # The newest events up to the snapshot, in order; the welcome says where
            # they start, and the older ones are in the snapshot only.
            seqs = [m["event"]["seq"] for m in backlog]
            assert seqs == list(range(seq - MAX_CATCH_UP + 1, seq + 1))
            assert welcome["missed_from"] == seqs[0]
            assert backlog[-1]["event"]["text"] == f"第 {2 * MAX_CATCH_UP - 1} 行"
            # Then the live events, starting with this classroom's own arrival.
            assert (await r.event("participant_joined"))["seq"] == seq + 1
            size = len(json.dumps(welcome)) + sum(len(json.dumps(m)) for m in backlog)
            assert size < 200 * MAX_CATCH_UP

        # A short absence misses fewer: all of it comes, and nothing is said cut.
        async with joined(srv, room["token"], since=seq) as (r, welcome):
            assert welcome["missed_from"] is None
            kinds = [(await r.expect("event"))["event"]["kind"] for _ in range(2)]
            assert kinds == ["participant_joined", "participant_left"] or kinds == [
                "participant_left",
                "participant_joined",
            ]
