"""A classroom in a process of its own, that counts the teacher's camera frames it decodes.

    python -m scripts.witness        (started by scripts/fuzz_rtp.py, not by hand)

What a browser on another machine is to the relay: its receive times, the REMB its
bandwidth estimator sends (aiortc's, on abs-send-time) and the receiver reports'
delays are measured on its own event loop, which nothing of the relay's process
holds up. In the relay's process, every 100 ms the loop ran late read as 100 ms of
queue on the path.

It speaks JSON lines, one object a line with a `type`, over stdin and stdout:

    out {"type": "offer", "sdp": ...}            its offer, once
    in  {"type": "answer", "sdp": ...}           the relay's answer
    out {"type": "frames", "total": n}           camera frames decoded so far, at most
                                                 every FRAMES_EVERY_S while it grows
    out {"type": "second", "fps": n, "late_ms": m}
                                                 each second of its own clock: frames
                                                 decoded in it, and the most its loop
                                                 woke late by in it
    in  {"type": "close"}                        (or stdin closed) close and say bye
    out {"type": "bye", "tracebacks": n, "first_traceback": ...}

Log records of its own at ERROR or above, or with a traceback, are counted and
reported in `bye`, as the parent counts its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from typing import Any

from classroom.roles import Role
from media.slots import Slot
from media.synthetic import MovingPicture, SyntheticParticipant

# How often the running total is sent while frames come: the parent's "how soon
# after the attack does it decode again" is measured to this.
FRAMES_EVERY_S = 0.05


def write(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def read_line(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    line = await reader.readline()
    if not line:
        return None
    message: dict[str, Any] = json.loads(line)
    return message


async def report(peer: SyntheticParticipant, stop: asyncio.Event) -> None:
    """The running total while it grows, and each second's count and lateness."""
    reception = peer.received[Slot.TEACHER_CAMERA]
    sent_total = -1
    second_started = time.monotonic()
    second_frames = reception.frames
    late = 0.0
    while not stop.is_set():
        asked = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), FRAMES_EVERY_S)
        now = time.monotonic()
        late = max(late, now - asked - FRAMES_EVERY_S)
        if reception.frames != sent_total:
            sent_total = reception.frames
            write({"type": "frames", "total": sent_total})
        if now - second_started >= 1.0:
            fps = reception.frames - second_frames
            write({"type": "second", "fps": fps, "late_ms": round(1000 * late)})
            second_started += 1.0
            second_frames = reception.frames
            late = 0.0


async def main() -> None:
    # Imported here: the parent imports this module for nothing but its name.
    from scripts.fuzz_rtp import Tracebacks

    counter = Tracebacks()
    logging.getLogger().addHandler(counter)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    peer = SyntheticParticipant(Role.CLASSROOM, send_video=lambda: MovingPicture(320, 180, 15))
    stop = asyncio.Event()
    reporter: asyncio.Task[None] | None = None
    try:
        write({"type": "offer", "sdp": await peer.offer()})
        message = await read_line(reader)
        if message is None or message.get("type") != "answer":
            return
        await peer.accept(message["sdp"])
        reporter = asyncio.create_task(report(peer, stop))
        while (message := await read_line(reader)) is not None:
            if message.get("type") == "close":
                break
    finally:
        stop.set()
        if reporter is not None:
            await reporter
        await peer.close()
        write({"type": "bye", "tracebacks": counter.count, "first_traceback": counter.first})


if __name__ == "__main__":
    asyncio.run(main())
