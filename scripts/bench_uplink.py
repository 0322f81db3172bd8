"""Uplink benchmark: what an edge's classrooms send up the backbone to the origin.

    python -m scripts.bench_uplink --classrooms 4 --seconds 8

An origin relay and an edge relay (`edge=True`) in this process, N synthetic
classrooms on the edge, each with its uplink to the origin (media.relay.uplink);
the first is on stage. Classrooms send a tile-sized camera (240x136, 5 fps, as a
page sends it while it is only a tile) and a tone. Measured over the window, from
the RTP payload octets each sender counted: what each classroom sent the edge,
what the edge sent up for it, and the microphone up on and off stage. The claim:
the edge sends up the camera as it came (`camera_up_to_sent` near 1, nothing
re-encoded), and a microphone only from the stage (`mic_up_off_stage_kbps` 0).
Every socket is on 127.0.0.1. The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc import RTCRtpSender

from classroom.roles import Role
from media.adapter.sender import LeanRtp
from media.relay.relay import Relay
from media.relay.uplink import Uplink
from media.settings import RelaySettings
from media.slots import Slot
from media.synthetic import MovingPicture, SyntheticParticipant

LESSON = "bench-uplink"


async def sent_octets(sender: RTCRtpSender) -> int:
    stats = await sender.getStats()
    return sum(int(getattr(s, "bytesSent", 0)) for s in stats.values() if s.type == "outbound-rtp")


def up_octets(uplink: Uplink, slot: Slot) -> int:
    sender = next(
        t.sender for t in uplink.pc.getTransceivers() if t.sender.track is uplink.tracks[slot]
    )
    return LeanRtp.install(sender).octets


async def measure(classrooms: int, seconds: float) -> dict[str, Any]:
    settings = RelaySettings(host_addresses=("127.0.0.1",), adaptive=False, encoder_threads=2)
    origin, edge = Relay(settings), Relay(settings, edge=True)
    rooms: list[SyntheticParticipant] = []
    uplinks: list[Uplink] = []
    try:
        for i in range(classrooms):
            pid = f"room-{i}"
            room = SyntheticParticipant(
                Role.CLASSROOM, send_video=lambda: MovingPicture(240, 136, 5), decode=False
            )
            rooms.append(room)
            await room.accept(await edge.negotiate(LESSON, pid, Role.CLASSROOM, await room.offer()))
            uplink = Uplink(LESSON, pid, settings, time.monotonic)
            uplinks.append(uplink)
            await uplink.accept(await origin.negotiate_uplink(LESSON, pid, await uplink.offer()))
            uplink.follow(edge.forwarded(LESSON, pid), on_stage=i == 0)
        await asyncio.sleep(3.0)  # connected, first keyframes through

        async def sample() -> list[tuple[int, int, int, int]]:
            out = []
            for room, uplink in zip(rooms, uplinks, strict=True):
                camera = await sent_octets(room.transceivers[Slot.CAMERA].sender)
                mic = await sent_octets(room.transceivers[Slot.MICROPHONE].sender)
                out.append(
                    (
                        camera,
                        up_octets(uplink, Slot.CAMERA),
                        mic,
                        up_octets(uplink, Slot.MICROPHONE),
                    )
                )
            return out

        before = await sample()
        started = time.monotonic()
        await asyncio.sleep(seconds)
        after = await sample()
        elapsed = time.monotonic() - started
        frames = [origin.ladder(LESSON, f"room-{i}", Slot.CAMERA) for i in range(classrooms)]
    finally:
        for uplink in uplinks:
            await uplink.close()
        for room in rooms:
            await room.close()
        await edge.close()
        await origin.close()

    def kbps(delta: int) -> float:
        return round(delta * 8 / elapsed / 1000, 1)

    deltas = [
        tuple(a - b for a, b in zip(x, y, strict=True)) for x, y in zip(after, before, strict=True)
    ]
    camera_sent = sum(d[0] for d in deltas)
    camera_up = sum(d[1] for d in deltas)
    return {
        "classrooms": classrooms,
        "seconds": round(elapsed, 1),
        "camera_sent_kbps_per_classroom": kbps(camera_sent // classrooms),
        "camera_up_kbps_per_classroom": kbps(camera_up // classrooms),
        "camera_up_to_sent": round(camera_up / camera_sent, 3) if camera_sent else None,
        "mic_sent_kbps_per_classroom": kbps(sum(d[2] for d in deltas) // classrooms),
        "mic_up_on_stage_kbps": kbps(deltas[0][3]),
        "mic_up_off_stage_kbps": kbps(sum(d[3] for d in deltas[1:])),
        "origin_decoded_cameras": sum(1 for f in frames if f is not None and f.frames_in > 0),
        "loadavg": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classrooms", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.classrooms, args.seconds))))


if __name__ == "__main__":
    main()
