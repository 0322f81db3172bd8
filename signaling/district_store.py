"""The directory's records in SQLite (schema step 2 in signaling.migrations).

`save(changes)` writes a decision's Put/Drop changes in one transaction, in the
order the directory gave them (a pairing is dropped before its room); `load()`
reads every record back as Puts, parents first, for `Directory.apply`.
"""

from __future__ import annotations

import json
from datetime import date, datetime

import aiosqlite

from classroom.directory import Change, Held, Put, Record
from classroom.schools import Pairing, Room, School, SchoolKind, Teacher
from classroom.timetable import Entry, OccurrenceChange


class DistrictStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def save(self, changes: list[Change]) -> None:
        try:
            for change in changes:
                if isinstance(change, Put):
                    await self._put(change.record)
                else:
                    await self._drop(change.record)
        except BaseException:
            await self._db.rollback()
            raise
        await self._db.commit()

    async def _put(self, r: Record) -> None:
        sql: str
        args: tuple[object, ...]
        match r:
            case School():
                sql = (
                    "INSERT INTO schools (id, name, kind, archived) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
                    " kind = excluded.kind, archived = excluded.archived"
                )
                args = (r.school_id, r.name, str(r.kind), int(r.archived))
            case Room():
                sql = (
                    "INSERT INTO rooms (id, school_id, name, device_hash, archived)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                    " name = excluded.name, device_hash = excluded.device_hash,"
                    " archived = excluded.archived"
                )
                args = (r.room_id, r.school_id, r.name, r.device_hash, int(r.archived))
            case Teacher():
                sql = (
                    "INSERT INTO teachers (id, school_id, name, link_hash, archived)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                    " name = excluded.name, link_hash = excluded.link_hash,"
                    " archived = excluded.archived"
                )
                args = (r.teacher_id, r.school_id, r.name, r.link_hash, int(r.archived))
            case Pairing():
                sql = "INSERT OR IGNORE INTO pairings (school_id, room_id) VALUES (?, ?)"
                args = (r.school_id, r.room_id)
            case Entry():
                sql = (
                    "INSERT INTO timetable_entries (id, title, teacher_id, room_ids, first,"
                    " duration_min, weekly_until, time_zone, archived)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                    " archived = excluded.archived"
                )
                args = (
                    r.entry_id,
                    r.title,
                    r.teacher_id,
                    json.dumps(list(r.room_ids)),
                    r.first.isoformat(),
                    r.duration_min,
                    r.weekly_until.isoformat() if r.weekly_until else None,
                    r.time_zone,
                    int(r.archived),
                )
            case OccurrenceChange():
                sql = (
                    "INSERT INTO occurrence_changes (entry_id, on_date, moved_to)"
                    " VALUES (?, ?, ?) ON CONFLICT (entry_id, on_date) DO UPDATE SET"
                    " moved_to = excluded.moved_to"
                )
                moved = r.moved_to.isoformat() if r.moved_to else None
                args = (r.entry_id, r.on.isoformat(), moved)
            case Held():
                sql = (
                    "INSERT INTO occurrence_lessons (entry_id, on_date, lesson_id, classrooms)"
                    " VALUES (?, ?, ?, ?)"
                )
                rooms = json.dumps([list(pair) for pair in r.classrooms])
                args = (r.entry_id, r.on.isoformat(), r.lesson_id, rooms)
        await self._db.execute(sql, args)

    async def _drop(self, r: Record) -> None:
        sql: str
        args: tuple[object, ...]
        match r:
            case School():
                sql, args = "DELETE FROM schools WHERE id = ?", (r.school_id,)
            case Room():
                sql, args = "DELETE FROM rooms WHERE id = ?", (r.room_id,)
            case Teacher():
                sql, args = "DELETE FROM teachers WHERE id = ?", (r.teacher_id,)
            case Pairing():
                sql = "DELETE FROM pairings WHERE school_id = ? AND room_id = ?"
                args = (r.school_id, r.room_id)
            case Entry():
                sql, args = "DELETE FROM timetable_entries WHERE id = ?", (r.entry_id,)
            case OccurrenceChange():
                sql = "DELETE FROM occurrence_changes WHERE entry_id = ? AND on_date = ?"
                args = (r.entry_id, r.on.isoformat())
            case Held():
                sql = "DELETE FROM occurrence_lessons WHERE entry_id = ? AND on_date = ?"
                args = (r.entry_id, r.on.isoformat())
        await self._db.execute(sql, args)

    async def load(self) -> list[Change]:
        out: list[Change] = []
        for row in await self._rows("SELECT id, name, kind, archived FROM schools"):
            out.append(Put(School(row[0], row[1], SchoolKind(row[2]), bool(row[3]))))
        for row in await self._rows("SELECT id, school_id, name, device_hash, archived FROM rooms"):
            out.append(Put(Room(row[0], row[1], row[2], row[3], bool(row[4]))))
        for row in await self._rows(
            "SELECT id, school_id, name, link_hash, archived FROM teachers"
        ):
            out.append(Put(Teacher(row[0], row[1], row[2], row[3], bool(row[4]))))
        for row in await self._rows("SELECT school_id, room_id FROM pairings"):
            out.append(Put(Pairing(row[0], row[1])))
        for row in await self._rows(
            "SELECT id, title, teacher_id, room_ids, first, duration_min, weekly_until,"
            " time_zone, archived FROM timetable_entries"
        ):
            out.append(
                Put(
                    Entry(
                        row[0],
                        row[1],
                        row[2],
                        tuple(json.loads(row[3])),
                        datetime.fromisoformat(row[4]),
                        int(row[5]),
                        date.fromisoformat(row[6]) if row[6] else None,
                        row[7],
                        bool(row[8]),
                    )
                )
            )
        for row in await self._rows("SELECT entry_id, on_date, moved_to FROM occurrence_changes"):
            moved = datetime.fromisoformat(row[2]) if row[2] else None
            out.append(Put(OccurrenceChange(row[0], date.fromisoformat(row[1]), moved)))
        for row in await self._rows(
            "SELECT entry_id, on_date, lesson_id, classrooms FROM occurrence_lessons"
        ):
            pairs = tuple((str(a), str(b)) for a, b in json.loads(row[3]))
            out.append(Put(Held(row[0], date.fromisoformat(row[1]), row[2], pairs)))
        return out

    async def _rows(self, sql: str) -> list[aiosqlite.Row]:
        async with self._db.execute(sql) as cur:
            return list(await cur.fetchall())
