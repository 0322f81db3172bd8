"""Everything that happens in a lesson, as typed events.

Each event carries its sequence number in the lesson's log (1, 2, 3...) and the
lesson time `at`, in seconds since the lesson was scheduled. The same events feed
the lesson's state (a fold), the WebSocket clients, the database and the
recording's timeline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from classroom.roles import Role

_KINDS: dict[str, type[Event]] = {}


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = ""
    # Stamped by the lesson that logs the event (Lesson.handle): a decision is made
    # before its place in the log is known, so an event is built with its own fields
    # (checked by mypy, like any constructor call) and numbered once, in one place.
    seq: int = 0
    at: float = 0.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind in _KINDS:
            raise TypeError(f"two events named {cls.kind!r}")
        _KINDS[cls.kind] = cls

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form: {"kind": ..., "seq": ..., "at": ..., fields...}."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [v.to_dict() if hasattr(v, "to_dict") else v for v in value]
            out[f.name] = value
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Event:
        fields = dict(data)
        cls = _KINDS.get(fields.pop("kind", None) or "")
        if cls is None:
            raise ValueError(f"unknown event kind {data.get('kind')!r}")
        if cls is LessonScheduled:
            fields["participants"] = tuple(
                ParticipantSpec(**p) for p in fields.get("participants", ())
            )
        return cls(**fields)


@dataclass(frozen=True)
class ParticipantSpec:
    participant_id: str
    role: Role
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))

    def to_dict(self) -> dict[str, Any]:
        return {"participant_id": self.participant_id, "role": str(self.role), "name": self.name}


@dataclass(frozen=True, kw_only=True)
class LessonScheduled(Event):
    kind: ClassVar[str] = "lesson_scheduled"
    lesson_id: str
    title: str
    # Wall-clock seconds (Unix time) at lesson time 0.
    origin: float
    participants: tuple[ParticipantSpec, ...]


@dataclass(frozen=True, kw_only=True)
class LessonStarted(Event):
    kind: ClassVar[str] = "lesson_started"


@dataclass(frozen=True, kw_only=True)
class LessonEnded(Event):
    kind: ClassVar[str] = "lesson_ended"
    by: str


@dataclass(frozen=True, kw_only=True)
class ParticipantJoined(Event):
    kind: ClassVar[str] = "participant_joined"
    participant_id: str
    role: str
    name: str


@dataclass(frozen=True, kw_only=True)
class ParticipantLeft(Event):
    kind: ClassVar[str] = "participant_left"
    participant_id: str
    role: str
    name: str


@dataclass(frozen=True, kw_only=True)
class HandRaised(Event):
    kind: ClassVar[str] = "hand_raised"
    classroom_id: str
    student: str


@dataclass(frozen=True, kw_only=True)
class HandLowered(Event):
    """The classroom took its own hand down."""

    kind: ClassVar[str] = "hand_lowered"
    classroom_id: str
    student: str


@dataclass(frozen=True, kw_only=True)
class HandDismissed(Event):
    """The teacher took a classroom's hand down without giving it the floor."""

    kind: ClassVar[str] = "hand_dismissed"
    classroom_id: str
    student: str


@dataclass(frozen=True, kw_only=True)
class FloorGranted(Event):
    """A classroom is on stage: its camera and microphone go to everyone.

    `student` is the name of the hand that was raised, if any; granting the floor
    answers that hand, so it leaves the queue.
    """

    kind: ClassVar[str] = "floor_granted"
    classroom_id: str
    student: str | None


@dataclass(frozen=True, kw_only=True)
class FloorRevoked(Event):
    kind: ClassVar[str] = "floor_revoked"
    classroom_id: str
    # "revoked" by the teacher, "replaced" by a grant to another classroom,
    # "left" when the classroom disconnected, "ended" with the lesson.
    reason: str


@dataclass(frozen=True, kw_only=True)
class ChatPosted(Event):
    kind: ClassVar[str] = "chat_posted"
    participant_id: str
    name: str
    text: str


@dataclass(frozen=True, kw_only=True)
class RecordingStarted(Event):
    kind: ClassVar[str] = "recording_started"
    recording_id: str


@dataclass(frozen=True, kw_only=True)
class RecordingPaused(Event):
    kind: ClassVar[str] = "recording_paused"
    recording_id: str


@dataclass(frozen=True, kw_only=True)
class RecordingResumed(Event):
    kind: ClassVar[str] = "recording_resumed"
    recording_id: str


@dataclass(frozen=True, kw_only=True)
class RecordingStopped(Event):
    """The recording ended with the lesson (`reason` "ended")."""

    kind: ClassVar[str] = "recording_stopped"
    recording_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class DeliveryChanged(Event):
    """What the relay sends a participant changed (its link got weaker or stronger).

    `layers` maps a slot name to the layer now sent on it ("high", "mid", "low", "min", "off").
    """

    kind: ClassVar[str] = "delivery_changed"
    participant_id: str
    layers: dict[str, str]
    estimate_kbps: float


@dataclass(frozen=True, kw_only=True)
class ReceptionReported(Event):
    """What a classroom's browser received on one peer connection, as it counted it
    (classroom.reception): `video` {freeze_count, total_freezes_duration,
    frames_decoded} and `audio` {concealed_samples, total_samples_received,
    concealment_events}, cumulative since that peer connection opened; null for a
    kind the browser did not report. `pictures`: what it decoded at that moment, by
    slot ({state, width, height, fps}, classroom.reception.Picture), or null; the
    teacher's page shows it as what the classroom really receives.
    """

    kind: ClassVar[str] = "reception_reported"
    participant_id: str
    media_session: str
    video: dict[str, Any] | None
    audio: dict[str, Any] | None
    pictures: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class DeckAttached(Event):
    """A deck goes with the lesson (classroom.courseware); its page 1 is shown."""

    kind: ClassVar[str] = "deck_attached"
    deck_id: str
    name: str
    pages: int
    width: int
    height: int


@dataclass(frozen=True, kw_only=True)
class PageTurned(Event):
    """`page` of the deck is shown (0: the deck is put away); its ink and the pointer
    go with the page that was shown."""

    kind: ClassVar[str] = "page_turned"
    deck_id: str
    page: int


@dataclass(frozen=True, kw_only=True)
class PointerMoved(Event):
    """The laser pointer, in fractions of the page; `x` and `y` null: hidden."""

    kind: ClassVar[str] = "pointer_moved"
    deck_id: str
    page: int
    x: float | None
    y: float | None


@dataclass(frozen=True, kw_only=True)
class InkDrawn(Event):
    kind: ClassVar[str] = "ink_drawn"
    deck_id: str
    page: int
    color: str
    points: list[list[float]]


@dataclass(frozen=True, kw_only=True)
class InkCleared(Event):
    kind: ClassVar[str] = "ink_cleared"
    deck_id: str
    page: int


@dataclass(frozen=True, kw_only=True)
class CoursewareReported(Event):
    """A classroom's browser holds `ready` of the deck's `total` pages."""

    kind: ClassVar[str] = "courseware_reported"
    participant_id: str
    deck_id: str
    ready: int
    total: int
