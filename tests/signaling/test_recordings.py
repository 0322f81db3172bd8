"""Recordings over the real app: started by the teacher's offer, events on the time line,
pause and resume, chapters, HTTP Range, who may read, share links, deletion, the offline copy.

The relay is the fake one plus the real `media.recorder.recorder.Recorder`, fed with real VP8
and Opus packets by fake layers on a hand-moved relay clock.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from media.recorder.manifest import Manifest
from media.recorder.recorder import Recorder
from signaling.settings import Settings
from tests.media.recorder_feed import LessonFeed
from tests.signaling.conftest import (
    Clock,
    Running,
    create_lesson,
    joined,
    serve,
)
from tests.signaling.fakes import FakeMedia

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffmpeg"),
]


class RecordingFakeMedia(FakeMedia):
    """FakeMedia that records: the real Recorder on a lesson's fake layers and hand-moved clock."""

    def __init__(self) -> None:
        super().__init__()
        self.feed = LessonFeed()
        self.recorder: Recorder | None = None

    def start_recording(self, lesson_id: str, directory: Path, meta: dict[str, Any]) -> Recorder:
        self.recorder = Recorder(directory, clock=self.feed.clock, meta=meta)
        self.recorder.update(self.feed.sources(slides=True))
        return self.recorder

    def stop_recording(self, lesson_id: str) -> Manifest | None:
        return None if self.recorder is None else self.recorder.close()


@pytest.fixture
def media() -> RecordingFakeMedia:
    return RecordingFakeMedia()


@pytest.fixture
async def srv(
    settings: Settings, media: RecordingFakeMedia, clock: Clock
) -> AsyncIterator[Running]:
    async with serve(settings, media, clock, recorder=media) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def wait_for(peer: Any, kind: str) -> dict[str, Any]:
    """Skip to the next event of `kind` (or message of type `kind`)."""
    for _ in range(30):
        msg = await peer.recv()
        if msg["type"] == "event" and msg["event"]["kind"] == kind:
            return dict(msg["event"])
        if msg["type"] == kind:
            return dict(msg)
    raise AssertionError(f"no {kind}")


async def record_a_lesson(srv: Running, media: RecordingFakeMedia) -> tuple[dict[str, Any], str]:
    lesson = await create_lesson(srv, "五年级数学", ["石桥小学", "河口小学"])
    room = lesson["classrooms"][0]
    async with (
        joined(srv, lesson["teacher"]["token"]) as (teacher, _),
        joined(srv, room["token"]) as (classroom, _),
    ):
        await teacher.send({"type": "offer", "sdp": "v=0\r\n", "ref": "o"})
        assert (await wait_for(teacher, "answer"))["ref"] == "o"
        started = await wait_for(teacher, "recording_started")
        rid = started["recording_id"]
        media.feed.play(4)
        await classroom.send({"type": "raise_hand", "student": "王小明"})
        await wait_for(teacher, "hand_raised")
        media.feed.play(1, slides=True)
        await teacher.send({"type": "grant_floor", "classroom_id": room["id"]})
        await wait_for(teacher, "floor_granted")
        media.feed.play(4, slides=True)
        await teacher.send({"type": "revoke_floor"})
        await wait_for(teacher, "floor_revoked")
        media.feed.play(3)
        # The classroom's browser says what it received: a timeline entry, never a chapter.
        audio = {"concealed_samples": 0, "total_samples_received": 480_000, "concealment_events": 0}
        await classroom.send({"type": "reception", "media_session": "pc1", "audio": audio})
        await wait_for(teacher, "reception_reported")
        # Only the teacher pauses.
        await classroom.send({"type": "pause_recording", "ref": "p"})
        assert (await wait_for(classroom, "error"))["code"] == "not_allowed"
        await teacher.send({"type": "pause_recording"})
        await wait_for(teacher, "recording_paused")
        media.feed.t += 30  # half a minute off the record
        await teacher.send({"type": "chat", "text": "休息一下"})
        await teacher.send({"type": "resume_recording"})
        await wait_for(teacher, "recording_resumed")
        media.feed.play(4)
        await teacher.send({"type": "end_lesson"})
        await wait_for(teacher, "recording_stopped")
    return lesson, rid


async def test_a_recorded_lesson_is_listed_described_served_and_deleted(
    srv: Running, media: RecordingFakeMedia, clock: Clock
) -> None:
    lesson, rid = await record_a_lesson(srv, media)
    teacher = bearer(lesson["teacher"]["token"])
    classroom = bearer(lesson["classrooms"][0]["token"])
    other = await create_lesson(srv, "Other", ["X"])

    r = await srv.http.get(f"/api/lessons/{lesson['id']}/recordings", headers=classroom)
    assert r.status_code == 200
    (listed,) = r.json()["recordings"]
    assert listed["id"] == rid and listed["state"] == "finished"
    assert abs(listed["duration"] - 16) < 0.3  # 16 s played; the 30 s pause left out

    r = await srv.http.get(f"/api/recordings/{rid}", headers=teacher)
    info = r.json()
    files = {f["name"]: f for f in info["files"]}
    assert set(files) == {"camera.webm", "slides.webm"}
    assert files["camera.webm"]["tracks"][0] == {
        "kind": "video", "codec": "vp8", "width": 320, "height": 180,
    }  # fmt: skip
    assert files["camera.webm"]["tracks"][1]["codec"] == "opus"
    assert 3.9 < files["slides.webm"]["offset"] < 4.2
    kinds = [e["kind"] for e in info["timeline"]]
    assert "recording_started" in kinds[:2]  # a join may land first
    assert {"hand_raised", "floor_granted", "chat_posted", "recording_paused"} <= set(kinds)
    assert "reception_reported" in kinds  # ...and not among the chapters below
    hand = next(e for e in info["timeline"] if e["kind"] == "hand_raised")
    assert hand["student"] == "王小明" and 3.9 < hand["t"] < 4.2
    chat = next(e for e in info["timeline"] if e["kind"] == "chat_posted")
    assert abs(chat["t"] - 12) < 0.2  # said during the pause: placed where the pause is
    chapters = info["chapters"]
    # The slides (at 4 s) and the grant (at 5 s) are one moment: the grant names it.
    assert [(c["kind"], round(c["t"])) for c in chapters] == [
        ("start", 0), ("floor_granted", 4), ("floor_revoked", 9), ("recording_resumed", 12),
    ]  # fmt: skip
    assert chapters[1]["student"] == "王小明" and chapters[1]["classroom"] == "石桥小学"

    # The media, with HTTP Range: the bytes asked for, 206; past the end, 416.
    url = files["camera.webm"]["url"]
    assert "access=" in url and lesson["teacher"]["token"] not in url
    whole = (await srv.http.get(url)).content
    data = (srv.settings.data_dir / "recordings" / rid / "camera.webm").read_bytes()
    assert whole == data
    r = await srv.http.get(url, headers={"Range": "bytes=100-1099"})
    assert r.status_code == 206 and r.content == data[100:1100]
    assert r.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    r = await srv.http.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
    assert r.status_code == 206 and r.content == data[-10:]
    r = await srv.http.get(url, headers={"Range": f"bytes={len(data) + 5}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(data)}"

    # Unauthorized reads are refused.
    for path in (f"/api/recordings/{rid}", f"/api/recordings/{rid}/files/camera.webm"):
        r = await srv.http.get(path)
        assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
        r = await srv.http.get(path, headers=bearer(other["teacher"]["token"]))
        assert (r.status_code, r.json()["code"]) == (403, "bad_token")
    r = await srv.http.get(
        f"/api/lessons/{lesson['id']}/recordings", headers=bearer(other["teacher"]["token"])
    )
    assert r.status_code == 403
    r = await srv.http.get(f"/api/recordings/{rid}/files/..%2Fmanifest.json", headers=teacher)
    assert r.status_code == 404

    # A share link: signed, for one recording, until it expires.
    r = await srv.http.post(f"/api/recordings/{rid}/share", json={"ttl_s": 3600}, headers=classroom)
    assert r.status_code == 403
    r = await srv.http.post(f"/api/recordings/{rid}/share", json={"ttl_s": 3600}, headers=teacher)
    share = r.json()
    assert share["url"] == f"http://classroom.test/replay#token={share['token']}"
    assert (
        await srv.http.get(f"/api/recordings/{rid}", headers=bearer(share["token"]))
    ).status_code == 200
    r = await srv.http.get(
        f"/api/lessons/{lesson['id']}/recordings", headers=bearer(share["token"])
    )
    assert r.status_code == 403  # a replay link opens one recording, not the lesson
    async with joined_refused(srv, share["token"]) as code:
        assert code == "bad_token"  # nor the live lesson
    clock.t += 3601
    r = await srv.http.get(f"/api/recordings/{rid}", headers=bearer(share["token"]))
    assert (r.status_code, r.json()["code"]) == (401, "token_expired")
    clock.t -= 3601

    # The offline copy, made in the background.
    async with asyncio.timeout(40):
        while (
            state := (await srv.http.get(f"/api/recordings/{rid}", headers=teacher)).json()[
                "offline"
            ]
        )["state"] not in ("done", "failed"):
            await asyncio.sleep(0.2)
    assert state["state"] == "done", state
    offline = srv.settings.data_dir / "recordings" / rid / "offline.webm"
    probe = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries",
             "format=duration:stream=codec_name,width,height,bit_rate", "-of", "json", str(offline)],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout
    )  # fmt: skip
    video, audio = probe["streams"]
    assert (video["codec_name"], video["width"], video["height"]) == ("vp8", 960, 360)
    assert audio["codec_name"] == "opus"
    assert abs(float(probe["format"]["duration"]) - 16) < 0.5
    r = await srv.http.get(state["url"], headers={"Range": "bytes=0-3"})
    assert r.status_code == 206 and r.content == b"\x1a\x45\xdf\xa3"  # EBML magic

    # Deleting: the teacher (or the admin key), not a classroom.
    r = await srv.http.delete(f"/api/recordings/{rid}", headers=classroom)
    assert r.status_code == 403
    r = await srv.http.delete(f"/api/recordings/{rid}", headers=teacher)
    assert r.status_code == 204
    r = await srv.http.get(f"/api/recordings/{rid}", headers=teacher)
    assert r.status_code == 404
    assert not (srv.settings.data_dir / "recordings" / rid).exists()


class joined_refused:
    """Join the WebSocket with `token`; yields the error code the server answers with."""

    def __init__(self, srv: Running, token: str) -> None:
        self._srv, self._token = srv, token
        self._cm: Any = None

    async def __aenter__(self) -> str:
        from tests.signaling.conftest import connected

        self._cm = connected(self._srv)
        peer = await self._cm.__aenter__()
        await peer.send({"type": "join", "token": self._token, "protocol": 1})
        msg = await peer.recv()
        return str(msg.get("code"))

    async def __aexit__(self, *exc: object) -> None:
        await self._cm.__aexit__(*exc)
