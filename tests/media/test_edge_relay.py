"""An edge relay pulling a lesson from the origin, both real relays in one process.

The teacher publishes to the origin; the edge pulls every layer over one peer
connection (media.relay.upstream) and its classroom receives the teacher's camera
and microphone from the edge, not from the origin, without the edge encoding.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from classroom.roles import Role
from media.gateway import MediaError
from media.relay.feed import FEED, fed_slots, layers_of
from media.relay.relay import Relay
from media.relay.uplink import Uplink
from media.relay.upstream import Upstream
from media.settings import RelaySettings
from media.slots import Slot
from media.synthetic import MovingPicture, SyntheticParticipant

from .conftest import LESSON

pytestmark = pytest.mark.timeout(60)


def _settings() -> RelaySettings:
    return RelaySettings(host_addresses=("127.0.0.1",), encoder_threads=2, adaptive=False)


@pytest.fixture
async def edge() -> AsyncIterator[Relay]:
    relay = Relay(_settings())
    yield relay
    await relay.close()


async def _pull(origin: Relay, edge: Relay, edge_id: str = "county-a") -> Upstream:
    upstream = Upstream(LESSON, _settings(), asyncio.get_running_loop().time)
    await upstream.accept(await origin.negotiate_feed(LESSON, edge_id, await upstream.offer()))
    # What the edge link's `want` carries (signaling.edge), handed over directly.
    upstream.on_wanted = lambda lines: origin.want_feed(LESSON, edge_id, lines)
    edge.set_upstream(LESSON, upstream.sources)
    return upstream


async def _classroom(edge: Relay, participant_id: str) -> SyntheticParticipant:
    room = SyntheticParticipant(Role.CLASSROOM, send_video=lambda: MovingPicture(320, 180, 15))
    await room.accept(
        await edge.negotiate(LESSON, participant_id, Role.CLASSROOM, await room.offer())
    )
    return room


def test_the_feed_carries_every_layer_of_every_lesson_slot() -> None:
    assert fed_slots() == (
        Slot.TEACHER_CAMERA, Slot.TEACHER_AUDIO, Slot.SLIDES, Slot.STAGE_VIDEO, Slot.STAGE_AUDIO,
    )  # fmt: skip
    assert layers_of(Slot.TEACHER_CAMERA) == ("high", "mid", "low", "min")
    assert layers_of(Slot.SLIDES) == ("high", "low")
    assert layers_of(Slot.TEACHER_AUDIO) == ("high",)
    assert len(FEED) == 12
    # An unmeasured layer is costed by what the origin encodes it to.
    specs = {(line.slot, line.layer): line.layer_spec for line in FEED}
    mid = specs[(Slot.TEACHER_CAMERA, "mid")]
    assert mid is not None and mid.bitrate == 300_000
    slides = specs[(Slot.SLIDES, "low")]
    assert slides is not None and slides.max_fps == 2
    assert specs[(Slot.TEACHER_AUDIO, "high")] is None


async def test_a_classroom_of_the_edge_gets_the_teacher_from_the_edge(
    relay: Relay, edge: Relay
) -> None:
    origin = relay
    teacher = SyntheticParticipant(Role.TEACHER)
    rooms: list[SyntheticParticipant] = []
    upstream: Upstream | None = None
    try:
        await teacher.accept(
            await origin.negotiate(LESSON, "teacher", Role.TEACHER, await teacher.offer())
        )
        upstream = await _pull(origin, edge)
        rooms = [await _classroom(edge, f"room-{i}") for i in range(2)]
        for room in rooms:
            video = await room.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=20)
            audio = await room.wait_frames(Slot.TEACHER_AUDIO, 20, timeout=20)
            assert video.sizes == {(640, 360)}  # the origin's top layer, decoded by the room
            assert audio.nonsilent_frames >= 10  # the tone itself, not concealment

        # The origin: one peer for the edge, and no classroom.
        assert origin.feeds(LESSON) == ("county-a",)
        assert not origin.has_peer(LESSON, "room-0")
        # The edge encodes nothing: its classrooms' lesson slots follow the relayed
        # layers, and it has no ladder of the teacher's.
        track = edge.outgoing_track(LESSON, "room-0", Slot.TEACHER_CAMERA)
        assert track is not None and track.layer_name == "high"
        camera = upstream.sources[Slot.TEACHER_CAMERA]
        assert camera.layers[0].subscriber_count == 2
        assert not edge.has_peer(LESSON, "teacher")
        # The origin sends the edge only what its classrooms follow: the top layers of
        # the camera and the slides, and the audio (the stage has no source).
        sent = dict(zip(FEED, origin.feed_layers(LESSON, "county-a"), strict=True))
        assert {(line.slot, line.layer) for line, name in sent.items() if name != "off"} == {
            (Slot.TEACHER_CAMERA, "high"),
            (Slot.TEACHER_AUDIO, "high"),
            (Slot.SLIDES, "high"),
        }
        origin_camera = origin.ladder(LESSON, "teacher", Slot.CAMERA)
        assert origin_camera is not None
        assert [layer.active for layer in origin_camera.layers] == [True, False, False, False]

        # A classroom switched to a lower layer gets it from the edge, as it is: the
        # edge asks the origin for it, which starts encoding and sending it.
        edge.set_layer(LESSON, "room-1", Slot.TEACHER_CAMERA, "low")
        for _ in range(100):
            if track_name(edge, "room-1") == "low":
                break
            await asyncio.sleep(0.1)
        assert track_name(edge, "room-1") == "low"
        before = rooms[1].received[Slot.TEACHER_CAMERA].frames
        low = await rooms[1].wait_frames(Slot.TEACHER_CAMERA, before + 10, timeout=20)
        assert (320, 180) in low.sizes
        assert [layer.active for layer in origin_camera.layers] == [True, False, True, False]
        assert camera.layers[2].frames_encoded > 0 and camera.layers[1].frames_encoded == 0
    finally:
        for room in rooms:
            await room.close()
        if upstream is not None:
            await upstream.close()
        await teacher.close()


def track_name(edge: Relay, participant_id: str) -> str:
    track = edge.outgoing_track(LESSON, participant_id, Slot.TEACHER_CAMERA)
    return "gone" if track is None else track.layer_name


async def test_an_offer_that_is_not_a_feed_is_refused(relay: Relay) -> None:
    room = SyntheticParticipant(Role.CLASSROOM)
    try:
        with pytest.raises(MediaError, match="edge relay's offer needs 12 media sections"):
            await relay.negotiate_feed(LESSON, "county-a", await room.offer())
    finally:
        await room.close()
    assert relay.feeds(LESSON) == ()


async def _until(done: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not done():
            await asyncio.sleep(0.05)


async def test_an_edge_classroom_goes_up_to_the_origin_as_it_came(relay: Relay) -> None:
    """Its camera is decoded at the origin only (its tile; the stage), its microphone
    sent up only while it is on stage."""
    origin = relay
    edge = Relay(_settings(), edge=True)
    room: SyntheticParticipant | None = None
    uplink: Uplink | None = None
    try:
        room = await _classroom(edge, "far")
        # The edge keeps what the classroom sends encoded: no ladder, nothing decoded.
        assert edge.ladder(LESSON, "far", Slot.CAMERA) is None
        forwarded = edge.forwarded(LESSON, "far")
        assert set(forwarded) == {Slot.CAMERA, Slot.MICROPHONE}

        uplink = Uplink(LESSON, "far", _settings(), asyncio.get_running_loop().time)
        await uplink.accept(await origin.negotiate_uplink(LESSON, "far", await uplink.offer()))
        uplink.follow(forwarded, on_stage=False)
        camera = origin.ladder(LESSON, "far", Slot.CAMERA)
        microphone = origin.ladder(LESSON, "far", Slot.MICROPHONE)
        assert camera is not None and microphone is not None
        # The origin decodes the classroom's pictures as it sent them.
        await _until(lambda: camera.frames_in >= 10, 30)
        assert camera.source_size == (320, 180)
        assert microphone.frames_in == 0

        # On stage: its sound goes up too; off stage, it stops.
        uplink.follow(forwarded, on_stage=True)
        await _until(lambda: microphone.frames_in >= 10, 30)
        uplink.follow(forwarded, on_stage=False)
        await asyncio.sleep(0.5)
        heard = microphone.frames_in
        await asyncio.sleep(1.0)
        assert microphone.frames_in == heard

        # An uplink offer that is not the uplink's m-lines is refused.
        with pytest.raises(MediaError):
            await origin.negotiate_uplink(LESSON, "far", await room.offer())
    finally:
        if uplink is not None:
            await uplink.close()
        if room is not None:
            await room.close()
        await edge.close()
