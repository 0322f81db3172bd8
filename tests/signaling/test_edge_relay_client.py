"""The edge's side (`classroom edge`) over a real origin relay, in one process: the
edge link replaced by two channels joined in memory, the relays and peers real."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from classroom.roles import Role
from media.relay.relay import Relay
from media.settings import RelaySettings
from media.slots import Slot
from media.synthetic import MovingPicture, SyntheticParticipant
from signaling.edge.client import EdgeRelay
from signaling.edge.protocol import (
    Answer,
    Channel,
    Disconnect,
    Done,
    Negotiate,
    Pull,
    Release,
    Reply,
    Request,
    Want,
    parse,
)

pytestmark = pytest.mark.timeout(60)
LESSON = "L"
EDGE = "county-a"


def _settings() -> RelaySettings:
    return RelaySettings(host_addresses=("127.0.0.1",), encoder_threads=2, adaptive=False)


async def test_the_edge_pulls_once_serves_its_classrooms_and_pulls_again_when_cut() -> None:
    origin = Relay(_settings())
    edge = EdgeRelay("http://127.0.0.1:1", "unused", _settings())
    pulls: list[str] = []

    async def origin_serves(request: Request) -> Reply:
        # The origin's answers to an edge (signaling.edge.origin.EdgeMedia.serve).
        if isinstance(request, Pull):
            pulls.append(request.lesson_id)
            sdp = await origin.negotiate_feed(request.lesson_id, EDGE, request.sdp)
            return Answer(type="answer", id=request.id, sdp=sdp)
        if isinstance(request, Want):
            origin.want_feed(request.lesson_id, EDGE, request.lines)
        elif isinstance(request, Release):
            await origin.drop_feed(request.lesson_id, EDGE)
        return Done(type="done", id=request.id)

    ends: list[Channel] = []

    def sender(to: int) -> Callable[[str], Awaitable[None]]:
        async def send(text: str) -> None:
            ends[to].handle(parse(text))

        return send

    ends.extend([Channel(sender(1), origin_serves), Channel(sender(0), edge.serve)])
    origin_end, edge_end = ends
    edge.use(edge_end)

    teacher = SyntheticParticipant(Role.TEACHER)
    rooms: list[SyntheticParticipant] = []
    try:
        await teacher.accept(
            await origin.negotiate(LESSON, "teacher", Role.TEACHER, await teacher.offer())
        )
        for i in range(2):
            room = SyntheticParticipant(
                Role.CLASSROOM, send_video=lambda: MovingPicture(320, 180, 15)
            )
            rooms.append(room)
            ask = Negotiate(type="negotiate", id=origin_end.next_id(), lesson_id=LESSON,
                            participant_id=f"room-{i}", role="classroom",
                            sdp=await room.offer())  # fmt: skip
            reply = await origin_end.ask(ask)
            assert isinstance(reply, Answer)
            await room.accept(reply.sdp)
        for room in rooms:
            await room.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=20)
        assert pulls == [LESSON]  # one pull for both classrooms
        assert origin.feeds(LESSON) == (EDGE,)

        # The origin closes the pull (its relay restarted, say): the edge pulls again
        # and its classrooms play on without reconnecting.
        await origin.drop_feed(LESSON, EDGE)
        for _ in range(100):
            if len(pulls) == 2 and origin.feeds(LESSON) == (EDGE,):
                break
            await asyncio.sleep(0.1)
        assert pulls == [LESSON, LESSON]
        before = rooms[0].received[Slot.TEACHER_CAMERA].frames
        await rooms[0].wait_frames(Slot.TEACHER_CAMERA, before + 10, timeout=20)

        # The last classroom leaving gives the pull back.
        for i in range(2):
            bye = Disconnect(type="disconnect", id=origin_end.next_id(), lesson_id=LESSON,
                             participant_id=f"room-{i}")  # fmt: skip
            await origin_end.ask(bye)
        assert origin.feeds(LESSON) == ()
        assert edge.relay.participants(LESSON) == ()
    finally:
        for room in rooms:
            await room.close()
        await teacher.close()
        await edge.close()
        await origin.close()
