"""The teacher's view of the classrooms: one picture, one tile per classroom.

Each classroom's camera is decoded by the relay anyway (it is a source that may
go on stage). The teacher sees every classroom not on stage as a small tile of
one mosaic, composed a few times a second and encoded once: the teacher's link
and the relay's CPU pay for one 960x540 stream at 5 fps, whether three
classrooms take part or thirty. Tiles keep their place while their classroom
stays, so a teacher's eye finds a school where it was.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from media.control.keyframes import KeyframeGate
from media.pipeline.encoders import VideoEncoder, VideoLayerSpec
from media.pipeline.ladder import Layer
from media.wire.rates import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE

logger = logging.getLogger(__name__)

WIDTH, HEIGHT = 960, 540
# 6 x 6 tiles of 160x90: beyond that a tile shows no one's face.
MAX_TILES = 36
FPS = 5.0
# A still classroom costs little; 36 moving ones at 5 fps stay near this ceiling.
SPEC = VideoLayerSpec(
    "high", WIDTH, HEIGHT, 300_000, max_fps=FPS, expected_bitrate=150_000,
    min_keyframe_interval_s=2.0,
)  # fmt: skip
# Where no picture is (a camera not yet started): dark grey, in limited-range YUV.
_BLANK_Y, _BLANK_UV = 40, 128


# Each classroom not on stage, in order of arrival: its latest picture, or None.
Frames = Callable[[], dict[str, av.VideoFrame | None]]


def columns_for(count: int) -> int:
    """Columns of a square-ish grid of 16:9 tiles for `count` classrooms."""
    return max(1, math.ceil(math.sqrt(min(max(count, 1), MAX_TILES))))


class Tiles:
    """Which classroom is in which tile. A classroom keeps its tile while it stays;
    a newcomer takes the first free one. Pure."""

    def __init__(self) -> None:
        self.positions: list[str | None] = []

    @property
    def columns(self) -> int:
        return columns_for(len(self.positions))

    def update(self, present: Sequence[str]) -> bool:
        """Seat `present` (in order of arrival); True if the layout changed."""
        before = list(self.positions)
        wanted = list(dict.fromkeys(present))[:MAX_TILES]
        seated = [p if p in wanted else None for p in self.positions]
        for participant in wanted:
            if participant in seated:
                continue
            if None in seated:
                seated[seated.index(None)] = participant
            else:
                seated.append(participant)
        while seated and seated[-1] is None:
            seated.pop()
        # When a smaller grid would hold everyone, close the gaps.
        if columns_for(len(wanted)) < columns_for(len(seated)):
            seated = [p for p in seated if p is not None]
        self.positions = seated
        return seated != before

    def box(self, index: int) -> tuple[int, int, int, int]:
        """Tile `index` on the canvas: x, y, width, height (even numbers)."""
        cols = self.columns
        width = WIDTH // cols // 2 * 2
        height = width * 9 // 16 // 2 * 2
        rows = math.ceil(len(self.positions) / cols) if self.positions else 1
        top = (HEIGHT - rows * height) // 2 // 2 * 2
        return (index % cols) * width, top + (index // cols) * height, width, height


def _plane(frame: av.VideoFrame, index: int) -> np.ndarray[Any, Any]:
    plane = frame.planes[index]
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


class Canvas:
    """Composes decoded frames into the mosaic (in a worker thread).

    Scales each classroom's frame with its own reformatter: a decoded frame is
    shared with that camera's encoders, and PyAV's per-frame scaler must never
    be used from two threads (media.pipeline.encoders).
    """

    def __init__(self) -> None:
        self._scalers: dict[str, VideoReformatter] = {}

    def compose(self, tiles: Tiles, frames: dict[str, av.VideoFrame]) -> av.VideoFrame:
        y = np.full((HEIGHT, WIDTH), 16, np.uint8)
        u = np.full((HEIGHT // 2, WIDTH // 2), 128, np.uint8)
        v = np.full((HEIGHT // 2, WIDTH // 2), 128, np.uint8)
        for index, participant in enumerate(tiles.positions):
            if participant is None:
                continue
            x, top, width, height = tiles.box(index)
            frame = frames.get(participant)
            if frame is None:
                y[top + 2 : top + height - 2, x + 2 : x + width - 2] = _BLANK_Y
                continue
            fit_w, fit_h = _fit(frame.width, frame.height, width - 4, height - 4)
            scaler = self._scalers.setdefault(participant, VideoReformatter())
            tile = scaler.reformat(frame, width=fit_w, height=fit_h, format="yuv420p")
            tx = x + (width - fit_w) // 2 // 2 * 2
            ty = top + (height - fit_h) // 2 // 2 * 2
            y[ty : ty + fit_h, tx : tx + fit_w] = _plane(tile, 0)
            u[ty // 2 : (ty + fit_h) // 2, tx // 2 : (tx + fit_w) // 2] = _plane(tile, 1)
            v[ty // 2 : (ty + fit_h) // 2, tx // 2 : (tx + fit_w) // 2] = _plane(tile, 2)
        for gone in set(self._scalers) - set(frames):
            del self._scalers[gone]
        stacked = np.concatenate([y, u.reshape(-1, WIDTH), v.reshape(-1, WIDTH)])
        return av.VideoFrame.from_ndarray(stacked, format="yuv420p")


def _fit(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    scale = min(box_w / width, box_h / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


class MosaicLayer(Layer):
    """The mosaic as a layer subscribers follow like any other; it composes and
    encodes only while someone receives it."""

    def __init__(
        self,
        frames: Frames,
        *,
        clock: Callable[[], float],
        executor: Executor,
    ) -> None:
        super().__init__("high", "video", KeyframeGate(SPEC.min_keyframe_interval_s), clock)
        self.spec = SPEC
        self.tiles = Tiles()
        self._frames = frames
        self._canvas = Canvas()
        self._encoder = VideoEncoder(SPEC)
        self._executor = executor
        self._worker: asyncio.Task[None] | None = None
        # A divisor of the frame rate: the relay's first saving when it runs late
        # (media.control.overload).
        self.slowdown = 1

    def subscribe(self, track: Any) -> None:
        super().subscribe(track)
        if self._worker is None and not self.closed:
            self._worker = asyncio.create_task(self._run(), name="classroom-mosaic")

    def present(self) -> dict[str, Any]:
        """Each classroom to seat: its latest picture, or None while it sends none."""
        return self._frames()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            started = self._clock()
            # The seats follow the lesson even while no one receives the picture (a
            # teacher whose link carries only the stage): the layout stays true.
            present = self.present()
            self.tiles.update(list(present))
            if self.active:
                frames = {p: f for p, f in present.items() if f is not None}
                force = self._gate.should_force(started)
                pts = round(started * VIDEO_CLOCK_RATE)
                try:
                    packets = await loop.run_in_executor(
                        self._executor, self._encode, frames, force, pts
                    )
                except Exception:
                    # One bad picture must not end the mosaic for the rest of the lesson.
                    logger.exception("classroom mosaic: composing or encoding failed")
                    packets = []
                if not self.closed:
                    self.publish(packets)
            await asyncio.sleep(max(0.0, self.slowdown / FPS - (self._clock() - started)))

    def _encode(
        self, frames: dict[str, av.VideoFrame], force: bool, pts: int
    ) -> list[av.Packet[Any]]:
        picture = self._canvas.compose(self.tiles, frames)
        picture.pts = pts
        picture.time_base = VIDEO_TIME_BASE
        return self._encoder.encode(picture, force)

    def close(self) -> None:
        super().close()
        if self._worker is not None:
            self._worker.cancel()


class Mosaic:
    """Looks like a media.pipeline.ladder.Ladder to the relay: one layer, always "live"
    while some classroom has a camera."""

    kind = "video"

    def __init__(self, mosaic: MosaicLayer) -> None:
        self.mosaic = mosaic
        self.layers: tuple[Layer, ...] = (mosaic,)

    def layer(self, name: str) -> Layer:
        return self.mosaic

    def live(self, now: float, within_s: float = 5.0) -> bool:
        return bool(self.mosaic.present())

    def close(self) -> None:
        self.mosaic.close()
