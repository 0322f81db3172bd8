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
