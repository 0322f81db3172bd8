"""The recorder: a lesson's files, their place on the time line, pauses and stage turns.

The Recorder is fed real VP8 and Opus packets by fake top layers on a hand-moved relay
clock (tests.media.recorder_feed), so a 20 s lesson takes a second or two; the files
are read back with PyAV. One short lesson goes through the real relay and aiortc peers.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

from classroom.roles import Role
from media.recorder import manifest
from media.recorder.manifest import FileEntry, Manifest
from media.recorder.recorder import Recorder
from media.relay.relay import Relay
from media.slots import Slot
from tests.media.conftest import LESSON, Join
from tests.media.recorder_feed import FakeLayer, LessonFeed

# Seconds: how far a file's length may be from the lesson time it recorded (a packet).
TOLERANCE = 0.1


@dataclass
class Played:
    """A file as a player sees it."""

    duration: float
    # The video track's picture size, None without video.
    size: tuple[int, int] | None
    # Each track's packets ("video", "audio") as stored, and their times in seconds.
    packets: dict[str, list[bytes]]
    times: dict[str, list[float]]
    # How many frames each track decodes to.
    frames: dict[str, int]


def play_back(path: Path) -> Played:
    packets: dict[str, list[bytes]] = defaultdict(list)
    times: dict[str, list[float]] = defaultdict(list)
    with av.open(str(path)) as container:
        assert container.duration is not None, "no duration: the file was not closed"
        duration = container.duration / av.time_base
        video = container.streams.video[0] if container.streams.video else None
        size = None if video is None else (video.width, video.height)
        for packet in container.demux():
            if packet.size and packet.pts is not None and packet.time_base is not None:
                packets[packet.stream.type].append(bytes(packet))
                times[packet.stream.type].append(float(packet.pts * packet.time_base))
    frames: dict[str, int] = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            frames[stream.type] = 0
        # Decoding raises on a broken packet: the file plays to its end.
        for frame in container.decode(*container.streams):
            frames["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
    return Played(duration, size, dict(packets), dict(times), frames)


def published(layer: FakeLayer, since: int = 0, until: int | None = None) -> list[bytes]:
    return [bytes(p) for p in layer.published[since:until]]


def by_name(described: Manifest) -> dict[str, FileEntry]:
    return {f["name"]: f for f in described["files"]}


def near(value: float | None, expected: float) -> bool:
    return value is not None and abs(value - expected) < TOLERANCE


def test_a_20s_lesson_is_recorded_without_reencoding(tmp_path: Path) -> None:
    feed = LessonFeed()
    recorder = Recorder(tmp_path, clock=feed.clock, meta={"id": "r1", "title": "五年级数学"})
    recorder.update(feed.sources(slides=True))
    feed.play(6, slides=True)
    recorder.update(feed.sources(slides=True, stage="classroom-1"))
    feed.play(6, slides=True, stage="classroom-1")
    recorder.update(feed.sources(slides=True))
    feed.play(8, slides=True)
    described = recorder.close()

    assert manifest.read(tmp_path) == described
    assert (described.get("id"), described.get("title")) == ("r1", "五年级数学")
    assert (described["state"], described["pauses"]) == ("finished", [])
    assert near(described["duration"], 20)
    files = by_name(described)
    assert set(files) == {"camera.webm", "slides.webm", "stage-01.webm"}

    camera = play_back(tmp_path / "camera.webm")
    assert files["camera.webm"]["offset"] == 0.0 and near(files["camera.webm"]["duration"], 20)
    assert near(camera.duration, 20), camera.duration
    assert camera.size == feed.camera.size == (320, 180)
    assert files["camera.webm"]["tracks"] == [
        {"kind": "video", "codec": "vp8", "width": 320, "height": 180},
        {"kind": "audio", "codec": "opus", "channels": 1},
    ]
    # Every packet of the teacher's layers, byte for byte: none re-encoded, none lost.
    assert camera.packets["video"] == published(feed.camera.layer)
    assert camera.packets["audio"] == published(feed.microphone.layer)
    assert camera.frames == {"video": 20 * 15, "audio": len(feed.microphone.layer.published)}

    slides = play_back(tmp_path / "slides.webm")
    assert files["slides.webm"]["offset"] == 0.0 and near(slides.duration, 20)
    assert slides.size == feed.screen.size and "audio" not in slides.packets
    assert slides.packets["video"] == published(feed.screen.layer)
    assert slides.frames == {"video": 20 * 15}

    # The stage turn: the classroom's camera and microphone, from the grant to the revoke.
    stage = play_back(tmp_path / "stage-01.webm")
    room = feed.classrooms["classroom-1"]
    assert files["stage-01.webm"]["source"] == "classroom-1"
    assert near(files["stage-01.webm"]["offset"], 6) and near(files["stage-01.webm"]["duration"], 6)
    assert near(stage.duration, 6) and stage.size == room.camera.size
    assert stage.packets["video"] == published(room.camera.layer)
    assert stage.packets["audio"] == published(room.microphone.layer)


def test_a_pause_leaves_no_gap(tmp_path: Path) -> None:
    feed = LessonFeed()
    recorder = Recorder(tmp_path, clock=feed.clock, meta={"id": "r2"})
    recorder.update(feed.sources())
    feed.play(3)
    recorder.pause()
    on_disk = manifest.read(tmp_path)
    assert on_disk is not None and on_disk["state"] == "recording"
    assert on_disk["pauses"] == [{"at": 3.0}]
    paused_at = {kind: len(layer.published) for kind, layer in layers(feed)}
    feed.play(5)  # the layers go on; the recording does not
    resumed_at = {kind: len(layer.published) for kind, layer in layers(feed)}
    recorder.resume()
    feed.play(4)
    described = recorder.close()

    # 12 s of lesson, 5 s of it paused: 7 s of recording, no hole in the middle.
    assert manifest.read(tmp_path) == described and described["state"] == "finished"
    assert described["pauses"] == [{"at": 3.0, "length": 5.0}]
    assert near(described["duration"], 7)
    camera = play_back(tmp_path / "camera.webm")
    assert near(camera.duration, 7), camera.duration
    for kind, layer in layers(feed):
        kept = published(layer, until=paused_at[kind]) + published(layer, resumed_at[kind])
        assert camera.packets[kind] == kept, kind
    # The resume's keyframe is the next frame: the picture moves on at 15 fps.
    gaps = [b - a for a, b in itertools.pairwise(camera.times["video"])]
    assert max(gaps) < 1.5 / 15
    assert camera.frames["video"] == 7 * 15


def layers(feed: LessonFeed) -> list[tuple[str, FakeLayer]]:
    return [("video", feed.camera.layer), ("audio", feed.microphone.layer)]


def test_each_stage_turn_is_a_file_placed_where_it_happened(tmp_path: Path) -> None:
    feed = LessonFeed()
    recorder = Recorder(tmp_path, clock=feed.clock, meta={"id": "r3"})
    recorder.update(feed.sources())
    feed.play(2)
    recorder.update(feed.sources(stage="classroom-1"))
    feed.play(3, stage="classroom-1")
    # Straight from one classroom to the next (and the teacher shares the screen): the
    # first turn's file ends there.
    recorder.update(feed.sources(slides=True, stage="classroom-2"))
    on_disk = manifest.read(tmp_path)
    assert on_disk is not None and near(by_name(on_disk)["stage-01.webm"]["duration"], 3)
    feed.play(2, slides=True, stage="classroom-2")
    recorder.update(feed.sources(slides=True))
    feed.play(2, slides=True)
    described = recorder.close()

    files = by_name(described)
    assert list(files) == ["camera.webm", "slides.webm", "stage-01.webm", "stage-02.webm"]
    assert near(described["duration"], 9) and near(play_back(tmp_path / "camera.webm").duration, 9)
    assert near(files["slides.webm"]["offset"], 5) and near(files["slides.webm"]["duration"], 4)
    turns = [("stage-01.webm", "classroom-1", 2, 3), ("stage-02.webm", "classroom-2", 5, 2)]
    for name, source, offset, length in turns:
        entry, played = files[name], play_back(tmp_path / name)
        room = feed.classrooms[source]
        assert (entry["role"], entry["source"]) == ("stage", source)
        assert near(entry["offset"], offset) and near(played.duration, length), (name, played)
        assert played.packets["video"] == published(room.camera.layer)
        assert played.frames["video"] == length * 15


# -- through the real relay ------------------------------------------------------------


def decodes(path: Path) -> bool:
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode == 0 and not done.stderr.strip()


async def until(check: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.timeout(60)
async def test_the_relay_records_the_teachers_top_layers_and_the_stage(
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
    await asyncio.sleep(1)
    await relay.set_stage(LESSON, "classroom-1")
    await asyncio.sleep(2)
    await relay.set_stage(LESSON, None)
    await asyncio.sleep(0.5)
    lesson = time.monotonic() - started
    described = relay.stop_recording(LESSON)
    assert described is not None and described == manifest.read(tmp_path)
    assert described["state"] == "finished" and recorder.state == "finished"

    files = by_name(described)
    assert set(files) == {"camera.webm", "slides.webm", "stage-01.webm"}
    # About the lesson's 3.5 s: a loaded machine's encoders may lag a second behind.
    duration = described["duration"]
    assert duration is not None and lesson - 1.5 < duration < lesson + 0.2, (duration, lesson)
    played = play_back(tmp_path / "camera.webm")
    assert played.size == (640, 360) and set(played.packets) == {"video", "audio"}
    assert abs(played.duration - duration) < 0.5
    assert played.frames["video"] >= 15
    stage = play_back(tmp_path / "stage-01.webm")
    assert files["stage-01.webm"]["source"] == "classroom-1" and stage.size == (320, 180)
    for name in files:
        assert decodes(tmp_path / name), name
