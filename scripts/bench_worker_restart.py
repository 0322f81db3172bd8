"""Relay worker restart: from the kill of a worker to a new one in its slot, serving.

    python -m scripts.bench_worker_restart --kills 3

Two relay workers (media.workers.WorkerGateway, the code of `classroom serve
--workers 2`): a synthetic teacher in a lesson on one, a teacher and three
classrooms on the other. Each round SIGKILLs the first one's process and
measures when the gateway has freed its lessons (`on_moved`), when a new worker
is up in its slot (a new PID, alive), and when a new lesson placed on that new
worker (the other one is busier) plays the teacher's camera to a classroom. The
default policy allows three restarts a minute, so a fourth kill within a minute
shows the slot held back (`held_back`) instead. Every socket is on 127.0.0.1.
The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from classroom.roles import Role
from media.settings import RelaySettings
from media.slots import Slot
from media.synthetic import SyntheticParticipant
from media.workers.gateway import WorkerGateway


def _replaced(gateway: WorkerGateway, slot: int, killed: int) -> bool:
    return gateway.pids[slot] != killed and gateway.counts().alive == 2


async def _until(condition: Any, timeout: float = 60.0) -> float:
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
    return time.monotonic() - started


async def measure(kills: int) -> dict[str, Any]:
    settings = RelaySettings(host_addresses=("127.0.0.1",), encoder_threads=2)
    gateway = await asyncio.to_thread(WorkerGateway, settings, 2)
    moved: list[str] = []

    async def on_moved(lesson_id: str) -> None:
        moved.append(lesson_id)

    gateway.on_moved = on_moved
    peers: list[SyntheticParticipant] = []
    rounds: list[dict[str, Any]] = []
    try:
        # Worker 1 carries a lesson with more peers, so new lessons go to slot 0.
        await SyntheticParticipant.joined(gateway, "busy", "t", Role.TEACHER, peers)
        for i in range(3):
            await SyntheticParticipant.joined(gateway, "busy", f"r{i}", Role.CLASSROOM, peers)
        await SyntheticParticipant.joined(gateway, "L0", "t", Role.TEACHER, peers)
        slot = gateway.worker_of("L0")
        assert slot is not None and gateway.worker_of("busy") == 1 - slot
        for n in range(kills):
            lesson = f"L{n}"
            killed = gateway.pids[slot]
            moved.clear()
            os.kill(killed, signal.SIGKILL)
            start = time.monotonic()
            await _until(lambda lesson=lesson: lesson in moved)
            freed = time.monotonic() - start
            held = gateway.counts().held_back
            if held:
                rounds.append({"kill": n + 1, "lessons_moved_s": round(freed, 3), "held_back": 1})
                break
            await _until(lambda killed=killed: _replaced(gateway, slot, killed))
            up = time.monotonic() - start
            nxt = f"L{n + 1}"
            await SyntheticParticipant.joined(gateway, nxt, "t", Role.TEACHER, peers)
            assert gateway.worker_of(nxt) == slot, gateway.loads()
            room = await SyntheticParticipant.joined(gateway, nxt, "r", Role.CLASSROOM, peers)
            await room.wait_frames(Slot.TEACHER_CAMERA, 1, timeout=60)
            playing = time.monotonic() - start
            rounds.append(
                {
                    "kill": n + 1,
                    "lessons_moved_s": round(freed, 3),
                    "new_worker_up_s": round(up, 3),
                    "new_lesson_playing_s": round(playing, 3),
                }
            )
        counts = gateway.counts()
    finally:
        for peer in peers:
            await peer.close()
        await gateway.close()
    return {
        "rounds": rounds,
        "restarts": counts.restarts,
        "held_back": counts.held_back,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3, help="kills of the worker (at most 10)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(min(max(args.kills, 1), 10)))))


if __name__ == "__main__":
    main()
