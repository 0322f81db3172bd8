"""The limits wired in: they hold per participant across connections, per address
before a token is seen, and on the HTTP routes that create things or check secrets."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from signaling.settings import Settings
from tests.signaling.conftest import (
    ADMIN,
    WAIT_S,
    Clock,
    Running,
    connected,
    create_lesson,
    eventually,
    joined,
    serve,
)
from tests.signaling.fakes import FakeMedia

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def server(
    settings: Settings, media: FakeMedia, clock: Clock, **limits: Any
) -> AsyncIterator[Running]:
    """The app with `limits` (Settings fields) in its settings."""
    async with serve(settings.model_copy(update=limits), media, clock) as running:
        yield running


async def _chats_seen_by_teacher(teacher: Any) -> int:
    """Chats delivered to the teacher until a ping's pong shows nothing else is pending."""
    await teacher.send({"type": "ping", "ref": "count"})
    seen = 0
    while True:
        msg = await teacher.recv()
        if msg["type"] == "pong" and msg.get("ref") == "count":
            return seen
        if msg["type"] == "event" and msg["event"]["kind"] == "chat_posted":
            seen += 1


async def _slots_free(srv: Running, key: str) -> None:
    """The closed connections' handlers have finished and given their slots back."""
    limits = srv.app.state.runtime.services.limits

    async def free() -> bool:
        return bool(limits.connections.held(key) == 0)

    await eventually(free)


@pytest.mark.parametrize("seconds_between", [0.0, 1.0])
async def test_reconnecting_in_a_loop_gets_no_fresh_budget(
    srv: Running, clock: Clock, seconds_between: float
) -> None:
    """The issue's loop: one classroom token, 40 chats per connection, again and again.
    Everyone else receives at most the participant's budget: 40, then 10 a second."""
    lesson = await create_lesson(srv)
    room_token = lesson["classrooms"][0]["token"]
    async with joined(srv, lesson["teacher"]["token"]) as (teacher, _):
        await teacher.events(2)
        rounds = 6
        for _ in range(rounds):
            async with connected(srv) as room:
                await room.send({"type": "join", "token": room_token})
                first = await room.recv()
                if first["type"] == "welcome":
                    for i in range(40):
                        await room.send({"type": "chat", "text": f"flood {i}"})
            clock.t += seconds_between
        chats = await _chats_seen_by_teacher(teacher)
    # Each join spends one message too.
    assert chats <= 40 - 1 + 10 * seconds_between * rounds
    assert chats >= 20  # the first connection did get its burst


async def test_a_refused_join_says_why_when_the_budget_is_spent(srv: Running) -> None:
    lesson = await create_lesson(srv)
    token = lesson["classrooms"][0]["token"]
    async with joined(srv, token) as (room, _):
        await room.event("participant_joined")
        for i in range(39):
            await room.send({"type": "chat", "text": f"line {i}"})
        for _ in range(39):
            await room.event("chat_posted")
    async with connected(srv) as again:
        await again.send({"type": "join", "token": token})
        await again.error("rate_limited")
        assert await again.closed() == (1008, "rate_limited")


async def test_the_observer_link_is_shared_up_to_its_cap(
    settings: Settings, media: FakeMedia, clock: Clock
) -> None:
    async with server(settings, media, clock, connections_per_observer_link=3) as srv:
        lesson = await create_lesson(srv)
        token = lesson["observer"]["token"]
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(3):
                await stack.enter_async_context(joined(srv, token))
            async with connected(srv) as fourth:
                await fourth.send({"type": "join", "token": token})
                err = await fourth.error("too_many_connections")
                assert "3" in err["message"]
                assert await fourth.closed() == (1008, "too_many_connections")
        # The three closed: their slots are free again.
        await _slots_free(srv, f"{lesson['id']}/observer")
        async with joined(srv, token) as (viewer, _):
            await viewer.event("participant_joined")


async def test_a_participant_connection_cap(
    settings: Settings, media: FakeMedia, clock: Clock
) -> None:
    """A classroom's connections replace one another, so a cap of one always lets the
    newest in once the one it replaced has gone."""
    async with server(settings, media, clock, connections_per_participant=1) as srv:
        lesson = await create_lesson(srv)
        token = lesson["classrooms"][0]["token"]
        async with joined(srv, token) as (first, _):
            await first.event("participant_joined")
            async with connected(srv) as second:
                await second.send({"type": "join", "token": token})
                await second.error("too_many_connections")
                assert await second.closed() == (1008, "too_many_connections")
            await first.quiet()
        await _slots_free(srv, f"{lesson['id']}/classroom-1")
        async with joined(srv, token) as (third, _):
            await third.event("participant_joined")


async def test_websocket_opens_per_address(
    settings: Settings, media: FakeMedia, clock: Clock
) -> None:
    async with server(settings, media, clock, ws_opens_burst=3, ws_opens_per_s=1) as srv:
        for _ in range(3):
            async with connected(srv) as peer:
                await peer.send({"type": "ping"})
                await peer.error("not_joined")
        with pytest.raises(InvalidStatus) as refused:
            async with connect(srv.ws_url, open_timeout=WAIT_S):
                pass
        assert refused.value.response.status_code == 429
        assert b"rate_limited" in refused.value.response.body
        clock.t += 1
        async with connected(srv) as peer:
            await peer.send({"type": "ping"})
            await peer.error("not_joined")


async def test_wrong_credentials_are_slowed_down_per_address(srv: Running) -> None:
    lesson = await create_lesson(srv)
    wrong_key = {"Authorization": "Bearer not-the-admin-key-0000000"}
    for _ in range(20):
        r = await srv.http.post("/api/lessons", json={"title": "x", "classrooms": ["a"]},
                                headers=wrong_key)  # fmt: skip
        assert r.status_code == 403
    # From now on even the right key waits: a guesser learns nothing from the answers.
    for headers in (wrong_key, ADMIN):
        r = await srv.http.get(f"/api/lessons/{lesson['id']}", headers=headers)
        assert (r.status_code, r.json()["code"]) == (429, "too_many_attempts")


async def test_forged_tokens_count_as_wrong_credentials(srv: Running) -> None:
    lesson = await create_lesson(srv)
    forged = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.bm90LXNpZ25lZA"}
    codes = []
    for _ in range(21):
        r = await srv.http.get(f"/api/lessons/{lesson['id']}/delivery", headers=forged)
        codes.append(r.json()["code"])
    assert codes == ["bad_token"] * 20 + ["too_many_attempts"]


async def test_a_right_code_does_not_wipe_the_count_of_wrong_ones(srv: Running) -> None:
    lesson = await create_lesson(srv)
    right = lesson["classrooms"][0]["code"]
    real = {c["code"] for c in lesson["classrooms"]}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in real)
    for _ in range(9):
        r = await srv.http.post("/api/join", json={"code": wrong})
        assert r.status_code == 404
        r = await srv.http.post("/api/join", json={"code": right})
        assert r.status_code == 200
    r = await srv.http.post("/api/join", json={"code": wrong})
    assert r.status_code == 404
    r = await srv.http.post("/api/join", json={"code": right})
    assert (r.status_code, r.json()["code"]) == (429, "too_many_attempts")


async def test_creating_is_limited_per_address(
    settings: Settings, media: FakeMedia, clock: Clock
) -> None:
    async with server(settings, media, clock, creations_burst=3, creations_per_s=0.5) as srv:
        body = {"title": "x", "classrooms": ["a"]}
        statuses = [
            (await srv.http.post("/api/lessons", json=body, headers=ADMIN)).status_code
            for _ in range(4)
        ]
        assert statuses == [201, 201, 201, 429]
        clock.t += 2
        r = await srv.http.post("/api/lessons", json=body, headers=ADMIN)
        assert r.status_code == 201
