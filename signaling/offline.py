"""The offline copy of a recording: one small file a school downloads and plays without a link.

Layout, 960x360: the slides at 640x360 on the left (text needs the pixels), the
teacher's camera at 320x180 top right, the classroom on stage at 320x180 below it
while it has the floor (black otherwise). Side by side rather than picture-in-
picture: a camera inset would hide part of a slide, and slides are what a pupil
copies from. VP8 at about 200 kbit/s at 15 fps plus Opus at 24 kbit/s mono (speech
stays clear at that rate; AAC would not): about 100 MB an hour. WebM, the codecs of
the live lesson, plays in the projector PC's browser and in VLC.

Made by an `ffmpeg` subprocess at low priority (`nice`), one copy at a time, so
that a live lesson on the same machine keeps its CPU. Progress is written to
`offline.json` next to the recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OFFLINE_FILE = "offline.webm"
STATUS_FILE = "offline.json"
VIDEO_KBPS = 200
AUDIO_KBPS = 24
FPS = 15


def ffmpeg_args(manifest: dict[str, Any], directory: Path, output: Path) -> list[str] | None:
    """The ffmpeg command line (without the program) for a recording, or None if it has
    no camera file (nothing to build a copy around)."""
    files = {f["name"]: f for f in manifest.get("files", [])}
    camera = files.get("camera.webm")
    if camera is None:
        return None
    duration = float(manifest.get("duration") or 0) or _end(manifest)
    args = ["-hide_banner", "-v", "error", "-nostats", "-progress", "pipe:1", "-y"]
    inputs: list[dict[str, Any]] = [camera]
    slides = files.get("slides.webm")
    if slides is not None:
        inputs.append(slides)
    stages = [f for f in manifest["files"] if f["role"] == "stage"]
    inputs += stages
    for f in inputs:
        args += ["-i", str(directory / f["name"])]
    graph = [f"color=c=black:s=960x360:r={FPS}:d={duration:.3f}[bg0]"]
    last = "bg0"

    def place(index: int, f: dict[str, Any], w: int, h: int, x: int, y: int, hold: bool) -> None:
        nonlocal last
        off = float(f["offset"] or 0)
        graph.append(
            f"[{index}:v]scale={w}:{h}:force_original_aspect_ratio=decrease,"
            f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setpts=PTS-STARTPTS+{off:.3f}/TB[v{index}]"
        )
        # A slide stays up when its file ends; a classroom leaves the stage.
        repeat = 1 if hold else 0
        graph.append(
            f"[{last}][v{index}]overlay={x}:{y}:eof_action=pass:repeatlast={repeat}[bg{index + 1}]"
        )
        last = f"bg{index + 1}"

    place(0, camera, 320, 180, 640, 0, hold=False)
    if slides is not None:
        place(1, slides, 640, 360, 0, 0, hold=True)
    first_stage = len(inputs) - len(stages)
    for i, stage in enumerate(stages, start=first_stage):
        place(i, stage, 320, 180, 640, 180, hold=False)
    audio = []
    for i, f in enumerate(inputs):
        if any(t["kind"] == "audio" for t in f["tracks"]):
            delay = round(float(f["offset"] or 0) * 1000)
            graph.append(f"[{i}:a]asetpts=PTS-STARTPTS,adelay={delay}:all=1[a{i}]")
            audio.append(f"[a{i}]")
    graph.append(f"{''.join(audio)}amix=inputs={len(audio)}:normalize=0:duration=longest[aout]")
    # Overlays give a picture with alpha; VP8 wants plain 4:2:0.
    graph.append(f"[{last}]format=yuv420p[vout]")
    args += ["-filter_complex", ";".join(graph), "-map", "[vout]", "-map", "[aout]"]
    args += [
        "-t", f"{duration:.3f}",
        "-c:v", "libvpx", "-b:v", f"{VIDEO_KBPS}k", "-deadline", "good", "-cpu-used", "5",
        "-g", str(FPS * 10), "-auto-alt-ref", "0", "-threads", "1",
        "-c:a", "libopus", "-b:a", f"{AUDIO_KBPS}k", "-ac", "1",
        str(output),
    ]  # fmt: skip
    return args


def _end(manifest: dict[str, Any]) -> float:
    ends = [float(f["offset"] or 0) + float(f["duration"] or 0) for f in manifest.get("files", [])]
    return max(ends, default=0.0)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace a status file atomically: a reader sees the old status or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False))
    os.replace(tmp, path)


def read_status(directory: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((directory / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {"state": "none", "progress": 0.0}
    return data


class OfflineCopies:
    """Makes offline copies in the background, one at a time."""

    def __init__(self, ffmpeg: str | None = None) -> None:
        self._ffmpeg = ffmpeg or shutil.which("ffmpeg")
        self._nice = shutil.which("nice")
        self._queue: asyncio.Queue[tuple[Path, dict[str, Any]]] = asyncio.Queue(maxsize=1000)
        self._worker: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._current: Path | None = None

    @property
    def available(self) -> bool:
        return self._ffmpeg is not None

    def request(self, directory: Path, manifest: dict[str, Any]) -> None:
        if not self.available:
            write_json(directory / STATUS_FILE, {"state": "unavailable", "progress": 0.0})
            return
        write_json(directory / STATUS_FILE, {"state": "queued", "progress": 0.0})
        self._queue.put_nowait((directory, manifest))
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="offline-copies")

    def cancel(self, directory: Path) -> None:
        """Stop making the copy of `directory` if it is being made (it is deleted)."""
        if self._current == directory and self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def close(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            directory, manifest = await self._queue.get()
            self._current = directory
            try:
                await self._make(directory, manifest)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("offline copy of %s failed", directory.name)
                with contextlib.suppress(OSError):
                    write_json(directory / STATUS_FILE, {"state": "failed", "error": str(exc)})
            finally:
                self._current = None

    async def _make(self, directory: Path, manifest: dict[str, Any]) -> None:
        if not directory.is_dir():
            return
        partial = directory / (OFFLINE_FILE + ".part.webm")
        args = ffmpeg_args(manifest, directory, partial)
        if args is None or self._ffmpeg is None:
            write_json(directory / STATUS_FILE, {"state": "failed", "error": "no camera file"})
            return
        duration = float(manifest.get("duration") or 0) or _end(manifest) or 1.0
        command = [self._ffmpeg, *args]
        if self._nice:
            command = [self._nice, "-n", "15", *command]
        write_json(directory / STATUS_FILE, {"state": "running", "progress": 0.0})
        self._proc = proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stderr is not None
        errors = asyncio.ensure_future(proc.stderr.read())
        try:
            async for line in proc.stdout:
                key, _, value = line.decode(errors="replace").strip().partition("=")
                if key == "out_time_us" and value.isdigit():
                    progress = min(0.99, int(value) / 1e6 / duration)
                    status = {"state": "running", "progress": round(progress, 3)}
                    write_json(directory / STATUS_FILE, status)
            code = await proc.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        finally:
            self._proc = None
        stderr = (await errors).decode(errors="replace")
        if code != 0 or not partial.exists() or not directory.is_dir():
            with contextlib.suppress(OSError):
                partial.unlink()
                write_json(
                    directory / STATUS_FILE, {"state": "failed", "error": stderr[-500:] or code}
                )
            return
        os.replace(partial, directory / OFFLINE_FILE)
        write_json(
            directory / STATUS_FILE,
            {
                "state": "done",
                "progress": 1.0,
                "file": OFFLINE_FILE,
                "size": (directory / OFFLINE_FILE).stat().st_size,
            },
        )
