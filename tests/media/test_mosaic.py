"""The teacher's view of the classrooms: tiles that keep their place, one picture."""

from __future__ import annotations

import asyncio

import av
import numpy as np
import pytest

from classroom.roles import Role
from media.pipeline.mosaic import HEIGHT, MAX_TILES, WIDTH, Canvas, Tiles, columns_for
from media.relay.relay import Relay
from media.slots import Slot

from .conftest import LESSON, Join


@pytest.mark.parametrize(
    ("count", "columns"),
    [(0, 1), (1, 1), (2, 2), (4, 2), (5, 3), (9, 3), (10, 4), (36, 6), (50, 6)],
)
def test_columns(count: int, columns: int) -> None:
    assert columns_for(count) == columns


@pytest.mark.parametrize(
    ("steps", "positions"),
    [
        ([["a", "b", "c"]], ["a", "b", "c"]),
        # A classroom that leaves frees its tile; the others stay where they were.
        ([["a", "b", "c"], ["a", "c"]], ["a", None, "c"]),
        # A newcomer takes the first free tile.
        ([["a", "b", "c"], ["a", "c"], ["a", "c", "d"]], ["a", "d", "c"]),
        # The last tile's leaving shrinks the list.
        ([["a", "b", "c"], ["a", "b"]], ["a", "b"]),
        # When a smaller grid holds everyone, the gaps close.
        ([["a", "b", "c", "d", "e"], ["a", "e"]], ["a", "e"]),
        ([[f"r{i}" for i in range(40)]], [f"r{i}" for i in range(MAX_TILES)]),
        ([["a", "a", "b"]], ["a", "b"]),
    ],
)
def test_tiles_keep_their_place(steps: list[list[str]], positions: list[str | None]) -> None:
    tiles = Tiles()
    for present in steps:
        tiles.update(present)
    assert tiles.positions == positions


def test_an_unchanged_layout_is_not_a_change() -> None:
    tiles = Tiles()
    assert tiles.update(["a", "b"])
    assert not tiles.update(["a", "b"])


@pytest.mark.parametrize("count", [1, 2, 4, 7, 16, 36])
def test_tiles_fit_the_canvas_without_overlap(count: int) -> None:
    tiles = Tiles()
    tiles.update([f"r{i}" for i in range(count)])
    boxes = [tiles.box(i) for i in range(count)]
    canvas = np.zeros((HEIGHT, WIDTH), int)
    for x, y, w, h in boxes:
        assert x >= 0 and y >= 0 and x + w <= WIDTH and y + h <= HEIGHT
        assert w % 2 == 0 and h % 2 == 0 and abs(w / h - 16 / 9) < 0.05
        canvas[y : y + h, x : x + w] += 1
    assert canvas.max() == 1


def solid(luma: int, width: int = 320, height: int = 240) -> av.VideoFrame:
    planes = np.concatenate(
        [
            np.full((height, width), luma, np.uint8),
            np.full((height // 2, width), 128, np.uint8),
        ]
    )
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


def tile_luma(picture: av.VideoFrame, tiles: Tiles, index: int) -> float:
    x, y, w, h = tiles.box(index)
    luma = picture.to_ndarray()[:HEIGHT]
    # The middle of the tile: a 4:3 picture is centred in a 16:9 tile.
    return float(luma[y + h // 4 : y + 3 * h // 4, x + w // 3 : x + 2 * w // 3].mean())


def test_each_classroom_lands_in_its_tile() -> None:
    tiles = Tiles()
    tiles.update(["a", "b", "c"])
    picture = Canvas().compose(tiles, {"a": solid(200), "b": solid(100, 640, 360)})
    assert (picture.width, picture.height) == (WIDTH, HEIGHT)
    assert tile_luma(picture, tiles, 0) == pytest.approx(200, abs=3)
    assert tile_luma(picture, tiles, 1) == pytest.approx(100, abs=3)
    # No picture yet from "c": a dark tile, not the background.
    assert tile_luma(picture, tiles, 2) == pytest.approx(40, abs=3)
    assert tile_luma(picture, tiles, 3) == pytest.approx(16, abs=3)


pytestmark_relay = pytest.mark.timeout(40)


@pytestmark_relay
async def test_the_teacher_sees_every_classroom_not_on_stage(relay: Relay, join: Join) -> None:
    teacher = await join("teacher", Role.TEACHER)
    await join("room-a", Role.CLASSROOM)
    await join("room-b", Role.CLASSROOM)

    seen = await teacher.wait_frames(Slot.CLASSROOMS, 10, timeout=15)
    assert seen.sizes == {(WIDTH, HEIGHT)}
    mosaic = relay.mosaic(LESSON)
    assert mosaic is not None
    for _ in range(50):
        report = relay.link_report(LESSON, "teacher")
        if report.previews == ("room-a", "room-b"):
            break
        await asyncio.sleep(0.1)
    assert report.previews == ("room-a", "room-b") and report.preview_columns == 2
    # Both tiles carry a classroom's moving picture (a bright gradient), not blank.
    frames = seen.frames
    await teacher.wait_frames(Slot.CLASSROOMS, frames + 5, timeout=5)
    assert seen.last is not None
    for index in (0, 1):
        assert tile_luma(seen.last, mosaic.mosaic.tiles, index) > 80

    # The classroom on stage leaves the mosaic (the teacher sees it on the stage).
    await relay.set_stage(LESSON, "room-a")
    for _ in range(50):
        if mosaic.mosaic.tiles.positions == ["room-b"]:
            break
        await asyncio.sleep(0.1)
    assert mosaic.mosaic.tiles.positions == ["room-b"]
    await teacher.wait_frames(Slot.STAGE_VIDEO, 5, timeout=10)


@pytestmark_relay
async def test_no_mosaic_is_encoded_for_no_one(relay: Relay, join: Join) -> None:
    await join("room-a", Role.CLASSROOM)
    await join("room-b", Role.CLASSROOM)
    await asyncio.sleep(1)
    assert relay.mosaic(LESSON) is None


class _Receiver:
    """Enough of a SubscriberTrack for a layer to hand packets to."""

    def __init__(self) -> None:
        self.packets = 0

    def deliver(self, layer: object, packet: object) -> None:
        self.packets += 1


async def test_the_seats_follow_the_lesson_while_no_one_receives() -> None:
    """A teacher whose link carries only the stage still gets a true layout."""
    from concurrent.futures import ThreadPoolExecutor

    from media.pipeline.mosaic import MosaicLayer

    picture = av.VideoFrame.from_ndarray(np.zeros((180, 320, 3), np.uint8), format="rgb24")
    present: dict[str, av.VideoFrame | None] = {"room-a": picture, "room-b": picture}
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1) as executor:
        layer = MosaicLayer(lambda: dict(present), clock=loop.time, executor=executor)
        receiver = _Receiver()
        layer.subscribe(receiver)
        for _ in range(50):
            if layer.tiles.positions == ["room-a", "room-b"] and receiver.packets:
                break
            await asyncio.sleep(0.05)
        assert layer.tiles.positions == ["room-a", "room-b"] and receiver.packets
        layer.unsubscribe(receiver)
        encoded = layer.frames_encoded
        del present["room-a"]  # on stage
        for _ in range(50):
            if layer.tiles.positions == ["room-b"]:
                break
            await asyncio.sleep(0.05)
        assert layer.tiles.positions == ["room-b"]
        assert layer.frames_encoded == encoded  # nothing composed for no one
        layer.close()
