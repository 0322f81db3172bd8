"""Who is connected to a lesson, as the relay keeps it: participants and their sources.

Plain records: the relay (media.relay.relay) creates and closes them, routing
(media.relay.routing) reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection

from classroom.roles import Role
from media.control.ingest import IngestWatch
from media.pipeline.fanout import SubscriberTrack
from media.pipeline.ladder import Ladder
from media.pipeline.mosaic import Mosaic
from media.pipeline.relayed import RelayedLayer, RelayedSource
from media.relay.feed import FeedLine
from media.relay.sending import SendingSide
from media.slots import Slot


@dataclass
class Participant:
    lesson_id: str
    participant_id: str
    role: Role
    pc: RTCPeerConnection
    # What the participant sends us, one ladder per incoming slot.
    ladders: dict[Slot, Ladder]
    # What we send it.
    sending: SendingSide
    joined_at: float = 0.0
    # A WHIP publisher (RFC 9725): its camera and microphone are the lesson's
    # teacher's while it publishes, whatever the teacher's page sends.
    ingest: bool = False
    # At an edge: what the classroom sends, kept as it came (not decoded) for its
    # uplink to the origin (media.relay.uplink), in place of `ladders`.
    forwarded: dict[Slot, RelayedLayer] = field(default_factory=dict)
    # Each decoded incoming slot's receiver (an RTCRtpReceiver) and its watch for
    # holes in what arrives (media.control.ingest).
    inbound: dict[Slot, tuple[Any, IngestWatch]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.lesson_id}/{self.participant_id}"


@dataclass
class Feed:
    """An edge relay's pull of the lesson (media.relay.feed): one connection, a
    sender per layer, each following that one layer whatever the edge's links."""

    edge_id: str
    pc: RTCPeerConnection
    tracks: list[tuple[FeedLine, SubscriberTrack]] = field(default_factory=list)
    # The lines (indices of media.relay.feed.FEED) the edge's classrooms follow;
    # None until the edge first says: every line.
    wanted: frozenset[int] | None = None


@dataclass
class Lesson:
    lesson_id: str = ""
    participants: dict[str, Participant] = field(default_factory=dict)
    stage: str | None = None
    # A deck page covers the screen share on the pages (media.gateway.cover_screen).
    screen_covered: bool = False
    # The teacher's view of the classrooms, made when a teacher first asks for it.
    mosaic: Mosaic | None = None
    # At the origin: the edges that pull the lesson, by name.
    feeds: dict[str, Feed] = field(default_factory=dict)
    # At an edge: the lesson's slots as pulled from the origin (media.relay.upstream);
    # they feed this relay's classrooms in place of a teacher's ladders.
    upstream: dict[Slot, RelayedSource] | None = None
