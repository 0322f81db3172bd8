"""Where a new lesson goes among the relay workers (media.workers.placement)."""

from __future__ import annotations

import pytest

from media.workers.placement import WorkerLoad, least_loaded

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
