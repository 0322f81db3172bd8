"""Which relay worker takes a new lesson: the least loaded of those running.

A worker's load is what it serves now: its peer connections (a classroom, a
teacher, an observer's viewer each have one), then its lessons. Peer connections
are what a worker's event loop spends itself on (every packet to every classroom
is packetized and encrypted there); a lesson with none yet still counts, so that
lessons created together are spread before anyone joins. Counted by the server,
not measured in the worker: a placement is then the same on a busy machine and an
idle one, and a test can say where a lesson goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerLoad:
    peers: int = 0
    lessons: int = 0
    running: bool = True


def least_loaded(loads: Mapping[int, WorkerLoad]) -> int | None:
    """The worker (by index) a new lesson goes to; None if none is running.
    Ties go to the lowest index."""
    running = [(load.peers, load.lessons, index) for index, load in loads.items() if load.running]
    return min(running)[2] if running else None
