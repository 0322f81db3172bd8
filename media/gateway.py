"""The small interface through which signaling drives the media relay.

Signaling knows lessons, participants and roles; it knows nothing of RTP. The
relay knows peer connections and packets; it knows nothing of HTTP. They meet here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from classroom.roles import Role


class MediaError(Exception):
    """A request the relay cannot honour; the message is fit to show a user."""


class MediaUnavailable(MediaError):
    """The relay that holds the lesson's media is gone (a relay worker that died): the
    offer was fine, and the same offer later, or elsewhere, may be answered."""


@dataclass(frozen=True)
class LinkReport:
    """What one participant's downlink carries now, as the relay sees it.

    Figures come from the participant's own RTCP feedback (REMB, receiver reports).
    `layers` maps an outgoing slot name to the layer sent on it ("high", "mid",
    "low", "min", or "off").
    """

    lesson_id: str
    participant_id: str
    estimate_kbps: float
    sent_kbps: float
    loss: float
    rtt_ms: float | None
    layers: dict[str, str] = field(default_factory=dict)
    # For a teacher: who is in which tile of the classrooms mosaic (row by row,
    # None for an empty tile), and how many tiles make a row.
    previews: tuple[str | None, ...] = ()
    preview_columns: int = 0
    # The relay's own load: "ok", "strained" or "overloaded" (media.control.overload).
    server_load: str = "ok"


class MediaGateway(Protocol):
    async def negotiate(
        self, lesson_id: str, participant_id: str, role: Role, offer_sdp: str, *, whip: bool = False
    ) -> str:
        """Take a participant's SDP offer, return the relay's answer.

        A second offer from the same participant replaces its peer connection
        (a reconnect). Raises MediaError for an SDP that cannot be used.
        `whip`: the offer is a WHIP or WHEP client's, its m-lines taken by kind
        rather than in the role's fixed order (media.adapter.offer.check_by_kind);
        a teacher's is a publisher whose camera and microphone the lesson carries.
        """
        ...

    def has_peer(self, lesson_id: str, participant_id: str) -> bool:
        """Whether the participant has a peer connection now (not failed, not closed)."""
        ...

    async def set_stage(self, lesson_id: str, classroom_id: str | None) -> None:
        """Put a classroom's camera and microphone on stage, or clear the stage."""
        ...

    async def cover_screen(self, lesson_id: str, covered: bool) -> None:
        """A deck page covers the teacher's screen share on the classroom and observer
        pages (`covered`), or no longer does: the share is not sent to them meanwhile."""
        ...

    async def disconnect(self, lesson_id: str, participant_id: str) -> None:
        """Close a participant's peer connection, if it has one."""
        ...

    async def end_lesson(self, lesson_id: str) -> None:
        """Close every peer connection of the lesson and free its encoders."""
        ...

    def link_reports(self) -> AsyncIterator[LinkReport]:
        """Reports of every participant's downlink, as they change."""
        ...

    async def close(self) -> None:
        """Release everything (server shutdown)."""
        ...
