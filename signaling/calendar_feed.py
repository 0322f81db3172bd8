"""The timetable as an iCalendar feed (RFC 5545), for a school's or a teacher's calendar.

Each occurrence is one VEVENT, with the cancelled and moved weeks already applied,
rather than one event with an RRULE and its EXDATEs and RECURRENCE-IDs: every
calendar client shows a list of plain events the same way, and a moved week needs
no interpretation. A UID names the occurrence (entry and the day it was due), so a
client updates a moved week in place. Times carry their TZID with its VTIMEZONE.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import icalendar

from classroom.timetable import Entry, Occurrence

PRODID = "-//classroom//timetable//EN"


@dataclass(frozen=True)
class FeedItem:
    entry: Entry
    occurrence: Occurrence
    teacher: str
    rooms: list[str]


def feed(name: str, items: list[FeedItem], stamp: datetime) -> bytes:
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("x-wr-calname", name)
    for item in items:
        occ = item.occurrence
        event = icalendar.Event()
        event.add("uid", f"{item.entry.entry_id}-{occ.on.isoformat()}@classroom")
        event.add("dtstamp", stamp.astimezone(UTC))
        event.add("dtstart", occ.starts)
        event.add("dtend", occ.ends)
        event.add("summary", item.entry.title)
        event.add("location", ", ".join(item.rooms))
        event.add("description", item.teacher)
        cal.add_component(event)
    cal.add_missing_timezones()
    return bytes(cal.to_ical())
