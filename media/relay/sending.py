"""One participant's sending side: its outgoing slots, their pacing, probes and choices.

Each participant's downlink is its own: its RTCP feedback feeds its estimator and
allocator (media.control.downlink), whose decision sets the pacer's rate, the
resend budget, the padding a probe asks for and the layer each slot should carry.
The side knows nothing of the lesson: the relay hands it, at each allocation, the
source feeding each slot now, and it talks back through two callbacks: whether
its connection is still the participant's (`is_current`), and that fresh feedback
asks for an allocation before the next periodic one (`on_adapt_due`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiortc import RTCRtpSender

from media.adapter.sender import LeanRtp, budget_resends
from media.adapter.transport import pace_sender
from media.adapter.twcc import WIRE_OVERHEAD_BYTES
from media.control.downlink import Downlink, SlotView
from media.control.feedback import SenderFeedback
from media.control.overload import Load, LoadGauge
from media.control.pacer import UDP_IP_BYTES, Pacer, PaddingBudget, ResendBudget, pacing_rate
from media.control.sendside import PacketResult
from media.pipeline.fanout import SubscriberTrack
from media.pipeline.ladder import Ladder
from media.pipeline.mosaic import Mosaic
from media.pipeline.relayed import RelayedSource
from media.settings import RelaySettings
from media.slots import Slot

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
DEFAULT_LAYER = "high"
LayerChoice = str | None  # "high" | "mid" | "low" | "min", or None for off
Source = Ladder | Mosaic | RelayedSource

# How often a probe's padding is let out: at 300 kbit/s of it, a packet or two each time.
PADDING_INTERVAL_S = 0.01
# The padding trains sent when a connection comes up (SendingSide._probe_at_start):
# the spacing of their packets and how many, with a pause between so that they read
# as two trains (the second for when loss breaks the first). 255 bytes every 3.5 ms
# is about 580 kbit/s: what audio, slides and camera take at their best, and a
# margin. A train at 1 Mbit/s as well set an estimate of 1.18 Mbit/s that the relay
# had no use for; Chromium's REMB later fell from it to about what it received, the
# path's round trip flat, which the estimator rightly does not take for congestion:
# the figure stayed, the video was paced to it, and on the step profile the drop to
# 300 kbit/s cost freezes of 0.55 to 1.32 s in three of five runs (none in five
# without the trains).
INITIAL_PROBE_TRAINS = ((0.0035, 8), (0.0035, 8))
INITIAL_PROBE_GAP_S = 0.03
# With transport feedback the trains are probe clusters (media.control.sendside),
# sent at these rates, this many packets each: what got through is known once
# their feedback is in, a round trip later. Three times the first guess, as
# libwebrtc's first probe; its second, at six times, added a tenth of a second of
# queue on a 256 kbit/s link whose buffer the first keyframes fill anyway, and
# three times covers the best layers of a lesson.
PROBE_CLUSTERS_BPS = (750_000,)
PROBE_CLUSTER_PACKETS = 10
# How long the trains wait for a video sender that can carry them.
INITIAL_PROBE_WAIT_S = 2.0
# Resends may take this share of the estimated rate (the rest is fresh media).
RESEND_SHARE = 0.15
# Allocations on fresh feedback come at most this often per participant
# (SendingSide.feedback_arrived); the periodic ones go on beside them.
EARLY_ADAPT_MIN_S = 0.1
# Opus at 28 kbit/s plus 25 packets a second of headers (media.control.meter).
AUDIO_NOMINAL_KBPS = 41.0
# RED repeats each Opus payload once, with a 4-byte block header.
RED_EXTRA_KBPS = 30.0
# The cameras get FEC (media.wire.ulpfec) while the round trip is this long: a
# resend then takes 0.7 s or more, which the picture shows as a stall; off again
# below FEC_OFF_RTT_MS. What FEC adds to a layer's cost: one packet in four
# (media.adapter.sender.FEC_PACKETS_PER), as long as the longest it covers, and
# its headers: a quarter or so on a camera layer of one packet a frame; counted as
# 30 %, so that the link is not filled past what the estimate allows.
FEC_SLOTS = frozenset({Slot.TEACHER_CAMERA, Slot.STAGE_VIDEO})
FEC_MIN_RTT_MS = 300.0
FEC_OFF_RTT_MS = 200.0
FEC_EXTRA = 0.3


@dataclass
class LayerTimes:
    """How long an outgoing slot sent each layer ("off" included), from its switches.

    Summed over a session and logged when it ends (SendingSide.summary): a soak's
    classroom at 9 fps of a 15 fps camera either spent its time on the 7.5 fps
    reserve layer or lost frames on the way, and this tells which."""

    layer: str = "off"
    since: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def switch(self, layer: str, now: float) -> None:
        if self.since is not None:
            self.seconds[self.layer] = self.seconds.get(self.layer, 0.0) + now - self.since
        self.layer, self.since = layer, now

    def totals(self, now: float) -> dict[str, float]:
        totals = dict(self.seconds)
        if self.since is not None:
            totals[self.layer] = totals.get(self.layer, 0.0) + now - self.since
        return totals


@dataclass
class Outgoing:
    """One slot the relay sends the participant: the sender, the track that feeds
    it the layer it follows, and what the receiver says of it."""

    slot: Slot
    sender: RTCRtpSender
    track: SubscriberTrack
    lean: LeanRtp
    feedback: SenderFeedback
    choice: LayerChoice = DEFAULT_LAYER
    # Audio sent as RED (media.wire.red): each packet carries the previous one too.
    red: bool = False
    octets_at_last_report: int = 0
    layer_times: LayerTimes = field(default_factory=LayerTimes)


def layer_costs(source: Source, now: float) -> tuple[tuple[str, float], ...]:
    """A source's layers, cheapest first, with what each costs on the wire in kbit/s.

    Measured when the layer is sending; for a paused layer, what it cost when it
    last sent, or its expected bit rate (with a 10 % allowance for packet headers).
    """
    costs = []
    for layer in reversed(source.layers):
        kbps = layer.meter.kbps(now) or layer.meter.last_kbps()
        if kbps is None:
            spec = getattr(layer, "spec", None)
            if spec is None:
                kbps = AUDIO_NOMINAL_KBPS
            else:
                kbps = (spec.expected_bitrate or spec.bitrate) * 1.1 / 1000
        costs.append((layer.name, kbps))
    return tuple(costs)


class SendingSide:
    """What one participant is sent, and how fast (see the module docstring)."""

    def __init__(
        self,
        name: str,
        settings: RelaySettings,
        clock: Clock,
        *,
        is_current: Callable[[], bool],
        on_adapt_due: Callable[[], None],
    ) -> None:
        self.name = name
        self.outgoing: dict[Slot, Outgoing] = {}
        self._settings = settings
        self._clock = clock
        self._is_current = is_current
        self._on_adapt_due = on_adapt_due
        self.downlink = Downlink()
        self.downlink.name = name
        self.pacer: Pacer | None = None
        self.resends: ResendBudget | None = None
        # A probe's padding (media.control.allocator), and the task sending it while asked to.
        self.padding: PaddingBudget | None = None
        self.padder: asyncio.Task[None] | None = None
        # The trains of padding sent once the connection is up (_probe_at_start).
        self.prober: asyncio.Task[None] | None = None
        # What the last periodic link report measured as sent, and whether a report
        # of changed layers is on its way (media.relay.reports).
        self.sent_kbps = 0.0
        self.report_due = False
        # Whether an allocation on fresh feedback is on its way, and when the last
        # allocation ran (feedback_arrived).
        self.adapt_due = False
        self.adapted_at = -math.inf
        # Whether the browser reports every packet (media.adapter.twcc).
        self.transport_cc = False
        # Whether the cameras go with FEC now (FEC_MIN_RTT_MS).
        self.fec = False
        self._closed = False

    def add(self, outgoing: Outgoing) -> None:
        self.outgoing[outgoing.slot] = outgoing

    def pace(self) -> None:
        """Pace the participant's video and budget its resends (media.control.pacer).

        After negotiation: aiortc settles each sender's transport (the bundle) while
        applying the descriptions, and pacing wraps the transport it ends up with.
        """
        rate = self.downlink.estimate.bitrate_bps
        self.pacer = Pacer(pacing_rate(rate, 0.0), self._clock)
        self.resends = ResendBudget(RESEND_SHARE, self._clock)
        self.resends.set_rate(rate)
        self.padding = PaddingBudget(self._clock)
        for out in self.outgoing.values():
            video = out.track.kind == "video"
            pace_sender(out.sender, self.pacer, wait=video)
            if video:
                budget_resends(out.sender, self.resends)

    # --- allocation -------------------------------------------------------------------

    def adapt(
        self,
        sources: Mapping[Slot, Source | None],
        now: float,
        load: LoadGauge | None = None,
    ) -> bool:
        """Allocate the link over the slots, given the source feeding each now.

        `load`: the relay's own (media.control.overload): while it is overloaded the
        top layers of the video ladders are not offered, and while it runs late its
        round trips are not read as a queue on the path.

        Sets the pacer, the resend budget and the padding; True when the slots'
        choices changed (the relay then routes them)."""
        shed = load.shed_top_layers if load is not None else 0
        self.adapted_at = now
        rtt = self.downlink.estimate.rtt_ms
        if rtt is not None and self.fec != (
            rtt >= (FEC_OFF_RTT_MS if self.fec else FEC_MIN_RTT_MS)
        ):
            self.fec = not self.fec
            logger.info(
                "%s: FEC %s at a round trip of %.0f ms", self.name, "on" if self.fec else "off", rtt
            )
        views: dict[Slot, SlotView] = {}
        for slot, out in self.outgoing.items():
            source = sources.get(slot)
            # A source that sends nothing (slides not shared yet) is offered no
            # bandwidth: it would only keep the stage or the camera off.
            live = source is not None and source.live(now)
            costs = layer_costs(source, now) if source is not None and live else ()
            if out.red:
                costs = tuple((name, kbps + RED_EXTRA_KBPS) for name, kbps in costs)
            if shed and out.track.kind == "video" and len(costs) > shed:
                costs = costs[:-shed]
            out.lean.fec_on = self.fec and out.lean.fec_types is not None
            if out.lean.fec_on:
                costs = tuple((name, kbps * (1 + FEC_EXTRA)) for name, kbps in costs)
            views[slot] = SlotView(out.feedback, costs, sending=out.track.layer_name != "off")
        sent = self.pacer.sent_bps() if self.pacer is not None else None
        can_pad = (
            self._settings.probe_with_padding
            and self.padding is not None
            and self.pads_with() is not None
        )
        late = load is not None and load.level > Load.OK
        plan = self.downlink.tick(views, now, sent_bps=sent, can_pad=can_pad, late=late)
        if self.pacer is not None and self.resends is not None:
            self.pacer.set_rate(plan.pacing_bps)
            self.resends.set_rate(plan.estimate_bps)
            self._start_padding(plan.padding_bps)
            if plan.cluster_bps > 0 and can_pad:
                self._send_cluster(plan.cluster_bps)
        # Without adaptation the estimate is still kept, for the link reports.
        decision = plan.change
        if decision is None or not self._settings.adaptive:
            return False
        for slot, out in self.outgoing.items():
            layer = decision.allocation.get(str(slot))
            if layer is not None:
                out.choice = None if layer == "off" else layer
        logger.info(
            "%s: %s to %s at %.0f kbit/s (kbit/s: %s) [%s; relay %s]",
            self.name,
            decision.reason,
            decision.allocation,
            plan.estimate_bps / 1000,
            "; ".join(
                f"{slot} " + " ".join(f"{name} {kbps:.0f}" for name, kbps in view.layers)
                for slot, view in views.items()
                if view.layers
            ),
            self.downlink.explain(),
            "late" if late else "on time",
        )
        return True

    def feedback_arrived(self, slot: Slot) -> None:
        """A REMB or a receiver report for one of the senders: if it may lower the
        estimate (Downlink.is_news), ask for an allocation now, not at the next tick
        (up to `allocation_interval_s` later). A link that narrows shows in a few
        reports a second apart, and each tick of waiting is that much longer with a
        queue building on the path. At most one such allocation per
        `EARLY_ADAPT_MIN_S`: a REMB and the receiver reports of several streams
        often come together. Feedback that can only raise the estimate waits:
        allocating on every report cost the event loop 7 % more with 32 classrooms
        (bench_fanout)."""
        out = self.outgoing.get(slot)
        if self.adapt_due or self._closed or out is None:
            return
        if self.downlink.is_news(out.feedback):
            self._adapt_soon()

    def transport_feedback(self, results: list[PacketResult]) -> None:
        """Transport feedback (media.adapter.twcc): into the estimate at once; an
        allocation now if it fell (as `feedback_arrived`)."""
        if self._closed:
            return
        if self.downlink.transport_feedback(results, self._clock()) and not self.adapt_due:
            self._adapt_soon()

    def _adapt_soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.adapt_due = True
        wait = self.adapted_at + EARLY_ADAPT_MIN_S - self._clock()
        loop.call_later(max(0.0, wait), self._adapt_now)

    def _adapt_now(self) -> None:
        self.adapt_due = False
        if not self._closed:
            self._on_adapt_due()

    # --- padding ----------------------------------------------------------------------

    def pads_with(self) -> LeanRtp | None:
        """The video sender that can carry a probe's padding: one that sends now if
        any does (its RTX stream is one the receiver already expects packets on)."""
        found = None
        for out in self.outgoing.values():
            if out.track.kind != "video" or not out.lean.can_pad:
                continue
            if out.track.layer_name != "off":
                return out.lean
            found = found or out.lean
        return found

    def _start_padding(self, rate_bps: float) -> None:
        if self.padding is None:
            return
        self.padding.set_rate(rate_bps)
        if rate_bps > 0 and (self.padder is None or self.padder.done()):
            self.padder = asyncio.create_task(self._pad(), name=f"padding-{self.name}")

    async def _pad(self) -> None:
        """Send padding while the allocator asks for it, in the room the pacer leaves
        after the media (media.control.pacer.PaddingBudget)."""
        padding, pacer = self.padding, self.pacer
        assert padding is not None and pacer is not None
        while not self._closed and padding.rate_bps > 0:
            await asyncio.sleep(PADDING_INTERVAL_S)
            lean = self.pads_with()
            if lean is None:
                continue
            size = lean.padding_packet_bytes
            due = padding.due(size + UDP_IP_BYTES)
            count = 0
            while count < due and pacer.take_now([size]):
                count += 1
            if count:
                padding.paid(lean.pad(count), size + UDP_IP_BYTES)

    def start_probing(self) -> None:
        """The connection is up: probe the link with trains of padding, once."""
        if self._settings.probe_with_padding and self.padding is not None and self.prober is None:
            self.prober = asyncio.create_task(self._probe_at_start(), name=f"probe-{self.name}")

    async def _probe_at_start(self) -> None:
        """Padding in short, evenly spaced trains, the moment the connection is up.

        A receiver's estimate (REMB) is first sent five seconds after video starts,
        at what it received, and climbs from there about 8 % a second: the camera
        came on 5 s into a lesson and at its best after 9 s, on a 2 Mbit/s link.
        But in its first two seconds Chromium's receive-side estimator
        (RemoteBitrateEstimatorAbsSendTime) also reads packets over 200 bytes that
        arrive in trains as probes: a train of five or more, sent and received at the
        same even spacing (abs-send-time against arrival), sets its estimate to that
        rate at once, and the REMB goes out. libwebrtc senders probe this way at the
        start of every call (3 and 6 times their starting rate). A train the link
        cannot carry arrives spread out and is ignored, as is one whose packets
        arrive bunched (more than half less than 1 ms apart, as the benchmark's link
        emulator delivers them now and then): it cost a few kilobytes, and the
        estimate starts as it did without.
        """
        clock = self._clock
        # The connection is up a moment before aiortc starts its senders.
        deadline = clock() + INITIAL_PROBE_WAIT_S
        while (lean := self.pads_with()) is None:
            if clock() > deadline or not self._is_current():
                return
            await asyncio.sleep(0.01)
        if self.transport_cc:
            await self._probe_clusters(lean)
            return
        for spacing_s, count in INITIAL_PROBE_TRAINS:
            start = clock()
            sent = 0
            for i in range(count):
                if not self._is_current():
                    return
                sent += lean.pad(1)
                await asyncio.sleep(max(0.0, start + (i + 1) * spacing_s - clock()))
            logger.debug(
                "%s: a train of %d padding packets, %.1f ms apart",
                self.name,
                sent,
                (clock() - start) / count * 1000,
            )
            await asyncio.sleep(INITIAL_PROBE_GAP_S)

    async def _probe_clusters(self, lean: LeanRtp) -> None:
        """Probe clusters of padding at `PROBE_CLUSTERS_BPS` (see `_probe_at_start`)."""
        for rate_bps in PROBE_CLUSTERS_BPS:
            await self._cluster(lean, rate_bps)
            await asyncio.sleep(INITIAL_PROBE_GAP_S)

    async def _cluster(self, lean: LeanRtp, rate_bps: float) -> None:
        """One probe cluster: `PROBE_CLUSTER_PACKETS` of padding spaced at `rate_bps`,
        which the send-side estimator reads back from transport feedback."""
        clock = self._clock
        log = self.downlink.send_side.log
        bits = (lean.padding_packet_bytes + WIRE_OVERHEAD_BYTES) * 8
        cluster = log.begin_probe(PROBE_CLUSTER_PACKETS)
        start = clock()
        for i in range(PROBE_CLUSTER_PACKETS):
            if not self._is_current():
                return
            # Only the padding sent now is the cluster's, not media sent meanwhile.
            log.probe = cluster
            try:
                lean.pad(1)
            finally:
                log.probe = None
            await asyncio.sleep(max(0.0, start + (i + 1) * bits / rate_bps - clock()))

    def _send_cluster(self, rate_bps: float) -> None:
        """A probe cluster the allocator asked for, unless one is still going out."""
        lean = self.pads_with()
        if lean is None or self._closed or (self.prober is not None and not self.prober.done()):
            return
        self.prober = asyncio.create_task(self._cluster(lean, rate_bps), name=f"probe-{self.name}")

    def summary(self, now: float) -> str:
        """Per outgoing video slot: frames sent and dropped (a full queue, a wait for
        a keyframe) and seconds per layer, for the log when the session ends."""
        parts = []
        for slot, out in self.outgoing.items():
            if out.track.kind != "video":
                continue
            totals = sorted(out.layer_times.totals(now).items())
            times = " ".join(f"{name} {seconds:.0f} s" for name, seconds in totals)
            parts.append(
                f"{slot} frames sent {out.track.packets_out} dropped {out.track.dropped} ({times})"
            )
        return "; ".join(parts)

    def close(self) -> None:
        """Stop padding and probing, and every outgoing track."""
        self._closed = True
        if self.padding is not None:
            self.padding.set_rate(0)
        for task in (self.padder, self.prober):
            if task is not None:
                task.cancel()
        for out in self.outgoing.values():
            out.track.stop()
