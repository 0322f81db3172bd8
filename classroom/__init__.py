"""The classroom domain: lessons, roles, the hand queue and the stage. No I/O."""

from classroom.commands import (
    Command,
    DismissHand,
    EndLesson,
    GrantFloor,
    Join,
    Leave,
    LowerHand,
    NoteDelivery,
    PauseRecording,
    PostChat,
    RaiseHand,
    ReportReception,
    ResumeRecording,
    RevokeFloor,
    StartRecording,
)
from classroom.errors import DomainError, InvalidCommand, InvalidTransition, NotAllowed
from classroom.events import Event, ParticipantSpec
from classroom.lesson import Hand, Lesson, LessonState, Participant, RecordingState, StageHolder
from classroom.roles import ADMIN, SYSTEM, Role, may

__all__ = [
    "ADMIN",
    "SYSTEM",
    "Command",
    "DismissHand",
    "DomainError",
    "EndLesson",
    "Event",
    "GrantFloor",
    "Hand",
    "InvalidCommand",
    "InvalidTransition",
    "Join",
    "Leave",
    "Lesson",
    "LessonState",
    "LowerHand",
    "NotAllowed",
    "NoteDelivery",
    "Participant",
    "ParticipantSpec",
    "PauseRecording",
    "PostChat",
    "RaiseHand",
    "RecordingState",
    "ReportReception",
    "ResumeRecording",
    "RevokeFloor",
    "Role",
    "StageHolder",
    "StartRecording",
    "may",
]
