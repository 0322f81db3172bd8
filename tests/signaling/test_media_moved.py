"""`media_moved` from relay workers (media.workers): to the whole lesson when its worker
died, to some classrooms only when the worker that served them for the lesson's home
died (media.workers.follower). The app with a fake relay that has the workers' hooks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

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


class SpanningMedia(FakeMedia):
    """The fake relay with `WorkerGateway`'s two hooks, which signaling sets."""

    def __init__(self) -> None:
        super().__init__()
        self.on_moved: Callable[[str], Awaitable[None]] | None = None
        self.on_peers_moved: Callable[[str, frozenset[str]], Awaitable[None]] | None = None


async def drained(peer: Peer) -> list[str]:
    """The types of the messages pending for `peer` (up to a ping's pong)."""
    await peer.send({"type": "ping", "ref": "drain"})
    types = []
    while (msg := await peer.recv())["type"] != "pong":
        types.append(msg["type"])
    return types


@pytest.fixture
async def spanning(tmp_path: Path, clock: Clock) -> AsyncIterator[Running]:
    async with serve(make_settings(tmp_path), SpanningMedia(), clock) as running:
        yield running


async def test_a_dead_followers_classrooms_alone_are_told_to_offer_again(
    spanning: Running,
) -> None:
    lesson = await create_lesson(spanning, classrooms=["Village A", "Village B"])
    media = spanning.media
    assert isinstance(media, SpanningMedia) and media.on_peers_moved is not None
    a_token, b_token = (room["token"] for room in lesson["classrooms"])
    async with (
        joined(spanning, lesson["teacher"]["token"]) as (teacher, _),
        joined(spanning, a_token) as (room_a, welcome_a),
        joined(spanning, b_token) as (room_b, welcome_b),
    ):
        for peer in (teacher, room_a, room_b):
            await drained(peer)
        moved = welcome_b["you"]["id"]
        await media.on_peers_moved(lesson["id"], frozenset({moved}))
        assert await drained(room_b) == ["media_moved"]
        # The others' media is where it was: they are not told.
        for peer in (teacher, room_a):
            assert "media_moved" not in await drained(peer)
        assert welcome_a["you"]["id"] != moved
        # The whole lesson moving still tells everyone.
        assert media.on_moved is not None
        await media.on_moved(lesson["id"])
        for peer in (teacher, room_a, room_b):
            assert "media_moved" in await drained(peer)
