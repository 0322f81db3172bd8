"""SQLite persistence of lessons, participants and their event logs (aiosqlite).

The event log is the truth: a lesson is stored as the events it produced, appended
as they happen, and read back by replaying them (`Lesson.replay`). The `lessons`
and `participants` tables are an index over it (titles, join codes, ended or not).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from classroom.events import Event
from signaling.migrations import migrate

DB_FILE = "classroom.sqlite3"


@dataclass(frozen=True)
class StoredParticipant:
    lesson_id: str
    participant_id: str
    role: str
    name: str
    join_code: str | None


class Store:
    """One SQLite database in the data dir. `open()` before use, `close()` after."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path)
        # WAL: readers do not block the writer, and a crash loses at most the last
        # transaction. synchronous=NORMAL is durable against process crashes (not
        # power loss), which is the trade a lesson server wants.
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await migrate(self._db)

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection, for the stores of other records in the same database
        (signaling.district_store)."""
        return self._conn

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def create_lesson(
        self,
        lesson_id: str,
        title: str,
        created_at: float,
        participants: list[StoredParticipant],
        first_events: list[Event],
    ) -> None:
        db = self._conn
        await db.execute(
            "INSERT INTO lessons (id, title, created_at) VALUES (?, ?, ?)",
            (lesson_id, title, created_at),
        )
        await db.executemany(
            "INSERT INTO participants (lesson_id, participant_id, role, name, join_code)"
            " VALUES (?, ?, ?, ?, ?)",
            [(p.lesson_id, p.participant_id, p.role, p.name, p.join_code) for p in participants],
        )
        await self._insert_events(lesson_id, first_events)
        await db.commit()

    async def append(self, lesson_id: str, events: list[Event]) -> None:
        """Append events to a lesson's log, in one transaction."""
        if not events:
            return
        await self._insert_events(lesson_id, events)
        if any(ev.kind == "lesson_ended" for ev in events):
            await self._conn.execute("UPDATE lessons SET ended = 1 WHERE id = ?", (lesson_id,))
        await self._conn.commit()

    async def _insert_events(self, lesson_id: str, events: list[Event]) -> None:
        await self._conn.executemany(
            "INSERT INTO events (lesson_id, seq, kind, at, json) VALUES (?, ?, ?, ?, ?)",
            [
                (lesson_id, ev.seq, ev.kind, ev.at, json.dumps(ev.to_dict(), ensure_ascii=False))
                for ev in events
            ],
        )

    async def lesson_ids(self, *, ended: bool) -> list[str]:
        async with self._conn.execute(
            "SELECT id FROM lessons WHERE ended = ? ORDER BY created_at", (int(ended),)
        ) as cur:
            return [row[0] for row in await cur.fetchall()]

    async def lessons_since(self, since: float) -> list[tuple[str, str, float, bool]]:
        """(id, title, created at, ended) of the lessons created since a Unix time, newest
        first: the admin's list of lessons to read attendance of."""
        async with self._conn.execute(
            "SELECT id, title, created_at, ended FROM lessons WHERE created_at >= ?"
            " ORDER BY created_at DESC",
            (since,),
        ) as cur:
            return [(r[0], r[1], float(r[2]), bool(r[3])) for r in await cur.fetchall()]

    async def has_lesson(self, lesson_id: str) -> bool:
        async with self._conn.execute("SELECT 1 FROM lessons WHERE id = ?", (lesson_id,)) as cur:
            return await cur.fetchone() is not None

    async def events(self, lesson_id: str) -> list[Event]:
        async with self._conn.execute(
            "SELECT json FROM events WHERE lesson_id = ? ORDER BY seq", (lesson_id,)
        ) as cur:
            return [Event.from_dict(json.loads(row[0])) for row in await cur.fetchall()]

    async def participants(self, lesson_id: str) -> list[StoredParticipant]:
        async with self._conn.execute(
            "SELECT lesson_id, participant_id, role, name, join_code FROM participants"
            " WHERE lesson_id = ?",
            (lesson_id,),
        ) as cur:
            return [StoredParticipant(*row) for row in await cur.fetchall()]

    async def ping(self) -> None:
        async with self._conn.execute("SELECT 1") as cur:
            await cur.fetchone()
