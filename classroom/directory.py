"""The school district's directory: schools, rooms, teachers, pairings and the timetable.

Like a lesson, it decides and then folds: each method checks a request against the
whole directory and returns the changes it makes (`Put` a record, `Drop` a record),
or raises a DomainError and changes nothing; `apply()` folds changes in. The caller
stores the changes first and applies them after, so what is in memory never runs
ahead of what is stored. Time is passed in (`now`, an aware datetime).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeVar

from classroom.errors import Conflict, InvalidCommand, InvalidTransition, NotFound, Overlap
from classroom.schools import (
    MAX_ROOM_NAME,
    MAX_SCHOOL_NAME,
    MAX_TEACHER_NAME,
    Pairing,
    Room,
    School,
    SchoolKind,
    Teacher,
    clean_name,
    school_kind,
)
from classroom.timetable import (
    START_EARLY,
    Entry,
    Occurrence,
    OccurrenceChange,
    check_shape,
    first_overlap,
    local,
    occurrences,
    zone,
)


@dataclass(frozen=True)
class Held:
    """An occurrence that was started: the lesson it became, and which room is which
    classroom of that lesson (room id, participant id)."""

    entry_id: str
    on: date
    lesson_id: str
    classrooms: tuple[tuple[str, str], ...]


Record = School | Room | Teacher | Pairing | Entry | OccurrenceChange | Held


@dataclass(frozen=True)
class Put:
    record: Record


@dataclass(frozen=True)
class Drop:
    record: Record


Change = Put | Drop

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class Startable:
    """An occurrence a teacher may start now, and the lesson it already is if started."""

    entry: Entry
    occurrence: Occurrence
    held: Held | None


class Directory:
    def __init__(self) -> None:
        self.schools: dict[str, School] = {}
        self.rooms: dict[str, Room] = {}
        self.teachers: dict[str, Teacher] = {}
        self.pairings: set[Pairing] = set()
        self.entries: dict[str, Entry] = {}
        self.changes: dict[tuple[str, date], OccurrenceChange] = {}
        self.held: dict[tuple[str, date], Held] = {}

    # -- the fold --------------------------------------------------------------------

    def apply(self, changes: Iterable[Change]) -> None:
        for change in changes:
            record = change.record
            put = isinstance(change, Put)
            match record:
                case School():
                    self._fold(self.schools, record.school_id, record, put)
                case Room():
                    self._fold(self.rooms, record.room_id, record, put)
                case Teacher():
                    self._fold(self.teachers, record.teacher_id, record, put)
                case Pairing():
                    if put:
                        self.pairings.add(record)
                    else:
                        self.pairings.discard(record)
                case Entry():
                    self._fold(self.entries, record.entry_id, record, put)
                case OccurrenceChange():
                    self._fold(self.changes, (record.entry_id, record.on), record, put)
                case Held():
                    self._fold(self.held, (record.entry_id, record.on), record, put)

    @staticmethod
    def _fold(table: dict[K, V], key: K, record: V, put: bool) -> None:
        if put:
            table[key] = record
        else:
            table.pop(key, None)

    # -- lookups ---------------------------------------------------------------------

    def school(self, school_id: str) -> School:
        school = self.schools.get(school_id)
        if school is None or school.archived:
            raise NotFound("there is no such school")
        return school

    def room(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None or room.archived:
            raise NotFound("there is no such room")
        return room

    def teacher(self, teacher_id: str) -> Teacher:
        teacher = self.teachers.get(teacher_id)
        if teacher is None or teacher.archived:
            raise NotFound("there is no such teacher")
        return teacher

    def entry(self, entry_id: str) -> Entry:
        entry = self.entries.get(entry_id)
        if entry is None or entry.archived:
            raise NotFound("there is no such timetable entry")
        return entry

    def rooms_of(self, school_id: str) -> list[Room]:
        return sorted(
            (r for r in self.rooms.values() if r.school_id == school_id and not r.archived),
            key=lambda r: r.name,
        )

    def teachers_of(self, school_id: str) -> list[Teacher]:
        return sorted(
            (t for t in self.teachers.values() if t.school_id == school_id and not t.archived),
            key=lambda t: t.name,
        )

    def taught_rooms(self, school_id: str) -> list[Room]:
        """The rural rooms an urban school teaches."""
        ids = {p.room_id for p in self.pairings if p.school_id == school_id}
        return sorted((self.rooms[i] for i in ids), key=lambda r: (r.school_id, r.name))

    def occurrences_of(self, entry: Entry) -> list[Occurrence]:
        return occurrences(
            entry, (c for (eid, _), c in self.changes.items() if eid == entry.entry_id)
        )

    def timetable(
        self,
        *,
        room_id: str | None = None,
        teacher_id: str | None = None,
        school_id: str | None = None,
    ) -> list[tuple[Entry, Occurrence]]:
        """Every occurrence of the entries that involve a room, a teacher or a school (its
        teachers' lessons and its rooms'), in order of start; all of them with no filter."""
        everything = room_id is None and teacher_id is None and school_id is None
        out: list[tuple[Entry, Occurrence]] = []
        for entry in self.entries.values():
            if entry.archived:
                continue
            teacher = self.teachers.get(entry.teacher_id)
            involved = (
                everything
                or (room_id is not None and room_id in entry.room_ids)
                or (teacher_id is not None and entry.teacher_id == teacher_id)
                or (
                    school_id is not None
                    and (
                        (teacher is not None and teacher.school_id == school_id)
                        or any(
                            r in self.rooms and self.rooms[r].school_id == school_id
                            for r in entry.room_ids
                        )
                    )
                )
            )
            if involved:
                out += [(entry, occ) for occ in self.occurrences_of(entry)]
        return sorted(out, key=lambda pair: (pair[1].starts, pair[0].entry_id))

    def held_in(self, room_id: str) -> list[Held]:
        return [h for h in self.held.values() if any(r == room_id for r, _ in h.classrooms)]

    # -- schools ---------------------------------------------------------------------

    def add_school(self, school_id: str, name: str, kind: str) -> list[Change]:
        text = clean_name(name, "a school", MAX_SCHOOL_NAME)
        self._unique_school_name(text, None)
        return [Put(School(school_id, text, school_kind(kind)))]

    def rename_school(self, school_id: str, name: str) -> list[Change]:
        school = self.school(school_id)
        text = clean_name(name, "a school", MAX_SCHOOL_NAME)
        self._unique_school_name(text, school_id)
        return [Put(dataclasses.replace(school, name=text))]

    def _unique_school_name(self, name: str, but: str | None) -> None:
        # The lesson names a room "school · room": school names must tell schools apart.
        for s in self.schools.values():
            if not s.archived and s.school_id != but and s.name.casefold() == name.casefold():
                raise Conflict(f"there is a school named {s.name} already")

    def remove_school(self, school_id: str) -> list[Change]:
        """An empty school goes; one whose archived rooms or teachers keep a history is
        archived with them. A school with rooms or teachers is refused."""
        school = self.school(school_id)
        if self.rooms_of(school_id) or self.teachers_of(school_id):
            raise Conflict("the school still has rooms or teachers; remove them first")
        out: list[Change] = [Drop(p) for p in self.pairings if p.school_id == school_id]
        history = any(r.school_id == school_id for r in self.rooms.values()) or any(
            t.school_id == school_id for t in self.teachers.values()
        )
        out.append(Put(dataclasses.replace(school, archived=True)) if history else Drop(school))
        return out

    # -- rooms -----------------------------------------------------------------------

    def add_room(self, room_id: str, school_id: str, name: str, device_hash: str) -> list[Change]:
        self.school(school_id)
        text = clean_name(name, "a room", MAX_ROOM_NAME)
        self._unique_room_name(school_id, text, None)
        return [Put(Room(room_id, school_id, text, device_hash))]

    def rename_room(self, room_id: str, name: str) -> list[Change]:
        room = self.room(room_id)
        text = clean_name(name, "a room", MAX_ROOM_NAME)
        self._unique_room_name(room.school_id, text, room_id)
        return [Put(dataclasses.replace(room, name=text))]

    def _unique_room_name(self, school_id: str, name: str, but: str | None) -> None:
        for r in self.rooms_of(school_id):
            if r.room_id != but and r.name.casefold() == name.casefold():
                raise Conflict(f"the school has a room named {r.name} already")

    def set_device(self, room_id: str, device_hash: str | None) -> list[Change]:
        """A new device link (the old one stops working at once), or none (revoked)."""
        return [Put(dataclasses.replace(self.room(room_id), device_hash=device_hash))]

    def remove_room(self, room_id: str, now: datetime) -> list[Change]:
        """A room that held lessons or is named in the timetable is archived (its history
        stays, its device link stops); one still timetabled ahead is refused."""
        room = self.room(room_id)
        ahead = self._ahead(now, lambda e: room_id in e.room_ids)
        if ahead:
            raise Conflict(f"the room is timetabled for {ahead}; take it out of that lesson first")
        out: list[Change] = [Drop(p) for p in self.pairings if p.room_id == room_id]
        history = self.held_in(room_id) or any(room_id in e.room_ids for e in self.entries.values())
        if history:
            out.append(Put(dataclasses.replace(room, archived=True, device_hash=None)))
        else:
            out.append(Drop(room))
        return out

    def _ahead(self, now: datetime, involves: Callable[[Entry], bool]) -> str | None:
        """The title of an entry that `involves` matches and that has an occurrence not
        yet over, or None."""
        for entry in self.entries.values():
            if entry.archived or not involves(entry):
                continue
            if any(o.ends > now for o in self.occurrences_of(entry)):
                return entry.title
        return None

    # -- teachers --------------------------------------------------------------------

    def add_teacher(
        self, teacher_id: str, school_id: str, name: str, link_hash: str
    ) -> list[Change]:
        self.school(school_id)
        text = clean_name(name, "a teacher", MAX_TEACHER_NAME)
        return [Put(Teacher(teacher_id, school_id, text, link_hash))]

    def rename_teacher(self, teacher_id: str, name: str) -> list[Change]:
        teacher = self.teacher(teacher_id)
        text = clean_name(name, "a teacher", MAX_TEACHER_NAME)
        return [Put(dataclasses.replace(teacher, name=text))]

    def set_teacher_link(self, teacher_id: str, link_hash: str | None) -> list[Change]:
        return [Put(dataclasses.replace(self.teacher(teacher_id), link_hash=link_hash))]

    def remove_teacher(self, teacher_id: str, now: datetime) -> list[Change]:
        teacher = self.teacher(teacher_id)
        ahead = self._ahead(now, lambda e: e.teacher_id == teacher_id)
        if ahead:
            raise Conflict(f"the teacher is timetabled for {ahead}; remove that lesson first")
        if any(e.teacher_id == teacher_id for e in self.entries.values()):
            return [Put(dataclasses.replace(teacher, archived=True, link_hash=None))]
        return [Drop(teacher)]

    # -- pairings --------------------------------------------------------------------

    def pair(self, school_id: str, room_id: str) -> list[Change]:
        school = self.school(school_id)
        room = self.room(room_id)
        if school.kind is not SchoolKind.URBAN:
            raise InvalidCommand("only an urban school teaches other schools' rooms")
        if self.schools[room.school_id].kind is not SchoolKind.RURAL:
            raise InvalidCommand("an urban school teaches rural schools' rooms")
        if Pairing(school_id, room_id) in self.pairings:
            raise Conflict("the school teaches this room already")
        return [Put(Pairing(school_id, room_id))]

    def unpair(self, school_id: str, room_id: str, now: datetime) -> list[Change]:
        self.school(school_id)
        pairing = Pairing(school_id, room_id)
        if pairing not in self.pairings:
            raise NotFound("the school does not teach this room")
        ahead = self._ahead(
            now,
            lambda e: room_id in e.room_ids and self._teacher_school(e) == school_id,
        )
        if ahead:
            raise Conflict(f"the school's {ahead} is timetabled in this room; remove it first")
        return [Drop(pairing)]

    def _teacher_school(self, entry: Entry) -> str | None:
        teacher = self.teachers.get(entry.teacher_id)
        return teacher.school_id if teacher else None

    # -- the timetable ---------------------------------------------------------------

    def add_entry(
        self,
        entry_id: str,
        title: str,
        teacher_id: str,
        room_ids: list[str],
        first: datetime,
        duration_min: int,
        weekly_until: date | None,
        time_zone: str,
        now: datetime,
    ) -> list[Change]:
        """A lesson in the timetable, once or weekly. Its teacher teaches it in rooms of
        their own school or rural rooms their school is paired with; no room and no
        teacher has two lessons at once."""
        zone(time_zone)
        text, rooms = check_shape(
            title, room_ids, first, duration_min, weekly_until, now, time_zone
        )
        teacher = self.teacher(teacher_id)
        for room_id in rooms:
            room = self.rooms.get(room_id)
            if room is None or room.archived:
                raise InvalidCommand(f"there is no room {room_id}")
            if room.school_id != teacher.school_id and (
                Pairing(teacher.school_id, room_id) not in self.pairings
            ):
                raise InvalidCommand(
                    f"{room.name} is another school's room, and {teacher.name}'s school"
                    " is not paired with it"
                )
        entry = Entry(
            entry_id, text, teacher_id, rooms, first, duration_min, weekly_until, time_zone
        )
        self._no_overlap(entry, self.occurrences_of(entry))
        return [Put(entry)]

    def _no_overlap(self, entry: Entry, mine: list[Occurrence], but: date | None = None) -> None:
        """Overlap unless `entry`'s occurrences `mine` share no time with any other lesson
        of its rooms or its teacher. `but`: a week of `entry` itself left out."""
        for other in self.entries.values():
            if other.archived:
                continue
            shared = set(other.room_ids) & set(entry.room_ids)
            same_teacher = other.teacher_id == entry.teacher_id
            if not shared and not same_teacher:
                continue
            theirs = self.occurrences_of(other)
            if other.entry_id == entry.entry_id:
                # The entry against itself: only a moved week can meet another week.
                theirs = [o for o in theirs if o.on != but]
            found = first_overlap(mine, theirs)
            if found is None:
                continue
            _, clash = found
            when = clash.starts.strftime("%Y-%m-%d %H:%M")
            if shared:
                names = ", ".join(sorted(self.rooms[r].name for r in shared if r in self.rooms))
                raise Overlap(f"{names} already has {other.title} at {when}")
            raise Overlap(f"the teacher already teaches {other.title} at {when}")

    def change_occurrence(
        self, entry_id: str, on: date, moved_to: datetime | None, now: datetime
    ) -> list[Change]:
        """Cancel one week (`moved_to` None) or move it; a week already under way or
        over, or already started as a lesson, stays as it was."""
        entry = self.entry(entry_id)
        if on not in entry.dates():
            raise InvalidCommand(f"{entry.title} has no lesson on {on.isoformat()}")
        current = next((o for o in self.occurrences_of(entry) if o.on == on), None)
        if (entry_id, on) in self.held:
            raise InvalidTransition("that lesson was started already")
        if current is not None and current.starts <= now:
            raise InvalidTransition("that lesson has begun or is over")
        change = OccurrenceChange(entry_id, on, moved_to)
        if moved_to is not None:
            if moved_to.tzinfo is not None:
                raise ValueError("moved_to is a wall-clock time (naive)")
            if local(entry, moved_to) <= now:
                raise InvalidCommand("the new start is in the past")
            moved = [o for o in occurrences(entry, [change]) if o.on == on]
            self._no_overlap(entry, moved, but=on)
        return [Put(change)]

    def restore_occurrence(self, entry_id: str, on: date, now: datetime) -> list[Change]:
        """Undo a week's change: the lesson is back at its usual time."""
        entry = self.entry(entry_id)
        change = self.changes.get((entry_id, on))
        if change is None:
            raise NotFound("that week has no change")
        if (entry_id, on) in self.held:
            raise InvalidTransition("that lesson was started already")
        usual = [o for o in occurrences(entry, []) if o.on == on]
        if usual and usual[0].starts <= now:
            raise InvalidTransition("that lesson's usual time is past")
        self._no_overlap(entry, usual, but=on)
        return [Drop(change)]

    def remove_entry(self, entry_id: str) -> list[Change]:
        """An entry that held lessons is archived with them; one that did not goes."""
        entry = self.entry(entry_id)
        if any(eid == entry_id for eid, _ in self.held):
            return [Put(dataclasses.replace(entry, archived=True))]
        out: list[Change] = [Drop(c) for (eid, _), c in self.changes.items() if eid == entry_id]
        return [*out, Drop(entry)]

    def startable(self, entry_id: str, on: date, now: datetime) -> Startable:
        """The occurrence, if it can be started now: from START_EARLY before it until
        it would end. A lesson started already is handed back (the teacher's page
        reloaded); one that ended is not started again."""
        entry = self.entry(entry_id)
        occ = next((o for o in self.occurrences_of(entry) if o.on == on), None)
        if occ is None:
            raise NotFound(f"{entry.title} has no lesson on {on.isoformat()}")
        held = self.held.get((entry_id, on))
        if held is None:
            if now < occ.starts - START_EARLY:
                raise InvalidTransition(
                    f"this lesson starts at {occ.starts.strftime('%Y-%m-%d %H:%M')};"
                    f" it can be started {int(START_EARLY.total_seconds() // 60)} minutes before"
                )
            if now >= occ.ends:
                raise InvalidTransition("this lesson's time is over")
        return Startable(entry, occ, held)

    def hold(
        self, entry_id: str, on: date, lesson_id: str, classrooms: list[tuple[str, str]]
    ) -> list[Change]:
        if (entry_id, on) in self.held:
            raise InvalidTransition("that lesson was started already")
        return [Put(Held(entry_id, on, lesson_id, tuple(classrooms)))]
