"""Writing encoded packets to WebM as they come, so that a crash loses seconds, not a lesson.

The relay's packets are written as they are (no re-encoding): VP8 and Opus go into
Matroska/WebM unchanged. The muxer closes a cluster every second and every write
goes straight to the file (`flush_packets`): a server killed with SIGKILL leaves a
file that plays up to the last closed cluster. A graceful close adds the cues
(seek index) and the duration.

Timestamps: packets carry the relay's source clock (media.pipeline.ladder.SourceClock: the
relay's monotonic clock in 1/90000 or 1/48000). A file's time 0 is `origin_s` on
that clock, so every file of a recording shares one time line.
"""

from __future__ import annotations

import fractions
from pathlib import Path
from typing import Any

import av

from media.wire.rates import AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE
from media.wire.vp8 import keyframe_size

# Matroska options (FFmpeg's matroska muxer and format context):
MUXER_OPTIONS = {
    # A cluster a second: what a crash can lose is the unfinished cluster.
    "cluster_time_limit": "1000",
    # Write through on every packet instead of filling a 32 KiB buffer first.
    "flush_packets": "1",
    # Interleaving waits for the slowest track; when the camera is off, audio must
    # still reach the disk within half a second.
    "max_interleave_delta": "500000",
}


class WebmWriter:
    """One file of a recording: a VP8 track and/or an Opus track.

    The file is created at the first video keyframe (the track header wants the
    picture size, and a recording should start decodable); audio that comes before
    waits in a short buffer. A file with audio only opens at its first packet.
    """

    def __init__(
        self,
        path: Path,
        *,
        video: bool,
        audio: bool,
        origin_s: float,
        audio_wait_s: float = 3.0,
    ) -> None:
        if not (video or audio):
            raise ValueError("a recording file needs a track")
        self.path = path
        self._want_video = video
        self._want_audio = audio
        self._origin = origin_s
        self._audio_wait = round(audio_wait_s * AUDIO_CLOCK_RATE)
        self._container: av.container.OutputContainer | None = None
        self._video: av.VideoStream | None = None
        self._audio: av.AudioStream | None = None
        self._early_audio: list[av.Packet[Any]] = []
        self._last = {"video": -1, "audio": -1}
        # Video is written from a keyframe on: at the start (also when sound opened the
        # file first) and after a dropped frame, whose successors would not decode.
        self._video_needs_keyframe = True
        self.packets = {"video": 0, "audio": 0}
        self.closed = False

    def _open(self, size: tuple[int, int] | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self.path), "w", format="webm", options=MUXER_OPTIONS)
        if self._want_video:
            video = container.add_stream("libvpx")
            width, height = size or (1280, 720)
            video.width, video.height = width, height
            video.pix_fmt = "yuv420p"
            video.time_base = fractions.Fraction(1, 1000)
            # No frame rate: the layers' rates vary (a camera the relay's encoders
            # cannot keep at 30 fps, slides at 5 or 2), and a declared one is
            # written as the track's DefaultDuration, which tools believe: a file
            # declared 30 fps that holds 15 was read as lasting half the lesson.
            # Each block's own timestamp says when it is shown.
            video.codec_context.framerate = fractions.Fraction(0, 1)
            self._video = video
        if self._want_audio:
            audio = container.add_stream("libopus", rate=AUDIO_CLOCK_RATE)
            audio.layout = "mono"
            audio.time_base = fractions.Fraction(1, 1000)
            self._audio = audio
        self._container = container
        for packet in self._early_audio:
            self._mux("audio", packet)
        self._early_audio.clear()

    def write(self, kind: str, packet: av.Packet[Any]) -> None:
        """Write one packet of the relay's ("video" or "audio"); early or stale ones are dropped."""
        if self.closed or packet.pts is None:
            return
        if self._container is None:
            if kind == "video":
                size = keyframe_size(bytes(packet))
                if size is None:
                    return  # a file starts decodable, at a keyframe
                self._open(size)
            elif not self._want_video:
                self._open(None)
            else:
                self._early_audio.append(packet)
                first = self._early_audio[0].pts or 0
                if packet.pts - first < self._audio_wait:
                    return
                # No picture yet after a while: start with sound; the video track
                # begins at its first keyframe.
                self._open(None)
                return
        self._mux(kind, packet)

    def _mux(self, kind: str, packet: av.Packet[Any]) -> None:
        stream = self._video if kind == "video" else self._audio
        if stream is None or self._container is None or packet.pts is None:
            return
        rate = VIDEO_CLOCK_RATE if kind == "video" else AUDIO_CLOCK_RATE
        ms = (packet.pts - round(self._origin * rate)) * 1000 // rate
        # Matroska wants rising timestamps per track; a packet from before the
        # recording began, or a repeat after a source switch, is dropped.
        if ms < 0 or ms <= self._last[kind]:
            if kind == "video":
                self._video_needs_keyframe = True
            return
        if kind == "video" and self._video_needs_keyframe:
            if not packet.is_keyframe:
                return
            self._video_needs_keyframe = False
        self._last[kind] = ms
        out = av.Packet(bytes(packet))
        out.pts = out.dts = ms
        out.time_base = fractions.Fraction(1, 1000)
        out.is_keyframe = packet.is_keyframe
        out.stream = stream
        self._container.mux(out)
        self.packets[kind] += 1

    def skip(self, seconds: float) -> None:
        """Leave `seconds` of source time out of the file (a paused recording): what
        comes next follows what came before without a gap."""
        self._origin += seconds

    @property
    def opened(self) -> bool:
        return self._container is not None

    @property
    def duration_s(self) -> float:
        """Time of the last packet written, on the recording's time line."""
        return max(0, *self._last.values()) / 1000

    def close(self) -> None:
        """Finish the file: cues and duration are written, so players can seek."""
        if self.closed:
            return
        self.closed = True
        if self._container is not None:
            self._container.close()
