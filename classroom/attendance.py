"""Who was there, and what they did: attendance as a fold over a lesson's events.

Nothing here is new bookkeeping: a lesson's log already says when each participant
joined and left (`ParticipantJoined`, `ParticipantLeft`, `LessonEnded`), which hands
were raised and for whom (`HandRaised`), who had the floor and for how long
(`FloorGranted`, `FloorRevoked`) and who wrote in the chat (`ChatPosted`). What the
relay delivered comes from classroom.delivery, folded from the same log.

A server restart leaves no `ParticipantLeft` in the log (Lesson.resume): the next
`ParticipantJoined` of someone still "in" shows it. That session is closed at the
last event the participant was seen in before it (a join, a delivery change, a
reception report every 10 s, a hand, a chat line) and marked "restart": the real
moment the server stopped is not in the log, and counting up to the rejoin would
count time the room was not there.

The district summary (`district_summary`) counts, per room and week, the lessons
timetabled for it, those started and those it attended. Times are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from classroom import events as e
from classroom.delivery import ClassroomDelivery, delivery_report
from classroom.roles import Role

# How a session ended.
LEFT = "left"
ENDED = "lesson_ended"
RESTART = "restart"
OPEN = "open"  # still connected at the time of the report


@dataclass(frozen=True)
class Session:
    """One connection of a participant, in lesson seconds."""

    joined_at: float
    left_at: float
    ended_by: str

    @property
    def seconds(self) -> float:
        return max(0.0, self.left_at - self.joined_at)


@dataclass(frozen=True)
class RaisedHand:
    student: str
    at: float


@dataclass
class Attendee:
    participant_id: str
    role: str
    name: str
    sessions: list[Session] = field(default_factory=list)
    hands: list[RaisedHand] = field(default_factory=list)
    floor_s: float = 0.0
    floor_grants: int = 0
    chat_count: int = 0
    delivery: ClassroomDelivery | None = None

    @property
    def connected_s(self) -> float:
        return sum(s.seconds for s in self.sessions)

    @property
    def minutes(self) -> float:
        return round(self.connected_s / 60, 1)

    @property
    def attended(self) -> bool:
        return bool(self.sessions)

    def to_dict(self, origin: float) -> dict[str, Any]:
        """JSON-ready; times as lesson seconds and as Unix seconds (`origin` + at)."""
        return {
            "participant_id": self.participant_id,
            "role": self.role,
            "name": self.name,
            "attended": self.attended,
            "connected_s": round(self.connected_s, 1),
            "minutes": self.minutes,
            "sessions": [
                {
                    "joined_at": round(s.joined_at, 3),
                    "left_at": round(s.left_at, 3),
                    "joined_unix": round(origin + s.joined_at, 3),
                    "left_unix": round(origin + s.left_at, 3),
                    "seconds": round(s.seconds, 1),
                    "ended_by": s.ended_by,
                }
                for s in self.sessions
            ],
            "hands": [{"student": h.student, "at": round(h.at, 3)} for h in self.hands],
            "hands_raised": len(self.hands),
            "floor_s": round(self.floor_s, 1),
            "floor_grants": self.floor_grants,
            "chat_count": self.chat_count,
            "delivery": None if self.delivery is None else self.delivery.to_dict(),
        }


@dataclass
class LessonAttendance:
    lesson_id: str
    title: str
    # Unix seconds at lesson time 0.
    origin: float
    started_at: float | None
    ended_at: float | None
    # Lesson time the report runs to: the end, or "now" while the lesson runs.
    until_at: float
    # The teacher first, then the classrooms in the lesson's order; no observers (one
    # shared link for many viewers says nothing of who watched).
    attendees: list[Attendee]

    def classrooms(self) -> list[Attendee]:
        return [a for a in self.attendees if a.role == Role.CLASSROOM]

    def to_dict(self) -> dict[str, Any]:
        return {
            "lesson_id": self.lesson_id,
            "title": self.title,
            "origin": self.origin,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "until_s": round(self.until_at, 3),
            "attendees": [a.to_dict(self.origin) for a in self.attendees],
        }


def _seen_id(event: e.Event) -> str | None:
    """The participant an event shows to be connected, if any."""
    match event:
        case (
            e.ParticipantJoined(participant_id=pid)
            | e.DeliveryChanged(participant_id=pid)
            | e.ReceptionReported(participant_id=pid)
            | e.ChatPosted(participant_id=pid)
        ):
            return pid
        case e.HandRaised(classroom_id=pid) | e.HandLowered(classroom_id=pid):
            return pid
    return None


def lesson_attendance(events: Iterable[e.Event], until_at: float) -> LessonAttendance:
    """Fold a lesson's log (starting with its `LessonScheduled`) up to lesson time
    `until_at` (the end for a lesson that ended; now for one that runs)."""
    log = list(events)
    if not log or not isinstance(log[0], e.LessonScheduled):
        raise ValueError("a lesson's log starts with lesson_scheduled")
    head = log[0]
    people = {
        p.participant_id: Attendee(p.participant_id, str(p.role), p.name)
        for p in head.participants
        if p.role is not Role.OBSERVER
    }
    since: dict[str, float] = {}  # open sessions: participant -> joined at
    seen: dict[str, float] = {}  # last lesson time each was seen connected
    floor: tuple[str, float] | None = None
    started_at: float | None = None
    ended_at: float | None = None

    def close(pid: str, at: float, how: str) -> None:
        joined = since.pop(pid)
        people[pid].sessions.append(Session(joined, max(joined, min(at, until_at)), how))

    def floor_off(at: float) -> None:
        nonlocal floor
        if floor is not None:
            cid, granted = floor
            people[cid].floor_s += max(0.0, min(at, until_at) - granted)
            floor = None

    for event in log[1:]:
        if event.at > until_at:
            break
        match event:
            case e.LessonStarted():
                started_at = event.at
            case e.ParticipantJoined(participant_id=pid) if pid in people:
                if pid in since:
                    close(pid, seen.get(pid, since[pid]), RESTART)
                since[pid] = event.at
            case e.ParticipantLeft(participant_id=pid) if pid in since:
                close(pid, event.at, LEFT)
            case e.HandRaised(classroom_id=cid, student=student) if cid in people:
                people[cid].hands.append(RaisedHand(student, event.at))
            case e.FloorGranted(classroom_id=cid) if cid in people:
                floor_off(event.at)
                floor = (cid, event.at)
                people[cid].floor_grants += 1
            case e.FloorRevoked():
                floor_off(event.at)
            case e.ChatPosted(participant_id=pid) if pid in people:
                people[pid].chat_count += 1
            case e.LessonEnded():
                ended_at = event.at
                floor_off(event.at)
                for pid in list(since):
                    close(pid, event.at, ENDED)
        pid_seen = _seen_id(event)
        if pid_seen is not None:
            seen[pid_seen] = event.at
    floor_off(until_at)
    for pid in list(since):
        close(pid, until_at, OPEN)

    classrooms = {pid: a.name for pid, a in people.items() if a.role == Role.CLASSROOM}
    for report in delivery_report(log, until_at, classrooms):
        people[report.participant_id].delivery = report
    ordered = sorted(people.values(), key=lambda a: a.role != Role.TEACHER)
    return LessonAttendance(
        head.lesson_id, head.title, head.origin, started_at, ended_at, until_at, ordered
    )


# -- the district's summary ----------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """A timetabled lesson of a room that has begun by the time of the summary."""

    room_id: str
    entry_id: str
    on: date
    starts_on: date  # the local day it (really) starts on: a moved week counts there


@dataclass
class RoomWeek:
    week: date  # its Monday
    scheduled: int = 0
    held: int = 0
    attended: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "week": self.week.isoformat(),
            "scheduled": self.scheduled,
            "held": self.held,
            "attended": self.attended,
        }


@dataclass
class RoomSummary:
    room_id: str
    weeks: list[RoomWeek]

    @property
    def scheduled(self) -> int:
        return sum(w.scheduled for w in self.weeks)

    @property
    def attended(self) -> int:
        return sum(w.attended for w in self.weeks)

    @property
    def share(self) -> float | None:
        """The share of its scheduled lessons the room attended; None with none scheduled."""
        return None if self.scheduled == 0 else round(self.attended / self.scheduled, 3)


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def district_summary(
    room_ids: Iterable[str],
    due: Iterable[Due],
    held: set[tuple[str, date, str]],
    attended: set[tuple[str, date, str]],
    today: date,
    weeks: int,
) -> list[RoomSummary]:
    """Per room, for the `weeks` weeks up to and including today's: the lessons
    timetabled for it that have begun (`due`; a cancelled week is not due), how many
    of them were started as lessons (`held`: (entry, on, room)), and how many it
    attended (`attended`: connected at least once)."""
    if weeks < 1:
        raise ValueError("weeks >= 1")
    first = monday(today) - timedelta(days=7 * (weeks - 1))
    mondays = [first + timedelta(days=7 * i) for i in range(weeks)]
    out = {rid: RoomSummary(rid, [RoomWeek(m) for m in mondays]) for rid in room_ids}
    for d in due:
        summary = out.get(d.room_id)
        index = (monday(d.starts_on) - first).days // 7
        if summary is None or not 0 <= index < weeks or d.starts_on > today:
            continue
        week = summary.weeks[index]
        key = (d.entry_id, d.on, d.room_id)
        week.scheduled += 1
        week.held += key in held
        week.attended += key in attended
    return list(out.values())
