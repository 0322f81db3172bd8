"""Every bad input gets a clear error and changes nothing; the lesson goes on."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from typing import Any

import jwt
import pytest

from signaling.ws import to_the_end, within
from tests.signaling.conftest import (
    Clock,
    Peer,
    Running,
    connected,
    create_lesson,
    joined,
    snapshot,
)

pytestmark = pytest.mark.timeout(30)


VIDEO = {"freeze_count": 3, "total_freezes_duration": 2.5, "frames_decoded": 900}
AUDIO = {"concealed_samples": 480, "total_samples_received": 48_000, "concealment_events": 2}
RECEPTION = {"type": "reception", "media_session": "a1b2c3", "video": VIDEO, "audio": AUDIO}

# Not JSON, but Python's parser takes it: the model must refuse what is not a number.
NAN_DURATION = json.dumps(RECEPTION | {"ref": "bad"}).replace("2.5", "NaN")


def _nested(levels: int) -> Any:
    """`levels` arrays and objects inside one another (in a message: one level more)."""
    value: Any = "[{deep}]"
    for level in range(levels):
        value = [value, 1] if level % 2 else {"k": value, "[": "]"}
    return value


def _video(**changes: Any) -> dict[str, Any]:
    return {**RECEPTION, "video": {**VIDEO, **changes}}


def _audio(**changes: Any) -> dict[str, Any]:
    return {**RECEPTION, "audio": {**AUDIO, **changes}}


def _pictures(slot: str, **changes: Any) -> dict[str, Any]:
    picture = {"state": "live", "width": 640, "height": 360, "fps": 15.0, **changes}
    return {**RECEPTION, "pictures": {slot: picture}}


async def _join_classroom(peer: Peer, lesson: dict[str, Any]) -> None:
    """Join `peer` as the lesson's first classroom and wait until it is in."""
    await peer.send({"type": "join", "token": lesson["classrooms"][0]["token"]})
    await peer.expect("welcome")
    await peer.event("participant_joined")


async def _live_lesson(srv: Running) -> dict[str, Any]:
    lesson = await create_lesson(srv)
    return lesson


@pytest.mark.parametrize(
    ("who", "frame", "code"),
    [
        ("classroom", "{not json", "bad_json"),
        ("classroom", "[1, 2]", "bad_json"),
        ("classroom", b"\x00\x01", "bad_json"),
        ("classroom", {"type": "dance"}, "unknown_type"),
        ("classroom", {"student": "no type"}, "unknown_type"),
        ("classroom", {"type": "raise_hand"}, "invalid_message"),
        ("classroom", {"type": "raise_hand", "student": 7}, "invalid_message"),
        ("classroom", '{"type": "chat", "text": ' + "[" * 5_000 + "]" * 5_000 + "}", "bad_json"),
        ("classroom", {"type": "ping", "extra": _nested(16)}, "bad_json"),
        ("classroom", {"type": "raise_hand", "student": "   "}, "invalid_command"),
        ("classroom", {"type": "grant_floor", "classroom_id": "classroom-1"}, "not_allowed"),
        ("classroom", {"type": "revoke_floor"}, "not_allowed"),
        ("classroom", {"type": "dismiss_hand", "classroom_id": "classroom-2"}, "not_allowed"),
        ("classroom", {"type": "end_lesson"}, "not_allowed"),
        ("classroom", {"type": "lower_hand"}, "invalid_transition"),
        ("classroom", {"type": "join", "token": "x"}, "already_joined"),
        ("observer", {"type": "raise_hand", "student": "Li Wei"}, "not_allowed"),
        ("observer", {"type": "chat", "text": "hello"}, "not_allowed"),
        ("teacher", {"type": "grant_floor", "classroom_id": "classroom-9"}, "invalid_command"),
        ("teacher", {"type": "grant_floor", "classroom_id": "observer"}, "invalid_command"),
        ("teacher", {"type": "grant_floor", "classroom_id": "classroom-2"}, "invalid_transition"),
        ("teacher", {"type": "revoke_floor"}, "invalid_transition"),
        ("teacher", {"type": "dismiss_hand", "classroom_id": "classroom-1"}, "invalid_transition"),
        ("teacher", {"type": "raise_hand", "student": "Teacher"}, "not_allowed"),
        ("teacher", {"type": "offer", "sdp": ""}, "invalid_message"),
        ("teacher", {"type": "offer", "sdp": "garbage"}, "bad_sdp"),
        # What a classroom's browser received: only a classroom's own page says it.
        ("teacher", RECEPTION, "not_allowed"),
        ("observer", RECEPTION, "not_allowed"),
        ("classroom", {**RECEPTION, "media_session": ""}, "invalid_message"),
        ("classroom", {**RECEPTION, "media_session": "../../etc"}, "invalid_message"),
        ("classroom", {**RECEPTION, "media_session": "x" * 65}, "invalid_message"),
        ("classroom", {**RECEPTION, "video": None, "audio": None}, "invalid_message"),
        ("classroom", _video(freeze_count=-1), "invalid_message"),
        ("classroom", _video(freeze_count="3"), "invalid_message"),
        ("classroom", _video(freeze_count=True), "invalid_message"),
        ("classroom", _video(frames_decoded=1.5), "invalid_message"),
        ("classroom", _video(total_freezes_duration=-0.1), "invalid_message"),
        ("classroom", _video(total_freezes_duration=1e300), "invalid_message"),
        ("classroom", _audio(total_samples_received=10**13), "invalid_message"),
        ("classroom", {**RECEPTION, "audio": {"concealed_samples": 1}}, "invalid_message"),
        ("classroom", NAN_DURATION, "invalid_message"),
        ("classroom", _audio(concealed_samples=48_001), "invalid_command"),
        # What it decodes now: the teacher's pictures only, in states a page tells apart.
        ("classroom", _pictures("stage_video", state="live"), "invalid_message"),
        ("classroom", _pictures("teacher_camera", state="fine"), "invalid_message"),
        ("classroom", _pictures("teacher_camera", width=-1), "invalid_message"),
        ("classroom", _pictures("teacher_camera", height=1.5), "invalid_message"),
        ("classroom", _pictures("slides", fps=1e9), "invalid_message"),
    ],
)
async def test_bad_message_after_join(
    srv: Running, who: str, frame: dict[str, Any] | str | bytes, code: str
) -> None:
    lesson = await create_lesson(srv)
    tokens = {
        "teacher": lesson["teacher"]["token"],
        "classroom": lesson["classrooms"][0]["token"],
        "observer": lesson["observer"]["token"],
    }
    async with joined(srv, lesson["teacher"]["token"]) as (teacher, _):
        await teacher.events(2)
        async with joined(srv, tokens[who]) if who != "teacher" else _same(teacher) as (peer, _):
            if who != "teacher":
                await teacher.event("participant_joined")
                await peer.event("participant_joined")
            before = await snapshot(srv, lesson["id"])
            if isinstance(frame, dict):
                frame = dict(frame, ref="bad")
            await peer.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))
            err = await peer.error(code)
            assert err["message"] and "Traceback" not in err["message"]
            if isinstance(frame, str) and frame.startswith('{"') and frame.endswith('"bad"}'):
                assert err["ref"] == "bad"
            # Nothing changed, nobody was told anything, and the connection still works.
            await peer.quiet()
            await teacher.quiet()
            assert await snapshot(srv, lesson["id"]) == before
            if who == "classroom":
                await peer.send({"type": "raise_hand", "student": "Li Wei"})
                await teacher.event("hand_raised", student="Li Wei")


class _same:
    """`joined` for a peer that is already connected."""

    def __init__(self, peer: Any) -> None:
        self.peer = peer

    async def __aenter__(self) -> tuple[Any, None]:
        return self.peer, None

    async def __aexit__(self, *exc: object) -> None:
        return None


async def test_nesting_up_to_the_bound_is_read(srv: Running) -> None:
    async with connected(srv) as peer:
        await peer.send({"type": "ping", "ref": "r", "extra": _nested(15)})
        await peer.error("not_joined")  # read and understood, not refused as bad_json


async def test_a_frame_over_the_limit_is_refused_unread_with_a_reason(srv: Running) -> None:
    lesson = await create_lesson(srv)
    async with joined(srv, lesson["classrooms"][0]["token"]) as (room, _):
        await room.event("participant_joined")
        await room.send({"type": "chat", "text": "x" * 70_000})
        code, reason = await room.closed()
        assert code == 1009 and reason
    async with joined(srv, lesson["teacher"]["token"]) as (teacher, welcome):
        assert welcome["lesson"]["seq"] == 3  # scheduled, joined, left: no chat
        await teacher.events(2)


@pytest.mark.parametrize("join_first", [False, True])
async def test_a_text_frame_that_is_not_utf8_is_closed_with_a_reason(
    srv: Running, join_first: bool, caplog: pytest.LogCaptureFixture
) -> None:
    lesson = await create_lesson(srv)
    async with connected(srv) as peer:
        if join_first:
            await _join_classroom(peer, lesson)
        await peer.ws.send(b'{"type": "chat", "text": "\xff\xfe"}', text=True)
        code, reason = await peer.closed()
        assert code == 1007 and reason
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_message_before_join_is_refused_and_join_still_works(srv: Running) -> None:
    lesson = await create_lesson(srv)
    before = await snapshot(srv, lesson["id"])
    async with connected(srv) as peer:
        await peer.send({"type": "raise_hand", "student": "Li Wei", "ref": "r"})
        err = await peer.error("not_joined")
        assert err["ref"] == "r"
        await peer.send({"type": "ping"})
        await peer.error("not_joined")
        assert await snapshot(srv, lesson["id"]) == before
        await peer.send({"type": "join", "token": lesson["classrooms"][0]["token"]})
        await peer.expect("welcome")


def _forge(
    claims: dict[str, Any], key: str = "not-the-server-secret-0000000000000", alg: str = "HS256"
) -> str:
    return jwt.encode(claims, key, algorithm=alg)


@pytest.mark.parametrize("kind", ["forged", "alg_none", "hs512", "garbage", "expired", "protocol"])
async def test_bad_join_is_refused_and_closed(srv: Running, clock: Clock, kind: str) -> None:
    lesson = await create_lesson(srv)
    good = lesson["classrooms"][0]["token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    secret = (srv.settings.data_dir / "token.key").read_text().strip()
    token, code, protocol = good, "bad_token", 1
    if kind == "forged":
        token = _forge(dict(claims, role="teacher", sub="teacher"))
    elif kind == "alg_none":
        header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
        body = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
        token = f"{header}.{body}."
    elif kind == "hs512":
        token = _forge(claims, key=secret, alg="HS512")
    elif kind == "garbage":
        token = "hello"
    elif kind == "expired":
        clock.t += srv.settings.token_ttl_s + 1
        code = "token_expired"
    elif kind == "protocol":
        code, protocol = "unsupported_protocol", 2
    before = await snapshot(srv, lesson["id"])
    async with connected(srv) as peer:
        await peer.send({"type": "join", "token": token, "protocol": protocol})
        err = await peer.error(code)
        assert err["message"]
        assert await peer.closed() == (1008, code)
    assert await snapshot(srv, lesson["id"]) == before


async def test_token_of_another_lesson(srv: Running) -> None:
    one = await create_lesson(srv, "One")
    two = await create_lesson(srv, "Two")
    async with connected(srv) as peer:
        await peer.send({"type": "join", "token": one["teacher"]["token"], "lesson_id": two["id"]})
        err = await peer.error("bad_token")
        assert "another lesson" in err["message"]
    r = await srv.http.get(
        f"/api/lessons/{two['id']}",
        headers={"Authorization": f"Bearer {one['teacher']['token']}"},
    )
    assert r.status_code == 403 and r.json()["code"] == "bad_token"
    r = await srv.http.post(
        f"/api/lessons/{two['id']}/end",
        headers={"Authorization": f"Bearer {one['teacher']['token']}"},
    )
    assert r.status_code == 403
    assert (await snapshot(srv, two["id"]))["state"] == "scheduled"


async def test_flood_is_rate_limited_not_broadcast_then_closed(srv: Running) -> None:
    lesson = await create_lesson(srv)
    async with joined(srv, lesson["classrooms"][0]["token"]) as (room, _):
        await room.event("participant_joined")
        for i in range(60):
            await room.send({"type": "chat", "text": f"spam {i}"})
        kinds = [await room.recv() for _ in range(60)]
        chats = [m for m in kinds if m["type"] == "event"]
        limited = [m for m in kinds if m.get("code") == "rate_limited"]
        # The join spent one of the 40; the clock stands still, so nothing refills.
        assert len(chats) == 39 and len(limited) == 21
        # Twenty refusals are forgiven, not a stream of them.
        await room.error("bad_input")
        assert await room.closed() == (1008, "bad_input")


@pytest.mark.parametrize(
    "junk",
    ["{not json", "[" * 5_000 + "]" * 5_000, b"\x00", {"type": "dance"}, {"type": "chat"}],
)
@pytest.mark.parametrize("join_first", [False, True])
async def test_a_stream_of_bad_input_closes_the_connection(
    srv: Running, junk: str | bytes | dict[str, Any], join_first: bool
) -> None:
    lesson = await create_lesson(srv)
    async with connected(srv) as peer:
        if join_first:
            await _join_classroom(peer, lesson)
        for _ in range(21):
            await peer.send(junk if isinstance(junk, str | bytes) else json.dumps(junk))
        codes = [(await peer.recv())["code"] for _ in range(21)]
        assert "bad_input" not in codes and len(set(codes)) == 1
        await peer.error("bad_input")
        assert await peer.closed() == (1008, "bad_input")


async def test_a_command_is_finished_when_its_connection_is_torn_down() -> None:
    """A client that vanishes cancels its connection's handler: the command it was
    running (a state change, then its store append) must still finish, or the lesson
    reloads from a log the store may still be writing (seen in bench_fairness's
    reconnect flood as "could not store events ... CancelledError")."""
    release, finished = asyncio.Event(), asyncio.Event()
    unhandled: list[object] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, ctx: unhandled.append(ctx))

    async def command(fail: bool) -> int:
        await release.wait()
        finished.set()
        if fail:
            raise ValueError("refused after its waiter left")
        return 1

    for fail in (False, True):
        release.clear()
        finished.clear()
        waiter = asyncio.create_task(to_the_end(command(fail)))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        await asyncio.wait_for(finished.wait(), 5)
    await asyncio.sleep(0.01)
    gc.collect()  # an unretrieved task exception is reported when the task is freed
    await asyncio.sleep(0.01)
    assert unhandled == []


async def test_a_timeout_does_not_wait_for_the_work_to_wind_down() -> None:
    """A relay that is slow to unwind a cancelled negotiation (its cleanup awaits) must
    not hold the connection past the timeout, as asyncio.wait_for would."""
    unwound = asyncio.Event()

    async def stubborn() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)  # closing a peer connection, say
            unwound.set()
            raise
        return "answer"

    with pytest.raises(TimeoutError):
        await within(stubborn(), 0.05)
    assert not unwound.is_set()  # the timeout came first; the unwinding goes on alone
    await asyncio.wait_for(unwound.wait(), 5)
    assert await within(asyncio.sleep(0, result="answer"), 1) == "answer"
