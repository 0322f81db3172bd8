"""How much one participant's downlink carries, from its own RTCP feedback.

Pure: feed it feedback with the time it arrived, it returns an Estimate. The relay's
adapter (on aiortc) turns RTCP packets into `Feedback` and the estimate into layer
choices; nothing here touches a socket or a clock.

The rules are those of Google Congestion Control (draft-ietf-rmcat-gcc-02):
- the receiver's delay-based estimate arrives as REMB (draft-alvestrand-rmcat-remb-03);
  Chromium sends one about every second, and more often when its estimate drops;
- the sender's loss-based estimate A_s follows the fraction lost in receiver reports
  (RFC 3550 §6.4.2): under 2 % it may grow by 5 %, over 10 % it shrinks by half the
  loss, in between it holds (gcc-02 §6);
- the estimate is the lower of the two, and A_s never exceeds the REMB (gcc-02 §6).

Departures, from what Chromium's REMB and real rural links turned out to mean here:
- A REMB does not say what a link could carry. libwebrtc's receive-side estimate
  never rises above about 1.5x what it receives, and it *falls* only when it sees
  queues grow (overuse). So while the REMB has not fallen lately, what the relay
  already sends without complaint (`sending_bps`) counts as carried, even above the
  REMB; after a fall, the REMB rules for `CONGESTION_HOLD_MS`. A fall counts only
  when the path agrees: loss of 2 % or more, or a round trip grown past its
  minimum (a queue building), then or within `FALL_PENDING_MS`: Chromium's REMB
  fell within half a second of the step profile's link narrowing, and the round
  trip showed the queue one or two reports later (a report comes about every
  second); a further fall meanwhile extends the wait and keeps what the round
  trips showed so far. A receiver short of CPU also reports overuse (its packets
  wait to be read, not on the link), and believing it would starve a classroom
  whose link is fine. So until the path agrees, the estimate stays where it was
  before the fall, and if it never does, that figure counts as carried: following
  a fall halfway (down to what was being sent) turned the camera off on the step
  profile's recovered 2 Mbit/s link, with a flat round trip and no loss, and
  kept it off for 13 s.
- What was carried holds for `CARRIED_WINDOW_MS`, not only while it is being
  sent: the REMB follows what the receiver gets, so when the relay sends less for
  a reason of its own (a layer's cost measured higher for a moment, a probe ended)
  the REMB falls with it, and an estimate that followed would ratchet a clean
  link down to audio alone, seen here on a 2 Mbit/s link with no loss and a flat
  round trip. A confirmed REMB fall forgets it. A rate counts only once a round
  trip and a report's interval have passed without complaint: a probe sent
  above a 256 kbit/s satellite link at once counted as carried, and the next
  probe was sized on it.
- Overdriven, a link is backed off to 0.85 of what got through (libwebrtc does so
  with what was acknowledged): on loss above the floor over 10 %, and on a queue
  that grows, two round trips in a row past 1.25x the lowest and 20 ms, though
  the REMB stays still (Chromium's did, at 384 kbit/s for 30 s on a 300 kbit/s
  link) and nothing is lost until the modem's buffer overflows. For
  `CONGESTION_HOLD_MS` after, the REMB counts no higher than that either: a
  REMB raised by a probe's padding stayed at 433 kbit/s for 8 s on the step
  profile's 300 kbit/s, the round trip growing from 100 to 400 ms meanwhile.
- With low loss, A_s follows that delay-based figure at once instead of creeping
  up 5 % a second: a second slow climb on top of the receiver's own would keep a
  recovered classroom on low quality for a minute. Loss can only ever pull the
  estimate down.
- Loss that stays whatever the rate (a noisy radio or satellite hop, not a queue)
  says nothing about congestion: halving the rate does not lower it, and the GCC
  rules would starve such a link down to audio. The loss rules therefore judge
  the loss *above* a floor: the median of the last half minute's samples (from
  four of them on: on audio and slides, a sample of 100 packets comes every few
  seconds; before that, the lowest sample whose round trip showed no queue: on
  loss10 a floor of zero for the first 20 s kept the camera off, and a full
  queue, the other cause of heavy loss, shows in the round trip), in the spirit
  of libwebrtc's loss-based BWE v2, which
  estimates an "inherent loss" apart from the loss that sending more causes. A
  congested link loses only while it is overdriven, less than half the time, so
  its floor stays near zero. A lower percentile left a steady 10 % loss about
  2 % above its floor, taken for congestion half the time: the camera never
  came. People are shown the loss as measured.
- Round trips wobble whatever the rate too: a radio hop's scheduling, and a
  receiver or a relay that gets to its packets late. On loopback, in a soak of 50
  aiortc classrooms on a 2-core machine, a round trip whose lowest was under 1 ms
  lay a median 8 ms and a 90th percentile 30 ms above it, the high ones at the same
  moments in every classroom (reconnections' handshakes): past the fixed 20 ms
  margin twice in a row about 4 times a minute per classroom, each a back-off, and
  the camera was off a tenth of the time on a link with no queue at all. So the
  margin grows with the round trips' own wobble: `RTT_NOISE_FACTOR` times the 75th
  percentile of their excess over the lowest in the last half minute (from four
  samples on, as the loss floor), when that is more (the same data: under one
  false call a minute). The margin that confirms a far REMB fall grows the same
  way. A queue that builds on a narrowed link raises every round trip for as long
  as it lasts, and an overdriven link is backed off within seconds, so its
  percentile stays near zero: in the spirit of libwebrtc's overuse detector,
  whose threshold follows the delay signal's own variation (gcc-02 §5.4).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

# gcc-02 §6 thresholds and factors.
LOSS_LOW = 0.02
LOSS_HIGH = 0.10
INCREASE = 1.05
# A_s grows at most once a second, whatever the receiver-report rate.
INCREASE_INTERVAL_MS = 1000
# Without a REMB for this long, the delay-based figure is stale: go on loss alone.
REMB_TIMEOUT_MS = 5000
# Loss and RTT shown to people are smoothed so that one report does not flap them.
SMOOTHING = 0.3
# A REMB this much below the previous one is the receiver seeing congestion.
REMB_FALL = 0.97
CONGESTION_HOLD_MS = 5000
# A REMB fall still counts if the path agrees within this long; a fall this far
# (a tenth or more) needs only round trips this much over the lowest, twice in a row.
FALL_PENDING_MS = 2000
REMB_FELL_FAR = 0.9
FALL_RTT_MARGIN_MS = 20.0
# A round trip this much above the lowest seen means a queue on the path; this
# many such round trips in a row, a queue that grows.
QUEUE_RTT_FACTOR = 1.25
QUEUE_RTT_MARGIN_MS = 20.0
QUEUE_SAMPLES = 2
# The round trips' own wobble (module notes): this percentile of their excess over
# the lowest, over this window, from this many samples on; the margin is this many
# times it when that is more than QUEUE_RTT_MARGIN_MS.
RTT_NOISE_WINDOW_MS = 30_000
RTT_NOISE_MIN_SAMPLES = 4
RTT_NOISE_PERCENTILE = 0.75
RTT_NOISE_FACTOR = 3.0
# How long a rate sent without complaint counts as carried (module notes).
CARRIED_WINDOW_MS = 20_000
# A rate counts as carried only once feedback on it could have come back: a round
# trip, a modem's queue filling (a few hundred ms) and a receiver report's interval
# (Chromium sends one about every second).
CARRIED_PROOF_MS = 1500
# What got through an overdriven link, times this, is what it carries after.
BACKOFF = 0.85
# Until then it counts up to the estimate it was sent under, and this much over it.
UNPROVEN_MARGIN = 1.1
# The loss floor (module notes): this percentile of the samples of this window,
# once there are enough of them to tell a steady loss from a passing one.
FLOOR_WINDOW_MS = 30_000
FLOOR_MIN_SAMPLES = 4
FLOOR_PERCENTILE = 0.5
# A link that loses more than this whatever the rate is past helping by rate: the
# GCC rules keep their say above it.
FLOOR_MAX = 0.15


@dataclass(frozen=True)
class Feedback:
    """One piece of RTCP feedback from a participant, any of its fields may be absent."""

    remb_bps: int | None = None
    # Fraction lost since the previous report, 0..1 (RFC 3550 fraction_lost / 256).
    fraction_lost: float | None = None
    rtt_ms: float | None = None


@dataclass(frozen=True)
class Estimate:
    bitrate_bps: int
    loss: float
    rtt_ms: float | None
    # Which rule set the figure ("remb", "loss" or "initial"), for the teacher's page.
    limited_by: str


class Estimator:
    def __init__(
        self,
        initial_bps: int = 1_000_000,
        min_bps: int = 50_000,
        max_bps: int = 5_000_000,
    ) -> None:
        self._min = min_bps
        self._max = max_bps
        self._loss_based = float(initial_bps)
        self._remb: int | None = None
        self._remb_at: int | None = None
        self._last_increase_at: int | None = None
        self._congested_at: int | None = None
        self._congested = False
        # When the REMB last fell without the path agreeing (FALL_PENDING_MS).
        self._fell_at: int | None = None
        self._fell_far = False
        self._fell_from = 0
        # The estimate just before that fall, which stands while it waits.
        self._held = 0
        self._longer_rtts = 0
        self._min_rtt: float | None = None
        # (time, round trip over the lowest) of the window, and the wobble they show.
        self._excess: deque[tuple[int, float]] = deque()
        self._rtt_noise = 0.0
        # Round trips past the queue threshold in a row, and the last back-off.
        self._queued = 0
        self._backed_off_at: int | None = None
        # What got through at the last back-off, and when: the REMB counts no
        # higher for a while (module notes).
        self._remb_cap: tuple[int, int] | None = None
        self._loss = 0.0
        self._last_loss = 0.0
        self._rtt: float | None = None
        self._samples: deque[tuple[int, float, bool]] = deque()
        self._floor = 0.0
        # (time, bit/s sent, bit/s known to be carried then) while the path showed
        # no congestion, newest last.
        self._carried: deque[tuple[int, int, int]] = deque()
        self._estimate = Estimate(initial_bps, 0.0, None, "initial")
        # Whether the last update saw congestion: a confirmed REMB fall (and its
        # hold), loss above the floor past GCC's 10 %, or a queue that grows.
        self.alarm = False
        # Which signal made the last congestion call, and its figures: the log of
        # the relay's layer changes says it (a soak on a loaded machine has to tell
        # a REMB fall from loss from a round trip that grew). None before any.
        self.cause: str | None = None

    @property
    def estimate(self) -> Estimate:
        return self._estimate

    @property
    def congested(self) -> bool:
        return self._congested

    @property
    def falling(self) -> bool:
        """Whether a REMB fall waits for the path to confirm it (module notes)."""
        return self._fell_at is not None

    @property
    def queueing(self) -> bool:
        """Whether the latest round trip was past the queue threshold: one is not a
        queue that grows yet, but it may be the start of one."""
        return self._queued > 0

    def shows_queue(self, rtt_ms: float) -> bool:
        """Whether a round trip is past the queue threshold (False before any)."""
        return self._min_rtt is not None and self._queued_rtt(rtt_ms)

    def is_fall(self, remb_bps: int) -> bool:
        """Whether a REMB (the whole link's, audio included) is a fall from the last."""
        return self._remb is not None and remb_bps < self._remb * REMB_FALL

    @property
    def loss_floor(self) -> float:
        """The steady loss that is not taken for congestion (module notes)."""
        return self._floor

    def _add_loss_sample(self, lost: float, now_ms: int, flat: bool) -> None:
        """`flat`: the sample came with a round trip that shows no queue."""
        self._samples.append((now_ms, lost, flat))
        while self._samples and now_ms - self._samples[0][0] > FLOOR_WINDOW_MS:
            self._samples.popleft()
        if len(self._samples) < FLOOR_MIN_SAMPLES:
            # Too few for a median: the lowest loss seen with a flat round trip
            # (a full queue shows in the round trip; a steady loss in every sample).
            self._floor = min(FLOOR_MAX, min((s for _, s, f in self._samples if f), default=0.0))
        else:
            ordered = sorted(sample for _, sample, _ in self._samples)
            self._floor = min(FLOOR_MAX, ordered[int(FLOOR_PERCENTILE * (len(ordered) - 1))])

    def update(
        self, feedback: Feedback, now_ms: int, sending_bps: int | None = None, late: bool = False
    ) -> Estimate:
        """Fold in one piece of feedback; `sending_bps` is what the relay sends now.
        `late`: the relay itself runs late (media.control.overload), so its round trips
        measure its own lateness and are left out (Downlink.tick); a REMB fall is then
        confirmed by loss alone."""
        if feedback.rtt_ms is not None and feedback.rtt_ms > 0:
            self._min_rtt = min(self._min_rtt or feedback.rtt_ms, feedback.rtt_ms)
        lost = None
        if feedback.fraction_lost is not None:
            lost = min(1.0, max(0.0, feedback.fraction_lost))
            rtt = feedback.rtt_ms if feedback.rtt_ms is not None else self._rtt
            flat = rtt is not None and self._min_rtt is not None and not self._queued_rtt(rtt)
            self._add_loss_sample(lost, now_ms, flat)
        if feedback.remb_bps is not None:
            fell = self._remb is not None and feedback.remb_bps < self._remb * REMB_FALL
            if fell and self._path_agrees(feedback.rtt_ms, late):
                self._congested_at = now_ms
                self.cause = self._fall_cause(feedback.remb_bps, feedback.rtt_ms)
            elif fell:
                assert self._remb is not None
                if self._fell_at is None:
                    # A new fall to confirm. A further fall while one waits (Chromium's
                    # REMB steps down report after report as the queue builds) keeps
                    # the round trips counted so far, and is as far as all of them.
                    self._fell_from = self._remb
                    self._longer_rtts = 0
                    self._held = self._estimate.bitrate_bps
                self._fell_at = now_ms
                self._fell_far = feedback.remb_bps < self._fell_from * REMB_FELL_FAR
            self._remb = feedback.remb_bps
            self._remb_at = now_ms
        pending = self._fell_at is not None and self._congested_at != now_ms
        if pending and self._late_agreement(feedback.rtt_ms, now_ms):
            self._congested_at = now_ms
            self._fell_at = None
            self.cause = self._fall_cause(self._remb or 0, feedback.rtt_ms)
        elif pending and self._fell_at is None:
            # The path never agreed: the fall was the receiver's own, and what the
            # estimate was before it counts as carried (module notes).
            self._carried.append((self._answered_at(now_ms), self._held, self._held))
        self._congested = (
            self._congested_at is not None and now_ms - self._congested_at < CONGESTION_HOLD_MS
        )
        if feedback.rtt_ms is not None:
            self._rtt = (
                feedback.rtt_ms
                if self._rtt is None
                else (1 - SMOOTHING) * self._rtt + SMOOTHING * feedback.rtt_ms
            )
        if lost is not None:
            self._loss = (1 - SMOOTHING) * self._loss + SMOOTHING * lost
            self._last_loss = lost
        # Overdriven: by heavy loss (what got through is known) or by a queue.
        through = None
        if lost is not None and lost - self._floor > LOSS_HIGH:
            through = 1 - lost
            self.cause = f"loss {lost:.0%} (floor {self._floor:.0%})"
        elif self._queue_builds(feedback.rtt_ms, now_ms):
            through = 1.0
            self.cause = (
                f"queue: round trip {feedback.rtt_ms:.0f} ms, lowest {self._min_rtt:.0f} ms"
            )
        if through is not None:
            self._back_off(sending_bps, through, now_ms)
        self.alarm = self._congested or through is not None
        remb = self._fresh_remb(now_ms)
        carried = self._note_carried(sending_bps, remb, now_ms)
        if remb is not None and carried is not None:
            # Not congested: what went through lately is carried (module notes).
            remb = max(remb, carried)
        if remb is not None and self._fell_at is not None:
            # A fall the path has not confirmed yet moves nothing (module notes).
            remb = max(remb, self._held)
        if lost is not None:
            self._apply_loss(max(0.0, lost - self._floor), now_ms, remb)
        elif remb is not None and self._clean():
            # A clean link: the delay-based figure stands (see the module notes).
            self._loss_based = float(remb)

        if remb is not None:
            self._loss_based = min(self._loss_based, float(remb))
        self._loss_based = min(max(self._loss_based, self._min), self._max)

        if remb is not None and remb <= self._loss_based:
            bitrate, by = remb, "remb"
        else:
            bitrate, by = int(self._loss_based), "loss"
        bitrate = min(max(bitrate, self._min), self._max)
        if feedback.rtt_ms is not None:
            self._add_rtt_sample(feedback.rtt_ms, now_ms)
        self._estimate = Estimate(bitrate, round(self._loss, 4), self._rtt, by)
        return self._estimate

    def _note_carried(self, sending_bps: int | None, remb: int | None, now_ms: int) -> int | None:
        """The most sent within the window while the path showed no congestion.

        A rate counts in full once the receiver has had time to complain about it;
        before that, only up to what was known to be carried when it was sent (the
        REMB, or a rate already proven), give or take the wobble of measured costs:
        sending that says nothing new; sending more is a question still open.
        """
        # Just after a back-off, what is sent is what the link was found not to carry;
        # while the latest round trip shows a queue, what was sent did not get through
        # without complaint (a probe's 388 kbit/s on a 300 kbit/s link, answered by a
        # round trip of 173 ms on a 105 ms path, was later taken as carried and the
        # camera's high layer sent into the queue).
        clean = self._clean() and self._settled(now_ms) and not self.queueing
        if self._congested:
            self._carried.clear()
            return None
        while self._carried and now_ms - self._carried[0][0] > CARRIED_WINDOW_MS:
            self._carried.popleft()
        proven_at = now_ms - self._answer_ms()
        if not clean:
            # The answer came, and it is loss: what was still unanswered was not
            # carried without complaint.
            while self._carried and self._carried[-1][0] > proven_at:
                self._carried.pop()
        proven = max((rate for at, rate, _ in self._carried if at <= proven_at), default=0)
        if sending_bps is not None and clean:
            # Before any feedback, what was sent was sent on the first guess's say-so.
            guess = self._estimate.bitrate_bps if self._estimate.limited_by == "initial" else 0
            self._carried.append((now_ms, sending_bps, max(proven, remb or 0, guess)))
        if not self._carried:
            return None
        return max(
            rate if at <= proven_at else min(rate, int(known * UNPROVEN_MARGIN))
            for at, rate, known in self._carried
        )

    def _clean(self) -> bool:
        """Whether the loss above the floor is under GCC's 2 %: smoothed, or in the
        latest report. A report of 100 packets or more with no loss to speak of says
        the link is clean now: at audio and slides' rate such a report comes every
        few seconds, and the smoothed loss of the step profile's 300 kbit/s kept
        its recovered 2 Mbit/s link from counting as clean for 15 s."""
        return min(self._loss, self._last_loss) - self._floor < LOSS_LOW

    def _back_off(self, sending_bps: int | None, through: float, now_ms: int) -> None:
        """Overdriven: what got through, less a margin, is what the link carries now
        (libwebrtc backs off to 0.85 of the rate acknowledged). Forgetting it all
        left the REMB, which counts only the little video a classroom on audio and
        slides receives, and turned the slides off on a link that carried them."""
        self._carried.clear()
        self._backed_off_at = now_ms
        if sending_bps:
            rate = min(sending_bps, self._estimate.bitrate_bps)
            got_through = int(rate * through * BACKOFF)
            self._remb_cap = (got_through, now_ms)
            # Answered already (this is the answer): it counts in full at once.
            self._carried.append((self._answered_at(now_ms), got_through, got_through))

    def _queue_builds(self, rtt_ms: float | None, now_ms: int) -> bool:
        """Round trips grown past the threshold, `QUEUE_SAMPLES` in a row: a queue
        fills on the path. Chromium's REMB can stay still meanwhile (seen: 384 kbit/s
        for 30 s on a 300 kbit/s link while its buffer filled), and a loss comes only
        once the buffer overflows, taking the teacher's voice with it. After a back-off,
        its effect takes a round trip and a report to show: no second one before."""
        if rtt_ms is None or self._min_rtt is None:
            return False
        if not self._queued_rtt(rtt_ms):
            self._queued = 0
            return False
        self._queued += 1
        return self._queued >= QUEUE_SAMPLES and self._settled(now_ms)

    def _settled(self, now_ms: int) -> bool:
        """Whether a back-off has had time to show its effect."""
        return self._backed_off_at is None or now_ms - self._backed_off_at >= self._answer_ms()

    def _answered_at(self, now_ms: int) -> int:
        """A time whose rate counts as answered now. Rounded to the nearest
        millisecond instead, it could fall a fraction after the proof time and the
        back-off's figure was dropped as unproven: the estimate fell to the REMB
        (144 kbit/s on a 300 kbit/s link) and the camera went off with it."""
        return now_ms - math.ceil(self._answer_ms())

    def _answer_ms(self) -> float:
        """How long feedback on what is sent now takes to come back (CARRIED_PROOF_MS)."""
        return CARRIED_PROOF_MS + (self._rtt or 0.0)

    def _queued_rtt(self, rtt_ms: float) -> bool:
        """Whether a round trip is long enough past the lowest to mean a queue."""
        assert self._min_rtt is not None
        return rtt_ms > self._min_rtt * QUEUE_RTT_FACTOR + self._margin(QUEUE_RTT_MARGIN_MS)

    def _margin(self, fixed_ms: float) -> float:
        """A round trip's margin over the lowest: `fixed_ms`, or more where round trips
        wobble by themselves (module notes)."""
        return max(fixed_ms, RTT_NOISE_FACTOR * self._rtt_noise)

    @property
    def rtt_noise_ms(self) -> float:
        """How far round trips lie above the lowest when no queue builds (module notes)."""
        return self._rtt_noise

    def _add_rtt_sample(self, rtt_ms: float, now_ms: int) -> None:
        """Fold a round trip into the wobble, after it was judged by the one before."""
        if self._min_rtt is None:
            return
        self._excess.append((now_ms, max(0.0, rtt_ms - self._min_rtt)))
        while self._excess and now_ms - self._excess[0][0] > RTT_NOISE_WINDOW_MS:
            self._excess.popleft()
        if len(self._excess) < RTT_NOISE_MIN_SAMPLES:
            self._rtt_noise = 0.0
            return
        ordered = sorted(excess for _, excess in self._excess)
        self._rtt_noise = ordered[int(RTT_NOISE_PERCENTILE * (len(ordered) - 1))]

    def _late_agreement(self, rtt_ms: float | None, now_ms: int) -> bool:
        """Whether the path agrees with a pending REMB fall: a round trip past the
        queue threshold; after a far fall, two in a row longer by `FALL_RTT_MARGIN_MS`,
        or by more where round trips wobble by themselves (on the step profile,
        2 Mbit/s of camera poured into 300 kbit/s: the REMB fell by a third, round
        trips of 133 and 143 ms on a 102 ms path followed, and the threshold of 147 ms
        was passed twice in a row only 7 s later)."""
        assert self._fell_at is not None
        if now_ms - self._fell_at > FALL_PENDING_MS:
            self._fell_at = None
            return False
        if rtt_ms is None or self._min_rtt is None:
            return False
        if self._queued_rtt(rtt_ms):
            return True
        if rtt_ms > self._min_rtt + self._margin(FALL_RTT_MARGIN_MS):
            self._longer_rtts += 1
        else:
            self._longer_rtts = 0
        return self._fell_far and self._longer_rtts >= QUEUE_SAMPLES

    def _fall_cause(self, remb_bps: int, rtt_ms: float | None) -> str:
        """A confirmed REMB fall, and what of the path confirmed it."""
        rtt = rtt_ms if rtt_ms is not None else self._rtt
        shown = "none" if rtt is None else f"{rtt:.0f} ms"
        return (
            f"REMB fell to {remb_bps / 1000:.0f} kbit/s; loss {self._loss:.0%} "
            f"(floor {self._floor:.0%}), round trip {shown}, lowest {self._min_rtt or 0:.0f} ms"
        )

    def _path_agrees(self, rtt_ms: float | None, late: bool = False) -> bool:
        """Whether loss (smoothed, above the floor: one sample of 100 packets is noisy)
        or the round trip confirm a receiver's overuse call."""
        if max(0.0, self._loss - self._floor) >= LOSS_LOW:
            return True
        if late:
            # Its round trips (the last smoothed one too) carry the relay's own
            # lateness. Believed without them, under scripts/fuzz_rtp.py every REMB
            # dip of a few percent of an aiortc witness was congestion, on loopback:
            # the estimate followed it down to 100 kbit/s and the camera was off 55 s.
            return False
        rtt = rtt_ms if rtt_ms is not None else self._rtt
        if rtt is None or self._min_rtt is None:
            return True  # nothing to judge by: believe the receiver
        return self._queued_rtt(rtt)

    def _apply_loss(self, lost: float, now_ms: int, remb: int | None) -> None:
        if lost > LOSS_HIGH:
            self._loss_based *= 1 - 0.5 * lost
        elif lost < LOSS_LOW and remb is not None:
            self._loss_based = max(self._loss_based, float(remb))
        elif lost < LOSS_LOW:
            due = (
                self._last_increase_at is None
                or now_ms - self._last_increase_at >= INCREASE_INTERVAL_MS
            )
            if due:
                self._loss_based *= INCREASE
                self._last_increase_at = now_ms

    def _fresh_remb(self, now_ms: int) -> int | None:
        if self._remb is None or self._remb_at is None:
            return None
        if now_ms - self._remb_at > REMB_TIMEOUT_MS:
            return None
        if self._remb_cap is not None and now_ms - self._remb_cap[1] < CONGESTION_HOLD_MS:
            return min(self._remb, self._remb_cap[0])
        return self._remb
