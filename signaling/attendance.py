"""Attendance over HTTP: a lesson's as JSON and as a CSV for Excel, the district's
weekly summary per room, and the admin's list of recent lessons (docs/protocol.md,
"Attendance").

Every figure is classroom.attendance's, folded from the lesson's event log; this
module checks who asks, ties a lesson's classrooms to the district's rooms (the
timetable's `Held` records) and writes wall-clock times in the district's zone.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

from classroom.attendance import (
    Attendee,
    Due,
    LessonAttendance,
    district_summary,
    lesson_attendance,
    monday,
)
from classroom.directory import Held
from classroom.events import LessonEnded
from classroom.lesson import Lesson
from classroom.roles import Role
from signaling.auth import CredentialGuard, bearer, client_address, is_admin_key
from signaling.district import District
from signaling.errors import ApiError
from signaling.lessons import Lessons
from signaling.limits import Limits
from signaling.store import Store
from signaling.tokens import TokenError, TokenIssuer

MAX_WEEKS = 53
MAX_DAYS = 366


@dataclass
class AttendanceDeps:
    lessons: Lessons
    tokens: TokenIssuer
    admin_key: str
    district: District
    store: Store
    # Ended lessons never change: which of their classrooms attended, by lesson id.
    attended_of: dict[str, frozenset[str]] = field(default_factory=dict)


def _until(lesson: Lesson, now: float) -> float:
    ended = next((ev.at for ev in reversed(lesson.log) if isinstance(ev, LessonEnded)), None)
    return ended if ended is not None else round(max(0.0, now - lesson.origin), 3)


def _held_of(district: District, lesson_id: str) -> Held | None:
    return next((h for h in district.directory.held.values() if h.lesson_id == lesson_id), None)


# The CSV's columns: Chinese first (the school's Excel), the English after a slash.
CSV_COLUMNS = [
    "课程/lesson",
    "课程编号/lesson_id",
    "教室/classroom",
    "教室编号/room_id",
    "角色/role",
    "首次进入/first_joined",
    "最后离开/last_left",
    "在线分钟/minutes",
    "连接次数/sessions",
    "每次连接/each_session",
    "举手次数/hands_raised",
    "举手学生/students",
    "发言秒数/floor_s",
    "发言次数/floor_grants",
    "聊天条数/chat",
    "完整画面秒数/full_s",
    "低画质秒数/low_s",
    "仅课件和声音秒数/slides_audio_s",
    "仅声音秒数/audio_only_s",
    "卡顿次数/freezes",
    "声音补偿比例/audio_concealed",
]


def router(
    get: Callable[[Request], AttendanceDeps],
    limits: Limits,
    now: Callable[[], float],
) -> APIRouter:
    api = APIRouter()

    def is_admin(request: Request, deps: AttendanceDeps) -> bool:
        CredentialGuard(limits.wrong_credentials, client_address(request), now).check()
        return is_admin_key(bearer(request), deps.admin_key)

    def admin(request: Request) -> AttendanceDeps:
        deps = get(request)
        if not is_admin(request, deps):
            CredentialGuard(limits.wrong_credentials, client_address(request), now).wrong()
            raise ApiError(403, "not_allowed", "this needs the admin key")
        return deps

    def admin_or_teacher(request: Request, lesson_id: str) -> AttendanceDeps:
        """The admin, or the teacher of this lesson (its teacher token)."""
        deps = get(request)
        if is_admin(request, deps):
            return deps
        guard = CredentialGuard(limits.wrong_credentials, client_address(request), now)
        try:
            claims = deps.tokens.verify(bearer(request), lesson_id)
        except TokenError as exc:
            if exc.code == "bad_token":
                guard.wrong()
            status = 403 if exc.code == "bad_token" else 401
            raise ApiError(status, exc.code, exc.message) from None
        if claims.role is not Role.TEACHER:
            raise ApiError(403, "not_allowed", "attendance is the teacher's and the admin's")
        return deps

    def wall(deps: AttendanceDeps, unix: float | None) -> str | None:
        if unix is None:
            return None
        zone = ZoneInfo(deps.district.time_zone)
        return datetime.fromtimestamp(unix, zone).replace(microsecond=0).isoformat()

    async def report(deps: AttendanceDeps, lesson_id: str) -> tuple[LessonAttendance, Held | None]:
        lesson = await deps.lessons.get(lesson_id)
        if lesson is None:
            raise ApiError(404, "not_found", "there is no such lesson")
        return lesson_attendance(lesson.log, _until(lesson, now())), _held_of(
            deps.district, lesson_id
        )

    def room_of(held: Held | None) -> dict[str, str]:
        """Participant id -> room id, for an occurrence of the timetable."""
        return {pid: rid for rid, pid in held.classrooms} if held else {}

    def attendee_json(deps: AttendanceDeps, a: Attendee, origin: float, room: str | None) -> Any:
        out: dict[str, Any] = a.to_dict(origin) | {"room_id": room}
        for s in out["sessions"]:
            s["joined"] = wall(deps, s["joined_unix"])
            s["left"] = wall(deps, s["left_unix"])
        return out

    @api.get("/api/lessons/{lesson_id}/attendance")
    async def attendance(lesson_id: str, request: Request) -> dict[str, Any]:
        """Who was there and what they did: per classroom (and the teacher) every
        session, minutes connected, hands, floor time, chat lines, what it received."""
        deps = admin_or_teacher(request, lesson_id)
        found, held = await report(deps, lesson_id)
        rooms = room_of(held)
        o = found.origin
        return {
            "lesson_id": found.lesson_id,
            "title": found.title,
            "time_zone": deps.district.time_zone,
            "state": "ended" if found.ended_at is not None else "live",
            "entry_id": held.entry_id if held else None,
            "on": held.on.isoformat() if held else None,
            "scheduled_at": wall(deps, o),
            "started_at": wall(deps, None if found.started_at is None else o + found.started_at),
            "ended_at": wall(deps, None if found.ended_at is None else o + found.ended_at),
            "until_s": round(found.until_at, 3),
            "attendees": [
                attendee_json(deps, a, o, rooms.get(a.participant_id)) for a in found.attendees
            ],
        }

    @api.get("/api/lessons/{lesson_id}/attendance.csv")
    async def attendance_csv(lesson_id: str, request: Request) -> Response:
        """The same as a CSV that Excel opens in Chinese: UTF-8 with a byte order mark."""
        deps = admin_or_teacher(request, lesson_id)
        found, held = await report(deps, lesson_id)
        rooms = room_of(held)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        o = found.origin

        def hm(at: float) -> str:
            text = wall(deps, o + at) or ""
            return text.replace("T", " ")[:19]

        for a in found.attendees:
            d = a.delivery
            level = d.level_s if d else {}
            ratio = d.audio_concealed_ratio if d else None
            writer.writerow(
                [
                    found.title,
                    found.lesson_id,
                    a.name,
                    rooms.get(a.participant_id, ""),
                    a.role,
                    hm(a.sessions[0].joined_at) if a.sessions else "",
                    hm(a.sessions[-1].left_at) if a.sessions else "",
                    f"{a.minutes:.1f}",
                    len(a.sessions),
                    "; ".join(f"{hm(s.joined_at)}–{hm(s.left_at)[11:]}" for s in a.sessions),
                    len(a.hands),
                    "、".join(h.student for h in a.hands),
                    f"{a.floor_s:.0f}",
                    a.floor_grants,
                    a.chat_count,
                    *(
                        f"{level.get(k, 0.0):.0f}" if d else ""
                        for k in ("full", "low", "slides_audio", "audio_only")
                    ),
                    "" if d is None or d.video is None else d.video.freeze_count,
                    "" if ratio is None else f"{ratio:.2%}",
                ]
            )
        name = f"attendance-{found.lesson_id}.csv"
        return Response(
            "\ufeff" + out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
            },
        )

    async def attended(deps: AttendanceDeps, held: Held) -> frozenset[str]:
        """The participant ids of the held lesson's classrooms that connected at all."""
        cached = deps.attended_of.get(held.lesson_id)
        if cached is not None:
            return cached
        lesson = await deps.lessons.get(held.lesson_id)
        if lesson is None:
            return frozenset()
        found = lesson_attendance(lesson.log, _until(lesson, now()))
        ids = frozenset(a.participant_id for a in found.classrooms() if a.attended)
        if found.ended_at is not None:
            deps.attended_of[held.lesson_id] = ids
        return ids

    @api.get("/api/district/summary")
    async def summary(request: Request, weeks: int = 4) -> dict[str, Any]:
        """Per room and week (Monday to Sunday, the district's zone), the lessons
        timetabled for it that have begun, how many were held, how many it attended;
        and over the weeks, the share it attended."""
        deps = admin(request)
        if not 1 <= weeks <= MAX_WEEKS:
            raise ApiError(422, "invalid_request", f"weeks: 1 to {MAX_WEEKS}")
        district = deps.district
        d = district.directory
        today_at = district.now()
        today = today_at.date()
        first = monday(today) - timedelta(days=7 * (weeks - 1))
        rooms = sorted(
            (r for r in d.rooms.values() if not r.archived),
            key=lambda r: (d.schools[r.school_id].name, r.name),
        )
        due = [
            Due(rid, e.entry_id, o.on, o.starts.date())
            for e, o in d.timetable()
            if o.starts <= today_at and o.starts.date() >= first
            for rid in e.room_ids
        ]
        # A moved week may start up to a few days from its nominal date.
        window = [h for h in d.held.values() if h.on >= first - timedelta(days=7)]
        held = {(h.entry_id, h.on, rid) for h in window for rid, _ in h.classrooms}
        came: set[tuple[str, date, str]] = set()
        for h in window:
            ids = await attended(deps, h)
            came |= {(h.entry_id, h.on, rid) for rid, pid in h.classrooms if pid in ids}
        by_room = {
            s.room_id: s
            for s in district_summary([r.room_id for r in rooms], due, held, came, today, weeks)
        }
        return {
            "time_zone": district.time_zone,
            "today": today.isoformat(),
            "weeks": [(first + timedelta(days=7 * i)).isoformat() for i in range(weeks)],
            "rooms": [
                {
                    "room_id": r.room_id,
                    "name": r.name,
                    "school_id": r.school_id,
                    "school": d.schools[r.school_id].name,
                    "weeks": [w.to_dict() for w in by_room[r.room_id].weeks],
                    "scheduled": by_room[r.room_id].scheduled,
                    "attended": by_room[r.room_id].attended,
                    "share": by_room[r.room_id].share,
                }
                for r in rooms
            ],
        }

    @api.get("/api/lessons")
    async def recent(request: Request, days: int = 14) -> dict[str, Any]:
        """The lessons of the last `days` days, newest first, each with its timetable
        entry when it was one: the admin's way to a lesson's attendance."""
        deps = admin(request)
        if not 1 <= days <= MAX_DAYS:
            raise ApiError(422, "invalid_request", f"days: 1 to {MAX_DAYS}")
        rows = await deps.store.lessons_since(now() - days * 86400)
        by_lesson = {h.lesson_id: h for h in deps.district.directory.held.values()}
        out = []
        for lesson_id, title, created, ended in rows:
            held = by_lesson.get(lesson_id)
            out.append(
                {
                    "id": lesson_id,
                    "title": title,
                    "created_at": wall(deps, created),
                    "state": "ended" if ended else "live",
                    "entry_id": held.entry_id if held else None,
                    "on": held.on.isoformat() if held else None,
                }
            )
        return {"time_zone": deps.district.time_zone, "lessons": out}

    return api
