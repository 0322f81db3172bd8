"""A recording's manifest (`manifest.json`): the one module that reads and writes it.

The recorder rewrites it, atomically, whenever a file begins or ends, on a pause and
on a resume, so that a server killed mid-lesson leaves a manifest naming every file.
Signaling lists, serves, repairs and replays recordings through `read` and `write`
and the types below; nothing else parses the file.

    {"version": 1, "id", "lesson_id", "title", "started_at", ...   (the lesson's, as given)
     "state": "recording" | "finished" | "interrupted",
     "duration": seconds | null (while recording),
     "pauses": [{"at": s, "length": s}],
     "files": [{"name": "camera.webm", "role": "camera" | "slides" | "stage",
                "source": "teacher" | a classroom's id, "offset": s on the time line,
                "duration": s | null, "tracks": [{"kind", "codec", ...}]}]}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

FILE_NAME = "manifest.json"
VERSION = 1

State = Literal["recording", "finished", "interrupted"]


class Track(TypedDict):
    kind: Literal["video", "audio"]
    codec: str
    width: NotRequired[int | None]
    height: NotRequired[int | None]
    channels: NotRequired[int]


class FileEntry(TypedDict):
    name: str
    role: Literal["camera", "slides", "stage"]
    # "teacher", or the classroom on stage.
    source: str
    # Where the file's time 0 falls on the recording's time line, in seconds.
    offset: float | None
    duration: float | None
    tracks: list[Track]


class Pause(TypedDict):
    at: float
    length: NotRequired[float]


class Manifest(TypedDict):
    version: int
    state: State
    duration: float | None
    pauses: list[Pause]
    files: list[FileEntry]
    # What the lesson gave when recording started (id, lesson_id, title, started_at).
    id: NotRequired[str]
    lesson_id: NotRequired[str]
    title: NotRequired[str]
    started_at: NotRequired[float]


def path(directory: Path) -> Path:
    return directory / FILE_NAME


def exists(directory: Path) -> bool:
    return path(directory).is_file()


def read(directory: Path) -> Manifest | None:
    """The manifest of the recording in `directory`, or None if it has none or it
    cannot be read."""
    try:
        data = json.loads(path(directory).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return None
    manifest: Manifest = data  # type: ignore[assignment]  # written by `write` only
    return manifest


def write(directory: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically: a crash leaves the old version or the new one."""
    write_json_atomically(path(directory), dict(manifest))


def end(manifest: Manifest) -> float:
    """Where the recording's last file ends on its time line (0.0 with none)."""
    ends = [
        float(f["offset"] or 0) + float(f["duration"] or 0)
        for f in manifest["files"]
        if f["offset"] is not None
    ]
    return round(max(ends, default=0.0), 3)


def write_json_atomically(target: Path, data: dict[str, Any]) -> None:
    """Replace `target` with `data` as JSON: a crash leaves the old version or the new one."""
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1))
    os.replace(tmp, target)
