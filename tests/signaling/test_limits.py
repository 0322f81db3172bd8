"""The limiter alone: a hand-given clock, tables of (time, key) -> allowed."""

from __future__ import annotations

import pytest

from signaling.limits import Buckets, Rate, Slots

# (seconds, key, allowed): a burst of 3, then 1 a second, per key.
STEPS_BURST_THEN_RATE = [
    (0.0, "a", True),
    (0.0, "a", True),
    (0.0, "a", True),
    (0.0, "a", False),  # the burst is spent
    (0.0, "b", True),  # another key has its own
    (0.5, "a", False),  # half a token is not one
    (1.0, "a", True),  # one second, one more
    (1.0, "a", False),
    (0.5, "a", False),  # a clock stepping back refills nothing
    (3.0, "a", True),
    (100.0, "a", True),  # refilled, but never past the burst
    (100.0, "a", True),
    (100.0, "a", True),
    (100.0, "a", False),
]


def test_a_bucket_gives_a_burst_then_its_rate() -> None:
    buckets = Buckets(Rate(burst=3, per_s=1))
    got = [(t, key, buckets.take(key, t)) for t, key, _ in STEPS_BURST_THEN_RATE]
    assert got == STEPS_BURST_THEN_RATE


def test_the_rate_holds_for_a_key_whatever_the_callers() -> None:
    """What one participant's connections share: ten callers, one budget of 40 + 10/s."""
    buckets = Buckets(Rate(burst=40, per_s=10))
    allowed = 0
    for step in range(100):  # 10 s, a take from each of 10 callers every 0.1 s
        t = step * 0.1
        allowed += sum(buckets.take("lesson/classroom-1", t) for _caller in range(10))
    assert allowed == 40 + 99  # the burst, then 10 a second over 9.9 s


@pytest.mark.parametrize(
    ("cost", "takes", "allowed"),
    [(1.0, 5, 5), (2.0, 5, 2), (5.0, 2, 1), (6.0, 1, 0)],
)
def test_a_take_may_cost_more_than_one(cost: float, takes: int, allowed: int) -> None:
    buckets = Buckets(Rate(burst=5, per_s=0))
    assert sum(buckets.take("k", 0.0, cost) for _ in range(takes)) == allowed


def test_the_table_forgets_its_least_recently_used_keys() -> None:
    buckets = Buckets(Rate(burst=1, per_s=0), max_keys=3)
    for key in "abc":
        assert buckets.take(key, 0.0)
    assert not buckets.take("a", 0.0)  # "a" is now the most recently used
    assert buckets.take("d", 0.0)  # over the bound: "b" is forgotten
    assert len(buckets) == 3
    assert buckets.left("b", 0.0) == 1  # a forgotten key comes back full
    assert buckets.left("a", 0.0) == 0 and buckets.left("c", 0.0) == 0


# (action, key, cap, result): acquire answers whether a slot was free.
STEPS_SLOTS = [
    ("acquire", "t", 2, True),
    ("acquire", "t", 2, True),
    ("acquire", "t", 2, False),
    ("acquire", "o", 50, True),
    ("release", "t", 2, None),
    ("acquire", "t", 2, True),
    ("release", "t", 2, None),
    ("release", "t", 2, None),
    ("release", "t", 2, None),  # one release too many frees nothing more
    ("acquire", "t", 1, True),
    ("acquire", "t", 1, False),
]


def test_slots_cap_concurrent_holders() -> None:
    slots = Slots()
    got = []
    for action, key, cap, _ in STEPS_SLOTS:
        if action == "acquire":
            got.append((action, key, cap, slots.acquire(key, cap)))
        else:
            slots.release(key)
            got.append((action, key, cap, None))
    assert got == STEPS_SLOTS
    assert slots.held("t") == 1 and slots.held("o") == 1 and slots.held("x") == 0
