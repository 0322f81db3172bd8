"""A WHIP publisher whose lesson's relay worker is killed: real worker processes
(media.workers), a real RFC 9725 client over aiortc, a classroom on the WebSocket
protocol, real HTTP.

What the protocol lets the server do: WHIP has no way to tell an encoder anything
between its requests. When the worker dies, its peer connections die with it, DTLS
keys and all, so nothing can close the encoder's connection; the encoder sees it fail
when ICE consent expires (RFC 7675: 30 s; aiortc's checks, six of ~5 s). What the
server does at once: the resource is forgotten, so a DELETE or PATCH is answered 404,
and the encoder's next POST publishes on a live worker rather than being refused as a
second publisher.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from classroom.roles import Role
from media.settings import RelaySettings
from media.slots import Slot
from media.synthetic import MovingPicture, Tone
from media.workers.gateway import WorkerGateway
from tests.signaling.conftest import Running, create_lesson, joined, make_settings, serve
from tests.signaling.test_whip_media import on_the_page
from tests.signaling.whip_client import Client

pytestmark = [pytest.mark.timeout(200), pytest.mark.e2e]


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Running, WorkerGateway]]:
    relay = RelaySettings(host_addresses=("127.0.0.1",), encoder_threads=2)
    gateway = await asyncio.to_thread(WorkerGateway, relay, 2)
    settings = make_settings(tmp_path)
    async with serve(settings, gateway, time.time, recorder=gateway) as running:  # type: ignore[arg-type]
        yield running, gateway


async def test_a_whip_publisher_after_its_worker_is_killed(
    live: tuple[Running, WorkerGateway],
) -> None:
    srv, gateway = live
    lesson = await create_lesson(srv, classrooms=["Village A"])
    lid, teacher = lesson["id"], lesson["teacher"]["token"]
    room_token = lesson["classrooms"][0]["token"]
    encoder = Client(srv.http, f"/whip/{lid}", teacher)
    again = Client(srv.http, f"/whip/{lid}", teacher)
    try:
        await encoder.publish(MovingPicture(320, 180, 15), Tone())
        assert encoder.location is not None
        async with on_the_page(srv, room_token, Role.CLASSROOM, (64, 64)) as room:
            video = await room.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=30)
            assert video.sizes == {(320, 180)}  # the encoder's picture
        dead = gateway.worker_of(lid)
        assert dead is not None
        async with joined(srv, teacher) as (page, _):
            os.kill(gateway.pids[dead], signal.SIGKILL)
            # The lesson moved: its pages are told to offer again ...
            async with asyncio.timeout(20):
                while (await page.recv(timeout=20))["type"] != "media_moved":
                    pass
        # ... and the encoder's resource is gone: its DELETE or PATCH says so (a PATCH
        # on a live resource is answered 501: no trickle, no ICE restart).
        auth = {"Authorization": f"Bearer {teacher}"}
        patched = await srv.http.patch(encoder.location, headers=auth)
        assert patched.status_code == 404, patched.text
        deleted = await srv.http.delete(encoder.location, headers=auth)
        assert deleted.status_code == 404, deleted.text

        # The encoder's next POST publishes on the live worker, though the old
        # connection has not failed yet on the encoder's side (it fails at ICE consent
        # expiry, 30 s or more: aioice's doing, not waited for here).
        await again.publish(MovingPicture(256, 144, 15), Tone())
        assert gateway.worker_of(lid) == 1 - dead
        async with on_the_page(srv, room_token, Role.CLASSROOM, (64, 64)) as room:
            video = await room.wait_frames(Slot.TEACHER_CAMERA, 10, timeout=30)
            assert (256, 144) in video.sizes
    finally:
        await encoder.close()
        await again.stop()
