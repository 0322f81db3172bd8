"""Fan-out: the same encoded packets to every subscriber of a layer, through bounded queues.

`PacketQueue` is the pure policy; `SubscriberTrack` is the aiortc track an
RTCRtpSender's RTP loop (media.adapter.sender.LeanRtp) pulls from. A layer converts
each packet and cuts it into RTP payloads once (`SenderPacket.of`, in
media.pipeline.ladder.Layer.publish) for all its subscribers, so what a subscriber costs is
its RTP headers, SRTP and the send; what is left of the fan-out per packet and
subscriber is kept to a queue push and a pop. While the sender's loop waits for
its next packet, the sender sends that packet at once (`send_now`), from the
layer's task, and the loop is not woken.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Generic, Protocol, TypeVar

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.wire import vp8
from media.wire.rates import AUDIO_TIME_BASE, VIDEO_TIME_BASE


class Keyed(Protocol):
    @property
    def is_keyframe(self) -> bool: ...


T = TypeVar("T", bound=Keyed)


class Push(enum.Enum):
    QUEUED = "queued"
    # Dropped because the subscriber waits for a keyframe (a delta frame is useless).
    SKIPPED = "skipped"
    # The queue was full: emptied, and the subscriber now waits for a keyframe.
    OVERFLOWED = "overflowed"


class PacketQueue(Generic[T]):
    """A subscriber's backlog, bounded in packets.

    Video (`needs_keyframes`): a delta frame is useless without every frame since
    the last keyframe, so a full queue is emptied and refilled from the next
    keyframe: a slow receiver skips ahead instead of growing memory. Audio: every
    Opus packet stands alone, so the oldest is dropped.
    """

    def __init__(self, capacity: int, needs_keyframes: bool) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._items: deque[T] = deque()
        self._capacity = capacity
        self._needs_keyframes = needs_keyframes
        self.waiting_for_keyframe = needs_keyframes
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: T) -> Push:
        result = Push.QUEUED
        if len(self._items) >= self._capacity:
            if self._needs_keyframes:
                self.dropped += len(self._items)
                self._items.clear()
                self.waiting_for_keyframe = True
                result = Push.OVERFLOWED
            else:
                self._items.popleft()
                self.dropped += 1
        if self.waiting_for_keyframe:
            if not item.is_keyframe:
                self.dropped += 1
                return Push.SKIPPED if result is Push.QUEUED else result
            self.waiting_for_keyframe = False
        self._items.append(item)
        return result

    def pop(self) -> T | None:
        return self._items.popleft() if self._items else None

    def unpop(self, item: T) -> None:
        """Put back the item just popped, first in line."""
        self._items.appendleft(item)

    def restart(self) -> None:
        """Forget the backlog; video waits for a keyframe again."""
        self.dropped += len(self._items)
        self._items.clear()
        self.waiting_for_keyframe = self._needs_keyframes


class Subscriber(Protocol):
    """What a layer hands its packets to: a participant's outgoing slot
    (SubscriberTrack) or the recorder (media.recorder.recorder)."""

    def deliver(self, publisher: Publisher, packet: SenderPacket) -> None: ...

    def follow(self, publisher: Publisher | None) -> None: ...


class Publisher(Protocol):
    """What a subscriber needs from the layer it receives (media.pipeline.ladder.Layer)."""

    @property
    def name(self) -> str: ...

    def subscribe(self, track: Subscriber) -> None: ...

    def unsubscribe(self, track: Subscriber) -> None: ...

    def request_keyframe(self) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class SenderPacket:
    """An encoded packet as a sender packs it, one object for every subscriber of a layer.

    The senders' RTP loop reads `pts`, `time_base`, `chunks` and, for audio,
    `bytes(packet)` (aiortc's packers, which RED's follows, read the first two and
    the last). An `av.Packet` builds a new `Fraction` at each `time_base` read and
    copies its data at each `bytes()`: once per subscriber, about a microsecond per
    packet and classroom. The layer converts, and cuts, each packet once; the
    encoder's own packet rides along for subscribers that write it as it is (the
    recorder's muxer).
    """

    data: bytes
    pts: int | None
    time_base: Fraction | None
    is_keyframe: bool
    # `data` cut as VP8 RTP payloads carry it (media.adapter.sender.LeanRtp).
    chunks: tuple[bytes, ...]
    source: av.Packet[Any]

    @classmethod
    def of(cls, packet: av.Packet[Any]) -> SenderPacket:
        data = bytes(packet)
        time_base = packet.time_base
        # The relay's own clocks, as the very objects the senders compare with `is`
        # first: comparing two Fractions by value costs each sender about a microsecond.
        if time_base == VIDEO_TIME_BASE:
            time_base = VIDEO_TIME_BASE
        elif time_base == AUDIO_TIME_BASE:
            time_base = AUDIO_TIME_BASE
        return cls(data, packet.pts, time_base, packet.is_keyframe, vp8.chunks(data), packet)

    def __bytes__(self) -> bytes:
        return self.data


class SubscriberTrack(MediaStreamTrack):
    """One outgoing slot of one participant: hands out the packets of the layer it follows.

    Switching layer (or stage source) is make-before-break: the old layer keeps
    flowing until the new one delivers a keyframe, so the picture never freezes
    on a switch (the layers of a source share one clock, see media.pipeline.ladder).
    """

    def __init__(
        self,
        kind: str,
        queue_capacity: int,
        rerequest_after_s: float = 1.0,
        *,
        send_now: Callable[[SenderPacket], bool] | None = None,
        on_switch: Callable[[Publisher | None], None] | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self._queue: PacketQueue[SenderPacket] = PacketQueue(
            queue_capacity, needs_keyframes=(kind == "video")
        )
        # The sender's recv() waiting for a packet, if it is: deliver() wakes it.
        self._waiter: asyncio.Future[None] | None = None
        self._current: Publisher | None = None
        self._pending: Publisher | None = None
        self._rerequest_after_s = rerequest_after_s
        self.packets_out = 0
        self._last_pts: int | None = None
        # Called with the layer it sends from now on (None: off) when that changes:
        # at once for off and from off, at the new layer's keyframe otherwise.
        self.on_switch = on_switch
        # The sender's way to send a packet at once (LeanRtp.send_now): False when
        # it cannot, and the packet waits for its loop.
        self.send_now = send_now

    @property
    def layer_name(self) -> str:
        return self._current.name if self._current is not None else "off"

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    def follow(self, publisher: Publisher | None) -> None:
        """Receive `publisher` from its next keyframe on (None: go quiet now)."""
        if publisher is None:
            self._drop_pending()
            if self._current is not None:
                self._current.unsubscribe(self)
                self._current = None
                self._queue.restart()
                self._switched()
            return
        if publisher is self._current:
            self._drop_pending()
            return
        if publisher is self._pending:
            return
        if self._current is None:
            self._current = publisher
            self._queue.restart()
            publisher.subscribe(self)
            self._switched()
        else:
            self._drop_pending()
            self._pending = publisher
            publisher.subscribe(self)
        publisher.request_keyframe()

    def request_keyframe(self) -> None:
        """The receiver asked (PLI/FIR): pass it to the layer(s) it gets or awaits."""
        for publisher in (self._current, self._pending):
            if publisher is not None:
                publisher.request_keyframe()

    def _switched(self) -> None:
        if self.on_switch is not None:
            self.on_switch(self._current)

    def _drop_pending(self) -> None:
        if self._pending is not None:
            self._pending.unsubscribe(self)
            self._pending = None

    def deliver(self, publisher: Publisher, packet: SenderPacket) -> None:
        """Called by a layer for each packet it encodes."""
        if publisher is self._pending:
            if not packet.is_keyframe:
                return
            if self._current is not None:
                self._current.unsubscribe(self)
            self._current, self._pending = publisher, None
            self._switched()
        elif publisher is not self._current:
            return
        if self._queue.push(self._monotonic(packet)) is Push.OVERFLOWED:
            publisher.request_keyframe()
        if not self._queue:
            return
        waiter = self._waiter
        if self.send_now is not None and waiter is not None and not waiter.done():
            # The sender's loop waits for this very packet (its queue was empty): the
            # sender sends it from here, and the loop sleeps on. Saves a wake-up per
            # packet and classroom.
            ready = self._queue.pop()
            assert ready is not None
            if self.send_now(ready):
                self.packets_out += 1
                return
            self._queue.unpop(ready)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _monotonic(self, packet: SenderPacket) -> SenderPacket:
        """Keep this sender's RTP timestamps increasing across switches.

        The layers of a source encode the same frames with the same pts, so a switch
        can hand over a keyframe stamped like the frame just sent from the old layer;
        a receiver's jitter buffer would merge the two into one broken frame (RTP
        timestamps identify frames, RFC 3550 §5.1). A new stage source may also run a
        little behind. Such packets are copied with the next free timestamp; every
        other packet is passed on as the shared object.
        """
        pts = packet.pts
        if pts is None:
            return packet
        if self._last_pts is not None and pts <= self._last_pts:
            packet = dataclasses.replace(packet, pts=self._last_pts + 1)
        self._last_pts = packet.pts
        return packet

    # aiortc types recv() as returning av frames or packets; the RTP loop (LeanRtp)
    # reads what SenderPacket says.
    async def recv(self) -> SenderPacket:  # type: ignore[override]
        while True:
            # A stopped track's queue is empty (follow(None) restarts it).
            packet = self._queue.pop()
            if packet is not None:
                self.packets_out += 1
                return packet
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                if self._queue.waiting_for_keyframe and self._current is not None:
                    # A subscriber waiting for a keyframe asks for one when it is actually
                    # pulling (its sender runs), and again if none came within the interval.
                    self._current.request_keyframe()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._waiter, self._rerequest_after_s)
                else:
                    # The common path: no timer, no extra task per packet.
                    await self._waiter
            finally:
                self._waiter = None

    def stop(self) -> None:
        self.follow(None)
        super().stop()
        self._wake()
