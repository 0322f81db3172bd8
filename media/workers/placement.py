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

from collections.abc import Collection, Mapping
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


def serving_worker(
    loads: Mapping[int, WorkerLoad],
    home: int,
    following: Collection[int],
    max_peers: int | None,
) -> int:
    """The worker that serves a lesson's next classroom (media.workers.follower).

    Its home worker while it has fewer than `max_peers` peers (None: no bound). Past
    that, a running worker with room: one that already follows the lesson first (its
    pull is there), else the least loaded of the others; each then costs the home one
    more pull, about one classroom's sending. With no room anywhere, the home: a
    classroom served on a full worker rather than not at all."""
    if max_peers is None or loads[home].peers < max_peers:
        return home
    room = {
        index: load
        for index, load in loads.items()
        if index != home and load.running and load.peers < max_peers
    }
    already = {index: load for index, load in room.items() if index in following}
    chosen = least_loaded(already) if already else least_loaded(room)
    return home if chosen is None else chosen
