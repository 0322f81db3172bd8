"""The recorder through real aiortc peers: a 20 s lesson, a stage turn, a pause; checked with ffprobe."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from classroom.roles import Role
from media.recorder.manifest import FILE_NAME as MANIFEST
from media.relay.relay import Relay
from media.slots import Slot
from tests.media.conftest import LESSON, Join
from tests.media.test_recording import probe

pytestmark = [
    pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffmpeg's ffprobe"),
    pytest.mark.timeout(90),
]


def decodes(path: Path) -> bool:
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode == 0 and not done.stderr.strip()


async def until(check: object, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def test_a_20s_lesson_is_recorded_without_reencoding(
    relay: Relay, join: Join, tmp_path: Path
) -> None:
    await join("teacher", Role.TEACHER)
    await join("classroom-1", Role.CLASSROOM)
    camera = relay.ladder(LESSON, "teacher", Slot.CAMERA)
    assert camera is not None
    await until(lambda: camera.frames_in > 0, 10)

    started = time.monotonic()
    recorder = relay.start_recording(LESSON, tmp_path, {"id": "r1"})
    # The recorder keeps the top layer running: that is its cost.
    assert camera.layers[0].active
    await asyncio.sleep(6)
    await relay.set_stage(LESSON, "classroom-1")
    await asyncio.sleep(6)
    await relay.set_stage(LESSON, None)
    await asyncio.sleep(20 - (time.monotonic() - started))
    manifest = relay.stop_recording(LESSON)
    assert manifest is not None and manifest == json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["state"] == "finished" and recorder.state == "finished"

    files = {f["name"]: f for f in manifest["files"]}
    assert set(files) == {"camera.webm", "slides.webm", "stage-01.webm"}
    # The time line: 20 s, every file placed on it.
    assert abs(manifest["duration"] - 20) < 0.5
    cam = files["camera.webm"]
    assert cam["offset"] < 1.0
    info = probe(tmp_path / "camera.webm")
    assert abs(cam["offset"] + float(info["format"]["duration"]) - 20) < 0.5  # type: ignore[index]
    video, audio = info["streams"]  # type: ignore[misc]
    assert (video["codec_name"], video["width"], video["height"]) == ("vp8", 640, 360)
    assert audio["codec_name"] == "opus"
    assert int(video["nb_read_frames"]) >= 15 * 18  # 15 fps, nearly every frame
    assert int(audio["nb_read_frames"]) >= 25 * 19  # 40 ms packets

    stage = files["stage-01.webm"]
    assert stage["source"] == "classroom-1"
    assert 5.5 < stage["offset"] < 7.5
    assert 4.5 < stage["duration"] < 6.5
    (sv, sa) = probe(tmp_path / "stage-01.webm")["streams"]  # type: ignore[misc]
    assert (sv["codec_name"], sv["width"], sa["codec_name"]) == ("vp8", 320, "opus")

    (slides,) = probe(tmp_path / "slides.webm")["streams"]  # type: ignore[misc]
    assert slides["codec_name"] == "vp8" and int(slides["nb_read_frames"]) >= 5 * 15
    for name in files:
        assert decodes(tmp_path / name), name


async def test_a_pause_leaves_no_gap(relay: Relay, join: Join, tmp_path: Path) -> None:
    await join("teacher", Role.TEACHER)
    recorder = relay.start_recording(LESSON, tmp_path, {"id": "r2"})
    await asyncio.sleep(3)
    recorder.pause()
    assert json.loads((tmp_path / MANIFEST).read_text())["pauses"][0]["at"] > 2
    await asyncio.sleep(3)
    recorder.resume()
    await asyncio.sleep(3)
    manifest = relay.stop_recording(LESSON)
    assert manifest is not None
    # 9 s of lesson, 3 s of it paused: 6 s of recording, no hole in the middle.
    assert abs(manifest["duration"] - 6) < 0.6, manifest
    assert 2.5 < manifest["pauses"][0]["length"] < 3.5
    info = probe(tmp_path / "camera.webm")
    assert abs(float(info["format"]["duration"]) - 6) < 0.8  # type: ignore[index]
    assert decodes(tmp_path / "camera.webm")
    frames = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=pts_time",
         "-of", "csv=p=0", str(tmp_path / "camera.webm")],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.split()  # fmt: skip
    times = [float(t) for t in frames]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < 0.5  # the resume's keyframe follows within a few frames
