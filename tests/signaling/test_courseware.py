"""A deck over HTTP and the WebSocket: upload, refusals that store nothing, pages
served with Range, page turns and readiness as events, the late joiner's snapshot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pymupdf
import pytest

from tests.signaling.conftest import (
    ADMIN,
    Clock,
    Running,
    create_lesson,
    eventually,
    joined,
    make_settings,
    serve,
    snapshot,
)
from tests.signaling.fakes import FakeMedia


def pdf(pages: int = 3, width: float = 960, height: float = 540) -> bytes:
    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=width, height=height)
        page.insert_text((40, 80), f"Page {i + 1}", fontsize=40)
    data: bytes = doc.tobytes()
    return data


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stored(srv: Running) -> list[str]:
    """Everything under the decks' folder: decks and uploads in progress alike."""
    root = srv.settings.data_dir / "decks"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
async def small(tmp_path: Path, media: FakeMedia, clock: Clock) -> AsyncIterator[Running]:
    """A server taking decks of at most 2 MB and 10 pages."""
    settings = make_settings(tmp_path, deck_max_mb=2, deck_max_pages=10)
    async with serve(settings, media, clock) as running:
        yield running


async def upload(
    srv: Running,
    lesson_id: str,
    body: Any,
    token: str | None = None,
    name: str = "deck.pdf",
    **kw: Any,
) -> Any:
    headers = bearer(token) if token else dict(ADMIN)
    headers.update(kw.pop("headers", {}))
    return await srv.http.post(
        f"/api/lessons/{lesson_id}/deck",
        params={"name": name},
        content=body,
        headers=headers,
        timeout=60,
        **kw,
    )


async def test_a_deck_goes_to_every_classroom_and_turns_as_events(small: Running) -> None:
    lesson = await create_lesson(small)
    lid, teacher = lesson["id"], lesson["teacher"]["token"]
    room_a, room_b = (c["token"] for c in lesson["classrooms"])
    async with joined(small, teacher) as (t, _), joined(small, room_a) as (a, _):
        await t.events(2)  # lesson_started, teacher joined
        await t.event("participant_joined")
        await a.event("participant_joined")
        data = pdf(3)
        r = await upload(small, lid, data, teacher, name="Fractions.pdf")
        assert r.status_code == 201, r.text
        deck = r.json()
        assert (deck["pages"], deck["width"], deck["height"], deck["name"]) == (
            3,
            1920,
            1080,
            "Fractions.pdf",
        )
        attached = await a.event("deck_attached", deck_id=deck["id"], pages=3)
        assert attached["width"] == 1920
        await t.event("deck_attached")
        # Its page covers the screen share on the pages: the relay stops sending it.
        await eventually(lambda: told(small, ("cover_screen", lid, True)))
        # The pages, to any token of the lesson: immutable, and resumable with Range.
        url = f"/api/lessons/{lid}/decks/{deck['id']}/pages/2"
        whole = await small.http.get(url, headers=bearer(room_a))
        assert whole.status_code == 200
        assert whole.headers["content-type"] in ("image/png", "image/jpeg")
        assert "immutable" in whole.headers["cache-control"]
        part = await small.http.get(url, headers={**bearer(room_a), "Range": "bytes=100-"})
        assert part.status_code == 206
        assert part.content == whole.content[100:]
        thumb = await small.http.get(
            f"/api/lessons/{lid}/decks/{deck['id']}/thumbs/1", headers=bearer(room_a)
        )
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert (
            await small.http.get(url.replace("/2", "/4"), headers=bearer(room_a))
        ).status_code == 404
        assert (await small.http.get(url)).status_code == 401
        # The same file again is the same deck: nothing rendered twice, nothing new told.
        again = await upload(small, lid, data, teacher)
        assert again.status_code == 201 and again.json()["id"] == deck["id"]

        await a.send({"type": "courseware", "deck_id": deck["id"], "ready": 3, "total": 3})
        await t.event("courseware_reported", participant_id="classroom-1", ready=3, total=3)
        await t.send({"type": "turn_page", "page": 2})
        sent = time.monotonic()
        await a.event("page_turned", page=2, deck_id=deck["id"])
        assert time.monotonic() - sent < 2
        await t.event("page_turned", page=2)
        await t.send({"type": "point", "x": 0.5, "y": 0.25})
        await a.event("pointer_moved", x=0.5, y=0.25, page=2)
        await t.event("pointer_moved")
        await t.send({"type": "ink", "points": [[0.1, 0.1], [0.2, 0.3]], "color": "blue"})
        await a.event("ink_drawn", points=[[0.1, 0.1], [0.2, 0.3]], color="blue")
        await t.event("ink_drawn")
        # Refused, with words: a classroom turning pages, a page past the end.
        await a.send({"type": "turn_page", "page": 1, "ref": "x"})
        await a.expect("error", code="not_allowed", ref="x")
        await t.send({"type": "turn_page", "page": 9, "ref": "y"})
        err = await t.expect("error", code="invalid_command", ref="y")
        assert "pages 1 to 3" in err["message"]
        # A classroom joining now sees the page, the pointer and the ink at once.
        async with joined(small, room_b) as (_, welcome):
            snap = welcome["lesson"]
            assert snap["deck"]["page"] == 2
            assert snap["deck"]["pointer"] == {"x": 0.5, "y": 0.25}
            assert snap["deck"]["ink"] == [{"color": "blue", "points": [[0.1, 0.1], [0.2, 0.3]]}]
            assert snap["courseware"]["classroom-1"] == {
                "deck_id": deck["id"],
                "ready": 3,
                "total": 3,
            }
        # Put away: the screen share is sent again.
        await t.send({"type": "turn_page", "page": 0})
        await eventually(lambda: told(small, ("cover_screen", lid, False)))
    # A classroom's token may not upload; another lesson's deck is not this lesson's.
    assert (await upload(small, lid, pdf(2), room_a)).status_code == 403
    other = await create_lesson(small)
    r = await small.http.get(
        f"/api/lessons/{other['id']}/decks/{deck['id']}/pages/1", headers=ADMIN
    )
    assert r.status_code == 404


async def told(srv: Running, call: tuple[object, ...]) -> bool:
    return call in srv.media.calls


def bomb_many_pages() -> bytes:
    return pdf(11, 100, 100)


def bomb_huge_page() -> bytes:
    return pdf(1, 14_000, 14_000)[:0] + _huge()


def _huge() -> bytes:
    # A page of 200,000 x 200,000 points (the specification's limit is 14,400).
    doc = pymupdf.open()
    doc.new_page(width=200_000, height=200_000)
    data: bytes = doc.tobytes()
    return data


def ribbon() -> bytes:
    return pdf(1, 14_000, 100)


def broken_pdf() -> bytes:
    good = pdf(2)
    return good[:40] + b"\x00garbage" * 200


REFUSALS = [
    ("broken PDF", broken_pdf, "deck.pdf", 422, "broken_file", "damaged"),
    (
        "text named .pdf",
        lambda: "这不是 PDF，只是文字。\n".encode() * 50,
        "slides.pdf",
        415,
        "not_a_deck",
        "not a PDF",
    ),
    (
        "PowerPoint without LibreOffice",
        lambda: b"PK\x03\x04" + b"\x00" * 100,
        "slides.pptx",
        415,
        "needs_conversion",
        "save the slides as PDF",
    ),
    ("bomb: many pages", bomb_many_pages, "deck.pdf", 422, "too_many_pages", "at most 10 pages"),
    ("bomb: a huge page", _huge, "deck.pdf", 422, "page_too_large", "too large"),
    ("bomb: a ribbon", ribbon, "deck.pdf", 422, "page_too_large", "long and thin"),
    ("empty", lambda: b"", "deck.pdf", 422, "empty_file", "empty"),
]


@pytest.mark.parametrize(
    ("name", "make", "filename", "status", "code", "words"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
async def test_refused_files_leave_nothing(
    small: Running, name: str, make: Any, filename: str, status: int, code: str, words: str
) -> None:
    import shutil

    if code == "needs_conversion" and (shutil.which("soffice") or shutil.which("libreoffice")):
        pytest.skip("LibreOffice is installed: the file would be converted")
    lesson = await create_lesson(small)
    r = await upload(small, lesson["id"], make(), lesson["teacher"]["token"], name=filename)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert words in r.json()["message"]
    assert [p for p in stored(small) if p != ".incoming"] == []
    assert (await snapshot(small, lesson["id"]))["deck"] is None


def raw_upload(
    base: str, path: str, declared: int | None, total: int
) -> tuple[int, dict[str, Any], int]:
    """POST `total` bytes of a would-be PDF as a browser does: reading the answer while
    it sends, so an early refusal is seen (and kept, even if a reset follows it). The
    status, the JSON answer, and how many bytes were sent by then."""
    import json
    import select
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    length = f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked"
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {ADMIN['Authorization']}\r\n{length}\r\n\r\n"
    sock.sendall(head.encode())
    sock.setblocking(False)
    chunk = b"%PDF-1.7\n" + b"0" * (64 * 1024 - 9)
    framed = chunk if declared is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sent, pending, answer, shut = 0, b"", b"", False
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            want_write = [sock] if sent < total and not shut else []
            readable, writable, _ = select.select([sock], want_write, [], 1)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                answer += data
                if b"\r\n\r\n" in answer:
                    head_part, _, rest = answer.partition(b"\r\n\r\n")
                    size = int(
                        next(
                            line.split(b":")[1]
                            for line in head_part.split(b"\r\n")
                            if line.lower().startswith(b"content-length")
                        )
                    )
                    if len(rest) >= size:
                        break
            if writable:
                if not pending:
                    pending = framed
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    shut = True  # the server stopped reading; `sent` is what it got
                    continue
                pending = pending[n:]
                if not pending:
                    sent += len(chunk)
    finally:
        sock.close()
    head_part, _, rest = answer.partition(b"\r\n\r\n")
    return int(head_part.split()[1]), json.loads(rest), sent


async def test_a_500_mb_file_is_refused_as_it_streams_in(small: Running) -> None:
    """Refused once past the limit (2 MB here): the server reads a little past it,
    never the whole file, keeps nothing, and says why."""
    lesson = await create_lesson(small)
    path = f"/api/lessons/{lesson['id']}/deck?name=big.pdf"
    # Chunked, with no length given: refused as the bytes pass the limit.
    status, body, sent = await asyncio.to_thread(
        raw_upload, small.url, path, None, 500 * 1024 * 1024
    )
    assert (status, body["code"]) == (413, "too_large")
    assert "2 MB" in body["message"]
    assert sent < 64 * 1024 * 1024, f"{sent} bytes were sent before the refusal"
    assert [p for p in stored(small) if p != ".incoming"] == []
    # Declared up front (as a browser does for a file): refused before a byte is read.
    status, body, sent = await asyncio.to_thread(
        raw_upload, small.url, path, 500 * 1024 * 1024, 500 * 1024 * 1024
    )
    assert (status, body["code"]) == (413, "too_large")
    assert sent < 64 * 1024 * 1024
    assert [p for p in stored(small) if p != ".incoming"] == []


async def test_an_ended_lesson_takes_no_deck_and_replays_its_chapters(small: Running) -> None:
    from signaling.recordings import chapters

    timeline = [
        {"t": 0.0, "kind": "snapshot", "lesson": {"participants": []}},
        {"t": 1.0, "kind": "deck_attached"},
        {"t": 10.0, "kind": "page_turned", "page": 2},
        {"t": 11.0, "kind": "page_turned", "page": 3},
        {"t": 20.0, "kind": "page_turned", "page": 0},
        {"t": 30.0, "kind": "page_turned", "page": 4},
    ]
    # Page turns less than 3 s apart are one chapter, named by the later page.
    assert chapters(timeline, {}) == [
        {"t": 0.0, "kind": "start"},
        {"t": 10.0, "kind": "page", "page": 3},
        {"t": 30.0, "kind": "page", "page": 4},
    ]
    lesson = await create_lesson(small)
    r = await small.http.post(f"/api/lessons/{lesson['id']}/end", headers=ADMIN)
    assert r.status_code == 200
    r = await upload(small, lesson["id"], pdf(1))
    assert (r.status_code, r.json()["code"]) == (409, "lesson_ended")


async def test_a_timetable_entry_s_deck_goes_with_each_of_its_lessons(
    small: Running, clock: Clock
) -> None:
    from tests.signaling.test_schools import at, district, weekly

    at(clock, "2023-11-15T08:00:00")
    w = await district(small)
    entry = await weekly(small, w)
    path = f"/api/timetable/{entry['id']}/deck"
    r = await small.http.post(
        path, params={"name": "第一单元.pdf"}, content=pdf(4), headers=ADMIN, timeout=60
    )
    assert r.status_code == 201, r.text
    assert (r.json()["entry_id"], r.json()["pages"]) == (entry["id"], 4)
    teacher = bearer(w["teacher"]["link"]["credential"])
    assert (await small.http.post(path, content=pdf(1), headers=teacher)).status_code == 403
    assert (
        await small.http.post("/api/timetable/e0/deck", content=pdf(1), headers=ADMIN)
    ).status_code == 404
    # The lesson started from the timetable has the deck before anyone joins.
    at(clock, "2023-11-20T08:50:00")
    started = await small.http.post(
        f"/api/timetable/{entry['id']}/occurrences/2023-11-20/start", headers=teacher
    )
    assert started.status_code == 200, started.text
    deck = (await snapshot(small, started.json()["lesson_id"]))["deck"]
    assert (deck["id"], deck["name"], deck["pages"], deck["page"]) == (
        r.json()["id"],
        "第一单元.pdf",
        4,
        1,
    )


@pytest.mark.parametrize("kind", ["png", "jpeg"])
async def test_an_image_is_a_one_page_deck(small: Running, kind: str) -> None:
    page = pymupdf.open(stream=pdf(1), filetype="pdf")[0]
    image = page.get_pixmap(matrix=pymupdf.Matrix(2, 2)).tobytes(kind)
    lesson = await create_lesson(small)
    r = await upload(small, lesson["id"], image, name=f"黑板.{kind}")
    assert r.status_code == 201, r.text
    assert (r.json()["pages"], r.json()["width"], r.json()["height"]) == (1, 1920, 1080)


async def test_a_replay_link_reads_its_lesson_s_pages_and_no_other(small: Running) -> None:
    lesson, other = await create_lesson(small), await create_lesson(small)
    deck = (await upload(small, lesson["id"], pdf(1))).json()
    tokens = small.app.state.runtime.tokens
    mine, _ = tokens.issue_replay("r1", lesson["id"], 600)
    theirs, _ = tokens.issue_replay("r2", other["id"], 600)
    url = f"/api/lessons/{lesson['id']}/decks/{deck['id']}/pages/1"
    assert (await small.http.get(url, params={"access": mine})).status_code == 200
    r = await small.http.get(url, params={"access": theirs})
    assert (r.status_code, r.json()["code"]) == (403, "bad_token")
    # A participant's token never goes in a URL: the header only.
    teacher = lesson["teacher"]["token"]
    assert (await small.http.get(url, params={"access": teacher})).status_code == 403


@pytest.mark.parametrize(
    ("limits", "words"),
    [({"memory_mb": 80}, "too complex"), ({"timeout_s": 0.01}, "too long")],
    ids=["out of memory", "out of time"],
)
async def test_a_renderer_stopped_by_its_limits_stores_nothing(
    tmp_path: Path, limits: dict[str, Any], words: str
) -> None:
    """The renderer's own limits hold (here set too tight for any file): a clear refusal."""
    from signaling.decks import DeckLimits, DeckRefused, Decks

    decks = Decks(tmp_path / "decks", DeckLimits(**limits))
    data = pdf(1)

    async def body() -> AsyncIterator[bytes]:
        yield data

    with pytest.raises(DeckRefused) as refused:
        await decks.receive(body(), "x.pdf", None)
    assert (refused.value.status, refused.value.code) == (422, "too_complex")
    assert words in refused.value.message
    assert [p.name for p in (tmp_path / "decks").rglob("*")] == [".incoming"]
