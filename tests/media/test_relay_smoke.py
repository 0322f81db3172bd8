import time

from classroom.roles import Role
from media.relay import Relay
from media.settings import RelaySettings
from media.slots import Slot
from media.synthetic import SyntheticParticipant


async def test_smoke() -> None:
    relay = Relay(RelaySettings(host_addresses=("127.0.0.1",)))
    teacher = SyntheticParticipant(Role.TEACHER)
    room = SyntheticParticipant(Role.CLASSROOM)
    try:
        await teacher.accept(await relay.negotiate("l", "t", Role.TEACHER, await teacher.offer()))
        await room.accept(await relay.negotiate("l", "c", Role.CLASSROOM, await room.offer()))
        t0 = time.monotonic()
        r = await room.wait_frames(Slot.TEACHER_CAMERA, 15, 10)
        print("video", r.frames, r.sizes, time.monotonic() - t0)
        a = await room.wait_frames(Slot.TEACHER_AUDIO, 20, 10)
        print("audio", a.frames, a.nonsilent_frames)
    finally:
        await room.close()
        await teacher.close()
        await relay.close()
