"""When a dead relay worker's slot is started again (media.workers.restarts): pure, with
the times given."""

from __future__ import annotations

import pytest

from media.workers.restarts import RestartBudget, RestartPolicy


@pytest.mark.parametrize(
    ("starts", "now", "delay"),
    [
        # Never restarted: at once.
        ([], 0.0, 0.0),
        # Fewer than three restarts in the last minute: at once.
        ([0.0], 1.0, 0.0),
        ([0.0, 10.0], 11.0, 0.0),
        # Three in the minute: wait until the oldest is a minute old.
        ([0.0, 10.0, 20.0], 21.0, 39.0),
        ([0.0, 0.5, 1.0], 1.5, 58.5),
        # The oldest has left the window: at once again.
        ([0.0, 10.0, 20.0], 60.0, 0.0),
        ([0.0, 10.0, 20.0], 65.0, 0.0),
        # A worker that died once a minute for an hour is never held back.
        ([60.0 * i for i in range(60)], 3600.0, 0.0),
    ],
)
def test_restarts_are_at_once_until_three_in_a_minute(
    starts: list[float], now: float, delay: float
) -> None:
    budget = RestartBudget()
    for t in starts:
        budget.started(t)
    assert budget.delay(now) == pytest.approx(delay)


def test_a_held_back_slot_is_started_when_its_window_allows_and_then_held_again() -> None:
    budget = RestartBudget(RestartPolicy(per_window=2, window_s=10.0))
    budget.started(0.0)
    budget.started(1.0)
    assert budget.delay(2.0) == pytest.approx(8.0)
    assert budget.delay(10.0) == 0.0  # the first restart has left the window
    budget.started(10.0)
    assert budget.delay(10.5) == pytest.approx(0.5)  # until the second leaves it


@pytest.mark.parametrize(("per_window", "window_s"), [(0, 60.0), (3, 0.0), (1, -1.0)])
def test_a_policy_that_allows_no_restart_is_refused(per_window: int, window_s: float) -> None:
    with pytest.raises(ValueError, match="at least one restart"):
        RestartPolicy(per_window, window_s)
