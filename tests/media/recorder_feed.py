"""A lesson's sources for the Recorder without a relay: fake top layers that publish real
VP8 and Opus packets, on a relay clock moved by hand (no sleeping for lesson time).

    feed = LessonFeed()
    recorder = Recorder(directory, clock=feed.clock, meta={...})
    recorder.update(feed.sources(slides=True))
    feed.play(6, slides=True)  # 6 s of lesson in a fraction of a second
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np

from media.pipeline.encoders import AudioEncoder, VideoEncoder, VideoLayerSpec
from media.pipeline.fanout import SenderPacket, Subscriber
from media.recorder.recorder import Sources
from media.wire.rates import AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE

FPS = 15
# A keyframe every 2 s, as the relay's layers send them, and whenever one is asked for.
KEYFRAME_EVERY = 30


class FakeLayer:
    """A layer (media.pipeline.fanout.Publisher): what it publishes goes to its
    subscribers and is kept in `published`; a keyframe request is honoured by the
    next frame."""

    def __init__(self, name: str = "high") -> None:
        self.name = name
        self.subscribers: set[Subscriber] = set()
        self.published: list[av.Packet[Any]] = []
        self.keyframe_requested = False

    def subscribe(self, track: Subscriber) -> None:
        self.subscribers.add(track)

    def unsubscribe(self, track: Subscriber) -> None:
        self.subscribers.discard(track)

    def request_keyframe(self) -> None:
        self.keyframe_requested = True

    def publish(self, packet: av.Packet[Any]) -> None:
        self.published.append(packet)
        # As a layer does: converted once, the same object for every subscriber.
        shared = SenderPacket.of(packet)
        for subscriber in list(self.subscribers):
            subscriber.deliver(self, shared)


class Picture:
    """A camera or a screen: moving noise, encoded to VP8 at `width` x `height`."""

    def __init__(self, width: int, height: int, seed: int) -> None:
        self.layer = FakeLayer()
        self.size = (width, height)
        self._encoder = VideoEncoder(VideoLayerSpec("high", width, height, 150_000))
        self._image = np.random.default_rng(seed).integers(0, 255, (height, width, 3), np.uint8)
        self._frames = 0

    def show(self, t: float) -> None:
        image = np.roll(self._image, self._frames * 4, axis=1)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = round(t * VIDEO_CLOCK_RATE)
        key = self._frames % KEYFRAME_EVERY == 0 or self.layer.keyframe_requested
        self.layer.keyframe_requested = False
        for packet in self._encoder.encode(frame, force_keyframe=key):
            self.layer.publish(packet)
        self._frames += 1


class Sound:
    """A microphone: a tone, encoded to Opus (40 ms packets)."""

    TONE = (np.sin(np.arange(AUDIO_CLOCK_RATE // FPS) / 10) * 8000).astype(np.int16)

    def __init__(self) -> None:
        self.layer = FakeLayer()
        self._encoder = AudioEncoder()

    def say(self, t: float) -> None:
        """One video frame's worth of sound, starting at `t`."""
        chunk = av.AudioFrame.from_ndarray(self.TONE.reshape(1, -1), format="s16", layout="mono")
        chunk.sample_rate = AUDIO_CLOCK_RATE
        for packet in self._encoder.encode(chunk, round(t * AUDIO_CLOCK_RATE)):
            self.layer.publish(packet)


class Classroom:
    def __init__(self, seed: int) -> None:
        self.camera = Picture(160, 90, seed)
        self.microphone = Sound()


class LessonFeed:
    """The teacher's camera (320x180), microphone and screen (256x144), and each
    classroom's camera (160x90) and microphone, at 15 fps on the clock `t`."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.camera = Picture(320, 180, seed=1)
        self.microphone = Sound()
        self.screen = Picture(256, 144, seed=2)
        self.classrooms: dict[str, Classroom] = {}

    def clock(self) -> float:
        return self.t

    def classroom(self, classroom_id: str) -> Classroom:
        if classroom_id not in self.classrooms:
            self.classrooms[classroom_id] = Classroom(seed=10 + len(self.classrooms))
        return self.classrooms[classroom_id]

    def sources(self, *, slides: bool = False, stage: str | None = None) -> Sources:
        """The top layers as the relay routes them: the teacher's, the screen if
        shared, the classroom on stage if any."""
        room = None if stage is None else self.classroom(stage)
        return Sources(
            camera=self.camera.layer,
            audio=self.microphone.layer,
            slides=self.screen.layer if slides else None,
            stage_video=None if room is None else room.camera.layer,
            stage_audio=None if room is None else room.microphone.layer,
            stage_id=stage,
        )

    def play(self, seconds: float, *, slides: bool = False, stage: str | None = None) -> None:
        """`seconds` of the teacher (with the screen if `slides`, and the classroom
        `stage`), the clock moving along; packets are published as they are encoded."""
        room = None if stage is None else self.classroom(stage)
        for _ in range(round(seconds * FPS)):
            self.camera.show(self.t)
            self.microphone.say(self.t)
            if slides:
                self.screen.show(self.t)
            if room is not None:
                room.camera.show(self.t)
                room.microphone.say(self.t)
            self.t += 1 / FPS
