"""The database's schema, as numbered steps applied once each at start.

Why a runner of our own and not Alembic: the project has no SQLAlchemy, its SQL is
a few tables in one SQLite file, and the steps are plain SQL. What a database has
is SQLite's own `PRAGMA user_version`; each step runs with the version bump in one
transaction, so a crash mid-step leaves the database at the step before. `CREATE
TABLE IF NOT EXISTS` alone could not grow an existing table (a new column, an
index on old rows); numbered steps can, and say in order how the schema came to be.

Step 1 is the schema of the first release, written so that a database made by it
(version 0, its tables already there) takes step 1 as a no-op and moves on: an
existing `classroom-data` upgrades in place, its lessons and events untouched.
Never edit a step that was released; add one.
"""

from __future__ import annotations

import aiosqlite

STEPS: tuple[str, ...] = (
    # 1: lessons, their participants and event logs (the first release).
    """
CREATE TABLE IF NOT EXISTS lessons (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    created_at REAL NOT NULL,
    ended INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS participants (
    lesson_id TEXT NOT NULL REFERENCES lessons(id),
    participant_id TEXT NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    join_code TEXT,
    PRIMARY KEY (lesson_id, participant_id)
);
CREATE INDEX IF NOT EXISTS participants_join_code ON participants(join_code);
CREATE TABLE IF NOT EXISTS events (
    lesson_id TEXT NOT NULL REFERENCES lessons(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (lesson_id, seq)
);
""",
    # 2: schools, rooms, teachers, pairings and the timetable (issue 17). Secrets are
    # stored as sha-256 hashes only. Wall-clock times are ISO text without an offset,
    # read in the entry's time_zone.
    """
CREATE TABLE schools (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('urban', 'rural')),
    archived INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE rooms (
    id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL REFERENCES schools(id),
    name TEXT NOT NULL,
    device_hash TEXT,
    archived INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE teachers (
    id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL REFERENCES schools(id),
    name TEXT NOT NULL,
    link_hash TEXT,
    archived INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE pairings (
    school_id TEXT NOT NULL REFERENCES schools(id),
    room_id TEXT NOT NULL REFERENCES rooms(id),
    PRIMARY KEY (school_id, room_id)
);
CREATE TABLE timetable_entries (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    teacher_id TEXT NOT NULL REFERENCES teachers(id),
    room_ids TEXT NOT NULL,
    first TEXT NOT NULL,
    duration_min INTEGER NOT NULL,
    weekly_until TEXT,
    time_zone TEXT NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE occurrence_changes (
    entry_id TEXT NOT NULL REFERENCES timetable_entries(id),
    on_date TEXT NOT NULL,
    moved_to TEXT,
    PRIMARY KEY (entry_id, on_date)
);
CREATE TABLE occurrence_lessons (
    entry_id TEXT NOT NULL REFERENCES timetable_entries(id),
    on_date TEXT NOT NULL,
    lesson_id TEXT NOT NULL REFERENCES lessons(id),
    classrooms TEXT NOT NULL,
    PRIMARY KEY (entry_id, on_date)
);
""",
)


class SchemaTooNew(RuntimeError):
    pass


async def version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(db: aiosqlite.Connection, steps: tuple[str, ...] = STEPS) -> int:
    """Apply the steps the database lacks; return its version after."""
    have = await version(db)
    if have > len(steps):
        raise SchemaTooNew(
            f"the database is at schema {have}, newer than this server's {len(steps)};"
            " run the newer server or restore a backup"
        )
    for number, sql in enumerate(steps[have:], start=have + 1):
        # executescript commits what is pending first, then runs the script as is:
        # BEGIN ... COMMIT makes the step and its version one transaction.
        try:
            await db.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
        except BaseException:
            await db.rollback()
            raise
    return len(steps)
