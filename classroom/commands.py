"""What participants ask of a lesson. Commands go in; events come out."""

from __future__ import annotations

from dataclasses import dataclass

from classroom.reception import AudioCounters, Picture, VideoCounters


@dataclass(frozen=True)
class Command:
    pass


@dataclass(frozen=True)
class Join(Command):
    """A participant's first connection (or a reconnect after leaving)."""


@dataclass(frozen=True)
class Leave(Command):
    """A participant's last connection closed."""


@dataclass(frozen=True)
class RaiseHand(Command):
    student: str


@dataclass(frozen=True)
class LowerHand(Command):
    pass


@dataclass(frozen=True)
class DismissHand(Command):
    classroom_id: str


@dataclass(frozen=True)
class GrantFloor(Command):
    classroom_id: str


@dataclass(frozen=True)
class RevokeFloor(Command):
    pass


@dataclass(frozen=True)
class PostChat(Command):
    text: str


@dataclass(frozen=True)
class EndLesson(Command):
    pass


@dataclass(frozen=True)
class StartRecording(Command):
    """The teacher published media: the server starts recording (a system command).

    A server restarted mid-lesson starts a new recording, with a new id.
    """

    recording_id: str


@dataclass(frozen=True)
class PauseRecording(Command):
    pass


@dataclass(frozen=True)
class ResumeRecording(Command):
    pass


@dataclass(frozen=True)
class NoteDelivery(Command):
    """The relay reports that what it sends a participant changed (a system command)."""

    participant_id: str
    layers: tuple[tuple[str, str], ...]
    estimate_kbps: float


@dataclass(frozen=True)
class ReportReception(Command):
    """A classroom's browser says what it received on one peer connection
    (`media_session`): cumulative counters since that connection opened. None for a
    kind the browser does not measure (yet). `pictures`: what it decodes now, by slot
    (teacher_camera, slides); empty when the page did not say."""

    media_session: str
    video: VideoCounters | None
    audio: AudioCounters | None
    pictures: tuple[tuple[str, Picture], ...] = ()


@dataclass(frozen=True)
class AttachDeck(Command):
    """A deck rendered by the server (its id is its file's SHA-256) goes with the lesson;
    attached before class, every classroom fetches it ahead of time."""

    deck_id: str
    name: str
    pages: int
    width: int
    height: int


@dataclass(frozen=True)
class TurnPage(Command):
    """Show page `page` (1..pages) of the deck; 0 puts the deck away."""

    page: int


@dataclass(frozen=True)
class PointAt(Command):
    """The laser pointer at (x, y), fractions of the page; None and None hide it."""

    x: float | None
    y: float | None


@dataclass(frozen=True)
class DrawInk(Command):
    """One stroke of ink on the page shown, as the pen drew it."""

    points: tuple[tuple[float, float], ...]
    color: str = "red"


@dataclass(frozen=True)
class ClearInk(Command):
    pass


@dataclass(frozen=True)
class ReportCourseware(Command):
    """A classroom's browser holds `ready` of the deck's `total` pages."""

    deck_id: str
    ready: int
    total: int
