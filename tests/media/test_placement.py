"""Where a new lesson goes among the relay workers (media.workers.placement)."""

from __future__ import annotations

import pytest

from media.workers.placement import WorkerLoad, least_loaded, serving_worker

Gone = WorkerLoad(running=False)


@pytest.mark.parametrize(
    ("loads", "chosen"),
    [
        ({}, None),
        ({0: WorkerLoad()}, 0),
        ({0: WorkerLoad(), 1: WorkerLoad()}, 0),  # a tie: the lowest index
        ({0: WorkerLoad(peers=1, lessons=1), 1: WorkerLoad()}, 1),
        # A lesson nobody joined yet still counts: two lessons created together spread.
        ({0: WorkerLoad(lessons=1), 1: WorkerLoad()}, 1),
        # Peers weigh before lessons: one big lesson outweighs two empty ones.
        ({0: WorkerLoad(peers=30, lessons=1), 1: WorkerLoad(peers=0, lessons=2)}, 1),
        ({0: WorkerLoad(peers=3, lessons=2), 1: WorkerLoad(peers=4, lessons=1)}, 0),
        # A worker that stopped takes nothing, however idle.
        ({0: Gone, 1: WorkerLoad(peers=50, lessons=3)}, 1),
        ({0: Gone, 1: Gone}, None),
    ],
)
def test_a_new_lesson_goes_to_the_least_loaded_running_worker(
    loads: dict[int, WorkerLoad], chosen: int | None
) -> None:
    assert least_loaded(loads) == chosen


W = WorkerLoad


@pytest.mark.parametrize(
    ("loads", "home", "following", "max_peers", "chosen"),
    [
        # No bound: a lesson stays on its home worker however big.
        ({0: W(peers=500), 1: W()}, 0, (), None, 0),
        # Room at home: home.
        ({0: W(peers=1), 1: W()}, 0, (), 2, 0),
        # Home full: the least loaded other running worker.
        ({0: W(peers=2), 1: W(peers=1), 2: W()}, 0, (), 2, 2),
        # One that already pulls the lesson goes first, even if busier.
        ({0: W(peers=2), 1: W(peers=1), 2: W()}, 0, (1,), 2, 1),
        # ...unless it is full too, or stopped.
        ({0: W(peers=2), 1: W(peers=2), 2: W()}, 0, (1,), 2, 2),
        ({0: W(peers=2), 1: W(running=False), 2: W(peers=1)}, 0, (1,), 2, 2),
        # Nowhere with room: the home rather than nowhere.
        ({0: W(peers=3), 1: W(peers=2)}, 0, (), 2, 0),
        ({0: W(peers=2), 1: W(running=False)}, 0, (), 2, 0),
        # The home need not be worker 0.
        ({0: W(peers=1), 1: W(peers=4)}, 1, (), 4, 0),
    ],
)
def test_a_classroom_past_its_home_workers_capacity_goes_to_a_follower(
    loads: dict[int, WorkerLoad],
    home: int,
    following: tuple[int, ...],
    max_peers: int | None,
    chosen: int,
) -> None:
    assert serving_worker(loads, home, following, max_peers) == chosen
