"""A worker that serves some classrooms of a lesson whose home is another worker.

A lesson has one home worker: its teacher, its ladders (decoded once, encoded once
per layer), its recording. When the home worker has as many peers as it takes
(`WorkerGateway`'s `max_peers`), the lesson's next classrooms are served by another
worker, its follower. The follower does what a county edge does (media.relay.feed),
over loopback rather than the backbone: it pulls one copy of each layer from the
home worker over one peer connection (media.relay.upstream) and fans it out to its
classrooms, each with its own allocator; it says which layers they follow (`want`);
and each of its classrooms' camera and microphone go up to the home worker
(media.relay.uplink), where the teacher's mosaic and the stage take them as from a
classroom of its own.

The gateway carries each offer and answer between the two workers over their
sockets (it has no SDP of its own to make): `pull_offer` here, `feed` at the home,
`pull_accept` here; `uplink_offer`, `uplink` at the home, `uplink_accept`. What
happens by itself here goes to the gateway as events: the layers wanted, a pull
lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from media.relay.relay import Relay
from media.relay.uplink import Uplink
from media.relay.upstream import Upstream
from media.settings import RelaySettings
from media.workers.channel import Message

logger = logging.getLogger(__name__)


def feed_name(index: int) -> str:
    """How a follower worker's pull is named at the home worker (`Relay.feeds`)."""
    return f"worker-{index}"


class FollowedLessons:
    """The lessons this worker follows: their pulls and their classrooms' uplinks."""

    def __init__(
        self, relay: Relay, settings: RelaySettings, notify: Callable[[Message], None]
    ) -> None:
        self._relay = relay
        self._settings = settings
        self._notify = notify
        self._pulls: dict[str, Upstream] = {}
        # A pull offered and not yet answered, by lesson.
        self._offered: dict[str, Upstream] = {}
        self._uplinks: dict[tuple[str, str], Uplink] = {}

    # --- the pull ---------------------------------------------------------------------

    async def pull_offer(self, lesson_id: str) -> str:
        """A new pull of the lesson: its offer, for the home worker."""
        old = self._offered.pop(lesson_id, None)
        if old is not None:
            await old.close()
        upstream = Upstream(lesson_id, self._settings, time.monotonic)
        self._offered[lesson_id] = upstream
        return await upstream.offer()

    async def pull_accept(self, lesson_id: str, sdp: str) -> None:
        """The home worker's answer: the lesson's layers feed this worker's classrooms."""
        upstream = self._offered.pop(lesson_id, None)
        if upstream is None:
            return  # given up meanwhile (the lesson ended here)
        try:
            await upstream.accept(sdp)
        except BaseException:
            await upstream.close()
            raise
        old = self._pulls.pop(lesson_id, None)
        self._pulls[lesson_id] = upstream
        upstream.on_wanted = lambda lines: self._notify(
            {"event": "want", "lesson": lesson_id, "lines": list(lines)}
        )

        @upstream.pc.on("connectionstatechange")
        def on_state() -> None:
            if upstream.failed and self._pulls.get(lesson_id) is upstream:
                logger.warning("the pull of lesson %s from its home worker failed", lesson_id)
                self._notify({"event": "pull_lost", "lesson": lesson_id})

        self._relay.set_upstream(lesson_id, upstream.sources)
        if old is not None:
            await old.close()
        # What the classrooms already here follow (a pull made again).
        self._notify({"event": "want", "lesson": lesson_id, "lines": list(upstream.wanted())})

    # --- a classroom's uplink ---------------------------------------------------------

    async def uplink_offer(self, lesson_id: str, participant_id: str) -> str | None:
        """A new uplink of a classroom served here: its offer, for the home worker;
        None if the classroom is no longer here."""
        await self.drop_uplink(lesson_id, participant_id)
        if participant_id not in self._relay.participants(lesson_id):
            return None
        uplink = Uplink(lesson_id, participant_id, self._settings, time.monotonic)
        self._uplinks[(lesson_id, participant_id)] = uplink
        return await uplink.offer()

    async def uplink_accept(self, lesson_id: str, participant_id: str, sdp: str) -> bool:
        """The home worker's answer: the classroom's camera (and its microphone while it
        has the floor) go up. False if the uplink was dropped meanwhile."""
        uplink = self._uplinks.get((lesson_id, participant_id))
        if uplink is None:
            return False
        await uplink.accept(sdp)
        self._follow(uplink)
        return True

    def stage_changed(self, lesson_id: str) -> None:
        for (lesson, _), uplink in self._uplinks.items():
            if lesson == lesson_id:
                self._follow(uplink)

    def _follow(self, uplink: Uplink) -> None:
        lesson_id, participant_id = uplink.lesson_id, uplink.participant_id
        uplink.follow(
            self._relay.forwarded(lesson_id, participant_id),
            self._relay.stage(lesson_id) == participant_id,
        )

    async def drop_uplink(self, lesson_id: str, participant_id: str) -> None:
        uplink = self._uplinks.pop((lesson_id, participant_id), None)
        if uplink is not None:
            await uplink.close()

    # --- the end ----------------------------------------------------------------------

    async def forget(self, lesson_id: str) -> None:
        """The lesson ended here (or its home worker died): its uplinks and pull close."""
        for key in [k for k in self._uplinks if k[0] == lesson_id]:
            await self.drop_uplink(*key)
        for pulls in (self._pulls, self._offered):
            upstream = pulls.pop(lesson_id, None)
            if upstream is not None:
                await upstream.close()

    async def close(self) -> None:
        for lesson_id in {*self._pulls, *self._offered, *(k[0] for k in self._uplinks)}:
            await self.forget(lesson_id)
