"""The relay's pure parts, with a hand-advanced clock and no network."""

from __future__ import annotations

import asyncio
import fractions
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from classroom.roles import Role
from media.adapter.offer import check_offer
from media.control.keyframes import KeyframeGate
from media.gateway import MediaError
from media.pipeline.encoders import VideoLayerSpec
from media.pipeline.fanout import PacketQueue, Push, SenderPacket, SubscriberTrack
from media.pipeline.ladder import Layer, SourceClock
from media.wire.sdp import announce


@dataclass
class P:
    is_keyframe: bool
    n: int = 0


def test_a_storm_of_requests_yields_one_keyframe_per_interval() -> None:
    gate = KeyframeGate(min_interval_s=1.0)
    forced_at = []
    now = 10.0
    for _ in range(150):  # 15 fps for 10 s, a request before every frame
        gate.request()
        if gate.should_force(now):
            forced_at.append(now)
            gate.on_keyframe(now)
        now += 1 / 15
    assert len(forced_at) == 10
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(forced_at))


def test_a_natural_keyframe_answers_pending_requests() -> None:
    gate = KeyframeGate(min_interval_s=1.0)
    assert not gate.should_force(0.0)
    gate.request()
    gate.on_keyframe(0.5)  # the encoder's first frame, say
    assert not gate.pending
    gate.request()
    assert not gate.should_force(1.2)
    assert gate.should_force(1.5)


def test_a_full_video_queue_skips_to_the_next_keyframe() -> None:
    queue: PacketQueue[P] = PacketQueue(capacity=3, needs_keyframes=True)
    assert queue.push(P(False)) is Push.SKIPPED  # a new subscriber waits for a keyframe
    assert queue.push(P(True, 1)) is Push.QUEUED
    assert queue.push(P(False, 2)) is Push.QUEUED
    assert queue.push(P(False, 3)) is Push.QUEUED
    assert queue.push(P(False, 4)) is Push.OVERFLOWED
    assert len(queue) == 0 and queue.waiting_for_keyframe
    for _ in range(1000):  # a stalled receiver: memory stays flat
        queue.push(P(False))
    assert len(queue) == 0
    assert queue.push(P(True, 5)) is Push.QUEUED
    popped = queue.pop()
    assert popped is not None and popped.n == 5


def test_a_full_audio_queue_drops_the_oldest() -> None:
    queue: PacketQueue[P] = PacketQueue(capacity=3, needs_keyframes=False)
    for n in range(10):
        queue.push(P(True, n))
    assert [queue.pop().n for _ in range(3)] == [7, 8, 9]  # type: ignore[union-attr]
    assert queue.dropped == 7


class FakeLayer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.subscribers: set[SubscriberTrack] = set()
        self.requests = 0

    def subscribe(self, track: SubscriberTrack) -> None:
        self.subscribers.add(track)

    def unsubscribe(self, track: SubscriberTrack) -> None:
        self.subscribers.discard(track)

    def request_keyframe(self) -> None:
        self.requests += 1


def encoded(pts: int, key: bool) -> av.Packet:
    p = av.Packet(b"x" * 10)
    p.pts = pts
    p.time_base = fractions.Fraction(1, 90000)
    p.is_keyframe = key
    return p


def packet(pts: int, key: bool) -> SenderPacket:
    """A packet as a layer hands it to its subscribers."""
    return SenderPacket.of(encoded(pts, key))


async def test_a_layer_switch_is_made_before_it_is_broken() -> None:
    track = SubscriberTrack("video", queue_capacity=10)
    high, low = FakeLayer("high"), FakeLayer("low")
    track.follow(high)
    assert high.requests == 1
    track.deliver(high, packet(0, True))
    track.deliver(high, packet(6000, False))
    track.follow(low)
    assert low.requests == 1 and track.layer_name == "high"
    track.deliver(low, packet(12000, False))  # no keyframe yet: high keeps flowing
    track.deliver(high, packet(12000, False))
    track.deliver(low, packet(12000, True))  # same frame as high's, now a keyframe
    assert track.layer_name == "low" and not high.subscribers
    track.deliver(high, packet(18000, False))  # stale: ignored
    out = [await asyncio.wait_for(track.recv(), 1) for _ in range(4)]
    assert [p.pts for p in out] == [0, 6000, 12000, 12001]  # timestamps keep increasing
    assert out[3].is_keyframe
    track.stop()


async def test_subscribers_of_a_layer_share_one_packet() -> None:
    """The layer converts and cuts each packet once, for all its subscribers."""
    tracks = [SubscriberTrack("audio", queue_capacity=5) for _ in range(3)]
    layer = Layer("high", "audio", KeyframeGate(1.0), clock=lambda: 0.0)
    for track in tracks:
        track.follow(layer)
    sent = encoded(960, True)
    layer.publish([sent])
    out = [await asyncio.wait_for(track.recv(), 1) for track in tracks]
    assert out[0] is out[1] is out[2]
    assert out[0].source is sent
    assert bytes(out[0]) == bytes(sent) and out[0].pts == 960
    for track in tracks:
        track.stop()
    with pytest.raises(MediaStreamError):
        await tracks[0].recv()


async def test_a_packet_goes_at_once_while_the_senders_loop_waits_for_it() -> None:
    track = SubscriberTrack("video", queue_capacity=10)
    layer = FakeLayer("high")
    track.follow(layer)
    accept = True
    direct: list[int | None] = []

    def send_now(sent: object) -> bool:
        direct.append(getattr(sent, "pts", None))
        return accept

    track.send_now = send_now
    # The loop is busy (not waiting in recv): packets queue for it.
    track.deliver(layer, packet(0, True))
    assert direct == [] and track.queued == 1
    assert (await asyncio.wait_for(track.recv(), 1)).pts == 0
    # The loop waits: the next packet goes at once and the loop is not woken.
    waiting = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    track.deliver(layer, packet(6000, False))
    await asyncio.sleep(0)
    assert direct == [6000] and track.queued == 0 and not waiting.done()
    assert track.packets_out == 2
    # The sender cannot send it now (paced): it is the loop's, first in line.
    accept = False
    track.deliver(layer, packet(12000, False))
    assert direct == [6000, 12000]
    assert (await asyncio.wait_for(waiting, 1)).pts == 12000
    track.stop()


def test_layers_never_upscale_and_keep_the_aspect() -> None:
    high = VideoLayerSpec("high", 1280, 720, 1_200_000)
    assert high.fit(640, 360) == (640, 360)
    assert high.fit(1920, 1080) == (1280, 720)
    assert high.fit(640, 480) == (640, 480)
    assert VideoLayerSpec("low", 320, 180, 150_000).fit(1280, 720) == (320, 180)
    assert high.bitrate_for(1280, 720) == 1_200_000
    assert high.bitrate_for(640, 360) == 600_000


def test_the_source_clock_unwraps_rtp_timestamps() -> None:
    clock = SourceClock(90000, clock=lambda: 100.0)
    first = clock(2**32 - 3000)
    assert first == 9_000_000
    assert clock(3000) == first + 6000  # across the 32-bit wrap
    assert clock(0) == first + 3000  # a late (reordered) frame stays before


def test_announce_rewrites_host_candidates_only() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "c=IN IP4 10.0.0.5",
            "a=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host",
            "a=candidate:2 1 udp 1694498815 198.51.100.7 40000 typ srflx raddr 10.0.0.5 rport 40000",
        ]
    )
    out = announce(sdp, "203.0.113.9").split("\r\n")
    assert out[1] == "c=IN IP4 203.0.113.9"
    assert out[2] == "a=candidate:1 1 udp 2130706431 203.0.113.9 40000 typ host"
    assert out[3].split(" ")[4] == "198.51.100.7"


@pytest.mark.parametrize(
    ("sdp", "message"),
    [
        ("", "needs 5 media sections"),
        ("v=0\r\nm=video nonsense\r\n", "not a valid SDP"),
    ],
)
def test_unusable_offers_are_refused_with_a_readable_message(sdp: str, message: str) -> None:
    with pytest.raises(MediaError, match=message):
        check_offer(sdp, Role.OBSERVER)


async def test_an_offer_with_kinds_in_the_wrong_order_is_refused() -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection

    from media.adapter.hooks import gather_on

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for kind in ("audio", "video", "video", "video", "audio"):  # camera and mic swapped
        pc.addTransceiver(kind, direction="recvonly")
    with gather_on(("127.0.0.1",)):
        await pc.setLocalDescription(await pc.createOffer())
    try:
        with pytest.raises(MediaError, match=r"section 1 \(teacher_camera\) must be video"):
            check_offer(pc.localDescription.sdp, Role.OBSERVER)
    finally:
        await pc.close()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # A section whose a=mid lost its value got no transport in aiortc, which then
        # crashed on the answer and on closing (found by scripts/fuzz_ws.py).
        (lambda sdp: sdp.replace("a=mid:1\r\n", "a=mid:\r\n", 1), "its own a=mid"),
        (lambda sdp: sdp.replace("a=mid:1\r\n", "a=mid:0\r\n", 1), "its own a=mid"),
        (lambda sdp: sdp.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0", 1), "one BUNDLE group"),
    ],
)
async def test_an_offer_that_cannot_be_bundled_whole_is_refused(
    edit: Callable[[str], str], message: str
) -> None:
    from media.synthetic import SyntheticParticipant

    client = SyntheticParticipant(Role.CLASSROOM)
    try:
        offer = await client.offer()
    finally:
        await client.close()
    check_offer(offer, Role.CLASSROOM)  # as made, it is fine
    with pytest.raises(MediaError, match=message):
        check_offer(edit(offer), Role.CLASSROOM)


async def test_frames_the_encoder_had_not_taken_are_counted_as_skipped() -> None:
    # A relay short of CPU: frames come faster than the layer's encoder takes them.
    # Each one replaced before it was encoded is counted (Ladder.summary logs it).
    from concurrent.futures import ThreadPoolExecutor

    from media.pipeline.ladder import VideoLayer

    with ThreadPoolExecutor(1) as executor:
        layer = VideoLayer(
            VideoLayerSpec("low", 320, 180, 50_000), KeyframeGate(0.0), lambda: 0.0, executor
        )
        track = SubscriberTrack("video", 8)
        track.follow(layer)
        for i in range(3):  # no await between: the encoder's task has not run yet
            frame = av.VideoFrame(320, 180, "yuv420p")
            frame.pts = i * 6000
            frame.time_base = fractions.Fraction(1, 90000)
            layer.offer(frame)
        assert layer.frames_skipped == 2
        packet = await asyncio.wait_for(track.recv(), 5)
        assert packet.pts == 12000 and layer.frames_encoded == 1
        layer.close()
