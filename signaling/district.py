"""The district's directory as the server keeps it: the pure `Directory` in memory, its
records in SQLite, one lock so that decisions are taken one at a time, and the
lasting links of rooms (device links) and teachers.

A lasting link's credential is `<room or teacher id>.<secret>`; only the secret's
sha-256 is stored. Rotating a link stores a new hash (the old secret stops at once),
revoking stores none. The id in front lets a refusal say which: a room whose link
was replaced or revoked, or no room's link at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import aiosqlite

from classroom.directory import Change, Directory
from classroom.schools import Room, Teacher
from signaling.district_store import DistrictStore
from signaling.errors import ApiError


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> tuple[str, str]:
    """A fresh secret and its hash."""
    secret = secrets.token_urlsafe(24)
    return secret, digest(secret)


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(6)


def _matches(stored: str | None, secret: str) -> bool:
    # Constant time: the comparison must not tell how much of a guess was right.
    return stored is not None and bool(secret) and hmac.compare_digest(stored, digest(secret))


class District:
    def __init__(
        self,
        store: DistrictStore,
        directory: Directory,
        now: Callable[[], float],
        time_zone: str,
    ) -> None:
        self.directory = directory
        self.time_zone = time_zone
        self._store = store
        self._now = now
        # Held across a decision and its storing, and across starting an occurrence
        # (creating its lesson), so that two requests never decide on the same state.
        self.lock = asyncio.Lock()
        # Set (and replaced) at every stored change: a device waiting for its lesson
        # (GET /api/device/next?wait=) is answered at once instead of at its next poll.
        self._changed = asyncio.Event()
        self._closing = False

    @classmethod
    async def open(
        cls, db: aiosqlite.Connection, now: Callable[[], float], time_zone: str
    ) -> District:
        store = DistrictStore(db)
        directory = Directory()
        directory.apply(await store.load())
        return cls(store, directory, now, time_zone)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._now(), ZoneInfo(self.time_zone))

    async def decide(self, decision: Callable[[Directory], list[Change]]) -> list[Change]:
        """Take a decision, store its changes, then fold them in; a refusal (DomainError)
        or a failed write leaves everything as it was."""
        async with self.lock:
            return await self.commit(decision(self.directory))

    async def commit(self, changes: list[Change]) -> list[Change]:
        """Store and fold changes decided under `lock` (the caller holds it)."""
        await self._store.save(changes)
        self.directory.apply(changes)
        self._wake()
        return changes

    async def changed(self, timeout_s: float) -> None:
        """Until the next stored change, `timeout_s` at most; at once while closing."""
        if self._closing:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)

    def close_waits(self) -> None:
        """The server is stopping: answer every waiting device now (uvicorn waits for
        open requests before it stops) and keep no new one waiting."""
        self._closing = True
        self._wake()

    def _wake(self) -> None:
        woken, self._changed = self._changed, asyncio.Event()
        woken.set()

    # -- lasting links ---------------------------------------------------------------

    def device_room(self, credential: str) -> Room:
        """The room whose device link this is, or ApiError 403 saying why not."""
        room_id, _, secret = credential.partition(".")
        room = self.directory.rooms.get(room_id)
        if room is None:
            raise ApiError(403, "bad_device_link", "this is not a room's device link")
        if room.archived:
            raise ApiError(403, "device_link_revoked", "this room was removed")
        if not _matches(room.device_hash, secret):
            raise ApiError(
                403,
                "device_link_revoked",
                "this room's device link was replaced or revoked; ask the school's admin"
                " for the room's new link",
            )
        return room

    def teacher_of(self, credential: str) -> Teacher | None:
        """The teacher whose link this is, or None when it is no teacher's link."""
        teacher_id, _, secret = credential.partition(".")
        teacher = self.directory.teachers.get(teacher_id)
        if teacher is None or teacher.archived or not _matches(teacher.link_hash, secret):
            return None
        return teacher


def credential(record_id: str, secret: str) -> str:
    return f"{record_id}.{secret}"
