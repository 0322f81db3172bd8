"""WHIP and WHEP over HTTP with a fake relay: the RFC's status codes, and bad input
that changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.signaling.conftest import ADMIN, Running, create_lesson, snapshot

OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
SDP = {"Content-Type": "application/sdp"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post(srv: Running, path: str, token: str | None, **kw: Any) -> Any:
    headers = {**SDP, **(bearer(token) if token else {}), **kw.pop("headers", {})}
    return await srv.http.post(path, content=kw.pop("content", OFFER), headers=headers, **kw)


def negotiations(srv: Running) -> list[tuple[object, ...]]:
    return [c for c in srv.media.calls if c[0] == "negotiate"]


async def test_a_publication_is_created_listed_by_its_location_and_deleted(srv: Running) -> None:
    lesson = await create_lesson(srv)
    lid, teacher = lesson["id"], lesson["teacher"]["token"]
    r = await post(srv, f"/whip/{lid}", teacher)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/sdp")
    location = r.headers["location"]
    assert location.startswith(f"/whip/{lid}/")
    assert r.headers["access-control-allow-origin"] == "*"
    assert "Location" in r.headers["access-control-expose-headers"]
    assert r.headers.get_list("link") == []  # no STUN server configured
    [(_, _, media_id, role)] = negotiations(srv)
    assert role == "teacher" and media_id != "teacher"  # the page's own stays its own

    # No trickle ICE and no ICE restart: PATCH is not implemented on the resource.
    frag = {"Content-Type": "application/trickle-ice-sdpfrag", **bearer(teacher)}
    assert (
        await srv.http.patch(location, content="a=ice-ufrag:x", headers=frag)
    ).status_code == 501

    r = await srv.http.delete(location, headers=bearer(teacher))
    assert r.status_code == 200
    assert ("disconnect", lid, media_id) in srv.media.calls
    assert (await srv.http.delete(location, headers=bearer(teacher))).status_code == 404
    assert (await srv.http.patch(location, content="x", headers=frag)).status_code == 404


async def test_options_answers_the_cors_preflight(srv: Running) -> None:
    lesson = await create_lesson(srv)
    r = await srv.http.options(
        f"/whip/{lesson['id']}",
        headers={"Origin": "https://studio.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 204
    assert r.headers["accept-post"] == "application/sdp"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "Authorization" in r.headers["access-control-allow-headers"]
    assert r.headers["access-control-allow-origin"] == "*"
    r = await srv.http.options(f"/whep/{lesson['id']}/some-resource")
    assert r.status_code == 204 and "DELETE" in r.headers["access-control-allow-methods"]


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("no credential", 401, "unauthorized"),
        ("a forged token", 403, "bad_token"),
        ("a classroom's token", 403, "not_allowed"),
        ("the observer's token", 403, "not_allowed"),
        ("another lesson's teacher", 403, "bad_token"),
        ("JSON, not SDP", 415, "unsupported_media_type"),
        ("no content type", 415, "unsupported_media_type"),
        ("not an SDP offer", 400, "bad_sdp"),
        ("not UTF-8", 400, "bad_sdp"),
        ("a second publisher", 409, "conflict"),
        ("an ended lesson", 409, "lesson_ended"),
    ],
)
async def test_bad_whip_input_is_refused_with_the_rfc_status_and_changes_nothing(
    srv: Running, case: str, status: int, code: str
) -> None:
    lesson = await create_lesson(srv)
    other = await create_lesson(srv)
    lid, teacher = lesson["id"], lesson["teacher"]["token"]
    token: str | None = teacher
    kw: dict[str, Any] = {}
    if case == "a second publisher":
        assert (await post(srv, f"/whip/{lid}", teacher)).status_code == 201
    if case == "an ended lesson":
        assert (await srv.http.post(f"/api/lessons/{lid}/end", headers=ADMIN)).status_code == 200
    before = await snapshot(srv, lid)
    calls = list(srv.media.calls)
    match case:
        case "no credential":
            token = None
        case "a forged token":
            token = teacher[:-4] + "AAAA"
        case "a classroom's token":
            token = lesson["classrooms"][0]["token"]
        case "the observer's token":
            token = lesson["observer"]["token"]
        case "another lesson's teacher":
            token = other["teacher"]["token"]
        case "JSON, not SDP":
            kw = {"headers": {"Content-Type": "application/json"}, "content": '{"sdp": "v=0"}'}
        case "no content type":
            kw = {"headers": {"Content-Type": ""}}
        case "not an SDP offer":
            kw = {"content": "hello"}
        case "not UTF-8":
            kw = {"content": b"v=0\r\n\xff\xfe"}
    r = await post(srv, f"/whip/{lid}", token, **kw)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert "location" not in r.headers
    assert srv.media.calls == calls
    assert await snapshot(srv, lid) == before


async def test_a_player_pulls_with_the_observer_link_by_whep(srv: Running) -> None:
    lesson = await create_lesson(srv)
    lid, observer = lesson["id"], lesson["observer"]["token"]
    first = await post(srv, f"/whep/{lid}", observer)
    second = await post(srv, f"/whep/{lid}", observer)  # a link shared by many viewers
    assert (first.status_code, second.status_code) == (201, 201), first.text
    assert first.headers["location"] != second.headers["location"]
    assert [c[3] for c in negotiations(srv)] == ["observer", "observer"]
    # The teacher's token is WHIP's, not WHEP's.
    refused = await post(srv, f"/whep/{lid}", lesson["teacher"]["token"])
    assert (refused.status_code, refused.json()["code"]) == (403, "not_allowed")
    # Only the observer link ends its own playback.
    location = first.headers["location"]
    teacher = bearer(lesson["teacher"]["token"])
    assert (await srv.http.delete(location, headers=teacher)).status_code == 403
    assert (await srv.http.delete(location, headers=bearer(observer))).status_code == 200
    assert (await srv.http.delete(location, headers=bearer(observer))).status_code == 404


async def test_a_publisher_whose_connection_failed_does_not_block_the_next(srv: Running) -> None:
    lesson = await create_lesson(srv)
    lid, teacher = lesson["id"], lesson["teacher"]["token"]
    assert (await post(srv, f"/whip/{lid}", teacher)).status_code == 201
    [(_, _, media_id, _)] = negotiations(srv)
    await srv.media.disconnect(lid, media_id)  # as the relay drops a failed ICE
    assert (await post(srv, f"/whip/{lid}", teacher)).status_code == 201


async def test_when_the_lessons_media_moves_its_resources_are_let_go(srv: Running) -> None:
    """The lesson's media moved (its relay worker died, or another node adopted it): its
    WHIP and WHEP resources led to peer connections that are gone, or that the old
    relay closed. They are forgotten at once: their DELETE and PATCH are answered 404,
    and the encoder's new POST is taken, not refused as a second publisher (the relay
    here, a fake, still claims the old peer, as a node that does not hold the lesson
    does)."""
    lesson = await create_lesson(srv)
    lid, teacher, observer = lesson["id"], lesson["teacher"]["token"], lesson["observer"]["token"]
    r = await post(srv, f"/whip/{lid}", teacher)
    assert r.status_code == 201, r.text
    whip_location = r.headers["location"]
    r = await post(srv, f"/whep/{lid}", observer)
    assert r.status_code == 201, r.text
    whep_location = r.headers["location"]
    assert (await post(srv, f"/whip/{lid}", teacher)).status_code == 409

    await srv.app.state.runtime.lessons.media_moved(lid)

    for location, token in ((whip_location, teacher), (whep_location, observer)):
        assert (await srv.http.patch(location, headers=bearer(token))).status_code == 404
        assert (await srv.http.delete(location, headers=bearer(token))).status_code == 404
    r = await post(srv, f"/whip/{lid}", teacher)
    assert r.status_code == 201, r.text
    assert r.headers["location"] != whip_location
