"""The recorder: one more subscriber of the top layer of each source.

Starting a recording is subscribing a `Recorder` to the layers the relay routes
(`Sources`); the packets the layers encode for the classrooms are written as they
are, through `media.recorder.webm.WebmWriter` (no re-encoding). A browser's <video>
plays one video track per file, so a recording is one file per picture:

- `camera.webm`: the teacher's camera and the teacher's microphone (the master:
  its sound is the lesson's sound, its clock the replay's clock);
- `slides.webm`: the teacher's screen share;
- `stage-01.webm`, `stage-02.webm`...: one per stage turn, the classroom's camera
  and microphone, from the grant to the revoke.

Each file starts at its own first packet (time 0 in the file) and the manifest
gives where that is on the recording's time line (`offset`). The time line is the
relay's clock from the start of the recording, minus the time spent paused: a
paused recording writes nothing and leaves no gap.

`manifest.json` (media.recorder.manifest) is rewritten (atomically) when a file
begins or ends, on a pause and on a resume, so that a server killed mid-lesson
leaves a manifest naming every file. The recorder knows nothing of lessons'
events: signaling keeps the time line of events next to the files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import av

from media.pipeline.fanout import Publisher, SenderPacket
from media.recorder import manifest
from media.recorder.manifest import FileEntry, Manifest, Pause, Track
from media.recorder.webm import WebmWriter
from media.wire.rates import AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE
from media.wire.vp8 import keyframe_size

Clock = Callable[[], float]
# 3 s of Opus: how long a file with a picture waits for it before starting with sound.
EARLY_AUDIO_PACKETS = 150


@dataclass(frozen=True)
class Sources:
    """The top layer of each source the lesson has now (None: that source is absent)."""

    camera: Publisher | None = None
    audio: Publisher | None = None
    slides: Publisher | None = None
    stage_video: Publisher | None = None
    stage_audio: Publisher | None = None
    # The classroom on stage; a new id is a new stage file.
    stage_id: str | None = None


class _Tap:
    """One track of one file: a subscriber of the layer feeding it."""

    def __init__(self, part: _Part, kind: str) -> None:
        self.part = part
        self.kind = kind
        self.layer: Publisher | None = None
        # Video starts (and restarts after a pause or a source change) at a keyframe.
        self.waiting_for_keyframe = kind == "video"

    def follow(self, publisher: Publisher | None) -> None:
        if publisher is self.layer:
            return
        if self.layer is not None:
            self.layer.unsubscribe(self)
        self.layer = publisher
        self.waiting_for_keyframe = self.kind == "video"
        if publisher is not None:
            publisher.subscribe(self)
            if self.kind == "video":
                publisher.request_keyframe()

    def deliver(self, publisher: Publisher, packet: SenderPacket) -> None:
        if publisher is not self.layer:
            return
        recorder = self.part.recorder
        if recorder.paused or self.part.closed:
            return
        if self.waiting_for_keyframe:
            if not packet.is_keyframe:
                return
            self.waiting_for_keyframe = False
        self.part.write(self.kind, packet.source)

    def resume(self) -> None:
        self.waiting_for_keyframe = self.kind == "video"
        if self.layer is not None and self.kind == "video":
            self.layer.request_keyframe()


class _Part:
    """One file of the recording."""

    def __init__(
        self,
        recorder: Recorder,
        name: str,
        role: Literal["camera", "slides", "stage"],
        source: str,
        *,
        video: bool,
        audio: bool,
    ) -> None:
        self.recorder = recorder
        self.name = name
        self.role = role
        self.source = source
        self.taps: dict[str, _Tap] = {}
        if video:
            self.taps["video"] = _Tap(self, "video")
        if audio:
            self.taps["audio"] = _Tap(self, "audio")
        self.writer: WebmWriter | None = None
        # Sound that comes before the first picture, kept until the picture comes.
        self._early: list[av.Packet[Any]] = []
        self.offset: float | None = None
        self.ended_at: float | None = None
        self.size: tuple[int, int] | None = None
        self.closed = False

    def write(self, kind: str, packet: av.Packet[Any]) -> None:
        if packet.pts is None:
            return
        rate = VIDEO_CLOCK_RATE if kind == "video" else AUDIO_CLOCK_RATE
        if self.writer is None:
            if kind == "audio" and "video" in self.taps and len(self._early) < EARLY_AUDIO_PACKETS:
                self._early.append(packet)
                return
            # The file's time 0 is its first packet on the relay's clock. Sources are
            # timed apart (media.pipeline.ladder.SourceClock): the first keyframe may be stamped
            # before the sound that came first, and must not fall before time 0.
            origin = packet.pts / rate
            if self._early:
                origin = min(origin, (self._early[0].pts or 0) / AUDIO_CLOCK_RATE)
            self.writer = WebmWriter(
                self.recorder.directory / self.name,
                video="video" in self.taps,
                audio="audio" in self.taps,
                origin_s=origin,
            )
            self.offset = round(self.recorder.timeline_at(origin), 3)
            self.recorder.save()
            early, self._early = self._early, []
            for sound in early:
                self.writer.write("audio", sound)
        if kind == "video" and self.size is None:
            self.size = keyframe_size(bytes(packet))
        self.writer.write(kind, packet)

    def skip(self, seconds: float) -> None:
        if self.writer is not None:
            self.writer.skip(seconds)
        for tap in self.taps.values():
            tap.resume()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for tap in self.taps.values():
            tap.follow(None)
        if self.writer is not None:
            self.writer.close()
            assert self.offset is not None
            self.ended_at = round(self.offset + self.writer.duration_s, 3)

    def describe(self) -> FileEntry:
        tracks: list[Track] = []
        if "video" in self.taps:
            width, height = self.size or (None, None)
            tracks.append({"kind": "video", "codec": "vp8", "width": width, "height": height})
        if "audio" in self.taps:
            tracks.append({"kind": "audio", "codec": "opus", "channels": 1})
        duration = None
        if self.closed and self.writer is not None and self.offset is not None:
            duration = round(self.writer.duration_s, 3)
        return {
            "name": self.name,
            "role": self.role,
            "source": self.source,
            "offset": self.offset,
            "duration": duration,
            "tracks": tracks,
        }


class Recorder:
    """A lesson's recording: files in `directory`, fed by `update(sources)`."""

    def __init__(self, directory: Path, *, clock: Clock, meta: dict[str, Any]) -> None:
        self.directory = directory
        self._clock = clock
        self._meta = dict(meta)
        self.origin = clock()
        self._paused_total = 0.0
        self._paused_since: float | None = None
        self._pauses: list[Pause] = []
        self._camera = _Part(self, "camera.webm", "camera", "teacher", video=True, audio=True)
        self._slides = _Part(self, "slides.webm", "slides", "teacher", video=True, audio=False)
        self._stages: list[_Part] = []
        self._stage_id: str | None = None
        self.state = "recording"
        directory.mkdir(parents=True, exist_ok=True)
        self.save()

    # -- time line -----------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused_since is not None

    def timeline_at(self, t: float) -> float:
        """Where relay time `t` falls on the recording's time line (pauses left out)."""
        paused = self._paused_total
        if self._paused_since is not None and t > self._paused_since:
            paused += t - self._paused_since
        return max(0.0, t - self.origin - paused)

    def now(self) -> float:
        """The recording's time line now."""
        return self.timeline_at(self._clock())

    # -- driven by the relay --------------------------------------------------------

    def update(self, sources: Sources) -> None:
        """Follow what the lesson's sources are now (called on every route change)."""
        if self.state == "finished":
            return
        self._camera.taps["video"].follow(sources.camera)
        self._camera.taps["audio"].follow(sources.audio)
        self._slides.taps["video"].follow(sources.slides)
        if sources.stage_id != self._stage_id:
            if self._stages and not self._stages[-1].closed:
                self._stages[-1].close()
                self.save()
            self._stage_id = sources.stage_id
            if sources.stage_id is not None:
                n = len(self._stages) + 1
                self._stages.append(
                    _Part(
                        self,
                        f"stage-{n:02d}.webm",
                        "stage",
                        sources.stage_id,
                        video=True,
                        audio=True,
                    )
                )
        if self._stages and not self._stages[-1].closed:
            stage = self._stages[-1]
            stage.taps["video"].follow(sources.stage_video)
            stage.taps["audio"].follow(sources.stage_audio)

    # -- driven by the lesson --------------------------------------------------------

    def pause(self) -> None:
        if self.paused or self.state == "finished":
            return
        self._paused_since = self._clock()
        self._pauses.append({"at": round(self.timeline_at(self._paused_since), 3)})
        self.save()

    def resume(self) -> None:
        if self._paused_since is None:
            return
        gap = self._clock() - self._paused_since
        self._paused_total += gap
        self._paused_since = None
        self._pauses[-1]["length"] = round(gap, 3)
        for part in self._parts():
            if not part.closed:
                part.skip(gap)
        self.save()

    def close(self) -> Manifest:
        """Stop: every file gets its seek index and duration. Returns the manifest."""
        if self.state != "finished":
            self.resume()
            for part in self._parts():
                part.close()
            self.state = "finished"
            self.save()
        return self.manifest()

    # -- the manifest ------------------------------------------------------------------

    def _parts(self) -> list[_Part]:
        return [self._camera, self._slides, *self._stages]

    def manifest(self) -> Manifest:
        files = [p.describe() for p in self._parts() if p.offset is not None]
        finished = self.state == "finished"
        described: Manifest = {
            "version": manifest.VERSION,
            "state": "finished" if finished else "recording",
            "duration": None,
            "pauses": [cast(Pause, dict(p)) for p in self._pauses],
            "files": files,
        }
        if finished and any(f["duration"] is not None for f in files):
            described["duration"] = manifest.end(described)
        # The lesson's own fields (id, title...) first, as they were given.
        return cast(Manifest, {**self._meta, **described})

    def save(self) -> None:
        manifest.write(self.directory, self.manifest())
