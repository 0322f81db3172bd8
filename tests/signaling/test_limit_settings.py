"""The limits are settings: a district's value is the one the running app enforces, the
defaults are the numbers the server always had, and a value that cannot be used stops
the start with the variable named."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from signaling.cli import main
from signaling.limits import Policy, Rate
from signaling.settings import Settings, SettingsError, load_settings
from tests.signaling.conftest import (
    ADMIN,
    WAIT_S,
    Clock,
    Running,
    connected,
    create_lesson,
    joined,
    serve,
)
from tests.signaling.fakes import FakeMedia

pytestmark = pytest.mark.timeout(60)

Probe = Callable[[Running, Clock], Awaitable[object]]


async def _chats_posted_of_ten(srv: Running, clock: Clock) -> int:
    """A classroom alone in its lesson sends ten chats: each is posted or refused."""
    lesson = await create_lesson(srv)
    async with joined(srv, lesson["classrooms"][0]["token"]) as (room, _):
        await room.event("participant_joined")
        for i in range(10):
            await room.send({"type": "chat", "text": f"line {i}"})
        replies = [await room.recv() for _ in range(10)]
    return sum(r["type"] == "event" and r["event"]["kind"] == "chat_posted" for r in replies)


async def _observer_pongs_of_ten(srv: Running, clock: Clock) -> int:
    lesson = await create_lesson(srv)
    async with joined(srv, lesson["observer"]["token"]) as (viewer, _):
        await viewer.event("participant_joined")
        for _ in range(10):
            await viewer.send({"type": "ping"})
        replies = [await viewer.recv() for _ in range(10)]
    return sum(r["type"] == "pong" for r in replies)


async def _observer_viewers_let_in_of_three(srv: Running, clock: Clock) -> int:
    lesson = await create_lesson(srv)
    async with contextlib.AsyncExitStack() as stack:
        viewers = [await stack.enter_async_context(connected(srv)) for _ in range(3)]
        for viewer in viewers:
            await viewer.send({"type": "join", "token": lesson["observer"]["token"]})
        return sum([(await v.recv())["type"] == "welcome" for v in viewers])


async def _classroom_connections_of_two(srv: Running, clock: Clock) -> int:
    """A second connection of a classroom replaces the first where the cap lets it in."""
    lesson = await create_lesson(srv)
    token = lesson["classrooms"][0]["token"]
    async with joined(srv, token) as (_first, _), connected(srv) as second:
        await second.send({"type": "join", "token": token})
        return 1 + ((await second.recv())["type"] == "welcome")


async def _websockets_opened_of_five(srv: Running, clock: Clock) -> int:
    opened = 0
    for _ in range(5):
        with contextlib.suppress(InvalidStatus):
            async with connect(srv.ws_url, open_timeout=WAIT_S):
                opened += 1
    return opened


async def _frames_read_before_a_join_of_five(srv: Running, clock: Clock) -> int:
    async with connected(srv) as peer:
        for _ in range(5):
            await peer.send({"type": "ping"})
        codes = [(await peer.recv()).get("code") for _ in range(5)]
    return codes.count("not_joined")


async def _bad_messages_before_the_close(srv: Running, clock: Clock) -> str:
    lesson = await create_lesson(srv)
    async with joined(srv, lesson["teacher"]["token"]) as (teacher, _):
        await teacher.events(2)
        for _ in range(5):
            await teacher.send({"type": "no_such_type"})
        await teacher.send({"type": "ping", "ref": "still there?"})
        while (reply := await teacher.recv())["type"] not in ("pong", "_closed"):
            pass
    return "open" if reply["type"] == "pong" else f"closed: {reply['reason']}"


async def _wrong_codes_answered_of_five(srv: Running, clock: Clock) -> int:
    lesson = await create_lesson(srv)
    real = {c["code"] for c in lesson["classrooms"]}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in real)
    statuses = [
        (await srv.http.post("/api/join", json={"code": wrong})).status_code for _ in range(5)
    ]
    return statuses.count(404)


async def _wrong_codes_answered_half_a_minute_after_the_burst(srv: Running, clock: Clock) -> int:
    """Ten wrong codes spend the burst; half a minute refills half the per-minute rate."""
    lesson = await create_lesson(srv)
    real = {c["code"] for c in lesson["classrooms"]}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in real)
    for _ in range(10):
        await srv.http.post("/api/join", json={"code": wrong})
    clock.t += 30
    statuses = [
        (await srv.http.post("/api/join", json={"code": wrong})).status_code for _ in range(15)
    ]
    return statuses.count(404)


async def _wrong_keys_answered_of_five(srv: Running, clock: Clock) -> int:
    wrong = {"Authorization": "Bearer not-the-admin-key-0000000"}
    body = {"title": "x", "classrooms": ["a"]}
    statuses = [
        (await srv.http.post("/api/lessons", json=body, headers=wrong)).status_code
        for _ in range(5)
    ]
    return statuses.count(403)


async def _lessons_created_of_five(srv: Running, clock: Clock) -> int:
    body = {"title": "x", "classrooms": ["a"]}
    statuses = [
        (await srv.http.post("/api/lessons", json=body, headers=ADMIN)).status_code
        for _ in range(5)
    ]
    return statuses.count(201)


async def _lessons_created_of_five_over_two_seconds(srv: Running, clock: Clock) -> int:
    body = {"title": "x", "classrooms": ["a"]}
    created = 0
    for _ in range(5):
        created += (
            await srv.http.post("/api/lessons", json=body, headers=ADMIN)
        ).status_code == 201
        clock.t += 0.5
    return created


async def _a_3_kb_body(srv: Running, clock: Clock) -> int:
    body = {"title": "x", "classrooms": ["a"], "padding": "x" * 3000}
    return (await srv.http.post("/api/lessons", json=body, headers=ADMIN)).status_code


async def _a_3_kb_message(srv: Running, clock: Clock) -> str:
    lesson = await create_lesson(srv)
    async with joined(srv, lesson["teacher"]["token"]) as (teacher, _):
        await teacher.events(2)
        await teacher.send({"type": "ping", "ref": "big", "padding": "x" * 3000})
        reply = await teacher.recv()
    return reply["type"] if reply["type"] != "_closed" else f"closed {reply['code']}"


async def _a_message_nested_6_deep(srv: Running, clock: Clock) -> str:
    lesson = await create_lesson(srv)
    async with joined(srv, lesson["teacher"]["token"]) as (teacher, _):
        await teacher.events(2)
        await teacher.send({"type": "ping", "ref": "deep", "x": [[[[[1]]]]]})
        reply = await teacher.recv()
    return str(reply.get("code", reply["type"]))


@dataclass(frozen=True)
class Case:
    settings: dict[str, Any]
    probe: Probe
    with_setting: object
    by_default: object


# Each row: a district's setting, what a client sees with it, and what it sees without.
CASES = {
    "chat rate": Case({"participant_messages_burst": 5}, _chats_posted_of_ten, 4, 10),
    "observer rate": Case({"observer_messages_burst": 6}, _observer_pongs_of_ten, 5, 10),
    "observer link cap": Case({"connections_per_observer_link": 2}, _observer_viewers_let_in_of_three, 2, 3),
    "classroom connection cap": Case({"connections_per_participant": 1}, _classroom_connections_of_two, 1, 2),
    "websocket opens": Case({"ws_opens_burst": 3}, _websockets_opened_of_five, 3, 5),
    "frames before a join": Case({"unjoined_messages_burst": 3}, _frames_read_before_a_join_of_five, 3, 5),
    "bad input": Case({"bad_input_burst": 2}, _bad_messages_before_the_close, "closed: bad_input", "open"),
    "join-code guesses": Case({"wrong_join_codes_burst": 2}, _wrong_codes_answered_of_five, 2, 5),
    "join-code guesses a minute": Case({"wrong_join_codes_per_min": 20}, _wrong_codes_answered_half_a_minute_after_the_burst, 10, 5),
    "wrong admin keys": Case({"wrong_credentials_burst": 3}, _wrong_keys_answered_of_five, 3, 5),
    "creations": Case({"creations_burst": 3}, _lessons_created_of_five, 3, 5),
    "creations a second": Case({"creations_burst": 1, "creations_per_s": 1}, _lessons_created_of_five_over_two_seconds, 3, 5),
    "request body": Case({"http_max_body_bytes": 2048}, _a_3_kb_body, 413, 201),
    "message size": Case({"ws_max_message_bytes": 2048}, _a_3_kb_message, "closed 1009", "pong"),
    "nesting depth": Case({"ws_max_json_depth": 4}, _a_message_nested_6_deep, "bad_json", "pong"),
}  # fmt: skip


@pytest.mark.parametrize("configured", [True, False], ids=["set", "default"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_the_limit_enforced_is_the_one_set(
    settings: Settings, media: FakeMedia, clock: Clock, case: Case, configured: bool
) -> None:
    if configured:
        settings = settings.model_copy(update=case.settings)
    async with serve(settings, media, clock) as srv:
        seen = await asyncio.wait_for(case.probe(srv, clock), WAIT_S * 4)
    assert seen == (case.with_setting if configured else case.by_default)


def test_the_defaults_are_the_numbers_the_server_always_had() -> None:
    assert Policy.of(Settings()) == Policy(
        participant_messages=Rate(40, 10),
        observer_messages=Rate(400, 100),
        connections_per_participant=4,
        connections_per_observer_link=50,
        ws_opens_per_address=Rate(100, 20),
        unjoined_messages_per_address=Rate(100, 20),
        bad_input_per_connection=Rate(20, 0.5),
        wrong_credentials_per_address=Rate(20, 20 / 60),
        wrong_join_codes_per_address=Rate(10, 10 / 60),
        creations_per_address=Rate(60, 2),
    )
    defaults = Settings()
    sizes = (
        defaults.ws_max_message_bytes,
        defaults.ws_max_json_depth,
        defaults.http_max_body_bytes,
    )
    assert sizes == (64 * 1024, 16, 64 * 1024)
    assert defaults.catch_up_max_events == 500


def test_the_environment_sets_a_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASSROOM_PARTICIPANT_MESSAGES_PER_S", "2.5")
    monkeypatch.setenv("CLASSROOM_CONNECTIONS_PER_PARTICIPANT", "2")
    policy = Policy.of(load_settings())
    assert policy.participant_messages == Rate(40, 2.5)
    assert policy.connections_per_participant == 2


RATES = [
    "participant_messages_per_s",
    "observer_messages_per_s",
    "ws_opens_per_s",
    "unjoined_messages_per_s",
    "bad_input_per_s",
    "wrong_credentials_per_min",
    "wrong_join_codes_per_min",
    "creations_per_s",
]
COUNTS = [
    "participant_messages_burst",
    "observer_messages_burst",
    "connections_per_participant",
    "connections_per_observer_link",
    "ws_opens_burst",
    "unjoined_messages_burst",
    "bad_input_burst",
    "wrong_credentials_burst",
    "wrong_join_codes_burst",
    "creations_burst",
    "ws_max_message_bytes",
    "ws_max_json_depth",
    "http_max_body_bytes",
    "catch_up_max_events",
]
UNUSABLE = ["0", "-1", "ten", ""]


@pytest.mark.parametrize("value", [*UNUSABLE, "nan", "inf"])
@pytest.mark.parametrize("name", RATES)
def test_an_unusable_rate_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    variable = f"CLASSROOM_{name.upper()}"
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


@pytest.mark.parametrize("value", [*UNUSABLE, "2.5"])
@pytest.mark.parametrize("name", COUNTS)
def test_an_unusable_count_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    variable = f"CLASSROOM_{name.upper()}"
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("CLASSROOM_WS_MAX_MESSAGE_BYTES", "512", "a join carries a token"),
        ("CLASSROOM_HTTP_MAX_BODY_BYTES", "100", "a lesson's classrooms"),
        ("CLASSROOM_WS_MAX_JSON_DEPTH", "2", "the protocol's own messages nest 3 deep"),
    ],
)
def test_a_size_too_small_for_the_protocol_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, why: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_the_server_does_not_start_on_an_unusable_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`classroom serve` stops before it listens, with the variable to fix and no
    traceback; a flag is named as a flag."""
    monkeypatch.setenv("CLASSROOM_CONNECTIONS_PER_PARTICIPANT", "0")
    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--data-dir", str(tmp_path), "--port", "70000"])
    message = str(stopped.value)
    assert (
        "CLASSROOM_CONNECTIONS_PER_PARTICIPANT: Input should be greater than or equal to 1 (given '0')"
        in message
    )
    assert "--port: Input should be less than or equal to 65535" in message
    assert not (tmp_path / "admin.key").exists()
