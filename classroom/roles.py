"""Who takes part in a lesson, and what each of them may do."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    TEACHER = "teacher"
    CLASSROOM = "classroom"
    OBSERVER = "observer"


ADMIN = "admin"
"""The actor id of the school's administrator (the admin key), who is no participant."""

SYSTEM = "system"
"""The actor id of the server itself (the relay reporting what it delivers)."""


# Which role may issue which command, by command class name. The admin key may end
# a lesson; the server (SYSTEM) notes delivery changes. Everything else is a
# participant's.
PERMISSIONS: dict[str, frozenset[str]] = {
    Role.TEACHER: frozenset(
        {
            "Join",
            "Leave",
            "DismissHand",
            "GrantFloor",
            "RevokeFloor",
            "PostChat",
            "EndLesson",
            # Pausing the recording is the teacher's call (a private moment, a break).
            "PauseRecording",
            "ResumeRecording",
            # The deck is the teacher's: attaching it, turning its pages, pointing, ink.
            "AttachDeck",
            "TurnPage",
            "PointAt",
            "DrawInk",
            "ClearInk",
        }
    ),
    # Only a classroom's own browser knows what it received (freezes, sound gaps).
    Role.CLASSROOM: frozenset(
        {
            "Join",
            "Leave",
            "RaiseHand",
            "LowerHand",
            "PostChat",
            "ReportReception",
            # Only the classroom's browser knows which pages it holds.
            "ReportCourseware",
        }
    ),
    # Observers watch; they cannot speak, raise a hand or chat.
    Role.OBSERVER: frozenset({"Join", "Leave"}),
    # The school's admin may attach a deck before class, for the teacher.
    ADMIN: frozenset({"EndLesson", "AttachDeck"}),
    SYSTEM: frozenset({"NoteDelivery", "StartRecording"}),
}


def may(role: str, command_name: str) -> bool:
    return command_name in PERMISSIONS.get(role, frozenset())
