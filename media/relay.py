"""The relay: one peer connection per participant, ladders per source, packets fanned out.

`Relay` implements `media.gateway.MediaGateway`. Signaling builds one per
process, `Relay(RelaySettings(...))`, and calls `negotiate()` for every offer,
`set_stage()` when the floor changes, `disconnect()`/`end_lesson()` as people
leave, and `close()` on shutdown. The bandwidth allocator drives `set_layer()`
from `link_reports()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from classroom.roles import Role
from media.aiortc_internals import (
    LeanRtp,
    SenderFeedback,
    budget_resends,
    gather_on,
    hook_sender_rtcp,
    install_consent_hook,
    install_red_encoder,
    lean_rtp,
    pace_sender,
    quiet_when_idle,
    send_red,
    sender_octets,
)
from media.candidates import announce
from media.downlink import Downlink, SlotView
from media.fanout import SubscriberTrack
from media.gateway import LinkReport, MediaError
from media.ladder import CAMERA_LAYERS, LAYER_ORDER, SLIDES_LAYERS, Ladder
from media.mosaic import Mosaic, MosaicLayer
from media.offer import check_offer
from media.pacer import UDP_IP_BYTES, Pacer, PaddingBudget, ResendBudget
from media.recorder import Recorder, Sources
from media.settings import RelaySettings
from media.slots import Slot

logger = logging.getLogger(__name__)

DEFAULT_LAYER = "high"
LayerChoice = str | None  # "high" | "mid" | "low", or None for off

# Which incoming slot of whom feeds each outgoing slot.
_FROM_TEACHER = {
    Slot.TEACHER_CAMERA: Slot.CAMERA,
    Slot.TEACHER_AUDIO: Slot.MICROPHONE,
    Slot.SLIDES: Slot.SCREEN,
}
_FROM_STAGE = {Slot.STAGE_VIDEO: Slot.CAMERA, Slot.STAGE_AUDIO: Slot.MICROPHONE}


def _recorded_sources(lesson: Lesson) -> Sources:
    """The top layer of each source the recorder keeps: the latest teacher's camera,
    microphone and screen, and the stage classroom's camera and microphone."""
    teachers = [p for p in lesson.participants.values() if p.role is Role.TEACHER]
    teacher = max(teachers, key=lambda p: p.joined_at) if teachers else None
    stage = lesson.participants.get(lesson.stage) if lesson.stage else None
    if stage is not None and stage.role is not Role.CLASSROOM:
        stage = None

    def top(who: Participant | None, slot: Slot) -> Any:
        ladder = None if who is None else who.ladders.get(slot)
        return None if ladder is None else ladder.layers[0]

    return Sources(
        camera=top(teacher, Slot.CAMERA),
        audio=top(teacher, Slot.MICROPHONE),
        slides=top(teacher, Slot.SCREEN),
        stage_video=top(stage, Slot.CAMERA),
        stage_audio=top(stage, Slot.MICROPHONE),
        stage_id=None if stage is None else stage.participant_id,
    )


def _codec_preferences(transceiver: RTCRtpTransceiver, kind: str) -> None:
    # The relay sends packets it encoded as VP8 / Opus: the sender must not be
    # negotiated to anything else, whatever the browser lists first.
    wanted = {"video": ("video/vp8", "video/rtx"), "audio": ("audio/opus",)}[kind]
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() in wanted])


@dataclass
class Outgoing:
    slot: Slot
    sender: RTCRtpSender
    track: SubscriberTrack
    feedback: SenderFeedback
    choice: LayerChoice = DEFAULT_LAYER
    # Audio sent as RED (media.red): each packet carries the previous one too.
    red: bool = False
    octets_at_last_report: int = 0


@dataclass
class Participant:
    lesson_id: str
    participant_id: str
    role: Role
    pc: RTCPeerConnection
    ladders: dict[Slot, Ladder] = field(default_factory=dict)
    outgoing: dict[Slot, Outgoing] = field(default_factory=dict)
    joined_at: float = 0.0
    downlink: Downlink = field(default_factory=Downlink)
    pacer: Pacer | None = None
    resends: ResendBudget | None = None
    # A probe's padding (media.allocator), and the task sending it while asked to.
    padding: PaddingBudget | None = None
    padder: asyncio.Task[None] | None = None
    # The trains of padding sent once the connection is up (Relay._probe_at_start).
    prober: asyncio.Task[None] | None = None
    # What the last periodic link report measured as sent, and whether a report of
    # changed layers is on its way (Relay._layers_changed).
    sent_kbps: float = 0.0
    report_due: bool = False
    # Whether an allocation on fresh feedback is on its way, and when the last
    # allocation ran (Relay._feedback_arrived).
    adapt_due: bool = False
    adapted_at: float = -math.inf


# The teacher whose media the lesson carries, and the classroom on stage.
LessonSources = tuple[Participant | None, Participant | None]


@dataclass
class Lesson:
    lesson_id: str = ""
    participants: dict[str, Participant] = field(default_factory=dict)
    stage: str | None = None
    # The teacher's view of the classrooms, made when a teacher first asks for it.
    mosaic: Mosaic | None = None


class Relay:
    """The MediaGateway on aiortc (see the module docstring for the call sequence)."""

    def __init__(
        self,
        settings: RelaySettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings or RelaySettings()
        install_consent_hook()
        install_red_encoder()
        self._clock = clock
        self._lessons: dict[str, Lesson] = {}
        self._executor = ThreadPoolExecutor(
            max_workers=self._settings.encoder_threads, thread_name_prefix="media-encode"
        )
        self._listeners: set[asyncio.Queue[LinkReport]] = set()
        self._recorders: dict[str, Recorder] = {}
        self._reporter: asyncio.Task[None] | None = None
        self._adapter: asyncio.Task[None] | None = None
        self._closed = False

    # --- MediaGateway -------------------------------------------------------------

    async def negotiate(
        self, lesson_id: str, participant_id: str, role: Role, offer_sdp: str
    ) -> str:
        if self._closed:
            raise MediaError("the media relay is shutting down")
        offered = check_offer(offer_sdp, role)
        specs = [slot.spec for slot in offered]
        lesson = self._lessons.setdefault(lesson_id, Lesson(lesson_id))
        old = lesson.participants.pop(participant_id, None)
        if old is not None:
            await self._close_participant(old)

        ice_servers = [RTCIceServer(urls=url) for url in self._settings.stun_servers]
        # MAX_BUNDLE: aiortc's default (balanced) gives the second transceiver of a
        # kind the first one's transport *before* the offer's BUNDLE group is seen,
        # and then never moves it onto the bundle: those senders never start.
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        participant = Participant(lesson_id, participant_id, role, pc, joined_at=self._clock())
        participant.downlink.name = f"{lesson_id}/{participant_id}"
        try:
            transceivers = []
            for spec in specs:
                incoming = spec.direction == "sendonly"
                transceiver = pc.addTransceiver(
                    spec.kind, direction="recvonly" if incoming else "sendonly"
                )
                _codec_preferences(transceiver, spec.kind)
                transceivers.append(transceiver)
                if not incoming:
                    participant.outgoing[spec.slot] = self._outgoing(
                        participant, spec.slot, spec.kind, transceiver
                    )
            try:
                await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            except Exception as exc:  # aiortc raises ValueError, OperationError, ...
                raise MediaError(f"the offer cannot be used: {exc}") from None
            if self._settings.audio_red:
                for slot, transceiver in zip(offered, transceivers, strict=True):
                    out = participant.outgoing.get(slot.spec.slot)
                    if out is not None and slot.spec.kind == "audio":
                        out.red = send_red(transceiver, slot.codecs)
            answer = await pc.createAnswer()
            with gather_on(self._settings.host_addresses):
                await pc.setLocalDescription(answer)
            for spec, transceiver in zip(specs, transceivers, strict=True):
                if spec.direction == "sendonly":
                    participant.ladders[spec.slot] = self._ladder(spec.slot, transceiver)
            if self._settings.adaptive:
                self._pace(participant)
        except BaseException:
            await self._close_participant(participant)
            raise

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            # ICE/DTLS failed (the classroom's link is gone): free its encoders'
            # subscriptions now rather than when signaling notices.
            if pc.connectionState == "failed":
                await self._drop_if_current(participant)
            elif pc.connectionState == "connected":
                self._start_probing(participant)

        lesson.participants[participant_id] = participant
        self._route(lesson)
        self._ensure_reporter()
        answer_sdp = pc.localDescription.sdp
        if self._settings.announced_address:
            answer_sdp = announce(answer_sdp, self._settings.announced_address)
        return answer_sdp

    async def set_stage(self, lesson_id: str, classroom_id: str | None) -> None:
        lesson = self._lessons.setdefault(lesson_id, Lesson(lesson_id))
        lesson.stage = classroom_id
        self._route(lesson)

    async def disconnect(self, lesson_id: str, participant_id: str) -> None:
        lesson = self._lessons.get(lesson_id)
        if lesson is None:
            return
        participant = lesson.participants.pop(participant_id, None)
        if participant is not None:
            await self._close_participant(participant)
            self._route(lesson)

    async def end_lesson(self, lesson_id: str) -> None:
        lesson = self._lessons.pop(lesson_id, None)
        if lesson is None:
            return
        if lesson.mosaic is not None:
            lesson.mosaic.close()
        await asyncio.gather(*(self._close_participant(p) for p in lesson.participants.values()))

    def link_reports(self) -> AsyncIterator[LinkReport]:
        return self._link_reports()

    async def close(self) -> None:
        self._closed = True
        # A graceful stop finalizes the recordings (seek index, durations).
        for lesson_id in list(self._recorders):
            self.stop_recording(lesson_id)
        for lesson_id in list(self._lessons):
            await self.end_lesson(lesson_id)
        for task in (self._reporter, self._adapter):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._executor.shutdown(wait=True, cancel_futures=True)

    # --- recording: one more subscriber of the top layers (media.recorder) ----------

    def start_recording(self, lesson_id: str, directory: Path, meta: dict[str, Any]) -> Recorder:
        """Record the lesson's sources into `directory` from now on."""
        self.stop_recording(lesson_id)
        recorder = Recorder(directory, clock=self._clock, meta=meta)
        self._recorders[lesson_id] = recorder
        self._route(self._lessons.setdefault(lesson_id, Lesson(lesson_id)))
        return recorder

    def stop_recording(self, lesson_id: str) -> dict[str, Any] | None:
        """Finish the lesson's recording; its manifest, or None if none was running."""
        recorder = self._recorders.pop(lesson_id, None)
        return None if recorder is None else recorder.close()

    # --- beyond the gateway: the allocator's handle, and introspection -------------

    def set_layer(
        self, lesson_id: str, participant_id: str, slot: Slot, layer: LayerChoice
    ) -> None:
        """Choose what an outgoing slot carries: "high", "mid", "low", or None (off).

        A layer a source lacks falls to the nearest one below (slides have no "mid").
        The switch happens at the new layer's next keyframe, which is requested now.
        """
        if layer is not None and layer not in LAYER_ORDER:
            raise MediaError(f"unknown layer {layer!r}; use one of {', '.join(LAYER_ORDER)}")
        participant = self._participant(lesson_id, participant_id)
        outgoing = participant.outgoing.get(slot)
        if outgoing is None:
            raise MediaError(f"a {participant.role.value} receives nothing on {slot.value}")
        outgoing.choice = layer
        self._route(self._lessons[lesson_id])

    def ladder(self, lesson_id: str, participant_id: str, slot: Slot) -> Ladder | None:
        """The ladder fed by a participant's incoming slot (tests, metrics)."""
        return self._participant(lesson_id, participant_id).ladders.get(slot)

    def outgoing_track(
        self, lesson_id: str, participant_id: str, slot: Slot
    ) -> SubscriberTrack | None:
        out = self._participant(lesson_id, participant_id).outgoing.get(slot)
        return None if out is None else out.track

    # --- internals -------------------------------------------------------------------

    def _participant(self, lesson_id: str, participant_id: str) -> Participant:
        lesson = self._lessons.get(lesson_id)
        participant = None if lesson is None else lesson.participants.get(participant_id)
        if participant is None:
            raise MediaError(f"{participant_id} has no media connection in this lesson")
        return participant

    def _outgoing(
        self, participant: Participant, slot: Slot, kind: str, transceiver: RTCRtpTransceiver
    ) -> Outgoing:
        capacity = (
            self._settings.video_queue_frames
            if kind == "video"
            else self._settings.audio_queue_packets
        )
        track = SubscriberTrack(kind, capacity, self._settings.keyframe_min_interval_s)
        transceiver.sender.replaceTrack(track)
        track.send_now = lean_rtp(transceiver.sender).send_now
        track.on_switch = lambda _layer: self._layers_changed(participant)
        feedback = hook_sender_rtcp(
            transceiver.sender,
            track.request_keyframe,
            on_feedback=lambda: self._feedback_arrived(participant, slot),
        )
        quiet_when_idle(transceiver.sender, self._clock)
        return Outgoing(slot, transceiver.sender, track, feedback)

    def _pace(self, participant: Participant) -> None:
        """Pace the participant's video and budget its resends (media.pacer).

        After negotiation: aiortc settles each sender's transport (the bundle) while
        applying the descriptions, and pacing wraps the transport it ends up with.
        """
        rate = participant.downlink.estimate.bitrate_bps
        participant.pacer = Pacer(rate * PACING_FACTOR, self._clock)
        participant.resends = ResendBudget(RESEND_SHARE, self._clock)
        participant.resends.set_rate(rate)
        participant.padding = PaddingBudget(self._clock)
        for out in participant.outgoing.values():
            video = out.track.kind == "video"
            pace_sender(out.sender, participant.pacer, wait=video)
            if video:
                budget_resends(out.sender, participant.resends)

    def _ladder(self, slot: Slot, transceiver: RTCRtpTransceiver) -> Ladder:
        track = transceiver.receiver.track
        if slot is Slot.MICROPHONE:
            return Ladder.for_audio(track, clock=self._clock)
        return Ladder.for_video(
            track,
            SLIDES_LAYERS if slot is Slot.SCREEN else CAMERA_LAYERS,
            keyframe_interval_s=self._settings.keyframe_min_interval_s,
            clock=self._clock,
            executor=self._executor,
        )

    def _sources(self, lesson: Lesson) -> LessonSources:
        """The teacher whose media the lesson carries, and the classroom on stage."""
        teachers = [p for p in lesson.participants.values() if p.role is Role.TEACHER]
        teacher = max(teachers, key=lambda p: p.joined_at) if teachers else None
        stage = lesson.participants.get(lesson.stage) if lesson.stage else None
        if stage is not None and stage.role is not Role.CLASSROOM:
            stage = None
        return teacher, stage

    def _source(
        self, lesson: Lesson, sources: LessonSources, participant: Participant, slot: Slot
    ) -> Ladder | Mosaic | None:
        """The ladder that feeds `participant`'s outgoing `slot` now, if any.

        `sources` are the lesson's `_sources()`, found once for all its participants:
        found per slot, they made every tick cost the square of the classrooms.
        """
        if slot is Slot.CLASSROOMS:
            return self._mosaic(lesson)
        teacher, stage = sources
        if slot in _FROM_TEACHER and teacher is not None:
            return teacher.ladders.get(_FROM_TEACHER[slot])
        if slot in _FROM_STAGE and stage is not None and stage is not participant:
            return stage.ladders.get(_FROM_STAGE[slot])
        return None

    def _mosaic(self, lesson: Lesson) -> Mosaic:
        if lesson.mosaic is None:

            def frames() -> dict[str, Any]:
                """Each classroom not on stage, in order of arrival: its latest picture,
                or None while its camera sends nothing."""
                now = self._clock()
                out: dict[str, Any] = {}
                rooms = sorted(lesson.participants.values(), key=lambda p: p.joined_at)
                for room in rooms:
                    if room.role is not Role.CLASSROOM or room.participant_id == lesson.stage:
                        continue
                    camera = room.ladders.get(Slot.CAMERA)
                    live = camera is not None and camera.live(now, within_s=2.0)
                    out[room.participant_id] = camera.latest if live and camera else None
                return out

            lesson.mosaic = Mosaic(MosaicLayer(frames, clock=self._clock, executor=self._executor))
        return lesson.mosaic

    def _route(self, lesson: Lesson) -> None:
        """Point every outgoing slot of the lesson at the layer it should carry now.

        Idempotent: called after any change (a join, a leave, the stage, a layer).
        """
        sources = self._sources(lesson)
        for participant in lesson.participants.values():
            for slot, out in participant.outgoing.items():
                ladder = self._source(lesson, sources, participant, slot)
                if ladder is None or out.choice is None:
                    out.track.follow(None)
                else:
                    out.track.follow(ladder.layer(out.choice))
        recorder = self._recorders.get(lesson.lesson_id)
        if recorder is not None:
            recorder.update(_recorded_sources(lesson))

    # --- adapting to each participant's downlink -------------------------------------

    async def _adapt_loop(self) -> None:
        interval = self._settings.allocation_interval_s
        while not self._closed:
            await asyncio.sleep(interval)
            now = self._clock()
            for lesson in list(self._lessons.values()):
                changed = False
                sources = self._sources(lesson)
                for participant in list(lesson.participants.values()):
                    if participant.outgoing:
                        changed |= self._adapt(lesson, sources, participant, now)
                if changed:
                    self._route(lesson)

    def _feedback_arrived(self, participant: Participant, slot: Slot) -> None:
        """A REMB or a receiver report for one of the participant's senders: if it
        may lower the estimate (Downlink.is_news), allocate now, not at the next
        tick (up to `allocation_interval_s` later). A link that narrows shows in a
        few reports a second apart, and each tick of waiting is that much longer
        with a queue building on the path. At most one such allocation per
        `EARLY_ADAPT_MIN_S` and participant: a REMB and the receiver reports of
        several streams often come together. Feedback that can only raise the
        estimate waits: allocating on every report cost the event loop 7 % more
        with 32 classrooms (bench_fanout)."""
        out = participant.outgoing.get(slot)
        if participant.adapt_due or self._adapter is None or out is None:
            return
        if not participant.downlink.is_news(out.feedback):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        participant.adapt_due = True
        wait = participant.adapted_at + EARLY_ADAPT_MIN_S - self._clock()
        loop.call_later(max(0.0, wait), self._adapt_early, participant)

    def _adapt_early(self, participant: Participant) -> None:
        participant.adapt_due = False
        lesson = self._current(participant)
        if lesson is None or not participant.outgoing:
            return
        if self._adapt(lesson, self._sources(lesson), participant, self._clock()):
            self._route(lesson)

    def _adapt(
        self, lesson: Lesson, sources: LessonSources, participant: Participant, now: float
    ) -> bool:
        participant.adapted_at = now
        views: dict[Slot, SlotView] = {}
        for slot, out in participant.outgoing.items():
            ladder = self._source(lesson, sources, participant, slot)
            # A source that sends nothing (slides not shared yet) is offered no
            # bandwidth: it would only keep the stage or the camera off.
            live = ladder is not None and ladder.live(now)
            costs = _layer_costs(ladder, now) if ladder is not None and live else ()
            if out.red:
                costs = tuple((name, kbps + _RED_EXTRA_KBPS) for name, kbps in costs)
            views[slot] = SlotView(out.feedback, costs, sending=out.track.layer_name != "off")
        sent = participant.pacer.sent_bps() if participant.pacer is not None else None
        can_pad = (
            self._settings.probe_with_padding
            and participant.padding is not None
            and self._pads_with(participant) is not None
        )
        decision = participant.downlink.tick(views, now, sent_bps=sent, can_pad=can_pad)
        estimate = participant.downlink.estimate.bitrate_bps
        if participant.pacer is not None and participant.resends is not None:
            allocated = participant.downlink.allocated_bps
            padding = participant.downlink.padding_bps
            participant.pacer.set_rate(
                max(MIN_PACING_BPS, max(estimate, allocated + padding) * PACING_FACTOR)
            )
            participant.resends.set_rate(estimate)
            self._start_padding(participant, padding)
        # Without adaptation the estimate is still kept, for the link reports.
        if decision is None or not self._settings.adaptive:
            return False
        for slot, out in participant.outgoing.items():
            layer = decision.allocation.get(str(slot))
            if layer is not None:
                out.choice = None if layer == "off" else layer
        logger.info(
            "%s/%s: %s to %s at %.0f kbit/s",
            participant.lesson_id,
            participant.participant_id,
            decision.reason,
            decision.allocation,
            participant.downlink.estimate.bitrate_bps / 1000,
        )
        return True

    def _pads_with(self, participant: Participant) -> LeanRtp | None:
        """The video sender that can carry a probe's padding: one that sends now if
        any does (its RTX stream is one the receiver already expects packets on)."""
        found = None
        for out in participant.outgoing.values():
            if out.track.kind != "video":
                continue
            lean = lean_rtp(out.sender)
            if not lean.can_pad:
                continue
            if out.track.layer_name != "off":
                return lean
            found = found or lean
        return found

    def _start_padding(self, participant: Participant, rate_bps: float) -> None:
        if participant.padding is None:
            return
        participant.padding.set_rate(rate_bps)
        if rate_bps > 0 and (participant.padder is None or participant.padder.done()):
            participant.padder = asyncio.create_task(
                self._pad(participant), name=f"padding-{participant.participant_id}"
            )

    def _start_probing(self, participant: Participant) -> None:
        if (
            self._settings.probe_with_padding
            and participant.padding is not None
            and participant.prober is None
        ):
            participant.prober = asyncio.create_task(
                self._probe_at_start(participant), name=f"probe-{participant.participant_id}"
            )

    async def _probe_at_start(self, participant: Participant) -> None:
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
        loop = asyncio.get_running_loop()
        # The connection is up a moment before aiortc starts its senders.
        deadline = loop.time() + INITIAL_PROBE_WAIT_S
        while (lean := self._pads_with(participant)) is None:
            if loop.time() > deadline or self._current(participant) is None:
                return
            await asyncio.sleep(0.01)
        for spacing_s, count in INITIAL_PROBE_TRAINS:
            start = loop.time()
            sent = 0
            for i in range(count):
                if self._current(participant) is None:
                    return
                sent += lean.pad(1)
                await asyncio.sleep(max(0.0, start + (i + 1) * spacing_s - loop.time()))
            logger.debug(
                "%s: a train of %d padding packets, %.1f ms apart",
                participant.downlink.name,
                sent,
                (loop.time() - start) / count * 1000,
            )
            await asyncio.sleep(INITIAL_PROBE_GAP_S)

    async def _pad(self, participant: Participant) -> None:
        """Send a participant's padding while its allocator asks for it, in the room
        its pacer leaves after the media (media.pacer.PaddingBudget)."""
        padding, pacer = participant.padding, participant.pacer
        assert padding is not None and pacer is not None
        while not self._closed and padding.rate_bps > 0:
            await asyncio.sleep(PADDING_INTERVAL_S)
            lean = self._pads_with(participant)
            if lean is None:
                continue
            size = lean.padding_packet_bytes
            due = padding.due(size + UDP_IP_BYTES)
            count = 0
            while count < due and pacer.take_now([size]):
                count += 1
            if count:
                padding.paid(lean.pad(count), size + UDP_IP_BYTES)

    def _current(self, participant: Participant) -> Lesson | None:
        """The participant's lesson, if the relay is open and this connection is still
        the participant's (a second offer replaces it)."""
        lesson = self._lessons.get(participant.lesson_id)
        if self._closed or lesson is None:
            return None
        if lesson.participants.get(participant.participant_id) is not participant:
            return None
        return lesson

    async def _drop_if_current(self, participant: Participant) -> None:
        if self._current(participant) is not None:
            await self.disconnect(participant.lesson_id, participant.participant_id)

    async def _close_participant(self, participant: Participant) -> None:
        if participant.padding is not None:
            participant.padding.set_rate(0)
        if participant.padder is not None:
            participant.padder.cancel()
        if participant.prober is not None:
            participant.prober.cancel()
        for ladder in participant.ladders.values():
            ladder.close()
        for out in participant.outgoing.values():
            out.track.stop()
        await participant.pc.close()

    # --- link reports ------------------------------------------------------------------

    def _ensure_reporter(self) -> None:
        if self._reporter is None:
            self._reporter = asyncio.create_task(self._report_loop(), name="link-reports")
        if self._adapter is None:
            self._adapter = asyncio.create_task(self._adapt_loop(), name="downlinks")

    async def _report_loop(self) -> None:
        interval = self._settings.report_interval_s
        while not self._closed:
            await asyncio.sleep(interval)
            if not self._listeners:
                continue
            for lesson in list(self._lessons.values()):
                for participant in list(lesson.participants.values()):
                    if participant.outgoing:
                        self._broadcast(self._report(participant, interval))

    def _layers_changed(self, participant: Participant) -> None:
        """A slot of the participant switched layers: report it now, not at the next
        periodic report. The teacher's page shows it at once, and the lesson's
        timeline (DeliveryChanged, the delivery report) keeps when it happened, not
        up to a report interval later. Switches in one turn of the loop (an
        allocation that moves several slots) make one report."""
        if not self._listeners or participant.report_due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        participant.report_due = True
        loop.call_soon(self._report_layers, participant)

    def _report_layers(self, participant: Participant) -> None:
        participant.report_due = False
        if self._current(participant) is not None:
            self._broadcast(self._report(participant, None))

    def _report(self, participant: Participant, interval_s: float | None) -> LinkReport:
        """`interval_s`: since the previous periodic report, whose counts this one
        takes over; None for a report between them, which repeats the last rate."""
        if interval_s is not None:
            sent_octets = 0
            for out in participant.outgoing.values():
                octets = sender_octets(out.sender)
                sent_octets += octets - out.octets_at_last_report
                out.octets_at_last_report = octets
            participant.sent_kbps = sent_octets * 8 / 1000.0 / interval_s
        estimate = participant.downlink.estimate
        return LinkReport(
            lesson_id=participant.lesson_id,
            participant_id=participant.participant_id,
            estimate_kbps=estimate.bitrate_bps / 1000.0,
            sent_kbps=participant.sent_kbps,
            loss=estimate.loss,
            rtt_ms=estimate.rtt_ms,
            layers={slot.value: out.track.layer_name for slot, out in participant.outgoing.items()},
            **self._preview_layout(participant),
        )

    def _preview_layout(self, participant: Participant) -> dict[str, Any]:
        lesson = self._lessons.get(participant.lesson_id)
        if Slot.CLASSROOMS not in participant.outgoing or lesson is None or not lesson.mosaic:
            return {}
        tiles = lesson.mosaic.mosaic.tiles
        return {"previews": tuple(tiles.positions), "preview_columns": tiles.columns}

    def _broadcast(self, report: LinkReport) -> None:
        for queue in self._listeners:
            if queue.full():
                queue.get_nowait()  # a reader that lags loses the oldest report
            queue.put_nowait(report)

    async def _link_reports(self) -> AsyncIterator[LinkReport]:
        queue: asyncio.Queue[LinkReport] = asyncio.Queue(maxsize=1024)
        self._listeners.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._listeners.discard(queue)


def _layer_costs(ladder: Ladder | Mosaic, now: float) -> tuple[tuple[str, float], ...]:
    """A source's layers, cheapest first, with what each costs on the wire in kbit/s.

    Measured when the layer is sending; for a paused layer, what it cost when it
    last sent, or its expected bit rate (with a 10 % allowance for packet headers).
    """
    costs = []
    for layer in reversed(ladder.layers):
        kbps = layer.meter.kbps(now) or layer.meter.last_kbps()
        if kbps is None:
            spec = getattr(layer, "spec", None)
            if spec is None:
                kbps = _AUDIO_NOMINAL_KBPS
            else:
                kbps = (spec.expected_bitrate or spec.bitrate) * 1.1 / 1000
        costs.append((layer.name, kbps))
    return tuple(costs)


# Video leaves at what the link is thought to carry, or at what was chosen to be
# sent when that is more (a probe, the floor of audio and slides), and a little
# over: a keyframe or a new slide is spread at that rate rather than poured into a
# rural modem's few hundred milliseconds of buffer. Paced 15 % over the estimate,
# the page turns of a satellite classroom's slides overflowed it and took the
# teacher's voice with them.
PACING_FACTOR = 1.05
MIN_PACING_BPS = 100_000
# How often a probe's padding is let out: at 300 kbit/s of it, a packet or two each time.
PADDING_INTERVAL_S = 0.01
# The padding trains sent when a connection comes up (Relay._probe_at_start): the
# spacing of their packets and how many, with a pause between so that they read as
# two trains (the second for when loss breaks the first). 255 bytes every 3.5 ms
# is about 580 kbit/s: what audio, slides and camera take at their best, and a
# margin. A train at 1 Mbit/s as well set an estimate of 1.18 Mbit/s that the relay
# had no use for; Chromium's REMB later fell from it to about what it received, the
# path's round trip flat, which the estimator rightly does not take for congestion:
# the figure stayed, the video was paced to it, and on the step profile the drop to
# 300 kbit/s cost freezes of 0.55 to 1.32 s in three of five runs (none in five
# without the trains).
INITIAL_PROBE_TRAINS = ((0.0035, 8), (0.0035, 8))
INITIAL_PROBE_GAP_S = 0.03
# How long the trains wait for a video sender that can carry them.
INITIAL_PROBE_WAIT_S = 2.0
# Resends may take this share of the estimated rate (the rest is fresh media).
RESEND_SHARE = 0.15
# Allocations on fresh feedback come at most this often per participant
# (Relay._feedback_arrived); the periodic ones go on beside them.
EARLY_ADAPT_MIN_S = 0.1

# Opus at 28 kbit/s plus 25 packets a second of headers (media.meter).
_AUDIO_NOMINAL_KBPS = 41.0
# RED repeats each Opus payload once, with a 4-byte block header.
_RED_EXTRA_KBPS = 30.0
