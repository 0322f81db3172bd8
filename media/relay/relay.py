"""The relay: one peer connection per participant, ladders per source, packets fanned out.

`Relay` implements `media.gateway.MediaGateway`. Signaling builds one per
process, `Relay(RelaySettings(...))`, and calls `negotiate()` for every offer,
`set_stage()` when the floor changes, `disconnect()`/`end_lesson()` as people
leave, and `close()` on shutdown. Each participant's sending side
(media.relay.sending) chooses its layers from its own feedback; `set_layer()`
chooses by hand when adaptation is off.

A packet's path, from the teacher to a classroom (docs/architecture.md):
the teacher's track -> `Ladder` (decode once, one encoder per layer) ->
`Layer.publish` -> each subscriber's `SubscriberTrack.deliver` -> the sender's
`LeanRtp.send_now` (or its loop) -> `Wire.send` (SRTP, the socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpTransceiver

from classroom.roles import Role
from media.adapter.encoded import request_keyframe, tap_encoded
from media.adapter.guard import guard_receiver, guard_stun, guard_transport
from media.adapter.hooks import install_consent_hook
from media.adapter.ice_tcp import PassiveTcpPort
from media.adapter.ice_udp import SharedUdpPort
from media.adapter.inbound import (
    count_feedback,
    read_inbound,
    skip_gap,
    widen_receive_buffers,
)
from media.adapter.offer import check_by_kind, check_lines, check_offer
from media.adapter.peer import add_slot, answer, new_peer, take_offer
from media.adapter.red import install_red_encoder, send_red
from media.adapter.rtcp import hook_sender_rtcp, quiet_when_idle
from media.adapter.sender import LeanRtp
from media.adapter.srtp import lean_srtp
from media.adapter.twcc import TransportCc
from media.adapter.twcc import negotiate as negotiate_transport_cc
from media.adapter.ulpfec import negotiate_fec
from media.control.ingest import IngestWatch
from media.control.overload import SAMPLE_S, Load, LoadGauge
from media.gateway import LinkReport, MediaError
from media.pipeline.fanout import Publisher, SubscriberTrack
from media.pipeline.ladder import CAMERA_LAYERS, LAYER_ORDER, SLIDES_LAYERS, Ladder
from media.pipeline.mosaic import Mosaic, MosaicLayer
from media.pipeline.relayed import RelayedLayer, RelayedSource
from media.recorder.manifest import Manifest
from media.recorder.recorder import Recorder
from media.relay.feed import FEED, FEED_OFFERER, FEED_SPECS
from media.relay.reports import LinkReports, link_report
from media.relay.routing import (
    feed_source,
    lesson_sources,
    mosaic_frames,
    recorded_sources,
    slot_sources,
    source_for,
)
from media.relay.sending import FEC_SLOTS, LayerChoice, LayerTimes, Outgoing, SendingSide
from media.relay.session import Feed, Lesson, Participant
from media.relay.uplink import UPLINK, UPLINK_OFFERER
from media.settings import RelaySettings
from media.slots import Slot
from media.wire.sdp import announce

logger = logging.getLogger(__name__)

# How long a classroom's camera may send nothing and still have a tile in the mosaic.
MOSAIC_LIVE_S = 2.0
# How often each participant's receivers are read for holes (media.control.ingest).
INGEST_SAMPLE_S = 0.5


class Relay:
    """The MediaGateway on aiortc (see the module docstring for the call sequence)."""

    def __init__(
        self,
        settings: RelaySettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        edge: bool = False,
    ) -> None:
        self._settings = settings or RelaySettings()
        # A county edge's relay (signaling.edge.client): the lesson comes from the
        # origin's pull, and what its classrooms send goes up to the origin as it came
        # (media.relay.uplink) rather than being decoded here.
        self._edge = edge
        install_consent_hook()
        guard_stun()
        install_red_encoder()
        self._clock = clock
        self._lessons: dict[str, Lesson] = {}
        self._executor = ThreadPoolExecutor(
            max_workers=self._settings.encoder_threads, thread_name_prefix="media-encode"
        )
        self._reports = LinkReports()
        self._recorders: dict[str, Recorder] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._asking: set[asyncio.Task[None]] = set()
        self._closed = False
        # Bound now, so that a port already taken stops the start (media.adapter.ice_tcp,
        # media.adapter.ice_udp).
        self.ice_tcp: PassiveTcpPort | None = None
        self.ice_udp: SharedUdpPort | None = None
        if self._settings.ice_tcp_port is not None:
            self.ice_tcp = PassiveTcpPort(
                self._settings.ice_tcp_port, self._settings.host_addresses
            )
        if self._settings.ice_udp_port is not None:
            self.ice_udp = SharedUdpPort(self._settings.ice_udp_port, self._settings.host_addresses)
        # The relay's own load (media.control.overload).
        self.load = LoadGauge()

    # --- MediaGateway -------------------------------------------------------------

    async def negotiate(
        self, lesson_id: str, participant_id: str, role: Role, offer_sdp: str, *, whip: bool = False
    ) -> str:
        if self._closed:
            raise MediaError("the media relay is shutting down")
        offered = check_by_kind(offer_sdp, role) if whip else check_offer(offer_sdp, role)
        lesson = self._lessons.setdefault(lesson_id, Lesson(lesson_id))
        old = lesson.participants.pop(participant_id, None)
        if old is not None:
            await self._close_participant(old)
        # An edge, or a relay worker that serves this lesson for its home worker
        # (media.workers.follower): what the classroom sends goes up as it came.
        edge = self._edge or lesson.upstream is not None

        pc = new_peer(self._settings.stun_servers)
        # The sending side calls back into the relay once `participant` is made.
        sending = SendingSide(
            f"{lesson_id}/{participant_id}",
            self._settings,
            self._clock,
            is_current=lambda: self._current(participant) is not None,
            on_adapt_due=lambda: self._adapt_one(participant),
        )
        participant = Participant(
            lesson_id, participant_id, role, pc, {}, sending, joined_at=self._clock()
        )
        participant.ingest = whip and role is Role.TEACHER
        try:
            transceivers = [add_slot(pc, item.spec, ingest=participant.ingest) for item in offered]
            if edge:
                # Before the offer is taken: the receivers must not start decoding.
                for item, transceiver in zip(offered, transceivers, strict=True):
                    if item.spec.direction == "sendonly":
                        participant.forwarded[item.spec.slot] = self._forwarded(
                            item.spec.slot, transceiver
                        )
            for item, transceiver in zip(offered, transceivers, strict=True):
                if item.spec.direction == "recvonly":
                    sending.add(self._outgoing(participant, item.spec.slot, transceiver))
            await take_offer(pc, offer_sdp)
            # Transport-wide congestion control where the browser offers it
            # (media.adapter.twcc); REMB and receiver reports otherwise.
            for item, transceiver in zip(offered, transceivers, strict=True):
                wanted = item.spec.slot in sending.outgoing and self._settings.transport_cc
                if wanted and negotiate_transport_cc(transceiver, item.extensions, item.codecs):
                    sending.transport_cc = True
            if self._settings.video_fec:
                for item, transceiver in zip(offered, transceivers, strict=True):
                    out = sending.outgoing.get(item.spec.slot)
                    if out is not None and item.spec.slot in FEC_SLOTS:
                        out.lean.fec_types = negotiate_fec(transceiver, item.codecs)
                        logger.debug("%s/%s: FEC %s", lesson_id, item.spec.slot, out.lean.fec_types)
            if self._settings.audio_red:
                for item, transceiver in zip(offered, transceivers, strict=True):
                    out = sending.outgoing.get(item.spec.slot)
                    if out is not None and item.spec.kind == "audio":
                        out.red = send_red(transceiver, item.codecs)
            if self.ice_tcp is not None:
                await self.ice_tcp.start()
            if self.ice_udp is not None:
                await self.ice_udp.start()
            answer_sdp = await answer(pc, self._settings.host_addresses, self.ice_tcp, self.ice_udp)
            # Room for what it sends while the relay runs late (media.adapter.inbound).
            widen_receive_buffers(pc)
            for item, transceiver in zip(offered, transceivers, strict=True):
                if item.spec.direction == "sendonly" and not edge:
                    slot = item.spec.slot
                    participant.ladders[slot] = self._ladder(slot, transceiver)
                    count_feedback(transceiver.receiver)
                    watch = IngestWatch(f"{participant.name}/{slot} in")
                    participant.inbound[slot] = (transceiver.receiver, watch)
            if sending.transport_cc and sending.outgoing:
                first = next(iter(sending.outgoing.values()))
                TransportCc(
                    first.sender.transport,
                    self._clock,
                    sending.transport_feedback,
                    log=sending.downlink.send_side.log,
                )
            # Last, so that it also guards the wrappers above (media.adapter.guard).
            for dtls in {t.sender.transport for t in transceivers}:
                guard_transport(dtls)
                lean_srtp(dtls)
            for transceiver in transceivers:
                guard_receiver(transceiver.receiver)
            if self._settings.adaptive:
                sending.pace()
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
                participant.sending.start_probing()

        lesson.participants[participant_id] = participant
        if Slot.CLASSROOMS in participant.sending.outgoing:
            self._ensure_mosaic(lesson)
        self._route(lesson)
        self._start_loops()
        if self._settings.announced_address:
            answer_sdp = announce(answer_sdp, self._settings.announced_address)
        return answer_sdp

    def has_peer(self, lesson_id: str, participant_id: str) -> bool:
        lesson = self._lessons.get(lesson_id)
        return lesson is not None and participant_id in lesson.participants

    async def set_stage(self, lesson_id: str, classroom_id: str | None) -> None:
        lesson = self._lessons.setdefault(lesson_id, Lesson(lesson_id))
        lesson.stage = classroom_id
        self._route(lesson)

    async def cover_screen(self, lesson_id: str, covered: bool) -> None:
        lesson = self._lessons.setdefault(lesson_id, Lesson(lesson_id))
        if lesson.screen_covered != covered:
            lesson.screen_covered = covered
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
        await asyncio.gather(
            *(self._close_participant(p) for p in lesson.participants.values()),
            *(self._close_feed(f) for f in lesson.feeds.values()),
        )

    def link_reports(self) -> AsyncIterator[LinkReport]:
        return self._reports.stream()

    def forwarded(self, lesson_id: str, participant_id: str) -> dict[Slot, RelayedLayer]:
        """At an edge: what a classroom sends, as it came (its uplink follows it)."""
        lesson = self._lessons.get(lesson_id)
        participant = None if lesson is None else lesson.participants.get(participant_id)
        return {} if participant is None else dict(participant.forwarded)

    def stage(self, lesson_id: str) -> str | None:
        """Who has the floor in the lesson, as last set."""
        lesson = self._lessons.get(lesson_id)
        return None if lesson is None else lesson.stage

    async def close(self) -> None:
        self._closed = True
        # A graceful stop finalizes the recordings (seek index, durations).
        for lesson_id in list(self._recorders):
            self.stop_recording(lesson_id)
        for lesson_id in list(self._lessons):
            await self.end_lesson(lesson_id)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.ice_tcp is not None:
            await self.ice_tcp.close()
        if self.ice_udp is not None:
            await self.ice_udp.close()
        self._executor.shutdown(wait=True, cancel_futures=True)

    # --- county edges (media.relay.feed) ----------------------------------------------

    async def negotiate_feed(self, lesson_id: str, edge_id: str, offer_sdp: str) -> str:
        """At the origin: answer an edge relay's pull of the lesson, one sender per
        layer of each lesson slot; a second pull by the same edge replaces the first."""
        if self._closed:
            raise MediaError("the media relay is shutting down")
        offered = check_lines(offer_sdp, FEED_SPECS, FEED_OFFERER)
        lesson = self._lessons.setdefault(lesson_id, Lesson(lesson_id))
        old = lesson.feeds.pop(edge_id, None)
        if old is not None:
            await self._close_feed(old)
        feed = Feed(edge_id, new_peer(self._settings.stun_servers))
        try:
            transceivers = [add_slot(feed.pc, item.spec) for item in offered]
            for line, transceiver in zip(FEED, transceivers, strict=True):
                feed.tracks.append((line, self._feed_track(transceiver)))
            await take_offer(feed.pc, offer_sdp)
            if self.ice_tcp is not None:
                await self.ice_tcp.start()
            if self.ice_udp is not None:
                await self.ice_udp.start()
            answer_sdp = await answer(
                feed.pc, self._settings.host_addresses, self.ice_tcp, self.ice_udp
            )
            for dtls in {t.sender.transport for t in transceivers}:
                guard_transport(dtls)
                lean_srtp(dtls)
        except BaseException:
            await self._close_feed(feed)
            raise

        @feed.pc.on("connectionstatechange")
        async def on_state() -> None:
            if feed.pc.connectionState == "failed":
                await self.drop_feed(lesson_id, edge_id, feed)

        lesson.feeds[edge_id] = feed
        self._route(lesson)
        self._start_loops()
        if self._settings.announced_address:
            answer_sdp = announce(answer_sdp, self._settings.announced_address)
        return answer_sdp

    async def drop_feed(self, lesson_id: str, edge_id: str, feed: Feed | None = None) -> None:
        """Close an edge's pull of the lesson (`feed`: only if it is still that one)."""
        lesson = self._lessons.get(lesson_id)
        current = None if lesson is None else lesson.feeds.get(edge_id)
        if lesson is None or current is None or (feed is not None and current is not feed):
            return
        del lesson.feeds[edge_id]
        await self._close_feed(current)

    def want_feed(self, lesson_id: str, edge_id: str, lines: Collection[int]) -> None:
        """At the origin: send the edge only these lines of its feed (indices of
        media.relay.feed.FEED); a layer no one else follows then pauses here."""
        lesson = self._lessons.get(lesson_id)
        feed = None if lesson is None else lesson.feeds.get(edge_id)
        if lesson is None or feed is None:
            return
        feed.wanted = frozenset(i for i in lines if 0 <= i < len(feed.tracks))
        self._route(lesson)

    def feed_layers(self, lesson_id: str, edge_id: str) -> list[str]:
        """What each line of an edge's feed sends now, in FEED's order (tests)."""
        lesson = self._lessons.get(lesson_id)
        feed = None if lesson is None else lesson.feeds.get(edge_id)
        return [] if feed is None else [track.layer_name for _, track in feed.tracks]

    def participants(self, lesson_id: str) -> tuple[str, ...]:
        """Who has a peer connection in the lesson now (an edge gives its pull back
        when none of its classrooms is left)."""
        lesson = self._lessons.get(lesson_id)
        return () if lesson is None else tuple(lesson.participants)

    def feeds(self, lesson_id: str) -> tuple[str, ...]:
        """The edges that pull the lesson now (tests, metrics)."""
        lesson = self._lessons.get(lesson_id)
        return () if lesson is None else tuple(lesson.feeds)

    async def negotiate_uplink(self, lesson_id: str, participant_id: str, offer_sdp: str) -> str:
        """At the origin: answer an edge's uplink of one of its classrooms
        (media.relay.uplink). The classroom is then here as one connected directly
        is, without what it receives (the edge sends it that): a ladder of its camera
        (its mosaic tile; the stage) and of its microphone. A second uplink of the
        same classroom replaces the first."""
        if self._closed:
            raise MediaError("the media relay is shutting down")
        offered = check_lines(offer_sdp, UPLINK, UPLINK_OFFERER)
        lesson = self._lessons.setdefault(lesson_id, Lesson(lesson_id))
        old = lesson.participants.pop(participant_id, None)
        if old is not None:
            await self._close_participant(old)
        pc = new_peer(self._settings.stun_servers)
        sending = SendingSide(
            f"{lesson_id}/{participant_id}",
            self._settings,
            self._clock,
            is_current=lambda: False,
            on_adapt_due=lambda: None,
        )
        participant = Participant(
            lesson_id, participant_id, Role.CLASSROOM, pc, {}, sending, joined_at=self._clock()
        )
        try:
            transceivers = [add_slot(pc, item.spec) for item in offered]
            await take_offer(pc, offer_sdp)
            if self.ice_tcp is not None:
                await self.ice_tcp.start()
            if self.ice_udp is not None:
                await self.ice_udp.start()
            answer_sdp = await answer(pc, self._settings.host_addresses, self.ice_tcp, self.ice_udp)
            for item, transceiver in zip(offered, transceivers, strict=True):
                participant.ladders[item.spec.slot] = self._ladder(item.spec.slot, transceiver)
            for dtls in {t.sender.transport for t in transceivers}:
                guard_transport(dtls)
                lean_srtp(dtls)
            for transceiver in transceivers:
                guard_receiver(transceiver.receiver)
        except BaseException:
            await self._close_participant(participant)
            raise

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "failed":
                await self._drop_if_current(participant)

        lesson.participants[participant_id] = participant
        self._route(lesson)
        self._start_loops()
        if self._settings.announced_address:
            answer_sdp = announce(answer_sdp, self._settings.announced_address)
        return answer_sdp

    def set_upstream(self, lesson_id: str, sources: dict[Slot, RelayedSource] | None) -> None:
        """At an edge: the lesson's slots as pulled from the origin
        (media.relay.upstream.Upstream.sources); None when the pull ends."""
        lesson = self._lessons.setdefault(lesson_id, Lesson(lesson_id))
        lesson.upstream = sources
        self._route(lesson)

    def _feed_track(self, transceiver: RTCRtpTransceiver) -> SubscriberTrack:
        """A sender of one layer to an edge. Not paced nor adapted: the backbone
        carries every layer, and the edge's classrooms choose among them."""
        kind = transceiver.kind
        capacity = (
            self._settings.video_queue_frames
            if kind == "video"
            else self._settings.audio_queue_packets
        )
        sender = transceiver.sender
        lean = LeanRtp.install(sender)
        track = SubscriberTrack(
            kind, capacity, self._settings.keyframe_min_interval_s, send_now=lean.send_now
        )
        sender.replaceTrack(track)
        # The edge's PLI (one of its classrooms needs a keyframe) reaches the layer.
        hook_sender_rtcp(sender, track.request_keyframe, clock=self._clock)
        quiet_when_idle(sender, self._clock)
        return track

    async def _close_feed(self, feed: Feed) -> None:
        for _line, track in feed.tracks:
            track.stop()
        await feed.pc.close()

    # --- recording: one more subscriber of the top layers (media.recorder) ----------

    def start_recording(self, lesson_id: str, directory: Path, meta: dict[str, Any]) -> Recorder:
        """Record the lesson's sources into `directory` from now on."""
        self.stop_recording(lesson_id)
        recorder = Recorder(directory, clock=self._clock, meta=meta)
        self._recorders[lesson_id] = recorder
        self._route(self._lessons.setdefault(lesson_id, Lesson(lesson_id)))
        return recorder

    def stop_recording(self, lesson_id: str) -> Manifest | None:
        """Finish the lesson's recording; its manifest, or None if none was running."""
        recorder = self._recorders.pop(lesson_id, None)
        return None if recorder is None else recorder.close()

    # --- beyond the gateway: layers by hand, and introspection ------------------------

    def set_layer(
        self, lesson_id: str, participant_id: str, slot: Slot, layer: LayerChoice
    ) -> None:
        """Choose what an outgoing slot carries: "high", "mid", "low", or None (off).

        A layer a source lacks falls to the nearest one below (slides have no "mid").
        The switch happens at the new layer's next keyframe, which is requested now.
        """
        if layer is not None and layer not in LAYER_ORDER:
            raise MediaError(f"unknown layer {layer!r}; use one of {', '.join(LAYER_ORDER)}")
        participant = self.participant(lesson_id, participant_id)
        outgoing = participant.sending.outgoing.get(slot)
        if outgoing is None:
            raise MediaError(f"a {participant.role.value} receives nothing on {slot.value}")
        outgoing.choice = layer
        self._route(self._lessons[lesson_id])

    def participant(self, lesson_id: str, participant_id: str) -> Participant:
        """A participant's connection (tests, metrics); MediaError if it has none."""
        lesson = self._lessons.get(lesson_id)
        participant = None if lesson is None else lesson.participants.get(participant_id)
        if participant is None:
            raise MediaError(f"{participant_id} has no media connection in this lesson")
        return participant

    def ladder(self, lesson_id: str, participant_id: str, slot: Slot) -> Ladder | None:
        """The ladder fed by a participant's incoming slot (tests, metrics)."""
        return self.participant(lesson_id, participant_id).ladders.get(slot)

    def outgoing_track(
        self, lesson_id: str, participant_id: str, slot: Slot
    ) -> SubscriberTrack | None:
        out = self.participant(lesson_id, participant_id).sending.outgoing.get(slot)
        return None if out is None else out.track

    def mosaic(self, lesson_id: str) -> Mosaic | None:
        """The lesson's mosaic of classrooms, once a teacher has asked for it."""
        lesson = self._lessons.get(lesson_id)
        return None if lesson is None else lesson.mosaic

    def link_report(self, lesson_id: str, participant_id: str) -> LinkReport:
        """A participant's link as the next report would say it (tests)."""
        participant = self.participant(lesson_id, participant_id)
        return self._report(participant, None)

    # --- building a participant ------------------------------------------------------

    def _outgoing(
        self, participant: Participant, slot: Slot, transceiver: RTCRtpTransceiver
    ) -> Outgoing:
        """An outgoing slot: a track the layers feed, and the sender that sends it."""
        kind = transceiver.kind
        capacity = (
            self._settings.video_queue_frames
            if kind == "video"
            else self._settings.audio_queue_packets
        )
        sender = transceiver.sender
        # The last hop of every packet to this participant: our RTP loop in place of
        # aiortc's (media.adapter.sender), and the track handing it each packet
        # directly while the loop waits (SubscriberTrack.deliver -> LeanRtp.send_now).
        lean = LeanRtp.install(sender)
        track = SubscriberTrack(
            kind,
            capacity,
            self._settings.keyframe_min_interval_s,
            send_now=lean.send_now,
            on_switch=lambda layer: switched(layer),
        )
        times = LayerTimes()
        times.switch(track.layer_name, self._clock())

        def switched(layer: Publisher | None) -> None:
            times.switch(layer.name if layer is not None else "off", self._clock())
            self._layers_changed(participant)

        sender.replaceTrack(track)
        side = participant.sending
        feedback = hook_sender_rtcp(
            sender,
            track.request_keyframe,
            on_feedback=lambda: side.feedback_arrived(slot),
            clock=self._clock,
        )
        quiet_when_idle(sender, self._clock)
        return Outgoing(slot, sender, track, lean, feedback, layer_times=times)

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

    def _forwarded(self, slot: Slot, transceiver: RTCRtpTransceiver) -> RelayedLayer:
        """At an edge: a classroom's incoming slot kept encoded for its uplink; a
        keyframe the origin asks for is asked of the classroom."""
        receiver = transceiver.receiver
        kind = "audio" if slot is Slot.MICROPHONE else "video"
        layer = RelayedLayer(
            "high",
            kind,
            self._clock,
            lambda: self._ask_keyframe(receiver),
            self._settings.keyframe_min_interval_s,
        )
        tap_encoded(receiver, layer.receive)
        return layer

    def _ask_keyframe(self, receiver: RTCRtpReceiver) -> None:
        task = asyncio.create_task(request_keyframe(receiver), name="uplink-pli")
        self._asking.add(task)
        task.add_done_callback(self._asking.discard)

    def _ensure_mosaic(self, lesson: Lesson) -> Mosaic:
        if lesson.mosaic is None:

            def frames() -> dict[str, Any]:
                return mosaic_frames(lesson, self._clock(), MOSAIC_LIVE_S)

            lesson.mosaic = Mosaic(MosaicLayer(frames, clock=self._clock, executor=self._executor))
            lesson.mosaic.mosaic.slowdown = self.load.mosaic_slowdown
        return lesson.mosaic

    # --- routing and adapting --------------------------------------------------------

    def _route(self, lesson: Lesson) -> None:
        """Point every outgoing slot of the lesson at the layer it should carry now.

        Idempotent: called after any change (a join, a leave, the stage, a layer).
        """
        sources = lesson_sources(lesson)
        for participant in lesson.participants.values():
            for slot, out in participant.sending.outgoing.items():
                source = source_for(lesson, sources, participant, slot)
                if source is None or out.choice is None:
                    out.track.follow(None)
                else:
                    out.track.follow(source.layer(out.choice))
        for feed in lesson.feeds.values():
            for index, (line, track) in enumerate(feed.tracks):
                fed = feed_source(sources, line.slot)
                if fed is None or (feed.wanted is not None and index not in feed.wanted):
                    track.follow(None)
                else:
                    track.follow(fed.layer(line.layer))
        recorder = self._recorders.get(lesson.lesson_id)
        if recorder is not None:
            recorder.update(recorded_sources(lesson))

    def _adapt_lesson(self, lesson: Lesson, now: float) -> None:
        sources = lesson_sources(lesson)
        changed = False
        for participant in list(lesson.participants.values()):
            if participant.sending.outgoing:
                side = participant.sending
                changed |= side.adapt(slot_sources(lesson, sources, participant), now, self.load)
        if changed:
            self._route(lesson)

    def _adapt_one(self, participant: Participant) -> None:
        """Fresh feedback asked for an allocation before the next tick."""
        lesson = self._current(participant)
        if lesson is None or not participant.sending.outgoing:
            return
        sources = slot_sources(lesson, lesson_sources(lesson), participant)
        if participant.sending.adapt(sources, self._clock(), self.load):
            self._route(lesson)

    def _start_loops(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._report_loop(), name="link-reports"),
                asyncio.create_task(self._adapt_loop(), name="downlinks"),
                asyncio.create_task(self._load_loop(), name="relay-load"),
                asyncio.create_task(self._ingest_loop(), name="ingest-watch"),
            ]

    async def _adapt_loop(self) -> None:
        interval = self._settings.allocation_interval_s
        while not self._closed:
            await asyncio.sleep(interval)
            now = self._clock()
            for lesson in list(self._lessons.values()):
                self._adapt_lesson(lesson, now)

    async def _ingest_loop(self) -> None:
        """Twice a second, what each participant's receivers did (media.control.ingest):
        a source that stops reaching the relay is logged with where its frames
        stopped, and a jitter buffer stuck at a lost packet skips it."""
        while not self._closed:
            await asyncio.sleep(INGEST_SAMPLE_S)
            now = self._clock()
            for lesson in list(self._lessons.values()):
                for participant in list(lesson.participants.values()):
                    for slot, (receiver, watch) in participant.inbound.items():
                        ladder = participant.ladders.get(slot)
                        frames = ladder.frames_in if ladder is not None else 0
                        sample = read_inbound(receiver, frames)
                        line = watch.update(sample, now)
                        if line is not None:
                            logger.warning("%s", line)
                        video = ladder is not None and ladder.kind == "video"
                        if video and watch.stuck(sample, now):
                            dropped = skip_gap(receiver)
                            logger.info(
                                "%s: skipped a gap at packet %s (%d packets dropped), "
                                "keyframe asked",
                                watch.name,
                                sample.gap,
                                dropped,
                            )
                            await request_keyframe(receiver)

    async def _load_loop(self) -> None:
        """Sample how late the event loop runs (media.control.overload); on a change of
        level, shed or take back the relay's own work and tell the teachers."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            asked = loop.time()
            await asyncio.sleep(SAMPLE_S)
            woke = loop.time()
            if self.load.sample(max(0.0, (woke - asked - SAMPLE_S) * 1000), woke):
                self._load_changed()

    def _load_changed(self) -> None:
        level = self.load.level
        log = logger.warning if level > Load.OK else logger.info
        log(
            "relay load %s (late by up to %.0f ms): mosaic at 1/%d of its rate, %d top layers held",
            level.name.lower(),
            self.load.late_ms,
            self.load.mosaic_slowdown,
            self.load.shed_top_layers,
        )
        now = self._clock()
        for lesson in list(self._lessons.values()):
            if lesson.mosaic is not None:
                lesson.mosaic.mosaic.slowdown = self.load.mosaic_slowdown
            self._adapt_lesson(lesson, now)
            for participant in list(lesson.participants.values()):
                if Slot.CLASSROOMS in participant.sending.outgoing:
                    self._layers_changed(participant)

    # --- link reports ------------------------------------------------------------------

    async def _report_loop(self) -> None:
        interval = self._settings.report_interval_s
        while not self._closed:
            await asyncio.sleep(interval)
            if not self._reports.listened:
                continue
            for lesson in list(self._lessons.values()):
                for participant in list(lesson.participants.values()):
                    if participant.sending.outgoing:
                        self._reports.broadcast(self._report(participant, interval))

    def _report(self, participant: Participant, interval_s: float | None) -> LinkReport:
        lesson = self._lessons.get(participant.lesson_id)
        mosaic = None if lesson is None else lesson.mosaic
        tiles = mosaic.mosaic.tiles if mosaic else None
        return link_report(participant, interval_s, tiles, self.load.level.name.lower())

    def _layers_changed(self, participant: Participant) -> None:
        self._reports.soon(
            participant,
            lambda: self._report(participant, None) if self._current(participant) else None,
        )

    # --- leaving -----------------------------------------------------------------------

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
        summary = participant.sending.summary(self._clock())
        if summary:
            logger.info("%s: session ends: %s", participant.name, summary)
        participant.sending.close()
        for slot, ladder in participant.ladders.items():
            if ladder.kind == "video" and ladder.frames_in:
                logger.info("%s/%s in: source ends: %s", participant.name, slot, ladder.summary())
            ladder.close()
        for layer in participant.forwarded.values():
            layer.close()
        await participant.pc.close()
