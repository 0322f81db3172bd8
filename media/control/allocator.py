"""Sharing one participant's estimated downlink over its outgoing slots.

Pure: `allocate()` (media.control.allocation) answers "given this budget, which
layer on which slot", and `Allocator` adds the hysteresis and the probes that keep
a classroom's picture from flapping.
The relay's adapter feeds it estimates and applies its decisions.

Priorities come from the classroom: audio never stops because video wants more;
then slides (the lesson's content), then the teacher's camera, then the stage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from media.control.allocation import (
    OFF,
    Allocation,
    SlotOffer,
    allocate,
    cost,
    next_step,
    raises,
    rank,
)

# A probe costing this share of one that failed or more counts as the same probe.
FAILED_MARGIN = 0.9
# The estimate fell when it is this much below its peak since the layers were
# chosen; layers that cost this much more than the estimate step down in any case.
ESTIMATE_FELL = 0.97
COST_OVERSHOOT = 1.2
# A probe cluster is judged this long after a round trip (its feedback, then the tick).
CLUSTER_ANSWER_MS = 1000


@dataclass(frozen=True)
class Decision:
    allocation: Allocation
    # "down" (the link got weaker), "up" (it recovered), "probe" (trying one layer
    # more than the estimate covers) or "reshape" (slots came or went).
    reason: str


@dataclass
class _Probe:
    started_ms: int
    # What to go back to if the probe fails.
    fallback: Allocation
    # A padding probe: the layers stay as they are and padding makes what is sent
    # `kbps` in all (0: a probe of layers); if the link carries it, the layers
    # become `target` (what that much pays for).
    kbps: float = 0.0
    target: Allocation | None = None
    # A probe cluster instead of padding held for seconds (`Allocator.cluster_kbps`).
    cluster: bool = False


class Allocator:
    """Hysteresis and probing around `allocate()`, per participant.

    - Down at once: when what is being sent no longer fits an estimate that fell
      (or congestion was seen, or it costs a fifth more), the next update drops to
      what fits (a late drop costs freezes and audio gaps).
    - Up with care: a better allocation must fit within `headroom` of the estimate
      and stay possible for `up_hold_ms`, and no upgrade comes within `after_down_ms`
      of a downgrade (as mediasoup's consumers do after a bandwidth drop).
    - Probing: a receiver's delay-based estimate (REMB) never rises far above what
      it receives (libwebrtc clamps it to 1.5x the incoming rate), so a classroom
      sent only audio and slides would never be offered the camera. When nothing
      better fits, the next layer up is tried (after `probe_hold_ms` of quiet) if it
      costs at most `probe_ceiling` times the estimate, and kept once the estimate
      covers its cost, from `probe_accept_ms` on (the estimator counts a rate only
      once it has been answered), or at `probe_confirm_ms` if the estimate has
      caught up by then (90 % of what it sends). If congestion comes meanwhile,
      or it has not caught up by then, the probe ends (back to what was sent
      before) and the next one of about its cost waits twice as long, from
      `after_down_ms` up to `max_backoff_ms`; a cheaper one, `after_down_ms`.
    - Probing with padding, where the relay can send it (`padding=True`): the
      layers stay, and padding (`padding_kbps`) makes up what the next step
      costs, or after a probe that succeeded what the best layers cost, within
      `padding_ceiling` times the estimate (`_padding_probe`). Kept as a probe
      of layers is kept, the layers become what it paid for ("up"); if that is
      no step up yet, the next probe follows at once, from the estimate it
      raised. A failed probe costs no keyframe and no picture that comes and
      goes, only a second or so of a fuller queue, so it also ends on a sign of
      congestion not confirmed yet (`doubt`), and its back-off, for probes as
      costly only, doubles from `padding_backoff_ms` to `max_padding_backoff_ms`
      (both shorter than a layer probe's): with layer probes, the camera's
      middle layer failed on the step profile's 300 kbit/s so often that, back
      on 2 Mbit/s, it waited up to 24 s. The ceiling is libwebrtc's interval
      between probes while a sender has room to spare (5 s, ProbeController's
      ALR probing): at 8 s, failures on the narrow link (and one on a round
      trip of noise once the link was back) kept the camera off for 16 to 29 s
      after the step profile's link came back, in four runs of seven.
    - A probe far above the estimate (past `sustained_ceiling` times it), where
      the relay measures the link from transport feedback (`clusters=True`), is a
      probe cluster rather than padding held for seconds: ten small packets at
      the probe's rate (`cluster_kbps`, taken once by the relay), whose arrival
      spacing says what the link carries (media.control.sendside.probe_rate). On
      geo's 256 kbit/s, the next step was the camera's 360p, a padding probe went
      to 1.6 times the link for two and a half seconds every five or so, and the
      link's queue dropped a hundred packets a minute, the teacher's voice among
      them; a cluster costs 3 kB. Kept as a padding probe is, once the estimate
      (raised by what the cluster showed) is nine tenths of its rate or more.
    - An "up" raises slots and lowers none; a better allocation that would trade
      one slot down for another up is reached by probing instead.
    """

    def __init__(
        self,
        headroom: float = 0.85,
        up_hold_ms: int = 2000,
        after_down_ms: int = 6000,
        probe_ceiling: float = 1.5,
        probe_min_kbps: float = 150.0,
        probe_hold_ms: int = 1000,
        probe_confirm_ms: int = 4000,
        max_backoff_ms: int = 24_000,
        probe_accept_ms: int = 2500,
        padding_backoff_ms: int = 3000,
        max_padding_backoff_ms: int = 5000,
        padding_margin: float = 1.05,
        padding_ceiling: float = 1.5,
        keep_margin: float = 1.5,
        keep_ms: int = 3000,
        sustained_ceiling: float = 1.25,
    ) -> None:
        self.headroom = headroom
        self.up_hold_ms = up_hold_ms
        self.after_down_ms = after_down_ms
        self.probe_ceiling = probe_ceiling
        self.probe_min_kbps = probe_min_kbps
        self.probe_hold_ms = probe_hold_ms
        self.probe_confirm_ms = probe_confirm_ms
        self.max_backoff_ms = max_backoff_ms
        self.probe_accept_ms = probe_accept_ms
        self.padding_backoff_ms = padding_backoff_ms
        self.max_padding_backoff_ms = max_padding_backoff_ms
        self.padding_margin = padding_margin
        self.padding_ceiling = padding_ceiling
        self.keep_margin = keep_margin
        self.keep_ms = keep_ms
        self.sustained_ceiling = sustained_ceiling
        # A probe cluster the relay is to send, in kbit/s (0: none); see take_cluster().
        self.cluster_kbps = 0.0
        # Since when the estimate has been below what the slots on cost at their
        # lowest layers (None: it is not).
        self._short_since: int | None = None
        # Padding in kbit/s that a probe under way asks for (0: none).
        self.padding_kbps = 0.0
        self.current: Allocation = {}
        self._slots: frozenset[str] = frozenset()
        self._down_at: int | None = None
        self._up_since: int | None = None
        self._probe: _Probe | None = None
        # The highest estimate since the current layers were chosen.
        self._peak_kbps: float | None = None
        self._backoff_ms = after_down_ms
        # The last failed probe (what it cost, less a margin, when, and how long
        # probes that cost as much wait from then).
        self._failed: tuple[float, int, int] | None = None
        self._padding_backoff_ms = padding_backoff_ms
        # Whether the last padding probe succeeded: the next one aims higher.
        self._climbing = False

    def update(
        self,
        estimate_kbps: float,
        offers: Sequence[SlotOffer],
        now_ms: int,
        may_probe: bool = True,
        alarm: bool = False,
        sent_kbps: float | None = None,
        padding: bool = False,
        doubt: bool = False,
        rtt_ms: float | None = None,
        clusters: bool = False,
    ) -> Decision | None:
        """The new allocation if it should change now, else None.

        `may_probe`: False until the receiver has said anything (a first guess is
        no ground to send more than it), and while congestion holds. `alarm`: the
        estimator saw congestion just now (a confirmed REMB fall, heavy loss, a
        queue); a probe under way ends, and none starts.
        `sent_kbps`: what really goes out, when known. A layer that was paused is
        costed at its last or nominal rate, and may send less once it runs: a
        probe is judged by what it sends.
        `padding`: the relay can send padding now, so probes are made with it.
        `doubt`: a sign of congestion not confirmed (yet): a REMB fall the path
        has not agreed with, a round trip past the queue threshold. A padding
        probe ends on it. `rtt_ms`: the path's round trip, if known: a sign that
        comes sooner after a probe starts is not its answer. `clusters`: the relay
        can send probe clusters and read what they carried (transport feedback).
        """
        slots = frozenset(o.slot for o in offers)
        if slots != self._slots:
            self.padding_kbps = self.cluster_kbps = 0.0
            return self._reshape(estimate_kbps, offers, now_ms, may_probe)

        if self._probe is not None and self._probe.kbps > 0:
            decision = self._watch_padding(estimate_kbps, offers, now_ms, alarm, doubt, rtt_ms)
            if decision is not None or self._probe is not None:
                return decision
            # It failed: what is sent is judged below like any other time.
        elif self._probe is not None:
            return self._watch_probe(estimate_kbps, offers, now_ms, alarm, sent_kbps)

        self._peak_kbps = max(self._peak_kbps or 0.0, estimate_kbps)
        if cost(self._lowest_on(offers), offers) <= estimate_kbps:
            self._short_since = None
        elif self._short_since is None:
            self._short_since = now_ms
        if self._no_longer_fits(estimate_kbps, offers, alarm):
            fitting = self._fit_down(estimate_kbps, offers, now_ms)
            # Already at the floor (audio, slides at two frames a second), which is
            # sent whatever the estimate, nothing is downgraded: on to probing,
            # which alone can raise a REMB that follows what it receives.
            if fitting != self.current:
                self._down_at = now_ms
                self._up_since = None
                return self._set(fitting, "down")

        if self._down_at is not None and now_ms - self._down_at < self.after_down_ms:
            self._up_since = None
            return None
        better = self._fit(estimate_kbps, offers)
        reason = "up"
        if not raises(better, self.current, offers):
            if not may_probe or alarm or self.probe_ceiling <= 0:
                # No probe into congestion: the next update's alarm would end it at
                # once, a keyframe spent and the back-off doubled (seen on loss10).
                self._up_since = None
                return None
            probe_kbps = 0.0
            if padding:
                probe_kbps, step = self._padding_probe(estimate_kbps, offers, now_ms)
            else:
                step = next_step(self.current, offers, self._ceiling(estimate_kbps))
                if step is not None and self._refused(cost(step, offers), now_ms):
                    step = None
            if step is None:
                self._up_since = None
                return None
            better, reason = step, "probe"
        if self._up_since is None:
            self._up_since = now_ms
        hold = self.probe_hold_ms if reason == "probe" else self.up_hold_ms
        if now_ms - self._up_since < hold:
            return None
        self._up_since = None
        if reason == "probe" and padding:
            cluster = clusters and probe_kbps > estimate_kbps * self.sustained_ceiling
            self._probe = _Probe(now_ms, dict(self.current), probe_kbps, better, cluster)
            if cluster:
                self.cluster_kbps = probe_kbps
            else:
                self.padding_kbps = max(0.0, probe_kbps - cost(self.current, offers))
            return None
        if reason == "probe":
            self._probe = _Probe(now_ms, dict(self.current))
        return self._set(better, reason)

    def take_cluster(self) -> float:
        """The probe cluster to send now, in kbit/s (0: none), asked for once."""
        kbps, self.cluster_kbps = self.cluster_kbps, 0.0
        return kbps

    def _padding_probe(
        self, estimate_kbps: float, offers: Sequence[SlotOffer], now_ms: int
    ) -> tuple[float, Allocation | None]:
        """How much a padding probe sends in all (0: none now), within
        `padding_ceiling` times the estimate: up to the next step's cost, and once
        a probe has succeeded, up to what the best layers cost (or the next step,
        if a probe of about that much failed lately).

        Aimed at the best layers every time, the step profile's climb back took
        two probes instead of one per layer, but geo's satellite link (256 kbit/s,
        which never carries the camera) met probes 40 % over it instead of 6 %, and
        lost more of the teacher's voice (1.6 and 3.9 % concealed in two runs)."""
        here = cost(self.current, offers)
        ceiling = max(estimate_kbps * self.padding_ceiling, estimate_kbps + self.probe_min_kbps)
        step = next_step(self.current, offers, math.inf)
        if step is None:
            return 0.0, None
        aims = (allocate(math.inf, offers), step) if self._climbing else (step,)
        for aim in aims:
            kbps = cost(aim, offers) * self.padding_margin
            if kbps > ceiling:
                kbps = ceiling
                aim = allocate(ceiling / self.padding_margin, offers)
            if kbps > here and not self._refused(kbps, now_ms):
                return kbps, aim
        return 0.0, None

    def _watch_padding(
        self,
        estimate_kbps: float,
        offers: Sequence[SlotOffer],
        now_ms: int,
        alarm: bool,
        doubt: bool,
        rtt_ms: float | None,
    ) -> Decision | None:
        """A padding probe: kept as `_watch_probe` keeps one of layers, ended at the
        first doubt. Leaves `_probe` set while it goes on. A doubt that comes
        before a round trip has passed since it started cannot be its answer: it
        ends, but as a probe interrupted, not failed (no back-off; the next starts
        once the doubt clears). On the step profile, a probe ended that way
        120 ms after it started, just after the link came back, and its 5 s of
        back-off kept the camera off that much longer.

        On the step profile's 300 kbit/s, a probe to 323 kbit/s was kept on a
        clean estimate, though one round trip of twice the path's had come
        meanwhile (a queue that grows slowly)."""
        probe = self._probe
        assert probe is not None
        elapsed = now_ms - probe.started_ms
        if probe.cluster:
            # Answered once its feedback is back: the estimate it raised, or not.
            caught_up = elapsed >= (rtt_ms or 0.0) and estimate_kbps >= probe.kbps * 0.9
        else:
            # Padding makes up what the layers leave: their measured cost moves.
            self.padding_kbps = max(0.0, probe.kbps - cost(self.current, offers))
            caught_up = elapsed >= self.probe_accept_ms and estimate_kbps >= probe.kbps
        # A cluster has had its answer a second after its feedback could be back.
        confirm_ms = self.probe_confirm_ms
        if probe.cluster:
            confirm_ms = min(confirm_ms, round((rtt_ms or 0.0) + CLUSTER_ANSWER_MS))
        if not alarm and not doubt and not caught_up and elapsed < confirm_ms:
            return None
        self._probe = None
        self.padding_kbps = 0.0
        if doubt and not alarm and elapsed < (rtt_ms or 0.0):
            return None
        if not alarm and not doubt and estimate_kbps >= probe.kbps * 0.9:
            self._down_at = None
            if self._failed is None or probe.kbps >= self._failed[0]:
                self._failed = None
                self._backoff_ms = self.after_down_ms
                self._padding_backoff_ms = self.padding_backoff_ms
            self._climbing = True
            # What it paid for (no headroom: this much has just gone through).
            target = {o.slot: (probe.target or {}).get(o.slot, OFF) for o in offers}
            if raises(target, self.current, offers):
                return self._set(target, "up")
            # Short of the next step: the next probe may start at once, from the
            # estimate this one raised.
            self._up_since = now_ms - self.probe_hold_ms
            return None
        # The layers never changed: only probes as costly wait, from a shorter
        # back-off than a layer probe's.
        self._climbing = False
        self._up_since = None
        wait_ms = self._padding_backoff_ms
        self._padding_backoff_ms = min(self.max_padding_backoff_ms, wait_ms * 2)
        self._failed = (probe.kbps * FAILED_MARGIN, now_ms, wait_ms)
        return None

    def _reshape(
        self, estimate_kbps: float, offers: Sequence[SlotOffer], now_ms: int, may_probe: bool
    ) -> Decision:
        """A slot came or went (the stage started or ended, slides were shared).

        What fits the estimate now is the fallback; but a receiver's REMB sits near
        what it received, so that alone would switch off the classroom that was
        just given the floor. What was sent goes on, the newcomers get their
        cheapest layers, and this is watched as a probe when it exceeds the estimate.
        """
        self._slots = frozenset(o.slot for o in offers)
        self._up_since = None
        self._probe = None
        fit = self._fit(estimate_kbps, offers)
        keep: Allocation = {}
        for offer in offers:
            names = [name for name, _ in offer.layers]
            was = self.current.get(offer.slot)
            if was is None:
                keep[offer.slot] = names[0]  # a newcomer: its cheapest layer
            else:
                keep[offer.slot] = was if was in names else OFF
        if (
            may_probe
            and self.probe_ceiling > 0
            and rank(keep, offers) > rank(fit, offers)
            and cost(keep, offers) <= self._ceiling(estimate_kbps)
        ):
            self._probe = _Probe(now_ms, fit)
            return self._set(keep, "reshape")
        return self._set(fit, "reshape")

    def _ceiling(self, estimate_kbps: float) -> float:
        return max(estimate_kbps * self.probe_ceiling, estimate_kbps + self.probe_min_kbps)

    def _watch_probe(
        self,
        estimate_kbps: float,
        offers: Sequence[SlotOffer],
        now_ms: int,
        alarm: bool,
        sent_kbps: float | None,
    ) -> Decision | None:
        probe = self._probe
        assert probe is not None
        # The estimator counts a rate sent above its estimate only once feedback on
        # it has had time to come back: the estimate catches up with a probe late.
        # Congestion meanwhile is the receiver's answer, and ends it at once.
        elapsed = now_ms - probe.started_ms
        full = cost(self.current, offers)
        # The estimate covers all of it: the estimator has had its answer (a report
        # and a round trip after it went out), and so can we. Kept on less, the next
        # update would find the layers above the estimate and step down.
        caught_up = elapsed >= self.probe_accept_ms and estimate_kbps >= full
        if not alarm and not caught_up and elapsed < self.probe_confirm_ms:
            return None
        probed = full if sent_kbps is None else min(full, sent_kbps)
        if not alarm and estimate_kbps >= probed * 0.9:
            # No congestion came of it: the link carries it. Probing may go on
            # at the shortest interval.
            self._probe = None
            self._peak_kbps = None
            self._down_at = None
            if self._failed is None or full >= self._failed[0]:
                # As much as failed before is carried now: the back-off is over.
                self._failed = None
                self._backoff_ms = self.after_down_ms
                self._padding_backoff_ms = self.padding_backoff_ms
            return None
        self._probe = None
        self._down_at = now_ms
        self._backoff_ms = min(self.max_backoff_ms, self._backoff_ms * 2)
        self._failed = (full * FAILED_MARGIN, now_ms, self._backoff_ms)
        fallback = probe.fallback
        if cost(fallback, offers) > estimate_kbps:
            fallback = self._fit(estimate_kbps, offers)
        return self._set(fallback, "down")

    def _refused(self, step_kbps: float, now_ms: int) -> bool:
        """Whether a probe of this cost waits on, for one of about that cost failed
        lately. Only those wait the doubled back-off: after the step profile's
        300 kbit/s, the camera's middle layer had failed, and with every probe
        waiting 24 s the classroom sat on audio and slides on 2 Mbit/s."""
        if self._failed is None:
            return False
        failed_kbps, failed_at, wait_ms = self._failed
        return step_kbps >= failed_kbps and now_ms - failed_at < wait_ms

    def _fit(self, estimate_kbps: float, offers: Sequence[SlotOffer]) -> Allocation:
        # Headroom is kept for everything but the floor (audio, then slides at two
        # frames a second), which may use all of the estimate.
        return allocate(estimate_kbps * self.headroom, offers, floor_kbps=estimate_kbps)

    def _lowest_on(self, offers: Sequence[SlotOffer]) -> Allocation:
        """Every slot that is on now, at its lowest layer above its reserve (or at its
        lowest, if it is on a reserve layer already)."""
        lowest = {}
        for o in offers:
            layer = self.current.get(o.slot, OFF)
            if not o.layers or layer == OFF:
                continue
            names = [name for name, _ in o.layers]
            index = names.index(layer) if layer in names else 0
            lowest[o.slot] = names[min(index, o.reserve)]
        return lowest

    def _fit_down(
        self, estimate_kbps: float, offers: Sequence[SlotOffer], now_ms: int
    ) -> Allocation:
        """What a step down goes to: what the estimate carries, without the headroom
        an "up" keeps (up at 85 %, down past 100 %); and every slot that is on stays
        on at its lowest layer through a dip: while those lowest layers cost at
        most `keep_margin` times the estimate, and the estimate has not been below
        their cost for `keep_ms`. A sender's estimate dips by a sixth at every
        back-off and climbs back within seconds, a slide's keyframe raises the
        slides' cost for a while: on a 256 kbit/s satellite link the teacher's
        camera, on at its lowest layer, went off at each dip and stayed off for
        `after_down_ms`, off most of a lesson. A link that really cannot carry them
        stays short of them, and they go. The same holds for a slot's reserve layers
        (SlotOffer.reserve): with the camera at half its frame rate below its lowest,
        every dip took it there for eight seconds and more."""
        fitting = allocate(estimate_kbps, offers)
        lowest = self._lowest_on(offers)
        lowered = any(
            _index(fitting.get(o.slot, OFF), o) < _index(lowest[o.slot], o)
            for o in offers
            if o.slot in lowest
        )
        short = self._short_since is not None and now_ms - self._short_since >= self.keep_ms
        if lowered and not short and cost(lowest, offers) <= estimate_kbps * self.keep_margin:
            return {o.slot: lowest.get(o.slot, OFF) for o in offers}
        return fitting

    def _no_longer_fits(
        self, estimate_kbps: float, offers: Sequence[SlotOffer], alarm: bool
    ) -> bool:
        """Whether what is sent costs more than the estimate because the link got
        weaker: the estimate fell since these layers were chosen, or congestion was
        seen, or the layers cost far more than it. A layer's measured cost also
        rises by itself (a page turn's keyframe), and an estimate of a clean link
        follows what is sent only once it has been answered: stepping down on that
        turned the camera off on 2 Mbit/s, seen after the step profile's recovery."""
        over = cost(self.current, offers)
        if over <= estimate_kbps:
            return False
        fell = self._peak_kbps is not None and estimate_kbps < self._peak_kbps * ESTIMATE_FELL
        return alarm or fell or over > estimate_kbps * COST_OVERSHOOT

    def _set(self, allocation: Allocation, reason: str) -> Decision:
        self._peak_kbps = None
        self.current = allocation
        return Decision(dict(allocation), reason)


def _index(layer: str, offer: SlotOffer) -> int:
    """Where a layer stands among a slot's layers (-1: off)."""
    names = [name for name, _ in offer.layers]
    return names.index(layer) if layer in names else -1
