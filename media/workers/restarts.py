"""When a dead relay worker's slot gets a new worker: at once, unless it crash-loops.

A worker that dies has its lessons moved to the live workers first; then a new
worker is started in its slot (the same index, so the same ICE ports), or the
machine would serve with one worker fewer after each death until the server
restarts. A worker that dies again and again right after it starts (a broken
codec library, a port another program took, memory the machine has not got)
must not be started in a tight loop: each start costs seconds of CPU (aiortc's
import, the encoders), taken from the live workers' lessons. So at most
`per_window` restarts of one slot in `window_s`; past that the slot stays empty
until the oldest of them leaves the window, and the server says so.

Pure: the times are given, the decision returned (`RestartBudget.delay`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# Three restarts a minute: a worker killed once in a while (the OOM killer, an
# operator) comes back at once, a crash loop costs at most three starts a minute.
PER_WINDOW = 3
WINDOW_S = 60.0


@dataclass(frozen=True)
class RestartPolicy:
    per_window: int = PER_WINDOW
    window_s: float = WINDOW_S

    def __post_init__(self) -> None:
        if self.per_window < 1 or self.window_s <= 0:
            raise ValueError("a restart policy allows at least one restart in a positive window")


@dataclass
class RestartBudget:
    """One slot's recent restarts (monotonic times)."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    _starts: deque[float] = field(default_factory=deque)

    def delay(self, now: float) -> float:
        """Seconds from `now` until the slot may be started again: 0 while the window
        holds fewer than `per_window` restarts, else until the oldest leaves it."""
        while self._starts and now - self._starts[0] >= self.policy.window_s:
            self._starts.popleft()
        if len(self._starts) < self.policy.per_window:
            return 0.0
        return self._starts[0] + self.policy.window_s - now

    def started(self, now: float) -> None:
        """A restart was made at `now` (counted whether or not the worker came up)."""
        self._starts.append(now)


@dataclass(frozen=True)
class WorkerCounts:
    """The relay workers as /metrics shows them."""

    slots: int
    alive: int
    restarts: int  # workers started again in a dead one's slot, since the server started
    held_back: int  # slots left empty for now: their worker kept dying (a crash loop)
