"""A teacher who connects again: the old connection's ladders, their encoders and its
peer connection are freed, not kept by the classrooms that followed them.

In the soak (scripts/soak.py) a teacher whose connection dropped and came back raised
the server's RSS by 30-90 MB, and it stayed: the old connection sits in reference
cycles (aiortc's, and the relay's callbacks) that only a full collection frees, and
with it libvpx's encoders, about 17 MB a reconnect. Closing the encoders at once
leaves the cycles only their Python objects.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from classroom.roles import Role
from media.pipeline.ladder import VideoLayer
from media.relay.relay import Relay
from media.slots import Slot

from .conftest import LESSON, Join

pytestmark = pytest.mark.timeout(60)


async def test_a_teachers_old_ladders_are_freed(relay: Relay, join: Join) -> None:
    first = await join("teacher", Role.TEACHER)
    room = await join("room-a", Role.CLASSROOM)
    await room.wait_frames(Slot.TEACHER_CAMERA, 5, timeout=10)
    old = relay.participant(LESSON, "teacher")
    gone = [weakref.ref(ladder) for ladder in old.ladders.values()]
    gone += [weakref.ref(layer) for ladder in old.ladders.values() for layer in ladder.layers]
    gone.append(weakref.ref(old.pc))
    # The encoders themselves (their codec contexts take no weak reference).
    encoders = [
        layer._encoder
        for ladder in old.ladders.values()
        for layer in ladder.layers
        if isinstance(layer, VideoLayer)
    ]
    assert any(e._codec is not None for e in encoders)  # the camera encodes for room-a
    del old
    gc.disable()  # as in a server whose full collections are minutes apart
    try:
        await join("teacher", Role.TEACHER)
        assert [e for e in encoders if e._codec is not None] == []
    finally:
        gc.enable()
    await first.close()
    seen = room.received[Slot.TEACHER_CAMERA].frames
    await room.wait_frames(Slot.TEACHER_CAMERA, seen + 5, timeout=10)
    await asyncio.sleep(1.0)
    gc.collect()
    assert [ref() for ref in gone if ref() is not None] == []
