"""WebSocket pings: a silent client is seen to leave; a busy server is not mistaken for one.

The real uvicorn server with the app's WebSocket protocol, pings every 0.2 s and a pong
due 0.5 s later (production: 2 s and 5 s, Settings.ws_ping_*).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from classroom.roles import Role
from tests.signaling.conftest import (
    Clock,
    Peer,
    Running,
    create_lesson,
    joined,
    make_settings,
    serve,
)
from tests.signaling.fakes import FakeMedia

pytestmark = pytest.mark.timeout(30)
PINGS = {"ws_ping_interval": 0.2, "ws_ping_timeout": 0.5}


class SlowMedia(FakeMedia):
    """A relay whose negotiation takes a while (a loaded server gathering ICE)."""

    async def negotiate(self, lesson_id: str, participant_id: str, role: Role, sdp: str) -> str:
        await asyncio.sleep(1.5)
        return await super().negotiate(lesson_id, participant_id, role, sdp)


async def until(peer: Peer, kind: str, participant_id: str) -> None:
    """Read events until one of `kind` about `participant_id`."""
    while True:
        event = (await peer.expect("event"))["event"]
        if (event["kind"], event.get("participant_id")) == (kind, participant_id):
            return


@pytest.fixture
async def pinging(tmp_path: Path) -> AsyncIterator[Running]:
    async with serve(make_settings(tmp_path), SlowMedia(), Clock(), **PINGS) as running:
        yield running


async def test_a_client_that_stops_answering_is_seen_to_leave(pinging: Running) -> None:
    lesson = await create_lesson(pinging)
    room = lesson["classrooms"][0]
    async with (
        joined(pinging, lesson["teacher"]["token"]) as (teacher, _),
        joined(pinging, room["token"]) as (classroom, _),
    ):
        await until(teacher, "participant_joined", room["id"])
        # Its link is cut: nothing it is sent is read, so no pong goes back.
        transport: Any = classroom.ws.transport
        transport.pause_reading()
        started = time.monotonic()
        await until(teacher, "participant_left", room["id"])
        assert time.monotonic() - started < 2.0


async def test_a_long_negotiation_is_not_a_dead_client(pinging: Running) -> None:
    lesson = await create_lesson(pinging)
    async with joined(pinging, lesson["classrooms"][0]["token"]) as (classroom, _):
        await classroom.send({"type": "offer", "sdp": "v=0\r\n"})
        # Sent while the server negotiates: uvicorn holds it, and stops reading, until
        # the app takes it; the pongs behind it wait unread for 1.5 s, past the 0.5 s.
        await classroom.send({"type": "ping"})
        seen = []
        while "pong" not in seen:
            msg = await classroom.recv()
            seen.append(msg["type"])
        assert "answer" in seen, seen
