"""The HTTP API of schools, rooms, teachers, pairings and the timetable, the device
link's `GET /api/device/next` and the iCalendar feeds (docs/protocol.md, "Schools and
the timetable").

Every decision is the directory's (classroom.directory); this module reads
requests, checks who sends them, and turns the directory's records into JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from classroom import commands as c
from classroom.directory import Directory, Drop, Held
from classroom.errors import DomainError
from classroom.roles import ADMIN, Role
from classroom.schools import Room, School, Teacher
from classroom.timetable import Entry, Occurrence
from signaling.auth import bearer, is_admin_key
from signaling.calendar_feed import FeedItem, feed
from signaling.district import District, credential, new_id, new_secret
from signaling.errors import ApiError
from signaling.lessons import OBSERVER_ID, TEACHER_ID, Lessons
from signaling.tokens import TokenIssuer

log = logging.getLogger(__name__)

# How many of a room's next lessons the device is told, and how far ahead it looks.
DEVICE_NEXT = 5
DEVICE_AHEAD = timedelta(days=14)
# The longest a device's request may wait for its lesson (`?wait=`): well under the
# idle timeouts of proxies and of the web client's own requests (15 s).
DEVICE_WAIT_MAX_S = 25.0
MAX_LIST_DAYS = 366

_STATUS = {
    "not_found": 404,
    "conflict": 409,
    "overlap": 409,
    "invalid_transition": 409,
    "lesson_ended": 409,
    "not_allowed": 403,
}


def refused(exc: DomainError) -> ApiError:
    return ApiError(_STATUS.get(exc.code, 422), exc.code, exc.message)


@dataclass(frozen=True)
class SchoolsDeps:
    district: District
    lessons: Lessons
    tokens: TokenIssuer
    admin_key: str
    # Called when an occurrence's lesson is created (its entry's deck is attached).
    on_held: Callable[[str, str], Awaitable[None]] | None = None


class NewSchool(BaseModel):
    name: str = Field(max_length=1000)
    kind: str = Field(max_length=20)


class Name(BaseModel):
    name: str = Field(max_length=1000)


class NewPairing(BaseModel):
    room_id: str = Field(max_length=100)


class Repeat(BaseModel):
    weekly_until: date


class NewEntry(BaseModel):
    title: str = Field(max_length=1000)
    teacher_id: str = Field(max_length=100)
    room_ids: list[str] = Field(max_length=1000)
    starts_at: datetime
    duration_min: int
    repeat: Repeat | None = None


class WeekChange(BaseModel):
    cancelled: bool = False
    moved_to: datetime | None = None


def router(get: Callable[[Request], SchoolsDeps], base_url: Callable[[], str]) -> APIRouter:
    api = APIRouter()

    # -- who asks --------------------------------------------------------------------

    def admin(request: Request) -> SchoolsDeps:
        deps = get(request)
        if not is_admin_key(bearer(request), deps.admin_key):
            raise ApiError(403, "not_allowed", "this needs the admin key")
        return deps

    def admin_or_teacher(
        request: Request, query: str | None = None
    ) -> tuple[SchoolsDeps, Teacher | None]:
        """The admin (None) or the teacher whose lasting link is sent."""
        deps = get(request)
        cred = bearer(request, query=query)
        if is_admin_key(cred, deps.admin_key):
            return deps, None
        teacher = deps.district.teacher_of(cred)
        if teacher is None:
            raise ApiError(403, "not_allowed", "this needs the admin key or a teacher's link")
        return deps, teacher

    async def decide(deps: SchoolsDeps, decision: Callable[[Directory], Any]) -> Any:
        try:
            return await deps.district.decide(decision)
        except DomainError as exc:
            raise refused(exc) from None

    def lookup(getter: Callable[[], Any]) -> Any:
        try:
            return getter()
        except DomainError as exc:
            raise refused(exc) from None

    # -- records as JSON -------------------------------------------------------------

    def wall(deps: SchoolsDeps, when: datetime) -> datetime:
        """A request's time as wall-clock time of the timetable's zone."""
        if when.tzinfo is None:
            return when
        return when.astimezone(ZoneInfo(deps.district.time_zone)).replace(tzinfo=None)

    def device_link(room: Room, secret: str) -> dict[str, str]:
        cred = credential(room.room_id, secret)
        return {"credential": cred, "url": f"{base_url()}/room#device={cred}"}

    def teacher_link(teacher: Teacher, secret: str) -> dict[str, str]:
        cred = credential(teacher.teacher_id, secret)
        return {"credential": cred, "url": f"{base_url()}/teacher#teacher={cred}"}

    def room_json(d: Directory, room: Room) -> dict[str, Any]:
        school = d.schools[room.school_id]
        return {
            "id": room.room_id,
            "school_id": room.school_id,
            "school": school.name,
            "name": room.name,
            "device_link": room.device_hash is not None,
        }

    def teacher_json(teacher: Teacher) -> dict[str, Any]:
        return {"id": teacher.teacher_id, "school_id": teacher.school_id, "name": teacher.name}

    def school_json(d: Directory, school: School) -> dict[str, Any]:
        return {
            "id": school.school_id,
            "name": school.name,
            "kind": str(school.kind),
            "rooms": [room_json(d, r) for r in d.rooms_of(school.school_id)],
            "teachers": [teacher_json(t) for t in d.teachers_of(school.school_id)],
            "teaches": [room_json(d, r) for r in d.taught_rooms(school.school_id)],
        }

    def entry_json(d: Directory, entry: Entry) -> dict[str, Any]:
        return {
            "id": entry.entry_id,
            "title": entry.title,
            "teacher_id": entry.teacher_id,
            "room_ids": list(entry.room_ids),
            "starts_at": entry.first.isoformat(),
            "duration_min": entry.duration_min,
            "repeat": {"weekly_until": entry.weekly_until.isoformat()}
            if entry.weekly_until
            else None,
            "time_zone": entry.time_zone,
            "occurrences": [o.on.isoformat() for o in d.occurrences_of(entry)],
        }

    def occurrence_json(
        deps: SchoolsDeps, entry: Entry, occ: Occurrence, now: datetime
    ) -> dict[str, Any]:
        d = deps.district.directory
        teacher = d.teachers[entry.teacher_id]
        held = d.held.get((entry.entry_id, occ.on))
        if held is not None:
            state = "live" if deps.lessons.live(held.lesson_id) is not None else "ended"
        else:
            state = "scheduled" if occ.ends > now else "missed"
        return {
            "entry_id": entry.entry_id,
            "on": occ.on.isoformat(),
            "title": entry.title,
            "starts_at": occ.starts.isoformat(),
            "ends_at": occ.ends.isoformat(),
            "moved": occ.moved,
            "teacher": {"id": teacher.teacher_id, "name": teacher.name},
            "school": {"id": teacher.school_id, "name": d.schools[teacher.school_id].name},
            "rooms": [room_json(d, d.rooms[r]) for r in entry.room_ids],
            "state": state,
            "lesson_id": held.lesson_id if held else None,
        }

    # -- schools ---------------------------------------------------------------------

    @api.post("/api/schools", status_code=201)
    async def create_school(body: NewSchool, request: Request) -> dict[str, Any]:
        deps = admin(request)
        sid = new_id("s")
        await decide(deps, lambda d: d.add_school(sid, body.name, body.kind))
        d = deps.district.directory
        return school_json(d, d.schools[sid])

    @api.get("/api/schools")
    async def list_schools(request: Request) -> dict[str, Any]:
        d = admin(request).district.directory
        schools = sorted((s for s in d.schools.values() if not s.archived), key=lambda s: s.name)
        return {"schools": [school_json(d, s) for s in schools]}

    @api.get("/api/schools/{school_id}")
    async def get_school(school_id: str, request: Request) -> dict[str, Any]:
        d = admin(request).district.directory
        return school_json(d, lookup(lambda: d.school(school_id)))

    @api.patch("/api/schools/{school_id}")
    async def rename_school(school_id: str, body: Name, request: Request) -> dict[str, Any]:
        deps = admin(request)
        await decide(deps, lambda d: d.rename_school(school_id, body.name))
        d = deps.district.directory
        return school_json(d, d.schools[school_id])

    @api.delete("/api/schools/{school_id}")
    async def delete_school(school_id: str, request: Request) -> dict[str, Any]:
        deps = admin(request)
        changes = await decide(deps, lambda d: d.remove_school(school_id))
        return {"id": school_id, "archived": not isinstance(changes[-1], Drop)}

    # -- rooms -----------------------------------------------------------------------

    @api.post("/api/schools/{school_id}/rooms", status_code=201)
    async def create_room(school_id: str, body: Name, request: Request) -> dict[str, Any]:
        deps = admin(request)
        rid, (secret, hashed) = new_id("r"), new_secret()
        await decide(deps, lambda d: d.add_room(rid, school_id, body.name, hashed))
        d = deps.district.directory
        link = device_link(d.rooms[rid], secret)
        return room_json(d, d.rooms[rid]) | {"device": link, "device_url": link["url"]}

    @api.patch("/api/rooms/{room_id}")
    async def rename_room(room_id: str, body: Name, request: Request) -> dict[str, Any]:
        deps = admin(request)
        await decide(deps, lambda d: d.rename_room(room_id, body.name))
        d = deps.district.directory
        return room_json(d, d.rooms[room_id])

    @api.delete("/api/rooms/{room_id}")
    async def delete_room(room_id: str, request: Request) -> dict[str, Any]:
        deps = admin(request)
        changes = await decide(deps, lambda d: d.remove_room(room_id, deps.district.now()))
        return {"id": room_id, "archived": not isinstance(changes[-1], Drop)}

    @api.post("/api/rooms/{room_id}/device")
    async def rotate_device(room_id: str, request: Request) -> dict[str, Any]:
        """A new device link for the room; the old one stops working at once."""
        deps = admin(request)
        secret, hashed = new_secret()
        await decide(deps, lambda d: d.set_device(room_id, hashed))
        link = device_link(deps.district.directory.rooms[room_id], secret)
        return {"id": room_id, "device": link, "device_url": link["url"]}

    @api.delete("/api/rooms/{room_id}/device", status_code=204)
    async def revoke_device(room_id: str, request: Request) -> Response:
        deps = admin(request)
        await decide(deps, lambda d: d.set_device(room_id, None))
        return Response(status_code=204)

    # -- teachers --------------------------------------------------------------------

    @api.post("/api/schools/{school_id}/teachers", status_code=201)
    async def create_teacher(school_id: str, body: Name, request: Request) -> dict[str, Any]:
        deps = admin(request)
        tid, (secret, hashed) = new_id("t"), new_secret()
        await decide(deps, lambda d: d.add_teacher(tid, school_id, body.name, hashed))
        teacher = deps.district.directory.teachers[tid]
        return teacher_json(teacher) | {"link": teacher_link(teacher, secret)}

    @api.patch("/api/teachers/{teacher_id}")
    async def rename_teacher(teacher_id: str, body: Name, request: Request) -> dict[str, Any]:
        deps = admin(request)
        await decide(deps, lambda d: d.rename_teacher(teacher_id, body.name))
        return teacher_json(deps.district.directory.teachers[teacher_id])

    @api.post("/api/teachers/{teacher_id}/link")
    async def rotate_teacher_link(teacher_id: str, request: Request) -> dict[str, Any]:
        deps = admin(request)
        secret, hashed = new_secret()
        await decide(deps, lambda d: d.set_teacher_link(teacher_id, hashed))
        teacher = deps.district.directory.teachers[teacher_id]
        return teacher_json(teacher) | {"link": teacher_link(teacher, secret)}

    @api.delete("/api/teachers/{teacher_id}")
    async def delete_teacher(teacher_id: str, request: Request) -> dict[str, Any]:
        deps = admin(request)
        changes = await decide(deps, lambda d: d.remove_teacher(teacher_id, deps.district.now()))
        return {"id": teacher_id, "archived": not isinstance(changes[-1], Drop)}

    # -- pairings --------------------------------------------------------------------

    @api.post("/api/schools/{school_id}/pairings", status_code=201)
    async def pair(school_id: str, body: NewPairing, request: Request) -> dict[str, Any]:
        deps = admin(request)
        await decide(deps, lambda d: d.pair(school_id, body.room_id))
        d = deps.district.directory
        return school_json(d, d.schools[school_id])

    @api.delete("/api/schools/{school_id}/pairings/{room_id}", status_code=204)
    async def unpair(school_id: str, room_id: str, request: Request) -> Response:
        deps = admin(request)
        await decide(deps, lambda d: d.unpair(school_id, room_id, deps.district.now()))
        return Response(status_code=204)

    # -- the timetable ---------------------------------------------------------------

    @api.post("/api/timetable", status_code=201)
    async def create_entry(body: NewEntry, request: Request) -> dict[str, Any]:
        deps = admin(request)
        eid = new_id("e")
        until = body.repeat.weekly_until if body.repeat else None
        zone = deps.district.time_zone
        first = wall(deps, body.starts_at)
        await decide(
            deps,
            lambda d: d.add_entry(
                eid,
                body.title,
                body.teacher_id,
                body.room_ids,
                first,
                body.duration_min,
                until,
                zone,
                deps.district.now(),
            ),
        )
        d = deps.district.directory
        return entry_json(d, d.entries[eid])

    @api.delete("/api/timetable/{entry_id}")
    async def delete_entry(entry_id: str, request: Request) -> dict[str, Any]:
        deps = admin(request)
        changes = await decide(deps, lambda d: d.remove_entry(entry_id))
        return {"id": entry_id, "archived": not isinstance(changes[-1], Drop)}

    @api.get("/api/timetable")
    async def list_timetable(
        request: Request,
        school_id: str | None = None,
        teacher_id: str | None = None,
        room_id: str | None = None,
        since: Annotated[date | None, Query(alias="from")] = None,
        days: int = 7,
    ) -> dict[str, Any]:
        """Occurrences from a day (today by default) for `days` days: the admin's, of a
        school, teacher or room; a teacher's link sees its own lessons only."""
        deps, teacher = admin_or_teacher(request)
        if teacher is not None:
            school_id, teacher_id, room_id = None, teacher.teacher_id, None
        if not 1 <= days <= MAX_LIST_DAYS:
            raise ApiError(422, "invalid_request", f"days: 1 to {MAX_LIST_DAYS}")
        now = deps.district.now()
        start = datetime.combine(since or now.date(), datetime.min.time(), now.tzinfo)
        end = start + timedelta(days=days)
        d = deps.district.directory
        pairs = d.timetable(school_id=school_id, teacher_id=teacher_id, room_id=room_id)
        return {
            "time_zone": deps.district.time_zone,
            "from": start.date().isoformat(),
            "days": days,
            "occurrences": [
                occurrence_json(deps, e, o, now)
                for e, o in pairs
                if o.ends > start and o.starts < end
            ],
        }

    @api.put("/api/timetable/{entry_id}/occurrences/{on}")
    async def change_week(
        entry_id: str, on: date, body: WeekChange, request: Request
    ) -> dict[str, Any]:
        """Cancel one week (`{"cancelled": true}`) or move it (`{"moved_to": ...}`)."""
        deps = admin(request)
        if body.cancelled == (body.moved_to is not None):
            raise ApiError(
                422, "invalid_request", 'send either {"cancelled": true} or {"moved_to": ...}'
            )
        moved = wall(deps, body.moved_to) if body.moved_to is not None else None
        await decide(deps, lambda d: d.change_occurrence(entry_id, on, moved, deps.district.now()))
        d = deps.district.directory
        return entry_json(d, d.entries[entry_id]) | {
            "change": {"on": on.isoformat(), "moved_to": moved.isoformat() if moved else None}
        }

    @api.delete("/api/timetable/{entry_id}/occurrences/{on}")
    async def restore_week(entry_id: str, on: date, request: Request) -> dict[str, Any]:
        deps = admin(request)
        await decide(deps, lambda d: d.restore_occurrence(entry_id, on, deps.district.now()))
        d = deps.district.directory
        return entry_json(d, d.entries[entry_id])

    @api.post("/api/timetable/{entry_id}/occurrences/{on}/start")
    async def start(entry_id: str, on: date, request: Request) -> dict[str, Any]:
        """The teacher (or the admin) starts an occurrence: it becomes a lesson as any
        other, its rooms its classrooms. Starting it again while it runs hands the same
        lesson back (a reloaded page)."""
        deps, teacher = admin_or_teacher(request)
        district = deps.district
        d = district.directory
        async with district.lock:
            try:
                found = d.startable(entry_id, on, district.now())
            except DomainError as exc:
                raise refused(exc) from None
            entry = found.entry
            if teacher is not None and teacher.teacher_id != entry.teacher_id:
                raise ApiError(403, "not_allowed", "this is another teacher's lesson")
            held = found.held
            if held is None:
                held = await _hold(deps, entry, on)
            elif deps.lessons.live(held.lesson_id) is None:
                raise ApiError(409, "lesson_ended", "this lesson was held and has ended")
        lesson = deps.lessons.live(held.lesson_id)
        assert lesson is not None
        by_room = dict(held.classrooms)

        def grant(pid: str, role: Role) -> dict[str, str]:
            token = deps.tokens.issue(held.lesson_id, pid, role)
            page = "teacher" if role is Role.TEACHER else "observer"
            return {"token": token, "url": f"{base_url()}/{page}#token={token}"}

        return {
            "lesson_id": held.lesson_id,
            "entry_id": entry_id,
            "on": on.isoformat(),
            "title": lesson.title,
            "teacher": grant(TEACHER_ID, Role.TEACHER),
            "observer": grant(OBSERVER_ID, Role.OBSERVER),
            "classrooms": [
                {
                    "room_id": rid,
                    "participant_id": by_room[rid],
                    "name": lesson.participants[by_room[rid]].name,
                }
                for rid in entry.room_ids
                if rid in by_room
            ],
        }

    async def _hold(deps: SchoolsDeps, entry: Entry, on: date) -> Held:
        """Create the occurrence's lesson and tie it to the entry (under the lock)."""
        d = deps.district.directory
        rooms = [d.rooms[r] for r in entry.room_ids if not d.rooms[r].archived]
        if not rooms:
            raise ApiError(409, "invalid_transition", "none of this lesson's rooms is left")
        # "school · room": room names are unique within a school, school names overall.
        names = [f"{d.schools[r.school_id].name} · {r.name}" for r in rooms]
        try:
            created = await deps.lessons.create(entry.title, names)
        except DomainError as exc:
            raise refused(exc) from None
        pid_of = {p.name: p.participant_id for p in created.participants}
        classrooms = [(r.room_id, pid_of[n]) for r, n in zip(rooms, names, strict=True)]
        lesson_id = created.lesson.lesson_id
        try:
            changes = d.hold(entry.entry_id, on, lesson_id, classrooms)
            await deps.district.commit(changes)
        except BaseException:
            # The lesson must not run untied to its entry: end it, and say so.
            await deps.lessons.execute(lesson_id, c.EndLesson(), ADMIN)
            raise
        if deps.on_held is not None:
            try:
                await deps.on_held(entry.entry_id, lesson_id)
            except Exception:
                log.exception("could not prepare lesson %s of entry %s", lesson_id, entry.entry_id)
        return d.held[(entry.entry_id, on)]

    # -- the device link -------------------------------------------------------------

    @api.get("/api/device/next")
    async def device_next(
        request: Request, wait: Annotated[float, Query(ge=0, le=DEVICE_WAIT_MAX_S)] = 0
    ) -> dict[str, Any]:
        """What a room's projector PC shows: the room, its next lessons, and the lesson
        to join when one of its lessons is running. With `wait`, and no lesson running,
        the answer waits up to that many seconds for a change (a lesson started, the
        timetable edited), so that the device joins at once rather than at its next poll."""
        answer = device_answer(request)
        if wait > 0 and answer["lesson"] is None:
            await get(request).district.changed(wait)
            # Asked again from the start: the link may have been revoked meanwhile.
            answer = device_answer(request)
        return answer

    def device_answer(request: Request) -> dict[str, Any]:
        deps = get(request)
        district = deps.district
        room = district.device_room(bearer(request))
        d = district.directory
        now = district.now()
        mine = [
            (e, o)
            for e, o in d.timetable(room_id=room.room_id)
            if o.ends > now and o.starts < now + DEVICE_AHEAD
        ]
        live: dict[str, Any] | None = None
        for held in d.held.values():
            pid = dict(held.classrooms).get(room.room_id)
            lesson = deps.lessons.live(held.lesson_id) if pid else None
            if pid is None or lesson is None:
                continue
            token = deps.tokens.issue(held.lesson_id, pid, Role.CLASSROOM)
            live = {
                "lesson_id": held.lesson_id,
                "entry_id": held.entry_id,
                "on": held.on.isoformat(),
                "title": lesson.title,
                "participant_id": pid,
                "token": token,
                "url": f"{base_url()}/classroom#token={token}",
            }
            break
        return {
            "room": room_json(d, room),
            "time_zone": district.time_zone,
            "now": now.isoformat(),
            "next": [occurrence_json(deps, e, o, now) for e, o in mine[:DEVICE_NEXT]],
            "lesson": live,
        }

    # -- iCalendar feeds -------------------------------------------------------------

    def ics(deps: SchoolsDeps, name: str, pairs: list[tuple[Entry, Occurrence]]) -> Response:
        d = deps.district.directory
        items = [
            FeedItem(
                entry=e,
                occurrence=o,
                teacher=d.teachers[e.teacher_id].name,
                rooms=[
                    f"{d.schools[d.rooms[r].school_id].name} {d.rooms[r].name}" for r in e.room_ids
                ],
            )
            for e, o in pairs
        ]
        body = feed(name, items, deps.district.now())
        return Response(body, media_type="text/calendar; charset=utf-8")

    @api.get("/api/schools/{school_id}/timetable.ics")
    async def school_feed(school_id: str, request: Request) -> Response:
        """A school's lessons: its teachers' and its rooms'. The admin key."""
        deps = admin(request)
        d = deps.district.directory
        school = lookup(lambda: d.school(school_id))
        return ics(deps, school.name, d.timetable(school_id=school_id))

    @api.get("/api/teachers/{teacher_id}/timetable.ics")
    async def teacher_feed(teacher_id: str, request: Request) -> Response:
        """A teacher's lessons: the admin key, or the teacher's own link (also as
        `?access=`, since a calendar app subscribes to a URL and sends no header)."""
        deps, teacher = admin_or_teacher(request, query="access")
        if teacher is not None and teacher.teacher_id != teacher_id:
            raise ApiError(403, "not_allowed", "this is another teacher's timetable")
        d = deps.district.directory
        found = lookup(lambda: d.teacher(teacher_id))
        return ics(deps, found.name, d.timetable(teacher_id=teacher_id))

    return api
