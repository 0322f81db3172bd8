"""The relay's own load: when the server, not a classroom's link, is the bottleneck.

A relay that runs late (its event loop busy, its encoders behind) reads RTCP later
than it arrived: round trips look longer, and an estimator that takes a longer round
trip for a queue on the path cuts a classroom that has the bandwidth. Seen with the
test suite running beside a lesson: within 2 s the teacher's mosaic went off and the
classrooms to sound only, on loopback.

`LoadGauge` turns samples of the event loop's lateness (how much later than asked a
short sleep wakes) into a level, with hysteresis:

- `Load.OK`
- `Load.STRAINED`: late by STRAINED_MS or more, REPEATS times within the last
  WINDOW_S (one pause of the garbage collector is not a load). The relay sheds its
  cheapest work first: the teacher's mosaic at a lower frame rate.
- `Load.OVERLOADED`: late by OVERLOADED_MS or more, REPEATS times. Also the top layer
  of every video ladder is no longer offered, so its encoder stops.

While the level is above OK, round trips measured from RTCP are not taken as a sign
of a queue on the path (media.control.downlink). A level falls one step once the
lateness stayed below the lower threshold for CALM_S.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum

# How often the relay samples its lateness, and over how long the worst counts.
SAMPLE_S = 0.1
WINDOW_S = 2.0
STRAINED_MS = 40.0
OVERLOADED_MS = 150.0
REPEATS = 3
CALM_S = 5.0
# What each level does to the mosaic's frame rate (a divisor) and to the ladders
# (how many top layers are not offered).
MOSAIC_SLOWDOWN = {0: 1, 1: 2, 2: 4}
SHED_TOP_LAYERS = {0: 0, 1: 0, 2: 1}


class Load(IntEnum):
    OK = 0
    STRAINED = 1
    OVERLOADED = 2


class LoadGauge:
    """The relay's load level from its event loop's lateness (module notes)."""

    def __init__(self) -> None:
        self.level = Load.OK
        self._samples: deque[tuple[float, float]] = deque()
        self._calm_since: float | None = None
        # The worst lateness of the window, for metrics and logs.
        self.late_ms = 0.0

    def sample(self, late_ms: float, now_s: float) -> bool:
        """Fold in one lateness sample; True if the level changed."""
        samples = self._samples
        samples.append((now_s, late_ms))
        while now_s - samples[0][0] > WINDOW_S:
            samples.popleft()
        lates = sorted((late for _, late in samples), reverse=True)
        self.late_ms = lates[0]
        # The REPEATS-th worst: lateness that came back, not a single pause.
        worst = lates[REPEATS - 1] if len(lates) >= REPEATS else 0.0
        seen = (
            Load.OVERLOADED
            if worst >= OVERLOADED_MS
            else Load.STRAINED
            if worst >= STRAINED_MS
            else Load.OK
        )
        if seen > self.level:
            self.level = seen
            self._calm_since = None
            return True
        if seen == self.level:
            self._calm_since = None
            return False
        # Lower than the level: step down once it has stayed lower for CALM_S.
        if self._calm_since is None:
            self._calm_since = now_s
        if now_s - self._calm_since >= CALM_S:
            self.level = Load(self.level - 1)
            self._calm_since = None if seen == self.level else now_s
            return True
        return False

    @property
    def mosaic_slowdown(self) -> int:
        return MOSAIC_SLOWDOWN[int(self.level)]

    @property
    def shed_top_layers(self) -> int:
        return SHED_TOP_LAYERS[int(self.level)]
