"""A lesson source an edge relay receives already encoded, one stream per layer.

The origin's ladder encoded each layer once (media.pipeline.ladder); the edge gets
every layer as its own stream (media.relay.feed) and hands each frame as it is to
the classrooms that follow that layer, through the same fan-out the origin uses
(`Layer.publish` -> `SubscriberTrack.deliver`). Nothing is decoded or encoded
here. A classroom that needs a keyframe asks the layer, and the layer asks the
origin for one (PLI upstream), at most once per interval: the origin's own gate
then merges the requests of its edges and classrooms into one keyframe. A layer
tells when it gains its first subscriber or loses its last (`on_demand`), so that
the origin sends only the layers some classroom behind the edge follows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import av

from media.control.keyframes import KeyframeGate
from media.pipeline.encoders import VideoLayerSpec
from media.pipeline.fanout import Subscriber
from media.pipeline.ladder import Layer, SourceClock, nearest_layer
from media.wire import vp8
from media.wire.rates import AUDIO_CLOCK_RATE, AUDIO_TIME_BASE, VIDEO_CLOCK_RATE, VIDEO_TIME_BASE

Clock = Callable[[], float]


class RelayedLayer(Layer):
    """One layer of an origin's source, received encoded and published as it came."""

    def __init__(
        self,
        name: str,
        kind: str,
        clock: Clock,
        ask_upstream: Callable[[], None],
        keyframe_interval_s: float,
        spec: VideoLayerSpec | None = None,
    ) -> None:
        super().__init__(name, kind, KeyframeGate(keyframe_interval_s), clock)
        # What the origin encodes it to (media.relay.sending.layer_costs reads it).
        self.spec = spec
        self._ask_upstream = ask_upstream
        self._interval_s = keyframe_interval_s
        self._asked_at: float | None = None
        video = kind == "video"
        # The origin's stream starts its timestamps anywhere; anchored to this relay's
        # clock at its first frame, as a ladder's source is, so that the layers of a
        # source keep one timeline to within their arrival jitter.
        self._timeline = SourceClock(VIDEO_CLOCK_RATE if video else AUDIO_CLOCK_RATE, clock)
        self._time_base = VIDEO_TIME_BASE if video else AUDIO_TIME_BASE
        self.last_frame_at: float | None = None
        # Called when the layer gains its first subscriber or loses its last: the edge
        # asks the origin only for the layers its classrooms follow (media.relay.upstream).
        self.on_demand: Callable[[], None] | None = None

    def subscribe(self, track: Subscriber) -> None:
        was = self.active
        super().subscribe(track)
        if self.active != was and self.on_demand is not None:
            self.on_demand()

    def unsubscribe(self, track: Subscriber) -> None:
        was = self.active
        super().unsubscribe(track)
        if self.active != was and self.on_demand is not None:
            self.on_demand()

    def request_keyframe(self) -> None:
        if self.kind != "video":
            return
        now = self._clock()
        if self._asked_at is None or now - self._asked_at >= self._interval_s:
            self._asked_at = now
            self._ask_upstream()

    def receive(self, frame: bytes, timestamp: int) -> None:
        """A frame as the origin encoded it (the receiver's reassembled payload)."""
        if self.closed or not frame:
            return
        self.last_frame_at = self._clock()
        packet = av.Packet(frame)
        packet.pts = self._timeline(timestamp)
        packet.time_base = self._time_base
        packet.is_keyframe = self.kind == "audio" or vp8.is_keyframe(frame)
        self.publish([packet])


class RelayedSource:
    """The layers of one lesson slot as an edge receives them, highest first: what
    routing and the allocator read of a `Ladder` (`layers`, `layer`, `live`)."""

    def __init__(self, kind: str, layers: Sequence[RelayedLayer]) -> None:
        if not layers:
            raise ValueError("a relayed source needs at least one layer")
        self.kind = kind
        self.layers: tuple[RelayedLayer, ...] = tuple(layers)

    def layer(self, name: str) -> Layer:
        return nearest_layer(self.layers, name)

    def live(self, now: float, within_s: float = 5.0) -> bool:
        """Whether the origin sends this source now (a screen share not started: no)."""
        times = [layer.last_frame_at for layer in self.layers if layer.last_frame_at is not None]
        return bool(times) and now - max(times) <= within_s

    def close(self) -> None:
        for layer in self.layers:
            layer.close()
