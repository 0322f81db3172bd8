"""The lessons this server runs: the one place where commands become stored events.

`Lessons.execute()` runs a command against a lesson under that lesson's lock, then
in order: appends the events to the store, publishes them on the bus, and plays
the media cues they imply. It also keeps the roster (which connection speaks for
which participant) so that Join/Leave happen only on first connect and last
disconnect, and a second connection replaces the first.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from classroom import commands as c
from classroom.errors import DomainError, InvalidCommand, InvalidTransition
from classroom.events import CoursewareReported, Event, ParticipantSpec, ReceptionReported
from classroom.lesson import Lesson, LessonState
from classroom.roles import SYSTEM, Role
from media.gateway import LinkReport, MediaGateway
from signaling import media_cues
from signaling.bus import Envelope, LessonBus, Unsubscribe
from signaling.metrics import Metrics
from signaling.protocol import EventMsg, LinkMsg, MediaMovedMsg, encode
from signaling.store import Store, StoredParticipant

log = logging.getLogger(__name__)
# The relay's load as a number for the metrics (media.control.overload).
LOAD_LEVELS = {"ok": 0, "strained": 1, "overloaded": 2}

MAX_CLASSROOMS = 100
MEDIA_CALL_TIMEOUT_S = 10.0
TEACHER_ID = "teacher"
OBSERVER_ID = "observer"


class LessonNotFound(Exception):
    pass


# The viewers of a shared observer link share its participant id; each has a media
# connection of its own at the relay, under "<participant id>~<viewer number>".
_VIEWER = "~"


def viewer_media_id(participant_id: str, viewer: int) -> str:
    return f"{participant_id}{_VIEWER}{viewer}"


def participant_of(media_id: str) -> tuple[str, bool]:
    """The participant behind a relay's media id, and whether it is one of its viewers."""
    participant_id, _, viewer = media_id.partition(_VIEWER)
    return participant_id, bool(viewer)


class LessonOver(InvalidTransition):
    code = "lesson_ended"

    def __init__(self) -> None:
        super().__init__("the lesson has ended")


class Attendee(Protocol):
    """What the roster needs of a participant's connection."""

    def welcome(self, snapshot: dict[str, Any], backlog: list[Event], cut: bool) -> None: ...

    def deliver(self, envelope: Envelope) -> None: ...

    def replace(self) -> None: ...


# Called with a command's events once they are stored and published (the recording's
# timeline follows the lesson this way), and with a participant's successful offer.
EventListener = Callable[[str, list[Event]], Awaitable[None]]
PublishListener = Callable[[str, str, Role], Awaitable[None]]
MovedListener = Callable[[str], None]


@dataclass(frozen=True)
class CreatedLesson:
    lesson: Lesson
    participants: list[StoredParticipant]


# Who is sent an event; everyone when empty. Each classroom's reception report every
# 10 s would otherwise reach every other classroom, over links that have no room for
# what they cannot use: only the teacher and observers are told.
_WATCHERS = frozenset({str(Role.TEACHER), str(Role.OBSERVER)})


def audience(event: Event) -> frozenset[str]:
    # A classroom's "courseware ready" is the teacher's business too, not the others'.
    watched = isinstance(event, ReceptionReported | CoursewareReported)
    return _WATCHERS if watched else frozenset()


def event_envelope(event: Event) -> Envelope:
    text = encode(EventMsg(event=event.to_dict()))
    return Envelope("event", text, roles=audience(event), final=event.kind == "lesson_ended")


class Lessons:
    def __init__(
        self,
        store: Store,
        bus: LessonBus,
        media: MediaGateway,
        now: Callable[[], float],
        metrics: Metrics,
        max_catch_up: int,
    ) -> None:
        self._store = store
        # A rejoin is sent the snapshot (the lesson as it is now) and, of the events it
        # missed, at most this many of the newest (Settings.catch_up_max_events): a
        # classroom back after a long gap sees what was said lately, and what a rejoin
        # costs does not grow with the lesson. A rejoin with `since: 0` on a lesson of
        # 15k events was 2.1 MB and 0.35 s of the server's CPU.
        self._max_catch_up = max_catch_up
        self._bus = bus
        self._media = media
        self._now = now
        self._metrics = metrics
        self._live: dict[str, Lesson] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._codes: dict[str, tuple[str, str]] = {}
        self._roster: dict[tuple[str, str], list[Attendee]] = {}
        # Set when the server is shutting down: connections it closes are not
        # participants leaving, so no Leave is recorded and the stage survives a restart.
        self.closing = False
        self.event_listeners: list[EventListener] = []
        self.publish_listeners: list[PublishListener] = []
        # Told each lesson whose media moved (its relay worker died; on several nodes,
        # another node adopted it), on every node: what this node keeps of a peer
        # connection there (a WHIP or WHEP resource) is let go.
        self.moved_listeners: list[MovedListener] = []
        metrics.count_live_lessons(lambda: len(self._live))

    # -- loading and creating ------------------------------------------------------

    async def load(self) -> None:
        """Resume every lesson that has not ended, with nobody connected (`Lesson.resume`):
        the stage survives a restart, and each participant joins again on connecting."""
        for lesson_id in await self._store.lesson_ids(ended=False):
            lesson = Lesson.resume(await self._store.events(lesson_id))
            self._live[lesson_id] = lesson
            for sp in await self._store.participants(lesson_id):
                if sp.join_code:
                    self._codes[sp.join_code] = (lesson_id, sp.participant_id)
            await self._play(lesson_id, media_cues.resume_cues(lesson))

    async def create(self, title: str, classroom_names: list[str]) -> CreatedLesson:
        if not classroom_names or len(classroom_names) > MAX_CLASSROOMS:
            raise InvalidCommand(f"a lesson has 1 to {MAX_CLASSROOMS} classrooms")
        lesson_id = await self._new_lesson_id()
        specs = [
            ParticipantSpec(TEACHER_ID, Role.TEACHER, "Teacher"),
            ParticipantSpec(OBSERVER_ID, Role.OBSERVER, "Observer"),
        ]
        specs += [
            ParticipantSpec(f"classroom-{i}", Role.CLASSROOM, " ".join(name.split()))
            for i, name in enumerate(classroom_names, start=1)
        ]
        lesson = Lesson.schedule(lesson_id, title, specs, self._now())
        stored = [
            StoredParticipant(
                lesson_id,
                s.participant_id,
                str(s.role),
                s.name,
                self._new_code() if s.role is Role.CLASSROOM else None,
            )
            for s in specs
        ]
        # Reserve the codes before the await, so that a concurrent create cannot take them.
        for sp in stored:
            if sp.join_code:
                self._codes[sp.join_code] = (lesson_id, sp.participant_id)
        try:
            await self._store.create_lesson(
                lesson_id, lesson.title, self._now(), stored, lesson.log
            )
        except BaseException:
            for sp in stored:
                if sp.join_code:
                    self._codes.pop(sp.join_code, None)
            raise
        self._live[lesson_id] = lesson
        for ev in lesson.log:
            self._metrics.events.labels(ev.kind).inc()
        return CreatedLesson(lesson, stored)

    async def _new_lesson_id(self) -> str:
        while True:
            lesson_id = "l" + secrets.token_hex(6)
            if lesson_id not in self._live and not await self._store.has_lesson(lesson_id):
                return lesson_id

    def _new_code(self) -> str:
        # Unique among lessons that have not ended; a million codes, so a free one is
        # found in a few draws unless the server runs an absurd number of classrooms.
        for _ in range(1000):
            code = f"{secrets.randbelow(1_000_000):06d}"
            if code not in self._codes:
                return code
        raise RuntimeError("no free join code")

    # -- queries -------------------------------------------------------------------

    def by_code(self, code: str) -> tuple[Lesson, str] | None:
        found = self._codes.get(code)
        if found is None or found[0] not in self._live:
            return None
        return self._live[found[0]], found[1]

    def live(self, lesson_id: str) -> Lesson | None:
        return self._live.get(lesson_id)

    async def joinable(self, lesson_id: str) -> Lesson | None:
        """The running lesson a connection may join (on a node of several, one held by
        another node: signaling.cluster.lessons)."""
        return self.live(lesson_id)

    async def get(self, lesson_id: str) -> Lesson | None:
        """A lesson that is running, or one that ended (read back from the store)."""
        lesson = self._live.get(lesson_id)
        if lesson is not None:
            return lesson
        events = await self._store.events(lesson_id)
        return Lesson.replay(events) if events else None

    # -- commands ------------------------------------------------------------------

    async def media_moved(self, lesson_id: str, participants: Collection[str] = ()) -> None:
        """The lesson's media starts again elsewhere (its relay worker died): the relay is
        told the stage and the deck, and every connection of the lesson is told
        `media_moved`, on which the pages offer again. `participants`: only theirs moved
        (the relay worker that served them for the lesson's home died; the lesson's
        media is still where it was), only they are told."""
        async with self._lock(lesson_id):
            lesson = self._live.get(lesson_id)
            if lesson is None or lesson.state is LessonState.ENDED:
                return
            if not participants:
                await self._play(lesson_id, media_cues.resume_cues(lesson))
            envelope = Envelope(
                "media_moved", encode(MediaMovedMsg()), participants=frozenset(participants)
            )
            await self._bus.publish(lesson_id, envelope)
        if not participants:
            # The whole lesson moved: what was bound to its old relay (WHIP, WHEP) goes.
            self.moved_here(lesson_id)

    def moved_here(self, lesson_id: str) -> None:
        """Tell the moved listeners; one that fails is logged."""
        for listener in self.moved_listeners:
            try:
                listener(lesson_id)
            except Exception:
                log.exception("a moved listener failed for lesson %s", lesson_id)

    def _lock(self, lesson_id: str) -> asyncio.Lock:
        return self._locks.setdefault(lesson_id, asyncio.Lock())

    async def _require_live(self, lesson_id: str) -> Lesson:
        lesson = self._live.get(lesson_id)
        if lesson is not None:
            return lesson
        if await self._store.has_lesson(lesson_id):
            raise LessonOver()
        raise LessonNotFound(lesson_id)

    async def execute(self, lesson_id: str, command: c.Command, by: str) -> list[Event]:
        """Run a command; raise DomainError (nothing changed) or return its events."""
        await self._require_live(lesson_id)
        async with self._lock(lesson_id):
            lesson = await self._require_live(lesson_id)
            return await self._execute_locked(lesson, command, by)

    async def _execute_locked(self, lesson: Lesson, command: c.Command, by: str) -> list[Event]:
        if lesson.state is LessonState.ENDED:
            raise LessonOver()
        events = lesson.handle(command, by, self._now())
        lesson_id = lesson.lesson_id
        try:
            await self._store.append(lesson_id, events)
        except BaseException as exc:
            # The state moved but the log did not: go back to what the log says. A
            # cancellation (a connection's handler stopped as the server shuts down) is
            # no failure of the store: no traceback for it.
            if isinstance(exc, asyncio.CancelledError):
                log.info("storing events of lesson %s was cancelled; reloading it", lesson_id)
            else:
                log.exception("could not store events of lesson %s; reloading it", lesson_id)
            self._live[lesson_id] = Lesson.replay(await self._store.events(lesson_id))
            raise
        for ev in events:
            self._metrics.events.labels(ev.kind).inc()
            await self._bus.publish(lesson_id, event_envelope(ev))
        for listener in self.event_listeners:
            try:
                await listener(lesson_id, events)
            except Exception:
                log.exception("an event listener failed for lesson %s", lesson_id)
        if any(ev.kind == "lesson_ended" for ev in events):
            self._live.pop(lesson_id, None)
            self._codes = {k: v for k, v in self._codes.items() if v[0] != lesson_id}
        await self._play(lesson_id, media_cues.cues_for(events))
        return events

    async def _play(self, lesson_id: str, cues: list[media_cues.Cue]) -> None:
        """Drive the relay. Its failures are logged, not raised: the lesson already moved."""
        for cue in cues:
            match cue:
                case media_cues.SetStage(classroom_id=cid):
                    call, aw = "set_stage", self._media.set_stage(lesson_id, cid)
                case media_cues.Disconnect(participant_id=pid):
                    call, aw = "disconnect", self._media.disconnect(lesson_id, pid)
                case media_cues.EndLesson():
                    call, aw = "end_lesson", self._media.end_lesson(lesson_id)
                case media_cues.CoverScreen(covered=covered):
                    call, aw = "cover_screen", self._media.cover_screen(lesson_id, covered)
            try:
                await asyncio.wait_for(aw, MEDIA_CALL_TIMEOUT_S)
            except Exception:
                self._metrics.media_failures.labels(call).inc()
                log.exception("relay call %s failed for lesson %s", call, lesson_id)

    # -- the roster ----------------------------------------------------------------

    async def attach(
        self, lesson_id: str, participant_id: str, attendee: Attendee, since: int | None
    ) -> Unsubscribe:
        """Make `attendee` a connection of a participant; Join if it was offline.

        A teacher or classroom has one connection: a new one replaces the old. An
        observer link is shared (an inspector and a parent may watch at once), so
        its connections add up, and it leaves when the last one closes.

        The welcome is queued before the Join's events are published, so the
        client sees its snapshot first and every later event after it.
        """
        async with self._lock(lesson_id):
            lesson = await self._require_live(lesson_id)
            key = (lesson_id, participant_id)
            shared = lesson.participants[participant_id].role is Role.OBSERVER
            previous = self._roster.get(key, [])
            if shared:
                self._roster[key] = [*previous, attendee]
            else:
                self._roster[key] = [attendee]
                for old in previous:
                    if old is not attendee:
                        old.replace()
            unsubscribe = self._bus.subscribe(lesson_id, attendee.deliver)
            role = str(lesson.participants[participant_id].role)
            backlog: list[Event] = []
            cut = False
            if since is not None:
                backlog, cut = lesson.latest_since(
                    since, self._max_catch_up, lambda ev: not audience(ev) or role in audience(ev)
                )
            attendee.welcome(lesson.snapshot(), backlog, cut)
            if not lesson.participants[participant_id].online:
                try:
                    await self._execute_locked(lesson, c.Join(), participant_id)
                except BaseException:
                    unsubscribe()
                    self._roster.pop(key, None)
                    raise
            return unsubscribe

    async def detach(self, lesson_id: str, participant_id: str, attendee: Attendee) -> None:
        """A connection closed. If it was the participant's last one, Leave."""
        async with self._lock(lesson_id):
            key = (lesson_id, participant_id)
            current = self._roster.get(key, [])
            if attendee not in current:
                return  # replaced by a newer connection: the participant is still here
            rest = [a for a in current if a is not attendee]
            if rest:
                self._roster[key] = rest
                return
            del self._roster[key]
            lesson = self._live.get(lesson_id)
            if self.closing or lesson is None:
                return
            if lesson.participants[participant_id].online:
                try:
                    await self._execute_locked(lesson, c.Leave(), participant_id)
                except DomainError as exc:
                    log.info("leave of %s refused: %s", participant_id, exc.message)

    async def published(self, lesson_id: str, participant_id: str, role: Role) -> None:
        """A participant's media offer was answered (the teacher's starts the recording)."""
        for listener in self.publish_listeners:
            try:
                await listener(lesson_id, participant_id, role)
            except Exception:
                log.exception("a publish listener failed for lesson %s", lesson_id)

    def connected(self, lesson_id: str) -> list[str]:
        return [pid for (lid, pid) in self._roster if lid == lesson_id]

    # -- the relay's link reports ---------------------------------------------------

    async def note_link(self, report: LinkReport) -> None:
        """Show a link report to the teacher, observers and the participant itself;
        record a change of the layers it receives as a DeliveryChanged event."""
        self._metrics.link_reports.inc()
        lesson = self._live.get(report.lesson_id)
        # A viewer's report (`viewer_media_id`) is for that viewer's connection alone.
        participant_id, viewer = participant_of(report.participant_id)
        if lesson is None or participant_id not in lesson.participants:
            return
        msg = LinkMsg(
            participant_id=participant_id,
            estimate_kbps=report.estimate_kbps,
            sent_kbps=report.sent_kbps,
            loss=report.loss,
            rtt_ms=report.rtt_ms,
            layers=dict(report.layers),
            previews=list(report.previews) if report.preview_columns else None,
            preview_columns=report.preview_columns or None,
            server_load=report.server_load,
        )
        self._metrics.relay_load.set(LOAD_LEVELS.get(report.server_load, 0))
        envelope = Envelope(
            "link",
            encode(msg),
            roles=frozenset() if viewer else frozenset({str(Role.TEACHER), str(Role.OBSERVER)}),
            participants=frozenset({report.participant_id}),
            latest_of="link:" + report.participant_id,
        )
        await self._bus.publish(report.lesson_id, envelope)
        if viewer:
            return
        participant = lesson.participants[report.participant_id]
        changed = lesson.delivery.get(report.participant_id) != dict(report.layers)
        if report.layers and participant.online and changed:
            command = c.NoteDelivery(
                report.participant_id,
                tuple(sorted(report.layers.items())),
                report.estimate_kbps,
            )
            try:
                await self.execute(report.lesson_id, command, SYSTEM)
            except DomainError as exc:
                log.info("delivery note refused: %s", exc.message)
