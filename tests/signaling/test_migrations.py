"""The numbered schema steps: each applied once, a failed one leaves the database as it
was, a database newer than the server is refused."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import pytest

from signaling.migrations import STEPS, SchemaTooNew, migrate, version


async def tables(db: aiosqlite.Connection) -> set[str]:
    async with db.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cur:
        return {row[0] for row in await cur.fetchall()}


async def test_steps_apply_once_and_a_failed_step_changes_nothing(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "db") as db:
        assert await migrate(db) == len(STEPS)
        assert {"lessons", "schools", "timetable_entries"} <= await tables(db)
        # Again: nothing to do, nothing fails on tables that exist.
        assert await migrate(db) == len(STEPS)
        broken = (*STEPS, "CREATE TABLE extra (x INTEGER);\nTHIS IS NOT SQL;")
        with pytest.raises(aiosqlite.OperationalError):
            await migrate(db, broken)
        assert await version(db) == len(STEPS)
        assert "extra" not in await tables(db)


async def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "db") as db:
        await db.execute(f"PRAGMA user_version = {len(STEPS) + 1}")
        with pytest.raises(SchemaTooNew, match="newer than this server"):
            await migrate(db)
