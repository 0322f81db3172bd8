"""One participant's downlink: RTCP feedback in, layer choices out.

Where the browser sends transport feedback (media.adapter.twcc), the relay
estimates the link itself from it (media.control.sendside): that estimate rules
while feedback comes, and REMB and receiver reports stand by (below).

Each tick, the feedback that arrived since the last one (REMB, receiver-report
counters) becomes one `Feedback` for the participant's `Estimator`; the estimate
and each slot's measured layer costs go to its `Allocator`. The relay applies the
decision; nothing here touches aiortc.

A REMB from Chromium is an estimate for video alone. Its receive-side estimator
is fed only the video it receives (and its payload, no headers): audio takes part
only in send-side estimation, through transport-wide sequence numbers, which
aiortc does not send (libwebrtc, ReceiveSideCongestionController::OnReceivedPacket).
So the audio sent beside it is added to the REMB: read as the whole link, a REMB
of 48 kbit/s on a 256 kbit/s satellite link, the video share after a slide's
keyframe, left room for audio alone and turned the slides off.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from media.control.allocation import SlotOffer, cost
from media.control.allocator import Allocator, Decision
from media.control.estimator import LOSS_LOW, Estimate, Estimator, Feedback
from media.control.feedback import SenderFeedback
from media.control.pacer import pacing_rate
from media.control.sendside import PacketResult, SendSideEstimator, SentLog
from media.slots import Slot

logger = logging.getLogger(__name__)

# Audio never stops because video wants more; then the lesson's content (slides),
# then the teacher's face, then the classroom on stage (ARCHITECTURE.md).
PRIORITY: dict[Slot, int] = {
    Slot.TEACHER_AUDIO: 0,
    Slot.STAGE_AUDIO: 0,
    Slot.SLIDES: 1,
    Slot.TEACHER_CAMERA: 2,
    Slot.STAGE_VIDEO: 3,
}
ESSENTIAL = frozenset({Slot.TEACHER_AUDIO, Slot.STAGE_AUDIO})
# Slides at their lowest layer (full picture, two frames a second) may use all of the
# estimate: on a bad link the lesson's content matters more than headroom.
FLOOR = frozenset({Slot.SLIDES})
# They climb above it only on this much (media.control.allocation): five frames a
# second instead of two gain little, and each switch sends a keyframe of the page
# (7 kB of synthetic 720p slides, 10-18 kB for a new page, more at 1080p) that a
# narrower link takes a quarter of a second or more to carry, the camera and the
# voice queued behind it.
FLOOR_CLIMB_MIN_KBPS = 500.0
# A camera's last resort below its lowest full-rate layer (media.pipeline.ladder): not
# for a dip of the estimate, only for a link that stays short (media.control.allocator).
RESERVE_LAYERS = frozenset({"min"})
# Loss is reported once this many packets were expected: a report on a few dozen
# says 2 % after a single loss, which is noise, not a trend (GCC's 2 % band).
MIN_LOSS_SAMPLE = 100


@dataclass(frozen=True)
class SlotView:
    """One outgoing slot as the downlink sees it this tick."""

    feedback: SenderFeedback
    # The source's layers with their cost in kbit/s, cheapest first; empty when the
    # slot has no source now (no slides shared, nobody on stage).
    layers: tuple[tuple[str, float], ...]
    # Whether it sends now: a paused sender's SR repeats the NTP time of its last
    # packet, so the round trip its reports give means nothing.
    sending: bool = True


@dataclass(frozen=True)
class Plan:
    """One tick's whole decision for a participant's link: what the relay applies.

    `change`: new layers for the slots and why, or None when they stay as they are.
    The rest holds every tick: the rate video is paced at, the estimate that sizes
    the resend budget, and the padding or the probe cluster a probe asks for.
    """

    change: Decision | None
    estimate_bps: float
    padding_bps: float
    pacing_bps: float
    # A probe cluster to send now (media.control.allocator), in bit/s; 0: none.
    cluster_bps: float = 0.0


@dataclass
class _Seen:
    reports: int = 0
    rembs: int = 0
    highest: int | None = None
    lost: int = 0
    rtts: int = 0


class Downlink:
    def __init__(self, estimator: Estimator | None = None, allocator: Allocator | None = None):
        # Whose downlink this is, for the debug log (the relay names it).
        self.name = ""
        # Below libwebrtc's 300 kbit/s default start: a rural link of 256 kbit/s is not
        # flooded before its first feedback, and probing climbs from there.
        self.estimator = estimator or Estimator(initial_bps=250_000)
        # From transport feedback, where the browser sends it: then it rules.
        self.send_side = SendSideEstimator(SentLog(), initial_bps=250_000)
        self._send_side_alarm = False
        self._now_ms = 0
        # The last round trip measured, late or not (see `shown_rtt_ms`).
        self._measured_rtt_ms: float | None = None
        self.allocator = allocator or Allocator()
        self._seen: dict[Slot, _Seen] = {}
        self._expected = 0
        self._lost = 0
        # The last tick's audio offers (is_news adds their cost to a REMB).
        self._essential_offers: list[SlotOffer] = []

    @property
    def estimate(self) -> Estimate:
        if self.send_side.active(self._now_ms):
            return self.send_side.estimate
        return self.estimator.estimate

    @property
    def shown_rtt_ms(self) -> float | None:
        """The round trip a person is shown: the estimate's, or while the relay runs
        late (and leaves its round trips out of every decision) the last one measured,
        the relay's lateness included: what the classroom lives with."""
        rtt = self.estimate.rtt_ms
        return rtt if rtt is not None else self._measured_rtt_ms

    def explain(self) -> str:
        """What the estimate rests on, for the log of layer changes: the rule that
        set it, the loss and round trip, and the signal of the last congestion."""
        if self.send_side.active(self._now_ms):
            return f"by transport feedback: {self.send_side.estimate.limited_by}"
        estimate = self.estimator.estimate
        rtt = "none" if estimate.rtt_ms is None else f"{estimate.rtt_ms:.0f} ms"
        held = "congested" if self.estimator.congested else "last congestion"
        return (
            f"by {estimate.limited_by}, loss {estimate.loss:.0%}, round trip {rtt}; "
            f"{held}: {self.estimator.cause or 'none'}"
        )

    def transport_feedback(self, results: list[PacketResult], now_s: float) -> bool:
        """Fold in transport feedback; True if the estimate fell (act now)."""
        self._now_ms = round(now_s * 1000)
        first = not self.send_side.active(self._now_ms)
        estimate = self.send_side.on_feedback(results, self._now_ms)
        self._send_side_alarm |= self.send_side.alarm
        if first:
            name = self.name
            logger.info("%s: transport feedback arrives: the estimate is the relay's own", name)
        if self.send_side.alarm:
            logger.debug("%s: transport feedback: %s %s", self.name, estimate, self.send_side)
        return self.send_side.alarm

    @property
    def padding_bps(self) -> float:
        """Padding a probe asks to be sent now (media.control.allocator), in bit/s."""
        return self.allocator.padding_kbps * 1000

    def is_news(self, fb: SenderFeedback) -> bool:
        """Whether feedback one sender just got may lower what the link is thought to
        carry, and so should be acted on at once rather than at the next tick: the
        first feedback after the first guess, a REMB that fell, loss past GCC's 2 %,
        a round trip that shows a queue, or any round trip while a fall or a queue
        waits to be confirmed. What can only raise the estimate waits for the tick."""
        if self.send_side.active(self._now_ms):
            return False  # transport feedback says it first, and acts on its own
        estimator = self.estimator
        if estimator.estimate.limited_by == "initial":
            return True
        if fb.fraction_lost - estimator.loss_floor >= LOSS_LOW:
            return True
        if fb.remb_bps is not None and fb.remb_reporter is not None:
            # The REMB counts video alone (module notes); the estimator's, audio too.
            audio = cost(self.allocator.current, self._essential_offers)
            if estimator.is_fall(fb.remb_bps + math.ceil(audio * 1000)):
                return True
        if fb.rtt_s is not None and estimator.shows_queue(fb.rtt_s * 1000):
            return True
        return fb.rtt_s is not None and (estimator.falling or estimator.queueing)

    def tick(
        self,
        slots: Mapping[Slot, SlotView],
        now_s: float,
        sent_bps: float | None = None,
        can_pad: bool = False,
        late: bool = False,
    ) -> Plan:
        """`sent_bps`: what really went out lately (the pacer's count), if known;
        otherwise the current layers' cost stands for it. `can_pad`: the relay can
        send padding now (probes are then made with it). `late`: the relay itself
        runs late (media.control.overload): its round trips, measured when it got to
        the reports, say nothing of a queue on the path and are left out."""
        now_ms = self._now_ms = round(now_s * 1000)
        feedback = self._collect(slots)
        if feedback is not None and feedback.rtt_ms is not None:
            self._measured_rtt_ms = feedback.rtt_ms
        if late and feedback is not None and feedback.rtt_ms is not None:
            feedback = replace(feedback, rtt_ms=None)
        offers = [
            SlotOffer(
                str(slot),
                PRIORITY.get(slot, 9),
                view.layers,
                essential=slot in ESSENTIAL,
                floor=slot in FLOOR,
                climb_min_kbps=FLOOR_CLIMB_MIN_KBPS if slot in FLOOR else 0.0,
                reserve=_reserve(view.layers),
            )
            for slot, view in slots.items()
            if view.layers
        ]
        self._essential_offers = [offer for offer in offers if offer.essential]
        if feedback is not None:
            # What the current layers cost, or what went out if more, rounded up:
            # an estimate of what is sent must cover its cost, or the allocator
            # sees the current layers not fit (measured costs and the pacer's
            # count differ by a tenth or so) and drops what the link carries.
            # Padding counts from its first tick: the pacer's count of it lags by
            # its window, which would hold a padding probe's answer back 2 s.
            current = self.allocator.current
            intended = cost(current, offers) * 1000 + self.padding_bps
            sending = math.ceil(max(sent_bps or 0.0, intended))
            if feedback.remb_bps is not None:
                # Video's share, plus the audio sent beside it (module notes).
                audio = cost(current, self._essential_offers)
                feedback = replace(feedback, remb_bps=feedback.remb_bps + math.ceil(audio * 1000))
            estimate = self.estimator.update(
                feedback, now_ms, sending_bps=sending or None, late=late
            )
            logger.debug("%s: %s sending %d -> %s", self.name, feedback, sending, estimate)
            if feedback.rtt_ms is not None:
                self.send_side.on_rtt(feedback.rtt_ms)
        if self.send_side.active(now_ms):
            # Transport feedback (media.control.sendside): the relay's own estimate.
            estimate = self.send_side.estimate
            doubt = self.send_side.queueing
            congested = self.send_side.congested(now_ms)
            alarm = self._send_side_alarm
        else:
            estimate = self.estimator.estimate
            doubt = self.estimator.falling or self.estimator.queueing
            congested = self.estimator.congested
            alarm = feedback is not None and self.estimator.alarm
        self._send_side_alarm = False
        padding = self.allocator.padding_kbps
        decision = self.allocator.update(
            estimate.bitrate_bps / 1000,
            offers,
            now_ms,
            # A confirmed REMB fall holds for a while, and signs not confirmed yet
            # may become one: no probe meanwhile.
            may_probe=estimate.limited_by != "initial" and not congested and not doubt,
            alarm=alarm,
            sent_kbps=sent_bps / 1000 if sent_bps is not None else None,
            padding=can_pad,
            doubt=doubt,
            rtt_ms=estimate.rtt_ms,
            clusters=self.send_side.active(now_ms),
        )
        allocated = cost(self.allocator.current, offers) * 1000
        if (self.allocator.padding_kbps > 0) != (padding > 0):
            logger.debug("%s: padding %.0f kbit/s", self.name, self.allocator.padding_kbps)
        return Plan(
            change=decision,
            estimate_bps=estimate.bitrate_bps,
            padding_bps=self.padding_bps,
            pacing_bps=pacing_rate(estimate.bitrate_bps, allocated + self.padding_bps),
            cluster_bps=self.allocator.take_cluster() * 1000,
        )

    def _collect(self, slots: Mapping[Slot, SlotView]) -> Feedback | None:
        remb_by_reporter: dict[int, int] = {}
        new_remb = False
        expected = lost = 0
        new_report = False
        # (when the SR answered left, round trip in ms)
        rtts: list[tuple[float, float]] = []
        for slot, view in slots.items():
            fb = view.feedback
            seen = self._seen.setdefault(slot, _Seen())
            if fb.remb_bps is not None and fb.remb_reporter is not None:
                # REMB is one estimate per reporting receiver for all the streams it
                # lists (draft-alvestrand-rmcat-remb-03 §2): sum over reporters.
                remb_by_reporter[fb.remb_reporter] = fb.remb_bps
            if fb.rembs != seen.rembs:
                new_remb = True
                seen.rembs = fb.rembs
            if fb.reports != seen.reports and fb.highest_sequence is not None:
                if seen.highest is not None:
                    # RFC 3550 §A.3: loss over an interval from cumulative counters.
                    expected += max(0, fb.highest_sequence - seen.highest)
                    lost += max(0, fb.packets_lost - seen.lost)
                    new_report = True
                seen.reports = fb.reports
                seen.highest = fb.highest_sequence
                seen.lost = fb.packets_lost
            if fb.rtts != seen.rtts:
                # Only a round trip measured since the last tick: a stale one hides
                # the queue that builds when a link narrows.
                seen.rtts = fb.rtts
                if view.sending and fb.rtt_s is not None:
                    rtts.append((fb.rtt_sr_at or 0.0, fb.rtt_s * 1000))
        self._expected += expected
        self._lost += lost
        fraction = None
        if new_report and self._expected >= MIN_LOSS_SAMPLE:
            fraction = min(1.0, self._lost / self._expected)
            self._expected = self._lost = 0
        if not new_remb and fraction is None and not rtts:
            return None
        return Feedback(
            remb_bps=sum(remb_by_reporter.values()) if new_remb and remb_by_reporter else None,
            fraction_lost=fraction,
            # The round trip of the newest SR: it went through the queue as it is
            # now. Older ones (the least of them was taken once) hid a queue that
            # grew, for a second or more after a link narrowed.
            rtt_ms=max(rtts)[1] if rtts else None,
        )


def _reserve(layers: tuple[tuple[str, float], ...]) -> int:
    """How many of a slot's cheapest layers are its reserve (RESERVE_LAYERS)."""
    count = 0
    for name, _ in layers:
        if name not in RESERVE_LAYERS:
            break
        count += 1
    return count
