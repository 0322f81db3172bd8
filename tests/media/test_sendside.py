"""The sender-side estimate (media.control.sendside) on a simulated link, by hand clock.

The link is a queue in front of a bottleneck: each packet leaves when the one before
it has, at the link's rate, and arrives a fixed delay later; a loss pattern drops
some. The receiver answers every 100 ms, as Chromium does.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from media.control.sendside import (
    PacketResult,
    SendSideEstimator,
    SentLog,
    Trendline,
    Usage,
    probe_rate,
)
from media.wire.twcc import TransportFeedback

PACKET = 1200
FEEDBACK_MS = 100


class Link:
    def __init__(
        self,
        rate_bps: float,
        delay_ms: float = 20.0,
        lose: Callable[[int], bool] = lambda _: False,
    ) -> None:
        self.rate_bps = rate_bps
        self.delay_ms = delay_ms
        self.lose = lose
        self._free_at = 0.0
        self._count = 0

    def carry(self, sent_ms: float, size: int) -> float | None:
        """When the packet arrives (ms), or None if it is lost."""
        self._count += 1
        if self.lose(self._count):
            return None
        leaves = max(sent_ms, self._free_at) + size * 8000 / self.rate_bps
        self._free_at = leaves
        return leaves + self.delay_ms


class Call:
    """A sender on the relay's side of `link`, feeding the estimator."""

    def __init__(self, link: Link, initial_bps: int = 250_000) -> None:
        self.link = link
        self.log = SentLog()
        self.estimator = SendSideEstimator(self.log, initial_bps=initial_bps)
        self.now = 0.0
        self._pending: list[tuple[int, int | None]] = []
        self._fed_at = 0.0
        self.estimates: list[tuple[float, int]] = []

    def send(self, size: int = PACKET) -> None:
        sequence = self.log.sent(size, self.now)
        arrived = self.link.carry(self.now, size)
        self._pending.append((sequence, None if arrived is None else round(arrived * 1000)))

    def run(self, rate_bps: Callable[[], float], seconds: float) -> None:
        """Send at `rate_bps()` (asked each packet) for `seconds`, with feedback."""
        end = self.now + seconds * 1000
        while self.now < end:
            self.send()
            self.now += PACKET * 8000 / rate_bps()
            if self.now - self._fed_at >= FEEDBACK_MS:
                self.feedback()

    def feedback(self) -> None:
        # What has arrived by now (and what was lost) is reported.
        due = [(s, a) for s, a in self._pending if a is None or a <= self.now * 1000]
        self._pending = [p for p in self._pending if p not in due]
        self._fed_at = self.now
        if not due:
            return
        message = TransportFeedback(1, 2, due[0][0], 0, tuple(due))
        estimate = self.estimator.on_feedback(self.log.results(message), self.now)
        self.estimates.append((self.now, estimate.bitrate_bps))

    def estimate(self) -> int:
        return self.estimator.estimate.bitrate_bps


def test_sending_past_the_link_backs_off_below_it() -> None:
    call = Call(Link(1_000_000), initial_bps=1_500_000)
    call.run(lambda: 1_500_000, 3.0)
    assert call.estimator.usage is not Usage.NORMAL or call.estimator.congested(call.now)
    assert call.estimate() < 1_000_000
    # Back to what got through, less 15 %: not to nothing.
    assert call.estimate() > 700_000


def test_following_the_estimate_keeps_the_queue_short() -> None:
    link = Link(800_000, delay_ms=50)
    call = Call(link, initial_bps=300_000)
    delays: list[float] = []

    def rate() -> float:
        return float(call.estimate())

    for _ in range(300):  # 30 s
        call.run(rate, 0.1)
        delays.append(link._free_at - call.now)
    # It found the link: most of it used, and the queue mostly drained.
    late = [e for t, e in call.estimates if t > 15_000]
    assert 500_000 < sum(late) / len(late) < 1_000_000
    assert sorted(delays[150:])[len(delays[150:]) // 2] < 200


def test_random_loss_without_a_queue_keeps_the_rate() -> None:
    chance = random.Random(7)
    call = Call(Link(5_000_000, lose=lambda _: chance.random() < 0.10), initial_bps=1_000_000)
    call.run(lambda: 1_000_000, 20.0)
    assert call.estimate() >= 900_000
    assert call.estimator.loss_floor > 0.05


def test_random_loss_does_not_slow_the_climb_of_a_sender_that_probes() -> None:
    """A sender a quarter above its estimate (the allocator's padding probes): what the
    link lost without a queue was carried, so 10 % random loss climbs as no loss does.
    Counted as not carried, the estimate reached 541 kbit/s in 8 s instead of 1236."""

    def climb(loss: float) -> int:
        chance = random.Random(3)
        call = Call(Link(2_000_000, delay_ms=25, lose=lambda _: chance.random() < loss))
        call.run(lambda: max(150_000, min(1.25 * call.estimate(), 1_900_000)), 8.0)
        return call.estimate()

    climbs = [climb(0.0), climb(0.10)]
    assert climbs[0] > 1_000_000
    assert climbs[1] >= 0.9 * climbs[0], climbs


def test_a_queue_shows_as_overuse_and_a_drain_as_underuse() -> None:
    trendline = Trendline()
    usages = []
    # Groups 10 ms apart, each arriving 3 ms later than the last: a queue grows.
    for i in range(40):
        usages.append(trendline.add(i * 10.0, i * 13.0))
    assert Usage.OVERUSING in usages[20:]
    start = 40 * 13.0
    for i in range(40):
        usages.append(trendline.add(400 + i * 10.0, start + i * 7.0))
    assert usages[-1] is Usage.UNDERUSING


def test_a_steady_link_is_normal() -> None:
    trendline = Trendline()
    jitter = random.Random(3)
    usages = {trendline.add(i * 10.0, 50 + i * 10.0 + jitter.random()) for i in range(200)}
    assert usages == {Usage.NORMAL}


@pytest.mark.parametrize(
    ("link_bps", "probe_bps", "low", "high"),
    [
        (5_000_000, 2_000_000, 1_800_000, 2_200_000),  # carried whole
        (1_000_000, 2_000_000, 850_000, 1_000_000),  # the link's limit shows
    ],
)
def test_a_probe_shows_what_the_link_carries(
    link_bps: int, probe_bps: int, low: int, high: int
) -> None:
    call = Call(Link(link_bps), initial_bps=300_000)
    call.run(lambda: 300_000, 1.0)
    call.log.probe = call.log.begin_probe(15)
    for _ in range(15):
        call.send()
        call.now += PACKET * 8000 / probe_bps
    call.log.probe = None
    call.run(lambda: 300_000, 0.5)
    assert call.estimator.probed_bps is not None
    assert low <= call.estimator.probed_bps <= high
    assert call.estimate() >= low


def test_a_probe_that_mostly_vanished_says_nothing() -> None:
    results = [PacketResult(i, i * 1.0, PACKET, None if i % 2 else i * 1000, 1) for i in range(10)]
    assert probe_rate(results, 10) is None


def test_feedback_that_stops_hands_back_to_remb() -> None:
    call = Call(Link(2_000_000))
    assert not call.estimator.active(0)
    call.run(lambda: 300_000, 1.0)
    assert call.estimator.active(call.now)
    assert not call.estimator.active(call.now + 2500)


def test_a_packet_is_reported_once_and_sequence_numbers_wrap() -> None:
    log = SentLog(size=1024)
    for i in range(70_000):
        short = log.sent(100, float(i))
    assert short == 69_999 & 0xFFFF
    message = TransportFeedback(1, 2, short, 0, ((short, 5_000), ((short + 1) & 0xFFFF, None)))
    [result] = log.results(message)
    assert result.sequence == 69_999 and result.sent_ms == 69_999.0
    assert log.results(message) == []  # reported already; the next one was never sent
    # Lost, then late: reported again once it arrives.
    lost = TransportFeedback(1, 2, 69_998 & 0xFFFF, 0, ((69_998 & 0xFFFF, None),))
    assert log.results(lost)[0].arrived_us is None
    late = TransportFeedback(1, 2, 69_998 & 0xFFFF, 0, ((69_998 & 0xFFFF, 4_000),))
    assert log.results(late)[0].arrived_us == 4_000
    # Too old to be in the log any more.
    old = TransportFeedback(1, 2, 60_000 & 0xFFFF, 0, ((60_000 & 0xFFFF, 1),))
    assert log.results(old) == []


def lowest_estimate(delay: Callable[[float], float], seconds: float = 30.0) -> int:
    """The lowest estimate after the first 3 s for a stream sent well within a
    link: 15 frames a second of three 1000-byte packets and an audio packet every
    40 ms, arriving 300 ms after they left plus `delay(sent_ms)`, in order."""
    log = SentLog()
    estimator = SendSideEstimator(log, initial_bps=300_000)
    pending: list[tuple[int, float]] = []
    lowest = None
    last = 0.0
    for now in range(int(seconds * 1000)):
        if now % 66 == 0:
            pending += [(log.sent(1000, now), float(now)) for _ in range(3)]
        if now % 40 == 0:
            pending.append((log.sent(150, now), float(now)))
        if now % 100 == 99:
            arrivals = []
            for sequence, sent in pending:
                last = max(last, sent + 300 + delay(sent))
                arrivals.append((sequence, round(last * 1000)))
            pending = []
            message = TransportFeedback(1, 2, arrivals[0][0], 0, tuple(arrivals))
            estimate = estimator.on_feedback(log.results(message), now).bitrate_bps
            if now > 3000:
                lowest = estimate if lowest is None else min(lowest, estimate)
    assert lowest is not None
    return lowest


def test_a_delay_that_wobbles_within_a_short_queue_is_not_congestion() -> None:
    """geo: the path's jitter made the line call overuse every few seconds, with
    the queue under 20 ms; each call cost a sixth of the estimate. Here the delay
    swings 0-30 ms once a second, which the line alone reads as overuse."""
    lowest = lowest_estimate(lambda t: 15 + 15 * math.sin(2 * math.pi * t / 1000))
    assert lowest > 420_000


def test_a_queue_that_creeps_up_and_stands_is_overuse() -> None:
    """A queue growing by 12 ms a second is too slow a trend for the line, and a
    full drop-tail queue shows none at all: the delay that stands tells."""
    lowest = lowest_estimate(lambda t: min(250.0, max(0.0, (t - 5000) * 0.012)))
    assert lowest < 400_000
