"""WHIP and WHEP against the real relay: an RFC 9725 client publishes the teacher's
camera and microphone, a classroom on the WebSocket protocol decodes them, a WHEP
player pulls the lesson. Real aiortc peers, ICE on 127.0.0.1, real HTTP."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from classroom.roles import Role
from media.relay.relay import Relay
from media.settings import RelaySettings
from media.slots import Slot
from media.synthetic import MovingPicture, SyntheticParticipant, Tone
from tests.signaling.conftest import Running, create_lesson, joined, make_settings, serve
from tests.signaling.whip_client import Client, WhipError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Running]:
    relay = Relay(RelaySettings(host_addresses=("127.0.0.1",), encoder_threads=2))
    settings = make_settings(tmp_path, stun_urls=["stun:stun.school.example:3478"])
    async with serve(settings, relay, time.time) as running:  # type: ignore[arg-type]
        yield running


@contextlib.asynccontextmanager
async def on_the_page(
    srv: Running, token: str, role: Role, size: tuple[int, int]
) -> AsyncIterator[SyntheticParticipant]:
    """A participant as the web client is one: the WebSocket protocol, its fixed slots."""
    room = SyntheticParticipant(role, send_video=lambda: MovingPicture(*size, 10))
    try:
        async with joined(srv, token) as (peer, _):
            await peer.send({"type": "offer", "sdp": await room.offer(), "ref": "o"})
            while (msg := await peer.recv(timeout=20))["type"] != "answer":
                assert msg["type"] in ("event", "link"), msg
            await room.accept(msg["sdp"])
            yield room
    finally:
        await room.close()


async def test_an_encoder_publishes_by_whip_and_a_classroom_and_a_player_receive(
    live: Running,
) -> None:
    lesson = await create_lesson(live, classrooms=["Village A"])
    lid, teacher = lesson["id"], lesson["teacher"]["token"]
    whip = Client(live.http, f"/whip/{lid}", teacher)
    second = Client(live.http, f"/whip/{lid}", teacher)
    player = Client(live.http, f"/whep/{lid}", lesson["observer"]["token"])
    page = on_the_page(live, teacher, Role.TEACHER, (160, 96))
    try:
        # The teacher's page publishes first (its camera 160x96, and slides).
        await page.__aenter__()
        answer = await whip.publish(MovingPicture(320, 180, 15), Tone())
        response = whip.response
        assert response is not None and response.status_code == 201
        assert "a=candidate:" in answer and "127.0.0.1" in answer  # complete, no trickle
        assert response.headers.get_list("link") == [
            '<stun:stun.school.example:3478>; rel="ice-server"'
        ]
        assert whip.location is not None and f"/whip/{lid}/" in whip.location

        room_token = lesson["classrooms"][0]["token"]
        async with on_the_page(live, room_token, Role.CLASSROOM, (64, 64)) as room:
            video = await room.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=20)
            audio = await room.wait_frames(Slot.TEACHER_AUDIO, 25, timeout=10)
            # The encoder's picture, through the ladder, not the page's camera ...
            assert video.sizes == {(320, 180)}
            assert audio.nonsilent_frames >= 10  # its tone, not silence
            # ... while the slides stay the page's.
            await room.wait_frames(Slot.SLIDES, 1, timeout=10)

            # A player pulls the lesson by WHEP, as an observer.
            await player.play()
            await player.wait_frames("video", 10, timeout=20)
            await player.wait_frames("audio", 25, timeout=10)
            assert player.sizes == {(320, 180)}

            # A second publisher for the lesson is refused and changes nothing.
            with pytest.raises(WhipError) as refused:
                await second.publish(MovingPicture(64, 64, 5), Tone())
            assert refused.value.response.status_code == 409
            before = room.received[Slot.TEACHER_CAMERA].frames
            await room.wait_frames(Slot.TEACHER_CAMERA, before + 5, timeout=10)

            # DELETE ends the publication (RFC 9725 §4.3); the resource is gone after.
            deleted = await whip.stop()
            assert deleted is not None and deleted.status_code == 200
            assert (
                await live.http.delete(whip.location, headers=_auth(teacher))
            ).status_code == 404
            # The lesson goes back to the page's camera.
            video.sizes.clear()
            await room.wait_frames(Slot.TEACHER_CAMERA, video.frames + 10, timeout=10)
            assert (160, 96) in video.sizes
            ended = await player.stop()
            assert ended is not None and ended.status_code == 200

        # With the first publication over, a new one is taken.
        await second.close()
        again = Client(live.http, f"/whip/{lid}", teacher)
        try:
            await again.publish(MovingPicture(64, 64, 5), Tone())
            assert again.response is not None and again.response.status_code == 201
        finally:
            await again.stop()
    finally:
        for client in (whip, second, player):
            await client.close()
        await page.__aexit__(None, None, None)


async def test_an_h264_encoder_is_decoded_and_sent_on_in_vp8(live: Running) -> None:
    """OBS sends H.264 by default: the ladder decodes it and encodes its VP8 layers."""
    lesson = await create_lesson(live, classrooms=["Village A"])
    lid = lesson["id"]
    whip = Client(live.http, f"/whip/{lid}", lesson["teacher"]["token"])
    player = Client(live.http, f"/whep/{lid}", lesson["observer"]["token"])
    try:
        answer = await whip.publish(MovingPicture(320, 180, 15), Tone(), video_codec="video/H264")
        assert "H264/90000" in answer and "VP8/90000" not in answer
        sent = await player.play(("video",))
        assert "VP8/90000" in sent
        await player.wait_frames("video", 10, timeout=20)
        assert player.sizes == {(320, 180)}
    finally:
        await player.stop()
        await whip.stop()


def _auth(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}
