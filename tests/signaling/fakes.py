"""A fake media relay: records what signaling asks of it, answers with a fixed SDP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from classroom.roles import Role
from media.gateway import LinkReport, MediaError

ANSWER_SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=fake relay\r\nt=0 0\r\n"


class FakeMedia:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.closed = False
        # Who has a peer connection now (has_peer).
        self.peers: set[tuple[str, str]] = set()
        self._reports: asyncio.Queue[LinkReport] | None = None

    def _queue(self) -> asyncio.Queue[LinkReport]:
        # Created lazily, inside the app's event loop.
        if self._reports is None:
            self._reports = asyncio.Queue()
        return self._reports

    async def negotiate(
        self, lesson_id: str, participant_id: str, role: Role, offer_sdp: str, *, whip: bool = False
    ) -> str:
        if not offer_sdp.startswith("v=0"):
            raise MediaError("the offer is not an SDP session description")
        self.calls.append(("negotiate", lesson_id, participant_id, str(role)))
        self.peers.add((lesson_id, participant_id))
        return ANSWER_SDP

    def has_peer(self, lesson_id: str, participant_id: str) -> bool:
        return (lesson_id, participant_id) in self.peers

    async def set_stage(self, lesson_id: str, classroom_id: str | None) -> None:
        self.calls.append(("set_stage", lesson_id, classroom_id))

    async def cover_screen(self, lesson_id: str, covered: bool) -> None:
        self.calls.append(("cover_screen", lesson_id, covered))

    async def disconnect(self, lesson_id: str, participant_id: str) -> None:
        self.calls.append(("disconnect", lesson_id, participant_id))
        self.peers.discard((lesson_id, participant_id))

    async def end_lesson(self, lesson_id: str) -> None:
        self.calls.append(("end_lesson", lesson_id))
        self.peers = {p for p in self.peers if p[0] != lesson_id}

    async def link_reports(self) -> AsyncIterator[LinkReport]:
        queue = self._queue()
        while True:
            yield await queue.get()

    async def push_report(self, report: LinkReport) -> None:
        self._queue().put_nowait(report)

    async def close(self) -> None:
        self.closed = True

    def stage_calls(self) -> list[str | None]:
        return [str(c[2]) if c[2] else None for c in self.calls if c[0] == "set_stage"]
