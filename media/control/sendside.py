"""How much one participant's downlink carries, judged by the relay from transport
feedback: the sender-side estimate of Google Congestion Control.

Pure, times in ms passed in. The relay numbers every packet it sends a participant
(`SentLog.sent`), the browser says when each arrived
(draft-holmer-rmcat-transport-wide-cc-extensions-01, media.wire.twcc), and
`SendSideEstimator.on_feedback` turns the two into an `Estimate`. The rules are
those of draft-ietf-rmcat-gcc-02 as libwebrtc's goog_cc runs them, written here:

- Delay (`Trendline`). Packets sent within 5 ms make a group; between two groups,
  how much longer they took to arrive than to send is the queue's growth. A
  straight line fitted over the last 20 groups' smoothed accumulated growth gives
  its trend; past an adaptive threshold for more than 10 ms the link is
  overused, well below it underused (the queue drains).
- Rate (`RateControl`, AIMD). Overused: back to 0.85 of what was acknowledged
  lately. Otherwise the rate grows: 8 % a second while far from the capacity last
  seen, about a packet per round trip near it; never past 1.5 times what was
  acknowledged. Underused: it holds while the queue drains.
- Probes (`probe_rate`). A train of padding sent at a known rate: what got
  through it (the slower of its send and arrival rates) is what the link carries,
  at once, instead of after a minute of growing 8 % a second.
- A standing queue. A drop-tail queue that is full delays every packet alike:
  no trend for the line to find, only loss. So the one-way delay is compared with
  the least seen in the last half minute (the path without a queue), and a queue
  that stays past `STANDING_QUEUE_MS` counts as overuse. Seen on a 256 kbit/s
  satellite link whose 300 ms buffer the first second's keyframes filled: two
  seconds of a full queue, the delay flat, the camera's first keyframe lost.
  The same measure keeps the line honest: a trend over a queue shorter than
  `TREND_QUEUE_MS` is the path's jitter, not congestion. On the satellite link's
  10 ms of jitter, the line called overuse every few seconds with the queue under
  20 ms, and each call cost a sixth of the estimate.
- Loss. Packets reported lost. As in media.control.estimator, only loss above a
  floor (the median of the last half minute's samples) counts: a satellite hop or
  a noisy radio loses its few percent whatever the rate, and halving the rate does
  not help. Over the floor by 10 % the rate shrinks by half that loss; under 2 %
  it may follow the delay-based figure; in between it holds. Loss without a queue
  is repaired by resends, not paid for by a smaller picture; and what such loss took
  had been carried through the bottleneck, so it counts in what the link carries
  (below). Counted as not carried, 10 % random loss held a sender that probes a
  quarter above its estimate to 0.8 of what it sent: the camera of the benchmark's
  loss10 link stayed on its low layer for 12 s in two runs of six.

Departure from libwebrtc: what was acknowledged while the link showed no queue
counts as carried at once (the estimate is never below most of it). The relay's allocator
probes by sending padding on top of its layers and keeps the next layer once the
estimate covers it; libwebrtc reaches the same point through its periodic probe
clusters.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from media.control.estimator import Estimate
from media.wire.twcc import TransportFeedback

# Packets kept for the feedback to find: 5 s at 800 packets a second (a 1080p
# camera at its best), and feedback comes within a second or two even over a
# satellite.
SENT_LOG_SIZE = 4096

# Groups (InterArrivalDelta in libwebrtc): packets sent within this many ms of a
# group's first; and packets arriving in a burst (within this many ms of the group's
# last, sooner than they were sent apart) join it: the link let them out together.
GROUP_MS = 5.0
BURST_MS = 5.0
# A gap this long between arrivals starts over (a link cut, a clock jump).
RESET_MS = 3000.0

# Trendline (TrendlineEstimator): window, smoothing, gain; the adaptive threshold's
# start, bounds and rates up and down (gcc-02 §5.4); how long over it is overuse.
WINDOW = 20
SMOOTHING = 0.9
GAIN = 4.0
DELTA_CAP = 60
THRESHOLD_START = 12.5
THRESHOLD_MIN = 6.0
THRESHOLD_MAX = 600.0
K_UP = 0.0087
K_DOWN = 0.039
OVERUSE_MS = 10.0

# AIMD (AimdRateControl): back-off factor, multiplicative growth a second, cap over
# what was acknowledged, and the round trip assumed before one is measured.
BETA = 0.85
GROWTH = 1.08
ACKED_CAP = 1.5
ACKED_CAP_EXTRA_BPS = 10_000
DEFAULT_RTT_MS = 200.0
PACKET_BITS = 1200 * 8
MIN_ADDITIVE_BPS = 4000
# The capacity seen at back-offs is forgotten once the rate is this far past it.
CAPACITY_SPAN = 1.3

# What was acknowledged: bytes that arrived over the last half second (libwebrtc's
# window too): while a queue builds, what arrives over it is what the bottleneck
# lets through, not diluted by the quieter second around it.
ACKED_WINDOW_MS = 500.0
ACKED_MIN_PACKETS = 10
# A back-off is a share of the most acknowledged over any half second of this
# long. A queue is seen some time after the burst that built it (a slide's
# keyframe, sent while the relay sends little else), when the half second just
# acknowledged is quiet again: 85 % of that took a 256 kbit/s link's estimate
# from 209 to 70 kbit/s in one step.
THROUGH_MEMORY_MS = 1000.0
# What counts as carried (module notes) is measured over a second, and only this
# share of it: arrival times come bunched (a link's batching, a receiver's busy
# thread), and over half a second the benchmark's 256 kbit/s link seemed to carry
# up to 328 kbit/s, over a second up to 285.
CARRIED_WINDOW_MS = 1000.0
CARRIED_SHARE = 0.9

# Probes (ProbeBitrateEstimator): enough of a cluster must arrive, over a span
# that can be timed; a cluster that arrived slower than it was sent ran into the
# link's limit, and a little under what arrived is what it carries.
PROBE_MIN_RECEIVED = 0.8
PROBE_MIN_PACKETS = 5
PROBE_MIN_SPAN_MS = 1.0
PROBE_SATURATED = 0.9
PROBE_UTILISATION = 0.95
PROBE_TIMEOUT_MS = 2000.0

# Loss (module notes): a sample per this many packets reported, the floor over the
# last half minute (as media.control.estimator), GCC's 2 % and 10 % bands.
LOSS_SAMPLE_PACKETS = 100
FLOOR_WINDOW_MS = 30_000
FLOOR_MIN_SAMPLES = 4
FLOOR_MAX = 0.15
LOSS_LOW = 0.02
LOSS_HIGH = 0.10
LOSS_SMOOTHING = 0.3

# A standing queue (module notes): one-way delay this far above the least seen
# over the window, in this many feedback messages in a row, is overuse too.
STANDING_QUEUE_MS = 150.0
# The line's overuse counts only over a queue at least this long (module notes).
TREND_QUEUE_MS = 50.0
STANDING_FEEDBACKS = 2
BASE_DELAY_WINDOW_MS = 30_000

# The feedback is current while some came this recently; after that the relay
# goes back to what REMB and receiver reports say (media.control.estimator).
ACTIVE_MS = 2000
# A back-off counts as congestion this long: no probe meanwhile.
CONGESTION_HOLD_MS = 2000


class Usage(Enum):
    NORMAL = "normal"
    OVERUSING = "overusing"
    UNDERUSING = "underusing"


@dataclass(frozen=True)
class PacketResult:
    """One sent packet and what the feedback said of it."""

    sequence: int  # unwrapped transport sequence number
    sent_ms: float
    size: int  # bytes on the wire
    arrived_us: int | None  # the receiver's clock; None: reported lost
    probe: int | None = None


class SentLog:
    """The packets sent on one transport, by transport sequence number.

    Kept in flat arrays, a slot per number modulo the log's size: there is one per
    participant, and a tuple per packet cost a relay with 64 classrooms about
    60 MB; these cost about 8 MB."""

    def __init__(self, size: int = SENT_LOG_SIZE) -> None:
        self._next = 0
        self._size = size
        # Slot = sequence % size: the sequence kept there (-1: none), when it left,
        # its size, its probe cluster (0: none) and whether it was reported arrived.
        self._sequence = array("q", [-1]) * size
        self._sent_ms = array("d", [0.0]) * size
        self._bytes = array("i", [0]) * size
        self._probe = array("i", [0]) * size
        self._reported = bytearray(size)
        self._probes = 0
        # The probe cluster that packets sent now belong to (None: none).
        self.probe: int | None = None
        self._planned: dict[int, int] = {}

    def sent(self, size: int, now_ms: float) -> int:
        """Note a packet leaving now; the 16-bit number to stamp it with."""
        sequence = self._next
        self._next += 1
        slot = sequence % self._size
        self._sequence[slot] = sequence
        self._sent_ms[slot] = now_ms
        self._bytes[slot] = size
        self._probe[slot] = self.probe or 0
        self._reported[slot] = 0
        return sequence & 0xFFFF

    def begin_probe(self, packets: int) -> int:
        """A new probe cluster of `packets`; packets sent while `probe` is its id
        belong to it."""
        self._probes += 1
        self._planned[self._probes] = packets
        while len(self._planned) > 16:
            del self._planned[next(iter(self._planned))]
        return self._probes

    def planned(self, probe: int) -> int:
        return self._planned.get(probe, 0)

    def results(self, feedback: TransportFeedback) -> list[PacketResult]:
        """The packets a feedback message reports, each once, in sequence order."""
        results = []
        newest = self._next - 1
        for short, arrived in feedback.packets:
            # The 16-bit number, unwrapped to the latest packet sent with it.
            sequence = newest - ((newest - short) & 0xFFFF)
            if sequence < 0:
                continue
            slot = sequence % self._size
            if self._sequence[slot] != sequence or self._reported[slot]:
                continue
            if arrived is not None:
                # Reported once it arrived: a packet first reported lost may come late.
                self._reported[slot] = 1
            probe = self._probe[slot] or None
            results.append(
                PacketResult(sequence, self._sent_ms[slot], self._bytes[slot], arrived, probe)
            )
        return results


class Trendline:
    """The queue's trend from packet groups (module notes): a usage signal."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.usage = Usage.NORMAL
        self.threshold = THRESHOLD_START
        self.modified_trend = 0.0
        # The current group: (first send, last send, last arrival, first arrival).
        self._group: tuple[float, float, float, float] | None = None
        self._previous: tuple[float, float, float, float] | None = None
        self._deltas = 0
        self._first_arrival: float | None = None
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._history: deque[tuple[float, float]] = deque(maxlen=WINDOW)
        self._trend = 0.0
        self._over_ms = -1.0
        self._overuses = 0
        self._threshold_at: float | None = None

    def add(self, sent_ms: float, arrived_ms: float) -> Usage:
        group = self._group
        if group is not None and arrived_ms - group[2] > RESET_MS:
            self._reset()
            group = None
        if group is None:
            self._group = (sent_ms, sent_ms, arrived_ms, arrived_ms)
            return self.usage
        first_sent, last_sent, last_arrival, first_arrival = group
        if sent_ms < first_sent:
            return self.usage  # reordered: older than the group under way
        arrival_delta = arrived_ms - last_arrival
        in_burst = (
            arrival_delta <= BURST_MS
            and arrival_delta - (sent_ms - last_sent) < 0
            and arrived_ms - first_arrival < 100
        )
        if sent_ms - first_sent <= GROUP_MS or in_burst:
            self._group = (
                first_sent,
                max(last_sent, sent_ms),
                max(last_arrival, arrived_ms),
                first_arrival,
            )
            return self.usage
        previous, self._previous = self._previous, group
        self._group = (sent_ms, sent_ms, arrived_ms, arrived_ms)
        if previous is not None:
            self._update(group[1] - previous[1], group[2] - previous[2], group[2])
        return self.usage

    def _update(self, send_delta: float, arrival_delta: float, arrived_ms: float) -> None:
        self._deltas = min(self._deltas + 1, 1000)
        if self._first_arrival is None:
            self._first_arrival = arrived_ms
        self._accumulated += arrival_delta - send_delta
        self._smoothed = SMOOTHING * self._smoothed + (1 - SMOOTHING) * self._accumulated
        self._history.append((arrived_ms - self._first_arrival, self._smoothed))
        trend = self._trend
        if len(self._history) == WINDOW:
            trend = _slope(self._history, trend)
        self._detect(trend, send_delta, arrived_ms)

    def _detect(self, trend: float, send_delta: float, now_ms: float) -> None:
        if self._deltas < 2:
            return
        modified = min(self._deltas, DELTA_CAP) * trend * GAIN
        self.modified_trend = modified
        if modified > self.threshold:
            self._over_ms = send_delta / 2 if self._over_ms < 0 else self._over_ms + send_delta
            self._overuses += 1
            if self._over_ms > OVERUSE_MS and self._overuses > 1 and trend >= self._trend:
                self._over_ms = 0.0
                self._overuses = 0
                self.usage = Usage.OVERUSING
        elif modified < -self.threshold:
            self._over_ms = -1.0
            self._overuses = 0
            self.usage = Usage.UNDERUSING
        else:
            self._over_ms = -1.0
            self._overuses = 0
            self.usage = Usage.NORMAL
        self._trend = trend
        self._adapt_threshold(modified, now_ms)

    def _adapt_threshold(self, modified: float, now_ms: float) -> None:
        if self._threshold_at is None:
            self._threshold_at = now_ms
        if abs(modified) > self.threshold + 15:
            # A spike (a link's hiccup): not a reason to move the threshold.
            self._threshold_at = now_ms
            return
        k = K_DOWN if abs(modified) < self.threshold else K_UP
        elapsed = min(now_ms - self._threshold_at, 100.0)
        self.threshold += k * (abs(modified) - self.threshold) * elapsed
        self.threshold = min(max(self.threshold, THRESHOLD_MIN), THRESHOLD_MAX)
        self._threshold_at = now_ms


def _slope(points: Sequence[tuple[float, float]], otherwise: float) -> float:
    """The least-squares slope of (x, y) points."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    numerator = sum((x - mean_x) * (y - mean_y) for x, y in points)
    denominator = sum((x - mean_x) ** 2 for x, _ in points)
    return numerator / denominator if denominator else otherwise


class RateControl:
    """AIMD on the usage signal (module notes)."""

    def __init__(self, initial_bps: float, min_bps: float, max_bps: float) -> None:
        self.rate = initial_bps
        self._min = min_bps
        self._max = max_bps
        self._updated_at: float | None = None
        # What was acknowledged at back-offs, smoothed: the link's capacity.
        self.capacity: float | None = None
        self.decreased_at: float | None = None

    def update(
        self, usage: Usage, acked_bps: float | None, rtt_ms: float | None, now_ms: float
    ) -> float:
        elapsed = 0.0 if self._updated_at is None else max(0.0, now_ms - self._updated_at)
        self._updated_at = now_ms
        if usage is Usage.OVERUSING:
            if acked_bps is not None:
                lowered = min(self.rate, BETA * acked_bps)
                self.capacity = (
                    acked_bps if self.capacity is None else 0.95 * self.capacity + 0.05 * acked_bps
                )
            else:
                lowered = self.rate * BETA
            if lowered < self.rate:
                self.decreased_at = now_ms
            self.rate = lowered
        elif usage is Usage.NORMAL:
            if self.capacity is not None and self.rate > self.capacity * CAPACITY_SPAN:
                self.capacity = None  # the link changed: grow fast again
            seconds = min(elapsed, 1000.0) / 1000
            if self.capacity is None:
                grown = self.rate * GROWTH**seconds
            else:
                response_s = ((rtt_ms or DEFAULT_RTT_MS) + 100) / 1000
                packets_per_frame = math.ceil(self.rate / 30 / PACKET_BITS)
                per_second = max(MIN_ADDITIVE_BPS, packets_per_frame * PACKET_BITS / response_s)
                grown = self.rate + per_second * seconds
            if acked_bps is not None:
                grown = min(grown, max(self.rate, ACKED_CAP * acked_bps + ACKED_CAP_EXTRA_BPS))
            self.rate = grown
        self.rate = min(max(self.rate, self._min), self._max)
        return self.rate

    def raise_to(self, bps: float) -> None:
        """What a probe or a clean acknowledgement showed carried (module notes)."""
        if bps > self.rate:
            self.rate = min(bps, self._max)
            if self.capacity is not None and self.rate > self.capacity * CAPACITY_SPAN:
                self.capacity = None


class _Acked:
    """Bytes that arrived, by the receiver's clock, over the last `window_ms`."""

    def __init__(self, window_ms: float, min_packets: int) -> None:
        self._window = window_ms
        self._min_packets = min_packets
        self._packets: deque[tuple[float, int]] = deque()
        self._bytes = 0

    def add(self, arrived_ms: float, size: int) -> None:
        self._packets.append((arrived_ms, size))
        self._bytes += size
        while self._packets and arrived_ms - self._packets[0][0] > self._window:
            self._bytes -= self._packets.popleft()[1]

    def bps(self) -> float | None:
        packets = self._packets
        if len(packets) < self._min_packets:
            return None
        span = packets[-1][0] - packets[0][0]
        if span < self._window / 2:
            return None
        # The first packet's bytes arrived before the span began.
        return (self._bytes - packets[0][1]) * 8000 / span


@dataclass
class _Cluster:
    planned: int
    started_ms: float
    results: list[PacketResult]


def probe_rate(results: Sequence[PacketResult], planned: int) -> float | None:
    """What a probe cluster shows carried, in bit/s (None: it cannot tell)."""
    arrived = sorted(
        (r for r in results if r.arrived_us is not None),
        key=lambda r: r.arrived_us or 0,
    )
    if len(arrived) < max(PROBE_MIN_PACKETS, PROBE_MIN_RECEIVED * planned):
        return None
    by_send = sorted(results, key=lambda r: r.sent_ms)
    send_span = by_send[-1].sent_ms - by_send[0].sent_ms
    first, last = arrived[0].arrived_us, arrived[-1].arrived_us
    assert first is not None and last is not None
    receive_span = (last - first) / 1000
    if send_span < PROBE_MIN_SPAN_MS or receive_span < PROBE_MIN_SPAN_MS:
        return None
    send_bps = sum(r.size for r in by_send[:-1]) * 8000 / send_span
    receive_bps = sum(r.size for r in arrived[1:]) * 8000 / receive_span
    if receive_bps < PROBE_SATURATED * send_bps:
        return PROBE_UTILISATION * receive_bps
    return min(send_bps, receive_bps)


class SendSideEstimator:
    """A participant's downlink from transport feedback (see the module docstring).

    It answers as media.control.estimator.Estimator does, so that the downlink
    can use either: an `Estimate`, and the signs the allocator reads (`alarm`,
    `congested`, `queueing`).
    """

    def __init__(
        self,
        log: SentLog,
        initial_bps: int = 250_000,
        min_bps: int = 50_000,
        max_bps: int = 5_000_000,
    ) -> None:
        self.log = log
        self._trendline = Trendline()
        self._rate = RateControl(initial_bps, min_bps, max_bps)
        self._acked = _Acked(ACKED_WINDOW_MS, ACKED_MIN_PACKETS)
        self._carried = _Acked(CARRIED_WINDOW_MS, 2 * ACKED_MIN_PACKETS)
        self._recent_acked: deque[tuple[float, float]] = deque()
        self._loss_based = float(max_bps)
        self._samples: deque[tuple[float, float, bool]] = deque()
        # (when, least one-way delay of a feedback message), for the base delay.
        self._delays: deque[tuple[float, float]] = deque()
        self._standing = 0
        self.queue_ms = 0.0
        self._floor = 0.0
        self._sample = [0, 0]  # reported, lost
        self._loss = 0.0
        self._rtt: float | None = None
        self._clusters: dict[int, _Cluster] = {}
        self._fed_at: float | None = None
        self._estimate = Estimate(initial_bps, 0.0, None, "initial")
        self.alarm = False
        # What the last probe showed (bit/s), for the log.
        self.probed_bps: float | None = None

    @property
    def estimate(self) -> Estimate:
        return self._estimate

    def __repr__(self) -> str:
        acked = self._acked.bps()
        return (
            f"<{self.usage.value} trend {self._trendline.modified_trend:.1f}"
            f"/{self._trendline.threshold:.1f} acked {acked or 0:.0f}"
            f" delay-based {self._rate.rate:.0f} loss-based {self._loss_based:.0f}"
            f" loss {self._loss:.3f} floor {self._floor:.3f}>"
        )

    @property
    def usage(self) -> Usage:
        return self._trendline.usage

    @property
    def loss_floor(self) -> float:
        return self._floor

    def active(self, now_ms: float) -> bool:
        """Whether transport feedback comes: the estimate is then this one's."""
        return self._fed_at is not None and now_ms - self._fed_at < ACTIVE_MS

    def congested(self, now_ms: float) -> bool:
        at = self._rate.decreased_at
        return at is not None and now_ms - at < CONGESTION_HOLD_MS

    @property
    def queueing(self) -> bool:
        return self._trendline.usage is Usage.OVERUSING

    def on_rtt(self, rtt_ms: float) -> None:
        self._rtt = rtt_ms if self._rtt is None else 0.7 * self._rtt + 0.3 * rtt_ms

    def on_feedback(self, results: Sequence[PacketResult], now_ms: float) -> Estimate:
        """Fold in one feedback message's packets; the new estimate."""
        self._fed_at = now_ms
        before = self._estimate.bitrate_bps
        decreased_at = self._rate.decreased_at
        usage = self._trendline.usage
        lost = 0
        delays: list[float] = []
        # Loss while the link shows no queue (as for the loss floor) is the link's
        # noise: what was lost there had been carried through the bottleneck.
        flat = self.queue_ms <= STANDING_QUEUE_MS / 2
        arrived_ms: float | None = None
        for result in sorted(results, key=lambda r: r.sent_ms):
            if result.probe is not None:
                self._cluster(result, now_ms)
            if result.arrived_us is None:
                lost += 1
                if flat and arrived_ms is not None:
                    self._carried.add(arrived_ms, result.size)
                continue
            arrived_ms = result.arrived_us / 1000
            delays.append(arrived_ms - result.sent_ms)
            self._acked.add(arrived_ms, result.size)
            self._carried.add(arrived_ms, result.size)
            usage = self._trendline.add(result.sent_ms, arrived_ms)
        standing = bool(delays) and self._standing_queue(delays, now_ms)
        if standing and usage is not Usage.UNDERUSING:
            usage = Usage.OVERUSING
        elif usage is Usage.OVERUSING and self.queue_ms < TREND_QUEUE_MS:
            usage = Usage.NORMAL
        self._count_loss(len(results), lost, now_ms)
        acked = self._acked.bps()
        rate = self._rate.update(usage, self._through(acked, now_ms), self._rtt, now_ms)
        if usage is not Usage.OVERUSING:
            probed = self._probes(now_ms)
            if probed is not None:
                self.probed_bps = probed
                self._rate.raise_to(probed)
            carried = self._carried.bps()
            calm = self._trendline.modified_trend <= self._trendline.threshold / 2
            if carried is not None and calm and not self.congested(now_ms):
                # Carried without a queue (module notes); not right after a back-off,
                # whose point is to send less than got through while the queue drains.
                self._rate.raise_to(CARRIED_SHARE * carried)
            rate = self._rate.rate
        limited_by = "delay"
        bitrate = rate
        if self._loss_based < bitrate:
            bitrate, limited_by = self._loss_based, "loss"
        self._estimate = Estimate(round(bitrate), self._loss, self._rtt, limited_by)
        self.alarm = self._rate.decreased_at != decreased_at or bitrate < before * 0.97
        return self._estimate

    def _through(self, acked: float | None, now_ms: float) -> float | None:
        """What a back-off is a share of: the most acknowledged over any half second
        of the last `THROUGH_MEMORY_MS` (module notes)."""
        recent = self._recent_acked
        if acked is not None:
            recent.append((now_ms, acked))
        while recent and now_ms - recent[0][0] > THROUGH_MEMORY_MS:
            recent.popleft()
        return max((a for _, a in recent), default=None)

    def _standing_queue(self, delays: list[float], now_ms: float) -> bool:
        """Whether this message's packets waited in a queue that stands (module notes)."""
        least = min(delays)
        window = self._delays
        while window and (window[-1][1] >= least or now_ms - window[0][0] > BASE_DELAY_WINDOW_MS):
            # A monotonic deque of minima: the front is the least of the window.
            if window[-1][1] >= least:
                window.pop()
            else:
                window.popleft()
        window.append((now_ms, least))
        self.queue_ms = sorted(delays)[len(delays) // 2] - window[0][1]
        self._standing = self._standing + 1 if self.queue_ms > STANDING_QUEUE_MS else 0
        return self._standing >= STANDING_FEEDBACKS

    def _count_loss(self, reported: int, lost: int, now_ms: float) -> None:
        self._sample[0] += reported
        self._sample[1] += lost
        if self._sample[0] < LOSS_SAMPLE_PACKETS:
            return
        fraction = self._sample[1] / self._sample[0]
        self._sample = [0, 0]
        self._loss = (1 - LOSS_SMOOTHING) * self._loss + LOSS_SMOOTHING * fraction
        # Whether the sample came without a queue (a full one loses packets too).
        flat = self.queue_ms <= STANDING_QUEUE_MS / 2
        self._samples.append((now_ms, fraction, flat))
        while now_ms - self._samples[0][0] > FLOOR_WINDOW_MS:
            self._samples.popleft()
        ordered = sorted(s for _, s, _ in self._samples)
        if len(ordered) >= FLOOR_MIN_SAMPLES:
            self._floor = min(FLOOR_MAX, ordered[(len(ordered) - 1) // 2])
        else:
            # Too few for a median: the least loss seen without a queue.
            self._floor = min(FLOOR_MAX, min((s for _, s, f in self._samples if f), default=0.0))
        excess = max(0.0, fraction - self._floor)
        delay_based = self._rate.rate
        if excess > LOSS_HIGH:
            self._loss_based = min(self._loss_based, delay_based) * (1 - 0.5 * excess)
        elif excess < LOSS_LOW:
            self._loss_based = max(self._loss_based, delay_based)

    def _cluster(self, result: PacketResult, now_ms: float) -> None:
        assert result.probe is not None
        cluster = self._clusters.get(result.probe)
        if cluster is None:
            cluster = _Cluster(self.log.planned(result.probe), now_ms, [])
            self._clusters[result.probe] = cluster
        cluster.results.append(result)

    def _probes(self, now_ms: float) -> float | None:
        """The best rate a complete probe cluster showed, forgetting finished ones."""
        best = None
        for probe, cluster in list(self._clusters.items()):
            if len(cluster.results) >= cluster.planned:
                rate = probe_rate(cluster.results, cluster.planned)
                if rate is not None:
                    best = max(best or 0.0, rate)
                del self._clusters[probe]
            elif now_ms - cluster.started_ms > PROBE_TIMEOUT_MS:
                del self._clusters[probe]
        return best
