"""The relay with real aiortc peers in one process, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest

from classroom.roles import Role
from media.adapter.transport import pace_sender
from media.gateway import MediaError
from media.relay.relay import Relay
from media.slots import Slot
from media.synthetic import SyntheticParticipant

from .conftest import LESSON, Join

pytestmark = pytest.mark.timeout(30)


async def test_a_classroom_decodes_the_teachers_video_and_audio(relay: Relay, join: Join) -> None:
    await join("teacher", Role.TEACHER)
    room = await join("room-a", Role.CLASSROOM)

    video = await room.wait_frames(Slot.TEACHER_CAMERA, 15, timeout=10)
    audio = await room.wait_frames(Slot.TEACHER_AUDIO, 25, timeout=10)

    assert video.sizes == {(640, 360)}  # the source's size: never upscaled to 720p
    assert audio.nonsilent_frames >= 20  # the tone, not concealment or silence
    # One encode for the layer, whatever the number of subscribers.
    camera = relay.ladder(LESSON, "teacher", Slot.CAMERA)
    assert camera is not None
    assert [layer.subscriber_count for layer in camera.layers] == [1, 0, 0, 0]
    assert [layer.frames_encoded > 0 for layer in camera.layers] == [True, False, False, False]


async def test_two_classrooms_get_the_same_packets(relay: Relay, join: Join) -> None:
    await join("teacher", Role.TEACHER)
    room_a = await join("room-a", Role.CLASSROOM)
    room_b = await join("room-b", Role.CLASSROOM)
    track_a = relay.outgoing_track(LESSON, "room-a", Slot.TEACHER_CAMERA)
    track_b = relay.outgoing_track(LESSON, "room-b", Slot.TEACHER_CAMERA)
    assert track_a is not None and track_b is not None

    # A packet reaches its sender through the sender's loop (recv) or at once (send_now).
    seen_a: list[object] = []
    seen_b: list[object] = []
    at_once: list[object] = []
    for track, seen in ((track_a, seen_a), (track_b, seen_b)):
        original = track.recv
        send_now = track.send_now
        assert send_now is not None

        async def recv(original=original, seen=seen):  # type: ignore[no-untyped-def]
            packet = await original()
            seen.append(packet)
            return packet

        def sent_now(packet, send_now=send_now, seen=seen):  # type: ignore[no-untyped-def]
            seen.append(packet)
            sent = send_now(packet)
            if sent:
                at_once.append(packet)
            return sent

        track.recv = recv  # type: ignore[method-assign]
        track.send_now = sent_now

    await room_a.wait_frames(Slot.TEACHER_CAMERA, 20, timeout=10)
    await room_b.wait_frames(Slot.TEACHER_CAMERA, 20, timeout=10)
    assert {id(p) for p in seen_a} & {id(p) for p in seen_b}
    # Unpaced, with their loops idle between frames, most go at once.
    assert len(at_once) > (len(seen_a) + len(seen_b)) / 2


async def test_a_late_joiner_gets_a_keyframe_within_two_seconds(relay: Relay, join: Join) -> None:
    await join("teacher", Role.TEACHER)
    early = await join("room-a", Role.CLASSROOM)
    await early.wait_frames(Slot.TEACHER_CAMERA, 25, timeout=10)  # its keyframe is long gone

    started = time.monotonic()
    late = await join("room-b", Role.CLASSROOM)
    await late.wait_frames(Slot.TEACHER_CAMERA, 1, timeout=2.0)
    assert time.monotonic() - started < 2.0


async def test_a_storm_of_plis_yields_one_keyframe_a_second(relay: Relay, join: Join) -> None:
    await join("teacher", Role.TEACHER)
    room = await join("room-a", Role.CLASSROOM)
    await room.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=10)
    camera = relay.ladder(LESSON, "teacher", Slot.CAMERA)
    assert camera is not None
    top = camera.layers[0]
    receiver = room.transceivers[Slot.TEACHER_CAMERA].receiver
    media_ssrc = next(iter(receiver._RTCRtpReceiver__remote_streams))  # type: ignore[attr-defined]

    before = top.keyframes
    started = time.monotonic()
    for _ in range(60):  # 30 PLIs a second for 2 s, over the network
        await receiver._send_rtcp_pli(media_ssrc)
        await asyncio.sleep(1 / 30)
    await room.wait_frames(Slot.TEACHER_CAMERA, room.received[Slot.TEACHER_CAMERA].frames + 3, 5)
    elapsed = time.monotonic() - started

    forced = top.keyframes - before
    assert 1 <= forced <= int(elapsed) + 1


async def test_a_granted_classroom_reaches_the_teacher_and_others_until_revoked(
    relay: Relay, join: Join
) -> None:
    teacher = await join("teacher", Role.TEACHER)
    room_a = await join("room-a", Role.CLASSROOM)
    room_b = await join("room-b", Role.CLASSROOM)

    await relay.set_stage(LESSON, "room-a")
    await teacher.wait_frames(Slot.STAGE_VIDEO, 10, timeout=10)
    await teacher.wait_frames(Slot.STAGE_AUDIO, 10, timeout=10)
    await room_b.wait_frames(Slot.STAGE_VIDEO, 10, timeout=10)
    await room_b.wait_frames(Slot.STAGE_AUDIO, 10, timeout=10)
    assert room_b.received[Slot.STAGE_VIDEO].sizes == {(320, 180)}
    assert room_a.received[Slot.STAGE_VIDEO].frames == 0  # not its own echo

    await relay.set_stage(LESSON, None)
    await asyncio.sleep(0.5)  # what was in flight lands
    counts = {slot: teacher.received[slot].frames for slot in (Slot.STAGE_VIDEO, Slot.STAGE_AUDIO)}
    counts_b = room_b.received[Slot.STAGE_VIDEO].frames
    await asyncio.sleep(1.0)  # the absence of frames can only be waited for
    assert {slot: teacher.received[slot].frames for slot in counts} == counts
    assert room_b.received[Slot.STAGE_VIDEO].frames == counts_b
    # The teacher's own lesson kept flowing to the classrooms meanwhile.
    await room_b.wait_frames(
        Slot.TEACHER_CAMERA, room_b.received[Slot.TEACHER_CAMERA].frames + 5, 5
    )


async def test_a_layer_choice_changes_what_a_classroom_receives(relay: Relay, join: Join) -> None:
    await join("teacher", Role.TEACHER)
    room = await join("room-a", Role.CLASSROOM)
    await room.wait_frames(Slot.TEACHER_CAMERA, 5, timeout=10)

    relay.set_layer(LESSON, "room-a", Slot.TEACHER_CAMERA, "low")
    reception = room.received[Slot.TEACHER_CAMERA]
    async with asyncio.timeout(5):
        while (320, 180) not in reception.sizes:
            await room.wait_frames(Slot.TEACHER_CAMERA, reception.frames + 1, 5)
    camera = relay.ladder(LESSON, "teacher", Slot.CAMERA)
    assert camera is not None
    assert [layer.subscriber_count for layer in camera.layers] == [0, 0, 1, 0]  # high paused

    relay.set_layer(LESSON, "room-a", Slot.TEACHER_CAMERA, None)
    assert [layer.subscriber_count for layer in camera.layers] == [0, 0, 0, 0]
    with pytest.raises(MediaError, match="unknown layer"):
        relay.set_layer(LESSON, "room-a", Slot.TEACHER_CAMERA, "ultra")


async def test_a_stalled_receiver_does_not_grow_memory(relay: Relay, join: Join) -> None:
    await join("teacher", Role.TEACHER)
    stalled = await join("room-a", Role.CLASSROOM)
    healthy = await join("room-b", Role.CLASSROOM)
    await stalled.wait_frames(Slot.TEACHER_CAMERA, 5, timeout=10)
    track = relay.outgoing_track(LESSON, "room-a", Slot.TEACHER_CAMERA)
    assert track is not None

    # Nothing towards room-a leaves for a while: its pacer holds the camera, as it
    # does when the classroom's link is estimated to carry almost nothing.
    sender = relay.participant(LESSON, "room-a").sending.outgoing[Slot.TEACHER_CAMERA].sender
    unblock = asyncio.Event()

    class Held:
        def take_now(self, sizes: list[int]) -> bool:
            return False

        async def wait(self, size: int) -> None:
            await unblock.wait()

    pace_sender(sender, Held(), wait=True)
    frames = healthy.received[Slot.TEACHER_CAMERA].frames
    await healthy.wait_frames(Slot.TEACHER_CAMERA, frames + 45, timeout=6)  # ~3 s at 15 fps

    assert track.queued <= relay._settings.video_queue_frames
    assert track.dropped > 0

    unblock.set()
    resumed = stalled.received[Slot.TEACHER_CAMERA].frames
    await stalled.wait_frames(Slot.TEACHER_CAMERA, resumed + 10, timeout=5)


async def test_a_second_offer_replaces_the_connection(relay: Relay, join: Join) -> None:
    await join("teacher", Role.TEACHER)
    first = await join("room-a", Role.CLASSROOM)
    await first.wait_frames(Slot.TEACHER_CAMERA, 3, timeout=10)
    second = await join("room-a", Role.CLASSROOM)
    await second.wait_frames(Slot.TEACHER_CAMERA, 3, timeout=5)
    camera = relay.ladder(LESSON, "teacher", Slot.CAMERA)
    assert camera is not None
    assert camera.layers[0].subscriber_count == 1


# Paced or not, the senders' reports reach the classroom (LeanRtp.send_rtcp), and
# the round trip comes from its answers.
@pytest.mark.parametrize("adaptive", [False, True])
async def test_link_reports_carry_what_the_classroom_reports(
    relay: Relay, join: Join, adaptive: bool
) -> None:
    await join("teacher", Role.TEACHER)
    room = await join("room-a", Role.CLASSROOM)
    await room.wait_frames(Slot.TEACHER_CAMERA, 3, timeout=10)
    async with asyncio.timeout(10):
        async for report in relay.link_reports():
            if report.participant_id == "room-a" and report.estimate_kbps > 0 and report.rtt_ms:
                break
    assert report.sent_kbps > 50
    # Adapting, the camera starts low and climbs (to which layer by now, it depends).
    if adaptive:
        assert report.layers["teacher_camera"] != "off"
    else:
        assert report.layers["teacher_camera"] == "high"
    assert report.layers["stage_video"] == "off"
    assert 0.0 <= report.loss <= 1.0


@pytest.mark.parametrize("report_interval_s", [60.0])
async def test_a_layer_switch_is_reported_when_it_happens(relay: Relay, join: Join) -> None:
    """Not at the next periodic report (here a minute away): the lesson's timeline
    keeps when a classroom's picture changed, and the teacher sees it at once."""
    await join("teacher", Role.TEACHER)
    room = await join("room-a", Role.CLASSROOM)
    await room.wait_frames(Slot.TEACHER_CAMERA, 3, timeout=10)
    reports = relay.link_reports()
    pending = asyncio.ensure_future(anext(reports))
    await asyncio.sleep(0)  # the reader listens from here on
    relay.set_layer(LESSON, "room-a", Slot.TEACHER_CAMERA, "low")
    async with asyncio.timeout(5):  # the low layer's next keyframe
        while True:
            report = await pending
            if report.participant_id == "room-a" and report.layers["teacher_camera"] == "low":
                break
            pending = asyncio.ensure_future(anext(reports))
    relay.set_layer(LESSON, "room-a", Slot.TEACHER_CAMERA, None)
    async with asyncio.timeout(2):  # off: at once
        report = await anext(reports)
    assert report.layers["teacher_camera"] == "off"
    await reports.aclose()


@pytest.mark.parametrize(
    ("role", "offer_role", "message"),
    [
        (Role.TEACHER, Role.CLASSROOM, "needs 6 media sections"),
        (Role.OBSERVER, Role.TEACHER, "needs 5 media sections"),
    ],
)
async def test_an_offer_with_the_wrong_slots_is_refused(
    relay: Relay, role: Role, offer_role: Role, message: str
) -> None:
    peer = SyntheticParticipant(offer_role)
    try:
        with pytest.raises(MediaError, match=message):
            await relay.negotiate(LESSON, "someone", role, await peer.offer())
    finally:
        await peer.close()


async def test_a_broken_offer_is_refused_with_a_message(relay: Relay) -> None:
    with pytest.raises(MediaError, match=r"not a valid SDP|needs"):
        await relay.negotiate(LESSON, "someone", Role.CLASSROOM, "v=0\r\nthis is not sdp")


async def test_a_layer_measures_what_it_sends(relay: Relay, join: Join) -> None:
    # The allocator shares a link by these measured costs, not by nominal rates.
    await join("teacher", Role.TEACHER)
    room = await join("room-a", Role.CLASSROOM)
    await room.wait_frames(Slot.TEACHER_CAMERA, 50, timeout=10)  # over 3 s at 15 fps
    camera = relay.ladder(LESSON, "teacher", Slot.CAMERA)
    audio = relay.ladder(LESSON, "teacher", Slot.MICROPHONE)
    assert camera is not None and audio is not None
    now = time.monotonic()
    video_kbps = camera.layers[0].meter.kbps(now)
    audio_kbps = audio.layers[0].meter.kbps(now)
    assert video_kbps is not None and 20 < video_kbps < 2000, video_kbps
    # Opus at 28 kbit/s and 50 packets a second of headers.
    assert audio_kbps is not None and 30 < audio_kbps < 80, audio_kbps
    # Paused layers have not sent: nothing measured for them.
    assert camera.layers[2].meter.kbps(now) is None


async def test_a_deck_page_over_the_screen_share_stops_sending_the_share(
    relay: Relay, join: Join
) -> None:
    """A deck page shown covers the slides video on the classroom's page: the share is
    not sent meanwhile (its layers pause when no one follows them), the camera goes on,
    and the share comes back when the deck is put away."""
    await join("teacher", Role.TEACHER)
    room = await join("room-a", Role.CLASSROOM)
    await room.wait_frames(Slot.SLIDES, 5, timeout=10)
    screen = relay.ladder(LESSON, "teacher", Slot.SCREEN)
    assert screen is not None

    await relay.cover_screen(LESSON, True)
    assert relay.outgoing_track(LESSON, "room-a", Slot.SLIDES) is not None
    assert sum(layer.subscriber_count for layer in screen.layers) == 0
    await asyncio.sleep(0.5)  # what was in flight lands
    slides = room.received[Slot.SLIDES].frames
    camera = room.received[Slot.TEACHER_CAMERA].frames
    await asyncio.sleep(1.0)  # the absence of frames can only be waited for
    assert room.received[Slot.SLIDES].frames == slides
    await room.wait_frames(Slot.TEACHER_CAMERA, camera + 5, 5)

    await relay.cover_screen(LESSON, False)
    await room.wait_frames(Slot.SLIDES, slides + 3, timeout=10)


async def test_a_teacher_packet_lost_for_good_stalls_the_camera_a_moment_not_half_a_minute(
    relay: Relay, join: Join
) -> None:
    # The soak's 24 s hole: one packet of the teacher's camera never reaches the
    # relay, nor its resend (aiortc asks once). aiortc's jitter buffer would hold
    # every frame behind it for 512 packets; the relay skips the gap after a second
    # and asks for a keyframe (media.control.ingest).
    await join("teacher", Role.TEACHER)
    room = await join("room-a", Role.CLASSROOM)
    await room.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=10)
    receiver, watch = relay.participant(LESSON, "teacher").inbound[Slot.CAMERA]
    handle = receiver._handle_rtp_packet
    lost: dict[str, int] = {}

    async def lose_one_for_good(packet: object, arrival_time_ms: int) -> None:
        ssrc, seq = packet.ssrc, packet.sequence_number  # type: ignore[attr-defined]
        if not lost:
            lost.update(ssrc=ssrc, seq=(seq + 1) % 65536)
        if ssrc != lost["ssrc"] or seq == lost["seq"]:
            return  # the packet, and every resend (RTX comes under its own SSRC)
        await handle(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = lose_one_for_good
    await asyncio.sleep(0.5)  # the frames already complete drain
    before = room.received[Slot.TEACHER_CAMERA].frames
    await room.wait_frames(Slot.TEACHER_CAMERA, before + 8, timeout=6)
    assert watch.gaps_skipped >= 1


async def test_a_participants_own_sockets_have_room_for_a_late_relay(
    relay: Relay, join: Join
) -> None:
    # What arrives while the relay's loop runs late waits in the kernel's buffer;
    # the default 208 kB overflowed in a soak (media.adapter.inbound).
    import socket
    from pathlib import Path

    from media.adapter.inbound import RECEIVE_BUFFER_BYTES, widen_receive_buffers

    await join("teacher", Role.TEACHER)
    pc = relay.participant(LESSON, "teacher").pc
    cap = int(Path("/proc/sys/net/core/rmem_max").read_text())
    sizes = []
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport._connection
        for protocol in connection._protocols:
            sock = protocol.transport.get_extra_info("socket")
            sizes.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    # Linux reports twice what was set (its bookkeeping), up to net.core.rmem_max.
    assert sizes and min(sizes) >= 2 * min(RECEIVE_BUFFER_BYTES, cap)
    assert widen_receive_buffers(pc) == 0  # done once; never narrower
