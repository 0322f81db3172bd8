"""A classroom behind an edge, sent up to the origin: its camera and microphone as it sent them.

A classroom of an edge's school sends its camera and microphone to the edge. The
origin needs them: the camera is that classroom's tile in the teacher's mosaic,
and camera and microphone go on stage (to the teacher, to the origin's classrooms,
and back down the edge's pull to its other classrooms) when the classroom has the
floor. The edge does not decode them: its relay keeps each frame as the classroom
encoded it (a `RelayedLayer`, media.relay.relay with `edge=True`), and one
`Uplink` per classroom sends those frames on to the origin, where they are the
sources of a classroom like any other (`Relay.negotiate_uplink`: a ladder each).

What crosses the backbone is what the classroom sends, no more: a page sends its
camera small (a quarter of the pixels, 5 fps, at most 150 kbit/s) while it is only
a tile and full while it is on stage (docs/protocol.md "Media"), so the uplink
needs no layers of its own. The microphone is only heard from the stage: it is
sent up only while its classroom has the floor (`follow`).

One peer connection per classroom rather than m-lines added to the lesson's pull:
classrooms come and go during a lesson, and the pull's m-lines are fixed (adding
some means renegotiating a connection whose senders the origin has bound layer by
layer); each classroom's camera is its own stream the origin decodes anyway, so
what the origin spends per edge classroom is that decoding, plus this connection's
ICE and DTLS. The edge's PLI path is the pull's reversed: the origin's ladder asks
the uplink's sender, which asks the classroom's `RelayedLayer`, which asks the
classroom (at most once per interval).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from media.adapter.rtcp import hook_sender_rtcp, quiet_when_idle
from media.adapter.sender import LeanRtp
from media.pipeline.fanout import SubscriberTrack
from media.pipeline.ladder import Layer
from media.relay.backbone import BackbonePeer
from media.settings import RelaySettings
from media.slots import Slot, SlotSpec

# The uplink's m-lines, in this order, as the edge (the offerer) sees them.
UPLINK: tuple[SlotSpec, ...] = (
    SlotSpec(Slot.CAMERA, "video", "sendonly"),
    SlotSpec(Slot.MICROPHONE, "audio", "sendonly"),
)
# How the edge's offer is named in the messages that refuse it.
UPLINK_OFFERER = "edge relay's uplink"


class Uplink(BackbonePeer):
    """One edge classroom's camera and microphone, sent to the origin (see above)."""

    def __init__(
        self,
        lesson_id: str,
        participant_id: str,
        settings: RelaySettings,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(settings)
        self.lesson_id = lesson_id
        self.participant_id = participant_id
        self.tracks: dict[Slot, SubscriberTrack] = {}
        for spec in UPLINK:
            sender = self.add_line(spec.kind, "sendonly").sender
            lean = LeanRtp.install(sender)
            video = spec.kind == "video"
            capacity = settings.video_queue_frames if video else settings.audio_queue_packets
            track = SubscriberTrack(
                spec.kind, capacity, settings.keyframe_min_interval_s, send_now=lean.send_now
            )
            sender.replaceTrack(track)
            # The origin's PLI (its ladder needs a keyframe) reaches the classroom.
            hook_sender_rtcp(sender, track.request_keyframe, clock=clock)
            quiet_when_idle(sender, clock)
            self.tracks[spec.slot] = track

    def follow(self, sources: Mapping[Slot, Layer], on_stage: bool) -> None:
        """Send the classroom's camera always (its tile), its microphone only while it
        has the floor (nobody else hears it)."""
        self.tracks[Slot.CAMERA].follow(sources.get(Slot.CAMERA))
        self.tracks[Slot.MICROPHONE].follow(sources.get(Slot.MICROPHONE) if on_stage else None)

    async def close(self) -> None:
        for track in self.tracks.values():
            track.stop()
        await self.pc.close()
