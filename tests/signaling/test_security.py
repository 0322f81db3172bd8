"""Security as one table: what each forged, stale, misplaced or oversized request gets.

Every row is a request a user (or an attacker) can make, and the answer it must get.
The tokens are made the ways an attacker would: no algorithm, another key, a claim
changed under the original signature, an expired one, another lesson's, a replay link
where a participant token is expected; recording links used on another recording or
after they expire; file names climbing out of their folder; bodies too big; and the
headers every answer carries.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest

from classroom.roles import Role
from media.recorder import manifest as manifests
from signaling.settings import Settings
from signaling.tokens import TokenIssuer
from tests.signaling.conftest import (
    ADMIN,
    ADMIN_KEY,
    Clock,
    Running,
    connected,
    create_lesson,
    make_settings,
    serve,
)
from tests.signaling.fakes import FakeMedia

pytestmark = pytest.mark.timeout(60)

INLINE = "document.body.textContent = 'too old';"
PAGE = f"<!doctype html><title>t</title><script nomodule>{INLINE}</script>"
WEBM = b"\x1a\x45\xdf\xa3 not really a webm, but bytes on disk"


@dataclass
class World:
    srv: Running
    ids: dict[str, str]  # A, B (lessons), rA, rB (recordings)
    credentials: dict[str, str]


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _tampered(token: str, **changes: Any) -> str:
    """The same signature over claims that say something else."""
    header, _, signature = _segments(token)
    claims = jwt.decode(token, options={"verify_signature": False}) | changes
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def _unsigned(token: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _recording(root: Path, rid: str, lesson_id: str) -> None:
    directory = root / rid
    directory.mkdir(parents=True)
    (directory / "camera.webm").write_bytes(WEBM)
    (directory / "timeline.jsonl").write_text('{"t": 0.0, "kind": "snapshot", "lesson": {}}\n')
    manifest: manifests.Manifest = {
        "version": 1,
        "state": "finished",
        "duration": 1.0,
        "pauses": [],
        "files": [
            {
                "name": "camera.webm",
                "role": "camera",
                "source": "teacher",
                "offset": 0.0,
                "duration": 1.0,
                "tracks": [],
            }
        ],
        "id": rid,
        "lesson_id": lesson_id,
        "title": "t",
        "started_at": 0.0,
    }
    manifests.write(directory, manifest)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    made = make_settings(tmp_path)
    (made.web_client_dir / "teacher.html").write_text(PAGE)
    return made


@pytest.fixture
async def world(settings: Settings, media: FakeMedia, clock: Clock) -> AsyncIterator[World]:
    async with serve(settings, media, clock) as srv:
        a = await create_lesson(srv, "A")
        b = await create_lesson(srv, "B")
        ids = {"A": a["id"], "B": b["id"], "rA": "r0a0a0a0a0a0a", "rB": "r0b0b0b0b0b0b"}
        root = settings.data_dir / "recordings"
        _recording(root, ids["rA"], a["id"])
        _recording(root, ids["rB"], b["id"])
        secret = (settings.data_dir / "token.key").read_text().strip()
        issuer = TokenIssuer(secret, 3600, clock)
        past = TokenIssuer(secret, 3600, lambda: clock() - 7200)
        room = a["classrooms"][0]["token"]
        teacher = a["teacher"]["token"]
        credentials = {
            "admin": ADMIN_KEY,
            "admin_but_last": ADMIN_KEY[:-1] + ("x" if ADMIN_KEY[-1] != "x" else "y"),
            "admin_and_more": ADMIN_KEY + "0",
            "teacher": teacher,
            "classroom": room,
            "alg_none": _unsigned(teacher),
            "wrong_key": jwt.encode(
                jwt.decode(teacher, options={"verify_signature": False}),
                "another-secret-that-is-long-enough",
            ),
            "expired": past.issue(a["id"], "teacher", Role.TEACHER),
            "other_lesson": b["teacher"]["token"],
            "tampered_role": _tampered(room, role="teacher", sub="teacher"),
            "tampered_lesson": _tampered(teacher, lesson=b["id"]),
            "tampered_exp": _tampered(past.issue(a["id"], "teacher", Role.TEACHER), exp=2**40),
            "replay": issuer.issue_replay(ids["rA"], a["id"], 600)[0],
            "replay_other": issuer.issue_replay(ids["rB"], b["id"], 600)[0],
            "replay_expired": past.issue_replay(ids["rA"], a["id"], 600)[0],
        }
        yield World(srv, ids, credentials)


# (name, method, path, credential, status, code). `credential` is a key of
# World.credentials, sent as a bearer header, or after "?" as the `access` query.
HTTP_TABLE = [
    # Participant tokens, forged or out of place.
    ("control: the teacher reads its lesson", "GET", "/api/lessons/{A}", "teacher", 200, None),
    ("alg none", "GET", "/api/lessons/{A}", "alg_none", 403, "bad_token"),
    ("signed with another key", "GET", "/api/lessons/{A}", "wrong_key", 403, "bad_token"),
    ("expired", "GET", "/api/lessons/{A}", "expired", 401, "token_expired"),
    ("another lesson's token", "GET", "/api/lessons/{A}", "other_lesson", 403, "bad_token"),
    (
        "role changed under the signature",
        "GET",
        "/api/lessons/{A}",
        "tampered_role",
        403,
        "bad_token",
    ),
    (
        "lesson changed under the signature",
        "GET",
        "/api/lessons/{B}",
        "tampered_lesson",
        403,
        "bad_token",
    ),
    (
        "expiry pushed back under the signature",
        "GET",
        "/api/lessons/{A}",
        "tampered_exp",
        403,
        "bad_token",
    ),
    ("a replay link opens no lesson", "GET", "/api/lessons/{A}", "replay", 403, "bad_token"),
    (
        "a classroom does not end the lesson",
        "POST",
        "/api/lessons/{A}/end",
        "classroom",
        403,
        "not_allowed",
    ),
    (
        "a forged teacher does not end it",
        "POST",
        "/api/lessons/{A}/end",
        "tampered_role",
        403,
        "bad_token",
    ),
    # The admin key: all of it or nothing.
    ("control: the admin key", "GET", "/api/lessons/{A}/delivery", "admin", 200, None),
    (
        "the admin key but its last character",
        "POST",
        "/api/lessons",
        "admin_but_last",
        403,
        "not_allowed",
    ),
    ("the admin key and one more", "POST", "/api/lessons", "admin_and_more", 403, "not_allowed"),
    ("a teacher token is no admin key", "POST", "/api/lessons", "teacher", 403, "not_allowed"),
    # Recording links: one recording, read only, until they expire.
    (
        "control: a replay link reads its recording",
        "GET",
        "/api/recordings/{rA}",
        "replay",
        200,
        None,
    ),
    (
        "control: and its file",
        "GET",
        "/api/recordings/{rA}/files/camera.webm",
        "?replay",
        200,
        None,
    ),
    (
        "a replay link on another recording",
        "GET",
        "/api/recordings/{rA}",
        "replay_other",
        403,
        "bad_token",
    ),
    (
        "its file link on another recording",
        "GET",
        "/api/recordings/{rA}/files/camera.webm",
        "?replay_other",
        403,
        "bad_token",
    ),
    (
        "an expired file link",
        "GET",
        "/api/recordings/{rA}/files/camera.webm",
        "?replay_expired",
        401,
        "token_expired",
    ),
    (
        "a forged file link",
        "GET",
        "/api/recordings/{rA}/files/camera.webm",
        "?wrong_key",
        403,
        "bad_token",
    ),
    ("another lesson's teacher", "GET", "/api/recordings/{rA}", "other_lesson", 403, "bad_token"),
    (
        "a replay link does not share",
        "POST",
        "/api/recordings/{rA}/share",
        "replay",
        403,
        "not_allowed",
    ),
    (
        "a replay link does not delete",
        "DELETE",
        "/api/recordings/{rA}",
        "replay",
        403,
        "not_allowed",
    ),
    (
        "a classroom does not delete",
        "DELETE",
        "/api/recordings/{rA}",
        "classroom",
        403,
        "not_allowed",
    ),
    (
        "the lesson's recordings, not with a replay link",
        "GET",
        "/api/lessons/{A}/recordings",
        "replay",
        403,
        "bad_token",
    ),
    # File names that reach the disk: only the manifest's media files, in their folder.
    (
        "the manifest is no media file",
        "GET",
        "/api/recordings/{rA}/files/manifest.json",
        "admin",
        404,
        "not_found",
    ),
    (
        "the timeline is no media file",
        "GET",
        "/api/recordings/{rA}/files/timeline.jsonl",
        "admin",
        404,
        "not_found",
    ),
    (
        "a file name climbing out",
        "GET",
        "/api/recordings/{rA}/files/..%2F..%2Ftoken.key",
        "admin",
        404,
        "not_found",
    ),
    (
        "a file name climbing out, encoded twice",
        "GET",
        "/api/recordings/{rA}/files/%252e%252e%252ftoken.key",
        "admin",
        404,
        "not_found",
    ),
    (
        "a recording id climbing out",
        "GET",
        "/api/recordings/..%2Frecordings%2F{rA}",
        "admin",
        404,
        "not_found",
    ),
    (
        "a recording id that is a dot",
        "GET",
        "/api/recordings/./files/camera.webm",
        "admin",
        404,
        None,
    ),
    (
        "a file name with a NUL",
        "GET",
        "/api/recordings/{rA}/files/camera.webm%00.txt",
        "admin",
        404,
        "not_found",
    ),
    (
        "a recording id of non-ASCII digits",
        "GET",
        "/api/recordings/r%D9%A1%D9%A2/files/camera.webm",
        "admin",
        404,
        "not_found",
    ),
]


def _request_line(
    world: World, method: str, path: str, credential: str
) -> tuple[str, dict[str, str]]:
    path = path.format(**world.ids)
    headers = {}
    if credential.startswith("?"):
        path += "?access=" + world.credentials[credential[1:]]
    else:
        headers["Authorization"] = f"Bearer {world.credentials[credential]}"
    return path, headers


async def _raw(srv: Running, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """One request with the path sent as written (an HTTP client would tidy `..` away)."""
    host, port = urlsplit(srv.url).hostname, urlsplit(srv.url).port
    reader, writer = await asyncio.open_connection(host, port)
    # A body every POST of the API accepts (a lesson's, fields it does not know ignored).
    body = json.dumps({"title": "t", "classrooms": ["a"]}).encode() if method == "POST" else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"Content-Length: {len(body)}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    ("name", "method", "path", "credential", "status", "code"),
    HTTP_TABLE,
    ids=[row[0] for row in HTTP_TABLE],
)
async def test_http(
    world: World, name: str, method: str, path: str, credential: str, status: int, code: str | None
) -> None:
    target, headers = _request_line(world, method, path, credential)
    got, body = await _raw(world.srv, method, target, headers)
    assert got == status, (name, body[:200])
    if code is not None:
        assert json.loads(body)["code"] == code
    secret = (world.srv.settings.data_dir / "token.key").read_text().strip().encode()
    assert secret not in body and b"snapshot" not in body


# Paths outside the API that reach the disk: the pages and the web client's files.
STATIC_TRAVERSAL = [
    "/static/../signaling/app.py",
    "/static/%2e%2e/%2e%2e/pyproject.toml",
    "/static/..%2f..%2fdata%2ftoken.key",
    "/static/....//....//etc/passwd",
    "/static/%2e%2e%5c%2e%2e%5cetc%5cpasswd",
    "/static/teacher.html%00.js",
    "/static//etc/passwd",
    "/static/__init__.py",
]


@pytest.mark.parametrize("path", STATIC_TRAVERSAL)
async def test_no_file_outside_the_web_client(world: World, path: str) -> None:
    status, body = await _raw(world.srv, "GET", path, {})
    assert status in (404, 400), (path, body[:200])
    secret = (world.srv.settings.data_dir / "token.key").read_text().strip().encode()
    assert secret not in body and b"root:" not in body and b"import" not in body


# Over the WebSocket: the same forgeries, and a replay link where a join wants a token.
WS_TABLE = [
    ("alg none", "alg_none", "bad_token"),
    ("signed with another key", "wrong_key", "bad_token"),
    ("expired", "expired", "token_expired"),
    ("role changed under the signature", "tampered_role", "bad_token"),
    ("expiry pushed back under the signature", "tampered_exp", "bad_token"),
    ("a replay link used to join", "replay", "bad_token"),
    ("the admin key used to join", "admin", "bad_token"),
]


@pytest.mark.parametrize(("name", "credential", "code"), WS_TABLE, ids=[r[0] for r in WS_TABLE])
async def test_websocket_join(world: World, name: str, credential: str, code: str) -> None:
    async with connected(world.srv) as peer:
        join = {"type": "join", "token": world.credentials[credential], "lesson_id": world.ids["A"]}
        await peer.send(join)
        await peer.error(code)
        assert await peer.closed() == (1008, code)


async def test_another_lessons_token_cannot_join_this_one(world: World) -> None:
    async with connected(world.srv) as peer:
        join = {
            "type": "join",
            "token": world.credentials["other_lesson"],
            "lesson_id": world.ids["A"],
        }
        await peer.send(join)
        err = await peer.error("bad_token")
        assert "another lesson" in err["message"]


def _csp(headers: Any) -> dict[str, str]:
    return {
        part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2]
        for part in headers["content-security-policy"].split(";")
    }


@pytest.mark.parametrize(
    "path", ["/teacher", "/healthz", "/api/lessons/{A}", "/static/teacher.html", "/nowhere"]
)
async def test_every_answer_carries_the_security_headers(world: World, path: str) -> None:
    r = await world.srv.http.get(path.format(**world.ids), headers=ADMIN)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    csp = _csp(r.headers)
    assert csp["frame-ancestors"] == "'none'"
    assert csp["default-src"] == "'self'" and csp["connect-src"] == "'self'"
    assert csp["object-src"] == "'none'" and csp["base-uri"] == "'none'"
    # The page's one inline script (the old-browser fallback) runs by its hash, no other.
    digest = base64.b64encode(hashlib.sha256(INLINE.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp["script-src"].split()


BIG = {"title": "x" * 70_000, "classrooms": ["a"]}


async def test_a_body_over_the_limit_is_refused_before_it_is_read(world: World) -> None:
    r = await world.srv.http.post("/api/lessons", json=BIG, headers=ADMIN)
    assert (r.status_code, r.json()["code"]) == (413, "too_large")
    assert r.headers["x-content-type-options"] == "nosniff"

    # No Content-Length: the body is counted as it comes, in chunks.
    host, port = urlsplit(world.srv.url).hostname, urlsplit(world.srv.url).port
    reader, writer = await asyncio.open_connection(host, port)
    head = f"POST /api/join HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
    chunk = b"2000\r\n" + b" " * 0x2000 + b"\r\n"
    writer.write(head.encode() + b"Content-Type: application/json\r\n\r\n" + chunk * 9)
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.split()[1] == b"413"
    # A body within the limit still works.
    r = await world.srv.http.post(
        "/api/lessons", json={"title": "ok", "classrooms": ["a"]}, headers=ADMIN
    )
    assert r.status_code == 201


async def test_the_admin_key_is_compared_in_constant_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No timing is measured (machines are noisy): the comparison goes through
    hmac.compare_digest, whose time does not depend on where the inputs differ."""
    seen: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    wrong = world.credentials["admin_but_last"]
    for path in ("/api/lessons/{A}", "/api/recordings/{rA}"):
        r = await world.srv.http.get(
            path.format(**world.ids), headers={"Authorization": f"Bearer {wrong}"}
        )
        assert r.status_code == 403
    compared = [pair for pair in seen if ADMIN_KEY.encode() in pair]
    assert len(compared) == 2 and all(wrong.encode() in pair for pair in compared)
