"""STUN and TURN servers handed out: in the welcome and in WHIP's Link headers, with
TURN credentials that coturn's `use-auth-secret` accepts until they expire."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest

from signaling.ice import ice_servers, turn_credential
from tests.signaling.conftest import Clock, Running, create_lesson, joined, make_settings, serve
from tests.signaling.fakes import FakeMedia

SECRET = "shared-with-coturn"
TURN = ["turn:turn.school.example:3478?transport=tcp", "turns:turn.school.example:443"]


def test_turn_credentials_follow_the_turn_rest_convention(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, turn_urls=",".join(TURN), turn_secret=SECRET, turn_ttl_s=600)
    [turn] = ice_servers(settings, "classroom-1", now=1_700_000_000.0)
    assert turn["urls"] == TURN
    assert turn["username"] == "1700000600:classroom-1"  # expiry:who
    expected = hmac.new(SECRET.encode(), b"1700000600:classroom-1", hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(expected).decode()
    assert turn_credential(SECRET, "x") != turn_credential("another secret", "x")
    # No secret, no TURN: a TURN server without credentials would only refuse.
    assert ice_servers(make_settings(tmp_path, turn_urls=TURN), "c", 0.0) == []


@pytest.fixture
async def turn_srv(tmp_path: Path, clock: Clock) -> Any:
    settings = make_settings(
        tmp_path, stun_urls=["stun:stun.school.example"], turn_urls=TURN, turn_secret=SECRET
    )
    async with serve(settings, FakeMedia(), clock) as running:
        yield running


async def test_the_welcome_and_whip_hand_out_the_servers(turn_srv: Running, clock: Clock) -> None:
    lesson = await create_lesson(turn_srv)
    async with joined(turn_srv, lesson["classrooms"][0]["token"]) as (_, welcome):
        stun, turn = welcome["ice_servers"]
    assert stun == {"urls": ["stun:stun.school.example"]}
    assert turn["urls"] == TURN
    assert turn["username"] == f"{int(clock() + 6 * 3600)}:classroom-1"

    r = await turn_srv.http.post(
        f"/whip/{lesson['id']}",
        content="v=0\r\n",
        headers={
            "Authorization": f"Bearer {lesson['teacher']['token']}",
            "Content-Type": "application/sdp",
        },
    )
    assert r.status_code == 201
    links = r.headers.get_list("link")
    assert links[0] == '<stun:stun.school.example>; rel="ice-server"'
    username = f"{int(clock() + 6 * 3600)}:teacher"
    assert links[1] == (
        f'<{TURN[0]}>; rel="ice-server"; username="{username}"; '
        f'credential="{turn_credential(SECRET, username)}"; credential-type="password"'
    )


async def test_pages_are_told_when_the_server_has_no_ice_servers(
    tmp_path: Path, clock: Clock
) -> None:
    """With no STUN or TURN server to hand out, the classroom page may offer before its
    welcome (lesson_page.js, `offerEarly`): the packed pages say so on `<html>`."""
    web = Path(__file__).resolve().parents[2] / "web_client"
    pages = []
    for extra in ({}, {"stun_urls": ["stun:stun.school.example"]}):
        settings = make_settings(tmp_path, web_client_dir=web, **extra)
        async with serve(settings, FakeMedia(), clock) as running:
            pages.append((await running.http.get("/classroom")).text)
    assert '<html data-ice-servers="none" lang="zh-CN">' in pages[0]
    assert "data-ice-servers" not in pages[1] and '<html lang="zh-CN">' in pages[1]
