"""The timetable: entries that repeat weekly, the weeks that are cancelled or moved,
and the occurrences they make.

An entry keeps its first start as a wall-clock time in its school district's time
zone (`time_zone`, an IANA name such as Asia/Shanghai): a weekly lesson at 09:00
stays at 09:00 local time across a change of UTC offset. An occurrence is named by
the local date it falls on without changes (`on`); a moved week keeps that name, so
that moving it twice, or cancelling it after, speaks of the same week.

Time zones come from the standard library's `zoneinfo` (IANA data, no clock).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from classroom.errors import InvalidCommand
from classroom.lesson import MAX_TITLE

MIN_DURATION_MIN = 5
MAX_DURATION_MIN = 240
MAX_ROOMS = 100
# A weekly entry ends within a year of its first lesson: a school year, and a bound on
# the occurrences every overlap check walks (53 at most).
MAX_REPEAT = timedelta(days=366)
# A teacher may start an occurrence this early (to set up) and until it would end.
START_EARLY = timedelta(minutes=15)
WEEK = timedelta(days=7)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidCommand(f"{name!r} is not a known time zone") from None


@dataclass(frozen=True)
class Entry:
    entry_id: str
    title: str
    teacher_id: str
    room_ids: tuple[str, ...]
    # The first occurrence's start, wall-clock time (naive) in `time_zone`.
    first: datetime
    duration_min: int
    weekly_until: date | None
    time_zone: str
    # An archived entry keeps the lessons it held; it has no occurrences any more.
    archived: bool = False

    def dates(self) -> list[date]:
        """The local dates of its occurrences, before any change."""
        last = self.weekly_until or self.first.date()
        out: list[date] = []
        day = self.first.date()
        while day <= last:
            out.append(day)
            day += WEEK
        return out


@dataclass(frozen=True)
class OccurrenceChange:
    """One week of an entry cancelled (`moved_to` None) or moved to another start
    (wall-clock time in the entry's time zone; same duration)."""

    entry_id: str
    on: date
    moved_to: datetime | None


@dataclass(frozen=True)
class Occurrence:
    entry_id: str
    on: date
    starts: datetime  # aware, in the entry's time zone
    ends: datetime
    moved: bool

    def overlaps(self, other: Occurrence) -> bool:
        # A lesson that ends at 10:00 and one that starts at 10:00 do not overlap.
        return self.starts < other.ends and other.starts < self.ends


def local(entry: Entry, wall: datetime) -> datetime:
    """A wall-clock time of the entry's time zone as an aware datetime."""
    return wall.replace(tzinfo=zone(entry.time_zone))


def occurrences(entry: Entry, changes: Iterable[OccurrenceChange]) -> list[Occurrence]:
    """Every occurrence still held, in order of start (a moved week may pass another)."""
    if entry.archived:
        return []
    by_day = {ch.on: ch for ch in changes if ch.entry_id == entry.entry_id}
    length = timedelta(minutes=entry.duration_min)
    out: list[Occurrence] = []
    for day in entry.dates():
        change = by_day.get(day)
        if change is None:
            wall = datetime.combine(day, entry.first.time())
        elif change.moved_to is None:
            continue  # cancelled
        else:
            wall = change.moved_to
        starts = local(entry, wall)
        out.append(Occurrence(entry.entry_id, day, starts, starts + length, change is not None))
    return sorted(out, key=lambda o: o.starts)


def first_overlap(
    mine: Iterable[Occurrence], theirs: Iterable[Occurrence]
) -> tuple[Occurrence, Occurrence] | None:
    """The first pair that shares time, one from each side; None when they never do."""
    a = sorted(mine, key=lambda o: o.starts)
    b = sorted(theirs, key=lambda o: o.starts)
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i].overlaps(b[j]):
            return a[i], b[j]
        if a[i].ends <= b[j].ends:
            i += 1
        else:
            j += 1
    return None


def check_shape(
    title: str,
    room_ids: list[str],
    first: datetime,
    duration_min: int,
    weekly_until: date | None,
    now: datetime,
    time_zone: str,
) -> tuple[str, tuple[str, ...]]:
    """The entry's own rules, before any other entry is looked at: the title as shown
    and the rooms in order, or InvalidCommand."""
    text = " ".join(title.split())
    if not text or len(text) > MAX_TITLE:
        raise InvalidCommand(f"a lesson needs a title of 1 to {MAX_TITLE} characters")
    if not room_ids or len(room_ids) > MAX_ROOMS:
        raise InvalidCommand(f"a lesson has 1 to {MAX_ROOMS} rooms")
    if len(set(room_ids)) != len(room_ids):
        raise InvalidCommand("a room is named twice")
    if not MIN_DURATION_MIN <= duration_min <= MAX_DURATION_MIN:
        raise InvalidCommand(f"a lesson lasts {MIN_DURATION_MIN} to {MAX_DURATION_MIN} minutes")
    if first.tzinfo is not None:
        raise ValueError("first is a wall-clock time (naive)")
    starts = first.replace(tzinfo=zone(time_zone))
    if starts <= now:
        raise InvalidCommand("the first lesson's start is in the past")
    if weekly_until is not None:
        if weekly_until < first.date():
            raise InvalidCommand("weekly_until is before the first lesson")
        if weekly_until - first.date() > MAX_REPEAT:
            raise InvalidCommand("a weekly lesson is timetabled a year ahead at most")
    return text, tuple(room_ids)
