"""An edge's relayed layer: frames passed on as they came, keyframe requests upstream."""

from __future__ import annotations

from media.pipeline.fanout import Publisher, SenderPacket
from media.pipeline.relayed import RelayedLayer, RelayedSource

VP8_KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xB4, 0x00]) + b"key"
VP8_DELTA = bytes([0x31, 0x02, 0x00]) + b"delta"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Collect:
    def __init__(self) -> None:
        self.packets: list[SenderPacket] = []

    def deliver(self, publisher: Publisher, packet: SenderPacket) -> None:
        self.packets.append(packet)

    def follow(self, publisher: Publisher | None) -> None:
        pass


def test_frames_reach_subscribers_as_they_came_with_their_keyframe_marks() -> None:
    clock = Clock()
    layer = RelayedLayer("high", "video", clock, lambda: None, 1.0)
    seen = Collect()
    layer.subscribe(seen)
    layer.receive(VP8_KEY, 0)
    clock.now += 1 / 15
    layer.receive(VP8_DELTA, 6000)
    assert [p.data for p in seen.packets] == [VP8_KEY, VP8_DELTA]
    assert [p.is_keyframe for p in seen.packets] == [True, False]
    # Anchored on this relay's clock at the first frame, then the stream's own steps.
    first = seen.packets[0].pts
    assert first == round(100.0 * 90_000)
    assert seen.packets[1].pts == first + 6000
    assert layer.keyframes == 1 and layer.frames_encoded == 2


def test_audio_packets_all_stand_alone() -> None:
    layer = RelayedLayer("high", "audio", Clock(), lambda: None, 1.0)
    seen = Collect()
    layer.subscribe(seen)
    layer.receive(b"\x78opus", 960)
    assert seen.packets[0].is_keyframe


def test_keyframe_requests_go_upstream_at_most_once_an_interval() -> None:
    clock = Clock()
    asked: list[float] = []
    layer = RelayedLayer("high", "video", clock, lambda: asked.append(clock.now), 1.0)
    for step in range(10):  # a storm of PLIs over half a second
        clock.now = 100.0 + step * 0.05
        layer.request_keyframe()
    clock.now = 101.2
    layer.request_keyframe()
    assert asked == [100.0, 101.2]


def test_a_source_is_live_while_a_layer_receives() -> None:
    clock = Clock()
    layers = [RelayedLayer(n, "video", clock, lambda: None, 1.0) for n in ("high", "low")]
    source = RelayedSource("video", layers)
    assert not source.live(clock.now)
    layers[1].receive(VP8_KEY, 0)
    assert source.live(clock.now)
    assert not source.live(clock.now + 6)
    # A layer the source lacks falls to the nearest one below.
    assert source.layer("mid") is layers[1]
    assert source.layer("high") is layers[0]
