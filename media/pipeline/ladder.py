"""A source's ladder: decoded once (by aiortc's receiver), encoded once per layer.

A `Ladder` reads one incoming track; each `Layer` encodes what its subscribers
need and hands the same packets to all of them. A layer with no subscriber does
not encode (it pauses), so an unused 720p costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.video.frame import PictureType

from media.control.keyframes import KeyframeGate
from media.control.meter import RateMeter
from media.pipeline.encoders import (
    AudioEncoder,
    VideoEncoder,
    VideoLayerSpec,
)
from media.pipeline.fanout import SenderPacket, Subscriber
from media.wire.rates import AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE, VIDEO_TIME_BASE

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

CAMERA_LAYERS = (
    VideoLayerSpec("high", 1280, 720, 1_200_000),
    # 300 kbit/s is enough for a face at 360p, and keeps the step from "low" one a
    # probe can take (a receiver's REMB sits close to what it receives).
    VideoLayerSpec("mid", 640, 360, 300_000),
    # What a 256 kbit/s satellite link has left for a face after audio (with RED)
    # and slides, under the allocator's headroom, FEC included (a quarter more on
    # such a link, media.relay.sending.FEC_EXTRA): the picture keeps moving there.
    VideoLayerSpec("low", 320, 180, 50_000),
    # The same picture at half the frame rate, for the moments the link is shorter
    # still (a page turn's keyframe raises what the slides cost for ten seconds):
    # on geo the camera went off at an estimate of about 200 kbit/s, where this
    # costs a third less than "low" and the teacher keeps moving.
    VideoLayerSpec("min", 320, 180, 30_000, max_fps=7.5),
)
# Slides are text: sharpness matters, motion does not. Both layers keep the full
# picture; the lower one gives up frame rate (two a second still read, and a new
# page shows within half a second; still frames cost next to nothing), and
# rate targets stay low because they size the keyframes a weak link must take.
SLIDES_LAYERS = (
    VideoLayerSpec(
        "high", 1920, 1080, 400_000, max_fps=5, expected_bitrate=60_000,
        min_keyframe_interval_s=3.0, static_thresh=300,
    ),
    VideoLayerSpec(
        "low", 1920, 1080, 100_000, max_fps=2, expected_bitrate=30_000,
        min_keyframe_interval_s=3.0, static_thresh=300,
    ),
)  # fmt: skip
LAYER_ORDER = ("high", "mid", "low", "min")
# What a low-frame-rate layer (slides) costs is averaged over this long.
SLOW_LAYER_WINDOW_S = 10.0


def nearest_layer(layers: Sequence[Layer], name: str) -> Layer:
    """Of `layers` (highest first), the one called `name`, or the nearest one below it
    (the lowest if none)."""
    wanted = LAYER_ORDER.index(name) if name in LAYER_ORDER else 0
    for layer in layers:
        if layer.name in LAYER_ORDER and LAYER_ORDER.index(layer.name) >= wanted:
            return layer
    return layers[-1]


class SourceClock:
    """Maps a source's RTP timestamps onto the relay's clock.

    RTP timestamps start at a random value and wrap at 2**32 (RFC 3550 §5.1).
    Unwrapped and anchored to the relay's clock at the first frame, they let
    every source (the teacher, then classroom A, then B on stage) continue one
    timestamp line on a subscriber's sender when the stage switches.
    """

    def __init__(self, rate: int, clock: Clock) -> None:
        self._rate = rate
        self._clock = clock
        self._last_raw: int | None = None
        self._value = 0

    def __call__(self, raw: int) -> int:
        raw &= 0xFFFFFFFF
        if self._last_raw is None:
            self._value = round(self._clock() * self._rate)
        else:
            delta = (raw - self._last_raw) & 0xFFFFFFFF
            if delta >= 1 << 31:
                delta -= 1 << 32
            self._value += delta
        self._last_raw = raw
        return self._value


class Layer:
    """One encoding of a source, and the subscribers receiving it."""

    def __init__(self, name: str, kind: str, gate: KeyframeGate, clock: Clock) -> None:
        self.name = name
        self.kind = kind
        self._gate = gate
        self._clock = clock
        self._subscribers: set[Subscriber] = set()
        self.frames_encoded = 0
        self.keyframes = 0
        self.closed = False
        # What this layer costs a receiver's link, measured (the allocator's input).
        self.meter = RateMeter()

    @property
    def active(self) -> bool:
        return bool(self._subscribers)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self, track: Subscriber) -> None:
        self._subscribers.add(track)

    def unsubscribe(self, track: Subscriber) -> None:
        self._subscribers.discard(track)

    def request_keyframe(self) -> None:
        self._gate.request()

    def publish(self, packets: Sequence[av.Packet[Any]]) -> None:
        now = self._clock()
        for packet in packets:
            self.frames_encoded += 1
            self.meter.add(packet.size, now)
            if packet.is_keyframe and self.kind == "video":
                self.keyframes += 1
                self._gate.on_keyframe(self._clock())
            if self._subscribers:
                # Converted and cut once, for every subscriber.
                shared = SenderPacket.of(packet)
                for track in list(self._subscribers):
                    track.deliver(self, shared)

    def close(self) -> None:
        self.closed = True
        for track in list(self._subscribers):
            track.follow(None)


class VideoLayer(Layer):
    """Encodes in a worker thread, always the latest frame: a slow encoder skips
    frames instead of building a backlog."""

    def __init__(
        self, spec: VideoLayerSpec, gate: KeyframeGate, clock: Clock, executor: Executor
    ) -> None:
        super().__init__(spec.name, "video", gate, clock)
        self.spec = spec
        if spec.max_fps is not None and spec.max_fps <= 5:
            # Slides cost little most of the time and a lot at a new page (a page
            # a few seconds apart): a 2 s average swings between the two, and a
            # link judged by the swing never gets slides back. Ten seconds amortize.
            self.meter = RateMeter(window_s=SLOW_LAYER_WINDOW_S)
        self._encoder = VideoEncoder(spec)
        self._executor = executor
        self._latest: av.VideoFrame | None = None
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._last_pts: int | None = None
        # Frames replaced by a newer one before the encoder took them (a slow
        # encoder, or a relay short of CPU): frames no classroom of this layer gets.
        self.frames_skipped = 0

    def offer(self, frame: av.VideoFrame) -> None:
        if not self.active or self.closed:
            return
        if self.spec.max_fps is not None and self._last_pts is not None:
            # 10% slack so that a 5 fps cap on a 15 fps source keeps every third frame.
            min_step = 0.9 * VIDEO_CLOCK_RATE / self.spec.max_fps
            if frame.pts is not None and 0 <= frame.pts - self._last_pts < min_step:
                return
        self._last_pts = frame.pts
        if self._latest is not None:
            # The encoder has not taken the last one yet: it is replaced, never sent.
            self.frames_skipped += 1
        self._latest = frame
        self._wake.set()
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name=f"layer-{self.name}")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            await self._wake.wait()
            self._wake.clear()
            frame, self._latest = self._latest, None
            if frame is None or not self.active:
                continue
            force = self._gate.should_force(self._clock())
            try:
                packets = await loop.run_in_executor(
                    self._executor, self._encoder.encode, frame, force
                )
            except (av.FFmpegError, ValueError) as exc:
                logger.warning("layer %s: encoding failed: %s", self.name, exc)
                continue
            if not self.closed:
                self.publish(packets)

    def close(self) -> None:
        super().close()
        if self._worker is not None:
            self._worker.cancel()
        self._latest = None
        self._encoder.close()


class AudioLayer(Layer):
    """Opus is cheap (about 0.005 core): encoded inline, no thread hop."""

    def __init__(self, gate: KeyframeGate, clock: Clock) -> None:
        super().__init__("high", "audio", gate, clock)
        self._encoder = AudioEncoder()

    def offer(self, frame: av.AudioFrame, pts: int) -> None:
        if self.active and not self.closed:
            self.publish(self._encoder.encode(frame, pts))


class Ladder:
    """All layers of one incoming track, highest first."""

    def __init__(
        self,
        track: MediaStreamTrack,
        layers: Sequence[VideoLayer] | Sequence[AudioLayer],
        clock: Clock,
    ) -> None:
        self.kind = track.kind
        self.layers: tuple[Layer, ...] = tuple(layers)
        self._track = track
        self._clock = SourceClock(
            VIDEO_CLOCK_RATE if track.kind == "video" else AUDIO_CLOCK_RATE, clock
        )
        self.frames_in = 0
        self.last_frame_at: float | None = None
        self._relay_clock = clock
        self.source_size: tuple[int, int] | None = None
        # The last decoded picture (the teacher's view of the classrooms samples it).
        self.latest: av.VideoFrame | None = None
        self._reader = asyncio.create_task(self._read(), name=f"ladder-{track.kind}")

    @classmethod
    def for_video(
        cls,
        track: MediaStreamTrack,
        specs: Sequence[VideoLayerSpec],
        *,
        keyframe_interval_s: float,
        clock: Clock,
        executor: Executor,
    ) -> Ladder:
        layers = [
            VideoLayer(
                spec,
                KeyframeGate(max(keyframe_interval_s, spec.min_keyframe_interval_s)),
                clock,
                executor,
            )
            for spec in specs
        ]
        return cls(track, layers, clock)

    @classmethod
    def for_audio(cls, track: MediaStreamTrack, *, clock: Clock) -> Ladder:
        return cls(track, [AudioLayer(KeyframeGate(0.0), clock)], clock)

    def live(self, now: float, within_s: float = 5.0) -> bool:
        """Whether the source sends pictures or sound (a screen share not yet started,
        a muted camera: no). A still screen share sends a frame a second or more."""
        return self.last_frame_at is not None and now - self.last_frame_at <= within_s

    def summary(self) -> str:
        """Frames in, and per layer encoded, skipped and keyframes: for the log when
        the source goes (a classroom short of frames, and the relay short of CPU)."""
        parts = [f"frames in {self.frames_in}"]
        for layer in self.layers:
            skipped = getattr(layer, "frames_skipped", 0)
            parts.append(
                f"{layer.name} encoded {layer.frames_encoded} skipped {skipped} "
                f"keyframes {layer.keyframes}"
            )
        return "; ".join(parts)

    def layer(self, name: str) -> Layer:
        """The layer called `name`, or the nearest one below it (the lowest if none)."""
        return nearest_layer(self.layers, name)

    async def _read(self) -> None:
        # aiortc's RemoteStreamTrack queue is unbounded: it must be drained even
        # when no layer is active.
        try:
            while True:
                frame = await self._track.recv()
                self.frames_in += 1
                self.last_frame_at = self._relay_clock()
                if frame.pts is None:
                    continue
                pts = self._clock(frame.pts)
                if isinstance(frame, av.VideoFrame):
                    self.source_size = (frame.width, frame.height)
                    self.latest = frame
                    # A decoded keyframe comes marked I; libvpx would obey the mark
                    # and bypass the keyframe gate.
                    frame.pict_type = PictureType.NONE
                    frame.pts = pts
                    frame.time_base = VIDEO_TIME_BASE
                    for layer in self.layers:
                        assert isinstance(layer, VideoLayer)
                        layer.offer(frame)
                elif isinstance(frame, av.AudioFrame):
                    for layer in self.layers:
                        assert isinstance(layer, AudioLayer)
                        layer.offer(frame, pts)
        except MediaStreamError:
            pass

    def close(self) -> None:
        self._reader.cancel()
        for layer in self.layers:
            layer.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
