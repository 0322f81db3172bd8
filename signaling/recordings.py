"""Recordings: started when the teacher publishes, fed the lesson's events, served over HTTP.

On disk, one folder per recording under `<data-dir>/recordings/<rid>/`:

- `manifest.json`: written by the recorder (media.recorder.recorder): the files, each with
  its `offset` on the recording's time line, its tracks and codecs, the pauses;
  `state` "recording", "finished", or "interrupted" (the server died; set when the
  next server starts and repairs the files);
- `camera.webm`, `slides.webm`, `stage-NN.webm`: the media;
- `timeline.jsonl`: the lesson's events, one JSON line each, `t` being the
  recording's time line (seconds) and `at` the lesson time; written through, so a
  crash keeps every event written before it;
- `offline.webm` and `offline.json`: the offline copy and its progress.

Chapters derive from the time line at read time (`chapters()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, cast

import av
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from classroom import commands as c
from classroom.errors import DomainError
from classroom.events import Event
from classroom.roles import SYSTEM, Role
from media.recorder import manifest as manifests
from signaling.auth import CredentialGuard, bearer, client_address, is_admin_key
from signaling.errors import ApiError
from signaling.limits import Limits
from signaling.offline import OFFLINE_FILE, OfflineCopies, read_status
from signaling.tokens import REPLAY_ROLE, TokenError, TokenIssuer

log = logging.getLogger(__name__)

TIMELINE = "timeline.jsonl"
# How long the media links handed to a page work; a share link may say less.
ACCESS_TTL_S = 6 * 3600
MAX_SHARE_TTL_S = 30 * 24 * 3600
# Chapters closer than this to the previous one are folded into it: a grant
# right after a revoke is one moment of the lesson, not two chapters.
MIN_CHAPTER_GAP_S = 3.0


class RecorderHandle(Protocol):
    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def now(self) -> float: ...


class RecordingMedia(Protocol):
    """What a relay that can record offers (media.relay.relay.Relay).

    Passed in by whoever builds the app, next to the MediaGateway it may also be:
    a relay that does not record (a fake, a benchmark's baseline) is simply not passed.
    """

    def start_recording(
        self, lesson_id: str, directory: Path, meta: dict[str, Any]
    ) -> RecorderHandle: ...

    def stop_recording(
        self, lesson_id: str
    ) -> manifests.Manifest | Awaitable[manifests.Manifest | None] | None:
        """The finished recording's manifest, or None if none was running. A relay in
        another process (media.workers) answers it later: then an awaitable."""
        ...


class LessonsPort(Protocol):
    """What recordings need of signaling.lessons.Lessons."""

    async def execute(self, lesson_id: str, command: c.Command, by: str) -> list[Event]: ...

    def live(self, lesson_id: str) -> Any: ...


@dataclass
class _Active:
    rid: str
    directory: Path
    handle: RecorderHandle
    timeline: IO[str]


class Recordings:
    def __init__(
        self,
        root: Path,
        media: RecordingMedia | None,
        lessons: LessonsPort,
        now: Callable[[], float],
        offline: OfflineCopies | None = None,
    ) -> None:
        self.root = root
        self._media = media
        self._lessons = lessons
        self._now = now
        self.offline = offline or OfflineCopies()
        self._active: dict[str, _Active] = {}

    # -- lifecycle -------------------------------------------------------------------

    async def load(self) -> None:
        """After a start: recordings a dead server left "recording" are repaired and
        marked "interrupted"; the files play to the last cluster written."""
        self.root.mkdir(parents=True, exist_ok=True)
        await self._repair_left(lambda manifest: True)

    async def adopted(self, lesson_id: str) -> None:
        """This node adopted a lesson from a node that died: that node's recording of it,
        left "recording", is repaired and marked "interrupted" (as `load` does after a
        crash). The teacher's next offer, here, starts the lesson's next recording; both
        are listed for the lesson, in order (`of_lesson`)."""
        await self._repair_left(lambda manifest: manifest.get("lesson_id") == lesson_id)

    async def _repair_left(self, wanted: Callable[[dict[str, Any]], bool]) -> None:
        """Repair each recording `wanted` picks that a server left "recording" and this
        one does not write."""
        for directory in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            manifest = _read_manifest(directory)
            if (
                manifest is None
                or manifest.get("state") != "recording"
                or self.is_active(directory.name)
                or not wanted(manifest)
            ):
                continue
            try:
                manifest = await asyncio.to_thread(repair, directory, manifest)
            except Exception:
                log.exception("could not repair recording %s", directory.name)
                continue
            lesson_id = manifest.get("lesson_id")
            log.info("recording %s of lesson %s repaired", directory.name, lesson_id)
            self.offline.request(directory, manifest)

    async def media_lost(self, lesson_id: str) -> None:
        """The relay worker that recorded the lesson died: its segment, left "recording",
        is repaired and marked "interrupted"; the teacher's next offer, on another
        worker, starts the next one."""
        active = self._active.pop(lesson_id, None)
        if active is not None:
            active.timeline.close()
        await self._repair_left(lambda manifest: manifest.get("lesson_id") == lesson_id)

    async def given_up(self, lesson_id: str) -> None:
        """This node stalled, was taken for dead, and another node adopted the lesson:
        its recording here ends now, finalized (the adopter's is the next segment)."""
        await self._stop(lesson_id)

    async def close(self) -> None:
        """Shutdown: the relay's close finalizes the files; the timelines are closed."""
        for lesson_id in list(self._active):
            active = self._active.pop(lesson_id)
            await self._finish(lesson_id)
            active.timeline.close()
        await self.offline.close()

    # -- following the lesson --------------------------------------------------------

    async def published(self, lesson_id: str, participant_id: str, role: Role) -> None:
        """A participant's offer succeeded: the teacher's first one starts the recording."""
        if role is not Role.TEACHER or self._media is None or lesson_id in self._active:
            return
        lesson = self._lessons.live(lesson_id)
        if lesson is None:
            return
        rid = "r" + secrets.token_hex(6)
        directory = self.root / rid
        now = self._now()
        meta = {
            "id": rid,
            "lesson_id": lesson_id,
            "title": lesson.title,
            "started_at": now,
            "lesson_at": round(now - lesson.origin, 3),
        }
        handle = self._media.start_recording(lesson_id, directory, meta)
        timeline = open(directory / TIMELINE, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._active[lesson_id] = _Active(rid, directory, handle, timeline)
        # Who was there when the recording began: the snapshot, at time 0.
        self._write(lesson_id, {"t": 0.0, "kind": "snapshot", "lesson": lesson.snapshot()})
        try:
            await self._lessons.execute(lesson_id, c.StartRecording(rid), SYSTEM)
        except DomainError as exc:
            log.info("recording of %s not started: %s", lesson_id, exc.message)
            await self._stop(lesson_id)

    async def on_events(self, lesson_id: str, events: list[Event]) -> None:
        """Called by Lessons after a command's events are stored."""
        for event in events:
            active = self._active.get(lesson_id)
            if active is None:
                continue
            if event.kind == "recording_paused":
                active.handle.pause()
            elif event.kind == "recording_resumed":
                active.handle.resume()
            self._write(lesson_id, {"t": round(active.handle.now(), 3), **event.to_dict()})
            if event.kind in ("recording_stopped", "lesson_ended"):
                await self._stop(lesson_id)

    def _write(self, lesson_id: str, entry: dict[str, Any]) -> None:
        active = self._active[lesson_id]
        try:
            active.timeline.write(json.dumps(entry, ensure_ascii=False) + "\n")
        except OSError:
            log.exception("could not write the timeline of %s", active.rid)

    async def _stop(self, lesson_id: str) -> None:
        active = self._active.pop(lesson_id, None)
        if active is None:
            return
        active.timeline.close()
        manifest = await self._finish(lesson_id)
        if manifest is not None:
            self.offline.request(active.directory, dict(manifest))

    async def _finish(self, lesson_id: str) -> manifests.Manifest | None:
        if self._media is None:
            return None
        manifest = self._media.stop_recording(lesson_id)
        return await manifest if inspect.isawaitable(manifest) else manifest

    def is_active(self, rid: str) -> bool:
        return any(a.rid == rid for a in self._active.values())

    # -- reading ------------------------------------------------------------------------

    def directory(self, rid: str) -> Path | None:
        if not rid.isalnum():
            return None
        directory = self.root / rid
        return directory if manifests.exists(directory) else None

    def of_lesson(self, lesson_id: str) -> list[dict[str, Any]]:
        found = []
        if self.root.is_dir():
            for directory in self.root.iterdir():
                manifest = _read_manifest(directory)
                if manifest is not None and manifest.get("lesson_id") == lesson_id:
                    found.append(self._summary(manifest))
        return sorted(found, key=lambda m: m.get("started_at") or 0)

    def _summary(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": manifest["id"],
            "lesson_id": manifest.get("lesson_id"),
            "title": manifest.get("title"),
            "started_at": manifest.get("started_at"),
            "state": manifest.get("state"),
            "duration": manifest.get("duration"),
        }

    def describe(self, rid: str) -> dict[str, Any] | None:
        directory = self.directory(rid)
        manifest = None if directory is None else _read_manifest(directory)
        if directory is None or manifest is None:
            return None
        timeline = read_timeline(directory)
        first = next((e for e in timeline if e.get("kind") == "snapshot"), None)
        return {
            **self._summary(manifest),
            # The deck as it was when the recording began; its page turns are in the
            # timeline (deck_attached, page_turned, pointer_moved, ink_*).
            "deck": None if first is None else first["lesson"].get("deck"),
            "files": manifest.get("files", []),
            "pauses": manifest.get("pauses", []),
            "timeline": [e for e in timeline if e.get("kind") != "snapshot"],
            "chapters": chapters(timeline, manifest),
            "offline": read_status(directory),
        }

    async def delete(self, rid: str) -> None:
        directory = self.directory(rid)
        if directory is None:
            return
        self.offline.cancel(directory)
        await asyncio.to_thread(shutil.rmtree, directory, True)


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    found = manifests.read(directory)
    return None if found is None else dict(found)


def read_timeline(directory: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        lines = (directory / TIMELINE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        with contextlib.suppress(ValueError):  # a line cut by a crash
            out.append(json.loads(line))
    return out


def chapters(timeline: list[dict[str, Any]], manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The moments a viewer jumps to: where what is on screen changes.

    - the start (`start`);
    - the slides first shown (`slides`: from the manifest, the slides file's offset);
    - each stage turn (`floor_granted`, with the classroom and the student whose
      hand it answered): a question is what a pupil who missed the lesson looks for;
    - the return to the teacher (`floor_revoked`);
    - the lesson going on after a pause (`recording_resumed`);
    - each page of the deck shown (`page`, with its number): a deck attached shows
      its page 1, a turn its page; putting the deck away is no chapter.

    Joins, hands without a grant, chat and delivery changes stay in the timeline
    only: they do not change what the replay shows, and there are many of them.
    """
    names: dict[str, str] = {}
    for entry in timeline:
        if entry.get("kind") == "snapshot":
            for p in entry["lesson"].get("participants", []):
                names[p["id"]] = p["name"]
    marks: list[dict[str, Any]] = [{"t": 0.0, "kind": "start"}]
    for f in manifest.get("files", []):
        if f.get("role") == "slides" and f.get("offset") is not None:
            marks.append({"t": float(f["offset"]), "kind": "slides"})
    for entry in timeline:
        kind = entry.get("kind")
        t = float(entry.get("t") or 0.0)
        if kind == "floor_granted":
            cid = entry.get("classroom_id", "")
            marks.append(
                {
                    "t": t,
                    "kind": kind,
                    "classroom_id": cid,
                    "classroom": names.get(cid, cid),
                    "student": entry.get("student"),
                }
            )
        elif kind == "deck_attached" or (kind == "page_turned" and entry.get("page")):
            page = 1 if kind == "deck_attached" else int(entry["page"])
            marks.append({"t": t, "kind": "page", "page": page})
        elif (kind == "floor_revoked" and entry.get("reason") != "replaced") or (
            kind == "recording_resumed"
        ):
            marks.append({"t": t, "kind": kind})
    marks.sort(key=lambda m: m["t"])
    out: list[dict[str, Any]] = []
    for mark in marks:
        if out and mark["t"] - out[-1]["t"] < MIN_CHAPTER_GAP_S:
            # One moment, one chapter: the later mark names it (slides shown then a
            # grant: the grant), except that the lesson's start stays the start.
            if out[-1]["kind"] != "start":
                out[-1] = {**mark, "t": out[-1]["t"]}
            continue
        out.append(mark)
    return out


def repair(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """A recording cut by a crash: remux each file (copy, no re-encoding) so it gets
    a seek index and a duration, measure it, and mark the recording "interrupted"."""
    ffmpeg = shutil.which("ffmpeg")
    for f in manifest.get("files", []):
        path = directory / f["name"]
        if not path.is_file():
            continue
        if ffmpeg is not None:
            fixed = path.with_name(path.stem + ".fixed.webm")
            done = subprocess.run(
                [ffmpeg, "-v", "quiet", "-y", "-i", str(path), "-c", "copy", str(fixed)],
                capture_output=True,
                timeout=600,
            )
            if fixed.is_file() and fixed.stat().st_size > 0:
                os.replace(fixed, path)
            elif done.returncode != 0:
                log.warning("could not remux %s", path)
        f["duration"] = round(_last_packet_s(path), 3)
    repaired = cast(manifests.Manifest, manifest)
    repaired["duration"] = manifests.end(repaired)
    repaired["state"] = "interrupted"
    manifests.write(directory, repaired)
    return manifest


def _last_packet_s(path: Path) -> float:
    last = 0.0
    try:
        with av.open(str(path)) as container:
            for packet in container.demux():
                if packet.pts is not None and packet.time_base is not None:
                    last = max(last, float(packet.pts * packet.time_base))
    except (av.FFmpegError, OSError):
        pass
    return last


# -- HTTP ------------------------------------------------------------------------------


class ShareRequest(BaseModel):
    ttl_s: int = Field(default=7 * 24 * 3600, ge=60, le=MAX_SHARE_TTL_S)


@dataclass(frozen=True)
class Reader:
    """Who reads a recording: the admin, a participant of its lesson, or a replay link."""

    admin: bool = False
    role: str | None = None

    @property
    def may_manage(self) -> bool:
        return self.admin or self.role == str(Role.TEACHER)


def router(
    get_recordings: Callable[[Request], Recordings],
    get_tokens: Callable[[Request], TokenIssuer],
    get_admin_key: Callable[[Request], str],
    base_url: Callable[[], str],
    limits: Limits,
    now: Callable[[], float],
) -> APIRouter:
    """The recordings' HTTP API (docs/protocol.md, "Recordings")."""
    api = APIRouter()

    def reader(request: Request, lesson_id: str | None, rid: str | None) -> Reader:
        # <video src> cannot send headers: media URLs carry a replay token instead.
        token = bearer(request, query="access")
        guard = CredentialGuard(limits.wrong_credentials, client_address(request), now)
        guard.check()
        if is_admin_key(token, get_admin_key(request)):
            return Reader(admin=True)
        error: TokenError | None = None
        if rid is not None:
            try:
                get_tokens(request).verify_replay(token, rid)
                return Reader(role=REPLAY_ROLE)
            except TokenError as exc:
                # A replay link's own complaint (expired, another recording) says more.
                if exc.code == "token_expired" or "recording" in exc.message:
                    error = exc
        if error is None:
            try:
                return Reader(role=str(get_tokens(request).verify(token, lesson_id).role))
            except TokenError as exc:
                error = exc
        if error.code == "bad_token":
            guard.wrong()
        status = 401 if error.code == "token_expired" else 403
        raise ApiError(status, error.code, error.message)

    def manifest_or_404(request: Request, rid: str) -> dict[str, Any]:
        directory = get_recordings(request).directory(rid)
        manifest = None if directory is None else _read_manifest(directory)
        if manifest is None:
            raise ApiError(404, "not_found", "there is no such recording")
        return manifest

    @api.get("/api/lessons/{lesson_id}/recordings")
    async def list_recordings(lesson_id: str, request: Request) -> dict[str, Any]:
        reader(request, lesson_id, None)
        return {"recordings": get_recordings(request).of_lesson(lesson_id)}

    @api.get("/api/recordings/{rid}")
    async def get_recording(rid: str, request: Request) -> dict[str, Any]:
        manifest = manifest_or_404(request, rid)
        reader(request, str(manifest.get("lesson_id")), rid)
        recordings = get_recordings(request)
        described = recordings.describe(rid)
        assert described is not None
        access, _ = get_tokens(request).issue_replay(
            rid, str(manifest.get("lesson_id")), ACCESS_TTL_S
        )
        for f in described["files"]:
            f["url"] = f"/api/recordings/{rid}/files/{f['name']}?access={access}"
        # The deck's pages for the replay: put the deck and page number in.
        lid = manifest.get("lesson_id")
        described["page_url"] = (
            f"/api/lessons/{lid}/decks/{{deck_id}}/pages/{{page}}?access={access}"
        )
        if described["offline"].get("state") == "done":
            described["offline"]["url"] = (
                f"/api/recordings/{rid}/files/{OFFLINE_FILE}?access={access}"
            )
        return described

    @api.get("/api/recordings/{rid}/files/{name}")
    async def get_file(rid: str, name: str, request: Request) -> FileResponse:
        manifest = manifest_or_404(request, rid)
        reader(request, str(manifest.get("lesson_id")), rid)
        names = {f["name"] for f in manifest.get("files", [])} | {OFFLINE_FILE}
        directory = get_recordings(request).directory(rid)
        path = None if directory is None or name not in names else directory / name
        if path is None or not path.is_file():
            raise ApiError(404, "not_found", "this recording has no such file")
        # Starlette's FileResponse answers Range requests (206, 416) by itself.
        headers = {"Cache-Control": "private, max-age=3600"}
        if name == OFFLINE_FILE:
            headers["Content-Disposition"] = f'attachment; filename="{rid}-offline.webm"'
        return FileResponse(path, media_type="video/webm", headers=headers)

    @api.post("/api/recordings/{rid}/share")
    async def share(rid: str, request: Request, body: ShareRequest | None = None) -> dict[str, Any]:
        manifest = manifest_or_404(request, rid)
        who = reader(request, str(manifest.get("lesson_id")), rid)
        if not who.may_manage:
            raise ApiError(403, "not_allowed", "only the teacher shares a recording")
        if not limits.creations.take(client_address(request), now()):
            raise ApiError(429, "rate_limited", "too many requests; wait a little")
        ttl = (body or ShareRequest()).ttl_s
        token, expires = get_tokens(request).issue_replay(rid, str(manifest.get("lesson_id")), ttl)
        return {"token": token, "url": f"{base_url()}/replay#token={token}", "expires": expires}

    @api.delete("/api/recordings/{rid}", status_code=204)
    async def delete(rid: str, request: Request) -> None:
        manifest = manifest_or_404(request, rid)
        who = reader(request, str(manifest.get("lesson_id")), rid)
        if not who.may_manage:
            raise ApiError(403, "not_allowed", "only the teacher deletes a recording")
        recordings = get_recordings(request)
        if recordings.is_active(rid):
            raise ApiError(409, "recording_active", "the lesson is still being recorded")
        await recordings.delete(rid)

    return api
