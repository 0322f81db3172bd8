"""A teacher who connects again: the old connection's ladders, their encoders and its
peer connection are freed, not kept by the classrooms that followed them.

In the soak (scripts/soak.py) a teacher whose connection dropped and came back raised
the server's RSS by 30-90 MB, some of which stayed: this says it is not the relay
keeping the old teacher alive.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from classroom.roles import Role
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
    del old
    await join("teacher", Role.TEACHER)
    await first.close()
    seen = room.received[Slot.TEACHER_CAMERA].frames
    await room.wait_frames(Slot.TEACHER_CAMERA, seen + 5, timeout=10)
    await asyncio.sleep(1.0)
    gc.collect()
    assert [ref() for ref in gone if ref() is not None] == []
