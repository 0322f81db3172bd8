"""Schools, their rooms and teachers, and which rural rooms an urban school teaches.

A room is a standing thing (a projector PC with its own device link), a teacher a
person with a lasting link; both belong to one school. Records are frozen: a change
is a new record (`dataclasses.replace`), decided by `classroom.directory`.

Credentials are kept here only as hashes, computed by the caller: the domain never
sees a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from classroom.errors import InvalidCommand

MAX_SCHOOL_NAME = 100
MAX_ROOM_NAME = 80
MAX_TEACHER_NAME = 80


class SchoolKind(StrEnum):
    URBAN = "urban"
    RURAL = "rural"


@dataclass(frozen=True)
class School:
    school_id: str
    name: str
    kind: SchoolKind
    # Archived when it is emptied but its archived rooms or teachers keep a history.
    archived: bool = False


@dataclass(frozen=True)
class Room:
    room_id: str
    school_id: str
    name: str
    # sha-256 of the device link's secret; None when the link is revoked.
    device_hash: str | None
    # An archived room keeps its lessons' history but is out of every list and
    # timetable, and its device link opens nothing.
    archived: bool = False


@dataclass(frozen=True)
class Teacher:
    teacher_id: str
    school_id: str
    name: str
    # sha-256 of the teacher link's secret; None when the link is revoked.
    link_hash: str | None
    archived: bool = False


@dataclass(frozen=True)
class Pairing:
    """An urban school teaches a rural school's room."""

    school_id: str
    room_id: str


def clean_name(name: str, what: str, longest: int) -> str:
    """The name as shown: trimmed, inner runs of spaces made one. Refuses empty, overlong
    and control characters (a name ends up in calendars and on a projector)."""
    text = " ".join(name.split())
    if not text or len(text) > longest:
        raise InvalidCommand(f"{what} needs a name of 1 to {longest} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidCommand(f"{what}'s name has a control character")
    return text


def school_kind(kind: str) -> SchoolKind:
    try:
        return SchoolKind(kind)
    except ValueError:
        raise InvalidCommand('a school is "urban" or "rural"') from None
