"""Recording files: packets written as they are, playable after a graceful close or a SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media.pipeline.encoders import AudioEncoder, VideoEncoder, VideoLayerSpec
from media.recorder.webm import WebmWriter
from media.wire.vp8 import keyframe_size as vp8_keyframe_size

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffmpeg's ffprobe")

ORIGIN = 5000.0  # seconds on the relay's clock at which the recording starts


def probe(path: Path) -> dict[str, object]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "format=duration:stream=codec_name,width,height,nb_read_frames",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def feed(writer: WebmWriter, seconds: float, start_s: float = 0.0, fps: int = 15) -> None:
    video = VideoEncoder(VideoLayerSpec("low", 320, 180, 150_000))
    audio = AudioEncoder()
    rng = np.random.default_rng(1)
    for i in range(int(seconds * fps)):
        t = ORIGIN + start_s + i / fps
        frame = av.VideoFrame.from_ndarray(
            rng.integers(0, 255, (180, 320, 3), dtype=np.uint8), format="rgb24"
        ).reformat(format="yuv420p")
        frame.pts = round(t * 90000)
        for packet in video.encode(frame, force_keyframe=i == 0):
            writer.write("video", packet)
        tone = (np.sin(np.arange(3200) / 10) * 8000).astype(np.int16).reshape(1, -1)
        chunk = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        chunk.sample_rate = 48000
        for packet in audio.encode(chunk, round(t * 48000)):
            writer.write("audio", packet)


def test_packets_are_written_unchanged_and_play(tmp_path: Path) -> None:
    path = tmp_path / "camera.webm"
    writer = WebmWriter(path, video=True, audio=True, origin_s=ORIGIN)
    feed(writer, 10)
    writer.close()
    info = probe(path)
    assert abs(float(info["format"]["duration"]) - 10) < 0.5  # type: ignore[index]
    video, audio = info["streams"]  # type: ignore[misc]
    assert (video["codec_name"], video["width"], video["height"]) == ("vp8", 320, 180)
    assert int(video["nb_read_frames"]) == 150  # every frame decodes
    # Ten seconds of 40 ms packets (media.pipeline.encoders.OPUS_FRAME_SAMPLES).
    assert audio["codec_name"] == "opus" and int(audio["nb_read_frames"]) == 250


@pytest.mark.parametrize("fps", [5, 15])
def test_a_file_declares_no_frame_rate_it_does_not_have(tmp_path: Path, fps: int) -> None:
    """Layers send what their encoders and links allow (a camera at 15 fps when the
    relay cannot keep 30, slides at 5 or 2): a file that declared 30 fps was read by
    tools that count its frames at that rate as lasting half the lesson."""
    path = tmp_path / "slides.webm"
    writer = WebmWriter(path, video=True, audio=False, origin_s=ORIGIN)
    feed(writer, 6, fps=fps)
    writer.close()
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=avg_frame_rate,r_frame_rate,nb_read_frames", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    (video,) = json.loads(out.stdout)["streams"]
    frames = int(video["nb_read_frames"])
    # The rate a tool infers is the file's own, so frames over it give its length.
    for rate in (video["avg_frame_rate"], video["r_frame_rate"]):
        assert abs(frames / float(Fraction(rate)) - 6) < 0.5, video


def test_a_file_starts_at_a_keyframe_and_keeps_early_audio(tmp_path: Path) -> None:
    path = tmp_path / "camera.webm"
    writer = WebmWriter(path, video=True, audio=True, origin_s=ORIGIN)
    audio = AudioEncoder()
    silence = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
    silence.sample_rate = 48000
    for i in range(10):  # 200 ms of sound before any picture
        for packet in audio.encode(silence, round(ORIGIN * 48000) + i * 960):
            writer.write("audio", packet)
    assert not path.exists()
    feed(writer, 2, start_s=0.2)
    writer.close()
    assert int(probe(path)["streams"][1]["nb_read_frames"]) >= 50 + 5  # type: ignore[index]


def test_audio_only_file(tmp_path: Path) -> None:
    path = tmp_path / "stage-audio.webm"
    writer = WebmWriter(path, video=False, audio=True, origin_s=ORIGIN)
    feed(writer, 3)
    writer.close()
    (stream,) = probe(path)["streams"]  # type: ignore[misc]
    assert stream["codec_name"] == "opus"


KILLED = r"""
import sys, os, signal
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.media.test_recording import WebmWriter, feed, ORIGIN
writer = WebmWriter(Path(sys.argv[1]), video=True, audio=True, origin_s=ORIGIN)
feed(writer, 12)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_writer_leaves_a_file_that_plays_to_within_two_seconds(tmp_path: Path) -> None:
    path = tmp_path / "camera.webm"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", KILLED, str(path), str(root)], timeout=120)
    assert done.returncode == -signal.SIGKILL
    info = probe(path)
    video = info["streams"][0]  # type: ignore[index]
    # 12 s written; what was on disk at the kill decodes, frame by frame.
    assert int(video["nb_read_frames"]) >= (12 - 2) * 15
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    assert decoded.returncode == 0
    assert os.path.getsize(path) > 0


def test_vp8_keyframe_size() -> None:
    encoder = VideoEncoder(VideoLayerSpec("mid", 640, 360, 500_000))
    frame = av.VideoFrame.from_ndarray(np.zeros((360, 640, 3), np.uint8), format="rgb24")
    frame = frame.reformat(format="yuv420p")
    frame.pts = 0
    (key,) = encoder.encode(frame, force_keyframe=True)
    assert vp8_keyframe_size(bytes(key)) == (640, 360)
    frame.pts = 6000
    (delta,) = encoder.encode(frame, force_keyframe=False)
    assert vp8_keyframe_size(bytes(delta)) is None
    assert vp8_keyframe_size(b"\x00" * 4) is None
