"""The lessons of a node that shares them with other nodes through Redis.

A lesson lives on one node, the one that created it (or, after a stop of every
node, the first to start again): its state, its roster and its media are there, and
it alone runs its commands, as a single process does today. Any node serves any
participant's WebSocket: for a lesson held elsewhere, this node keeps a *mirror* (the
lesson read from the shared store, for who may join and with which name), asks the
lesson's node to attach the connection (a stand-in joins its roster, so presence,
Join/Leave and "a new connection replaces the old" hold across nodes), to run its
commands and to answer its offers, and delivers what the lesson's Redis channel
brings. A rejoin with `since` reads what it missed from the lesson's Redis Stream.

When a node dies, a survivor adopts each of its lessons (`adopt`, one node wins): it
rebuilds the lesson from its stream and the store, takes the connections it serves of
it into the roster, plays the stage again, and tells every connection of the lesson to
send a new offer (`media_moved`), since their peer connections led to the dead node.
The other survivors attach their connections again at the adopter. Participants whose
WebSocket was on the dead node reconnect (a load balancer sends them to a live node)
and rejoin with `since`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from classroom import commands as c
from classroom.errors import DomainError
from classroom.events import Event
from classroom.lesson import Lesson, LessonState
from classroom.roles import Role
from media.gateway import MediaGateway
from signaling import media_cues
from signaling.bus import Envelope, Unsubscribe
from signaling.cluster import commands as wire
from signaling.cluster.bus import EventLog, RedisBus, _seq
from signaling.cluster.node import Args, Node, NodeGone, Refused
from signaling.cluster.recovery import rebuild
from signaling.lessons import (
    Attendee,
    CreatedLesson,
    LessonNotFound,
    LessonOver,
    Lessons,
)
from signaling.metrics import Metrics
from signaling.protocol import MediaMovedMsg, encode
from signaling.store import Store

log = logging.getLogger(__name__)
DETACH_TIMEOUT_S = 5.0

# Called once a lesson was adopted here (the recordings close the dead node's segment),
# or given up here to the node that adopted it (the recordings stop this node's segment).
AdoptListener = Callable[[str], Awaitable[None]]


class RemoteRefusal(DomainError):
    """A command the lesson's node refused, with its code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _refusal(exc: Refused) -> Exception:
    if exc.code == "lesson_ended":
        return LessonOver()
    if exc.code == "lesson_not_found":
        return LessonNotFound(exc.message)
    return RemoteRefusal(exc.code, exc.message)


def _refusing(handler: Callable[[Args], Awaitable[Args]]) -> Callable[[Args], Awaitable[Args]]:
    """A request handler whose refusals travel back as codes (`_refusal` reverses it)."""

    async def handle(args: Args) -> Args:
        try:
            return await handler(args)
        except LessonOver:
            raise Refused("lesson_ended", "the lesson has ended") from None
        except LessonNotFound as exc:
            raise Refused("lesson_not_found", str(exc)) from None
        except DomainError as exc:
            raise Refused(exc.code, exc.message) from None

    return handle


class _StandIn:
    """On the lesson's node: a connection that another node serves, in the roster."""

    def __init__(self, node: Node, at: str, connection: str) -> None:
        self._node = node
        self.at = at
        self.connection = connection
        self.snapshot: dict[str, Any] | None = None

    def welcome(self, snapshot: dict[str, Any], backlog: list[Event], cut: bool) -> None:
        self.snapshot = snapshot

    def deliver(self, envelope: Envelope) -> None:
        pass  # its node hears the lesson's channel itself

    def replace(self) -> None:
        args = {"connection": self.connection}
        self._node.spawn(self._node.tell(self.at, "replace", args))


class _Gate:
    """On the connection's node: what the channel brings before the welcome is held,
    then passed on if it is newer than the welcome's snapshot."""

    def __init__(self, attendee: Attendee, ended: Callable[[], None]) -> None:
        self._attendee = attendee
        self._ended = ended
        self._held: list[Envelope] | None = []

    def deliver(self, envelope: Envelope) -> None:
        if self._held is not None:
            self._held.append(envelope)
            return
        if envelope.final:
            self._ended()
        self._attendee.deliver(envelope)

    def open(self, seq: int) -> None:
        held, self._held = self._held or [], None
        for envelope in held:
            event_seq = _seq(envelope)
            if event_seq is None or event_seq > seq:
                self.deliver(envelope)


class ClusterLessons(Lessons):
    def __init__(
        self,
        store: Store,
        node: Node,
        media: MediaGateway,
        now: Callable[[], float],
        metrics: Metrics,
        max_catch_up: int,
    ) -> None:
        self._cluster_bus = RedisBus(node)
        super().__init__(store, self._cluster_bus, media, now, metrics, max_catch_up)
        self._node = node
        self._log = EventLog(node)
        self._mirrors: dict[str, Lesson] = {}
        # Connections served here of lessons held elsewhere: by our key, and by attendee.
        self._away: dict[str, Attendee] = {}
        self._away_of: dict[Attendee, tuple[str, str, str]] = {}
        # Connections served elsewhere of lessons held here.
        self._stand_ins: dict[str, tuple[_StandIn, Unsubscribe, str, str]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.adopt_listeners: list[AdoptListener] = []
        self.give_up_listeners: list[AdoptListener] = []
        node.on_request("attach", _refusing(self._on_attach))
        node.on_request("detach", _refusing(self._on_detach))
        node.on_request("execute", _refusing(self._on_execute))
        node.on_request("published", _refusing(self._on_published))
        node.on_notice("replace", self._on_replace)
        node.on_notice("lesson", lambda args: node.spawn(self._mirror(args["lesson"])))
        node.on_notice("adopted", self._on_adopted)
        node.lost = lambda lesson_id: node.spawn(self._give_up(lesson_id))

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep())

    async def close(self) -> None:
        tasks = [t for t in (self._sweeper, self._watcher) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lesson_id in list(self._live):
            await self._node.release(lesson_id)

    # -- placement and mirrors ------------------------------------------------------

    async def load(self) -> None:
        """Resume the running lessons no node holds (see `Lessons.load`); mirror the others."""
        for lesson_id in await self._store.lesson_ids(ended=False):
            if not await self._node.claim(lesson_id):
                await self._mirror(lesson_id)
                continue
            lesson = Lesson.resume(await self._store.events(lesson_id))
            self._live[lesson_id] = lesson
            for sp in await self._store.participants(lesson_id):
                if sp.join_code:
                    self._codes[sp.join_code] = (lesson_id, sp.participant_id)
            await self._log.extend(lesson_id, lesson.log)
            await self._play(lesson_id, media_cues.resume_cues(lesson))
        # From now on, the lessons of a node that dies are adopted (those of a node that
        # died before this one started included: their placement names a dead node).
        self._watcher = asyncio.create_task(self._watch())

    async def create(self, title: str, classroom_names: list[str]) -> CreatedLesson:
        created = await super().create(title, classroom_names)
        lesson_id = created.lesson.lesson_id
        await self._node.claim(lesson_id, new=True)
        await self._log.extend(lesson_id, created.lesson.log)
        await self._node.tell(None, "lesson", {"lesson": lesson_id})
        return created

    async def _mirror(self, lesson_id: str) -> Lesson | None:
        """A lesson held by another node, as the shared store has it."""
        events = await self._store.events(lesson_id)
        if not events or lesson_id in self._live:
            return self._live.get(lesson_id)
        lesson = Lesson.replay(events)
        if lesson.state is LessonState.ENDED:
            return None
        self._mirrors[lesson_id] = lesson
        for sp in await self._store.participants(lesson_id):
            if sp.join_code:
                self._codes[sp.join_code] = (lesson_id, sp.participant_id)
        return lesson

    def _forget(self, lesson_id: str) -> None:
        if self._mirrors.pop(lesson_id, None) is not None:
            self._codes = {k: v for k, v in self._codes.items() if v[0] != lesson_id}

    def live(self, lesson_id: str) -> Lesson | None:
        return super().live(lesson_id) or self._mirrors.get(lesson_id)

    async def joinable(self, lesson_id: str) -> Lesson | None:
        return self.live(lesson_id) or await self._mirror(lesson_id)

    def by_code(self, code: str) -> tuple[Lesson, str] | None:
        found = self._codes.get(code)
        lesson = self.live(found[0]) if found is not None else None
        return None if found is None or lesson is None else (lesson, found[1])

    async def _owner(self, lesson_id: str) -> str:
        owner = await self._node.owner(lesson_id)
        if owner is not None:
            return owner
        lesson = await self.get(lesson_id)
        if lesson is None:
            raise LessonNotFound(lesson_id)
        if lesson.state is LessonState.ENDED:
            self._forget(lesson_id)
            raise LessonOver()
        raise NodeGone(f"no node holds lesson {lesson_id}")

    async def _ask(self, lesson_id: str, kind: str, args: Args) -> Args:
        owner = await self._owner(lesson_id)
        try:
            return await self._node.ask(owner, kind, args | {"lesson": lesson_id})
        except Refused as exc:
            if exc.code == "lesson_ended":
                self._forget(lesson_id)
            raise _refusal(exc) from None

    # -- commands, the roster, offers: here or at the lesson's node --------------------

    async def execute(self, lesson_id: str, command: c.Command, by: str) -> list[Event]:
        if lesson_id not in self._live:
            args = {"command": wire.to_dict(command), "by": by}
            answer = await self._ask(lesson_id, "execute", args)
            return [Event.from_dict(ev) for ev in answer["events"]]
        events = await super().execute(lesson_id, command, by)
        if any(ev.kind == "lesson_ended" for ev in events):
            await self._node.retire(lesson_id)
        return events

    async def attach(
        self, lesson_id: str, participant_id: str, attendee: Attendee, since: int | None
    ) -> Unsubscribe:
        if lesson_id in self._live:
            return await super().attach(lesson_id, participant_id, attendee, since)
        lesson = await self.joinable(lesson_id)
        if lesson is None:
            raise LessonOver()
        role = str(lesson.participants[participant_id].role)
        connection = secrets.token_hex(8)
        gate = _Gate(attendee, lambda: self._forget(lesson_id))
        unsubscribe = self._bus.subscribe(lesson_id, gate.deliver)
        self._away[connection] = attendee
        try:
            await self._cluster_bus.ready(lesson_id)
            args = {"participant": participant_id, "node": self._node.id, "connection": connection}
            answer = await self._ask(lesson_id, "attach", args)
        except BaseException:
            unsubscribe()
            self._away.pop(connection, None)
            raise
        self._away_of[attendee] = (lesson_id, participant_id, connection)
        snapshot: dict[str, Any] = answer["snapshot"]
        backlog: list[Event] = []
        cut = False
        if since is not None:
            try:
                backlog, cut = await self._log.since(
                    lesson_id,
                    since,
                    snapshot["seq"],
                    self._max_catch_up,
                    lambda roles: not roles or role in roles.split(","),
                )
            except (RedisError, OSError):
                log.exception("could not read the log of lesson %s", lesson_id)
                cut = True
        attendee.welcome(snapshot, backlog, cut)
        gate.open(snapshot["seq"])
        return unsubscribe

    async def detach(self, lesson_id: str, participant_id: str, attendee: Attendee) -> None:
        away = self._away_of.pop(attendee, None)
        if away is None:
            await super().detach(lesson_id, participant_id, attendee)
            return
        self._away.pop(away[2], None)
        args = {"participant": participant_id, "connection": away[2]}
        try:
            async with asyncio.timeout(DETACH_TIMEOUT_S):
                await self._ask(lesson_id, "detach", args)
        except (NodeGone, LessonOver, LessonNotFound, DomainError, TimeoutError, RedisError):
            pass  # the lesson is gone or its node is: nothing to leave

    async def published(self, lesson_id: str, participant_id: str, role: Role) -> None:
        if lesson_id in self._live:
            await super().published(lesson_id, participant_id, role)
            return
        args = {"participant": participant_id, "role": str(role)}
        with contextlib.suppress(NodeGone, LessonOver, DomainError):
            await self._ask(lesson_id, "published", args)

    # -- requests from the nodes that serve this node's lessons' connections -------------

    async def _on_attach(self, args: Args) -> Args:
        lesson_id, participant_id = args["lesson"], args["participant"]
        stand_in = _StandIn(self._node, args["node"], args["connection"])
        unsubscribe = await super().attach(lesson_id, participant_id, stand_in, None)
        self._stand_ins[stand_in.connection] = (stand_in, unsubscribe, lesson_id, participant_id)
        return {"snapshot": stand_in.snapshot}

    async def _on_detach(self, args: Args) -> Args:
        found = self._stand_ins.pop(args["connection"], None)
        if found is not None:
            stand_in, unsubscribe, lesson_id, participant_id = found
            unsubscribe()
            await super().detach(lesson_id, participant_id, stand_in)
        return {}

    async def _on_execute(self, args: Args) -> Args:
        command = wire.from_dict(args["command"])
        await self._require_live(args["lesson"])  # here, not asked on again
        events = await self.execute(args["lesson"], command, args["by"])
        return {"events": [ev.to_dict() for ev in events]}

    async def _on_published(self, args: Args) -> Args:
        await self.published(args["lesson"], args["participant"], Role(args["role"]))
        return {}

    def _on_replace(self, args: Args) -> None:
        attendee = self._away.get(args["connection"])
        if attendee is not None:
            attendee.replace()

    async def _sweep(self) -> None:
        """The stand-ins of a node that stopped renewing its liveness leave: its
        connections are gone with it (and their participants are offline)."""
        while True:
            await asyncio.sleep(self._node.beat_s * 2)
            try:
                nodes = {stand_in.at for stand_in, *_ in self._stand_ins.values()}
                gone = {n for n in nodes if not await self._node.alive(n)}
                for connection, (stand_in, *_) in list(self._stand_ins.items()):
                    if stand_in.at in gone:
                        log.info("node %s is gone, and connection %s", stand_in.at, connection)
                        await self._on_detach({"connection": connection})
            except (RedisError, OSError) as exc:
                log.warning("could not check the nodes' liveness: %s", exc)
            except Exception:
                log.exception("sweeping stand-ins failed")

    # -- adopting the lessons of a node that died ------------------------------------

    async def _watch(self) -> None:
        """Every beat of the node: adopt the running lessons whose node is gone."""
        while True:
            await asyncio.sleep(self._node.beat_s)
            try:
                for lesson_id, held_by in (await self._node.orphans()).items():
                    await self.adopt(lesson_id, held_by)
            except (RedisError, OSError) as exc:
                log.warning("could not look for lessons to adopt: %s", exc)
            except Exception:
                log.exception("adopting lessons failed")

    async def adopt(self, lesson_id: str, held_by: str | None) -> bool:
        """Hold here a lesson that `held_by` (a dead node, or None) held; False when
        another node won it, or there is nothing to adopt."""
        if lesson_id in self._live:
            return False
        stored = await self._store.events(lesson_id)
        if not stored or Lesson.replay(stored).state is LessonState.ENDED:
            await self._node.unlist(lesson_id)
            return False
        if not await self._node.take_over(lesson_id, held_by):
            return False
        started = time.monotonic()
        async with self._lock(lesson_id):
            try:
                # Read again now that it is ours: nothing writes the lesson any more.
                rebuilt = rebuild(
                    await self._log.events(lesson_id), await self._store.events(lesson_id)
                )
                if rebuilt.missing_in_store:
                    await self._store.append(lesson_id, rebuilt.missing_in_store)
                await self._log.extend(lesson_id, rebuilt.events)
            except BaseException:
                # Not held here after all: the next look (this node's or another's) tries again.
                await self._node.release(lesson_id)
                raise
            lesson = Lesson.resume(rebuilt.events)
            self._mirrors.pop(lesson_id, None)
            self._live[lesson_id] = lesson
            for sp in await self._store.participants(lesson_id):
                if sp.join_code:
                    self._codes[sp.join_code] = (lesson_id, sp.participant_id)
            # The connections served here join the roster; their bus subscription stays.
            here = [(a, pid) for a, (lid, pid, _) in self._away_of.items() if lid == lesson_id]
            for attendee, participant_id in here:
                self._away.pop(self._away_of.pop(attendee)[2], None)
                self._roster.setdefault((lesson_id, participant_id), []).append(attendee)
            for participant_id in sorted({pid for _, pid in here}):
                current = self._live[lesson_id]
                if not current.participants[participant_id].online:
                    try:
                        await self._execute_locked(current, c.Join(), participant_id)
                    except DomainError as exc:
                        log.info("join of %s refused: %s", participant_id, exc.message)
        await self._play(lesson_id, media_cues.resume_cues(lesson))
        # Every connection of the lesson, on every node, offers again: to this node.
        await self._bus.publish(lesson_id, Envelope("media_moved", encode(MediaMovedMsg())))
        await self._node.tell(None, "adopted", {"lesson": lesson_id})
        self.moved_here(lesson_id)
        log.warning(
            "adopted lesson %s from node %s in %.3f s (%d events, %d connections here)",
            lesson_id, held_by, time.monotonic() - started, len(rebuilt.events), len(here),
        )  # fmt: skip
        self._metrics.lessons_moved.labels("adopted").inc()
        for listener in self.adopt_listeners:
            self._node.spawn(self._adopted(listener, lesson_id))
        return True

    async def _adopted(self, listener: AdoptListener, lesson_id: str) -> None:
        """Run one adopt or give-up listener; its failure is logged, not raised."""
        try:
            await listener(lesson_id)
        except Exception:
            log.exception("an adopt listener failed for lesson %s", lesson_id)

    def _on_adopted(self, args: Args) -> None:
        """Another node adopted a lesson: attach this node's connections of it there."""
        lesson_id = args["lesson"]
        for lid, participant_id, connection in list(self._away_of.values()):
            if lid == lesson_id:
                self._node.spawn(self._reattach(lesson_id, participant_id, connection))
        self.moved_here(lesson_id)

    async def _give_up(self, lesson_id: str) -> None:
        """This node stalled past its liveness and another one adopted the lesson: the
        connections served here become connections of a lesson held elsewhere, and the
        relay here lets the lesson go (the adopter asked everyone for a new offer)."""
        async with self._lock(lesson_id):
            lesson = self._live.pop(lesson_id, None)
            if lesson is None:
                return
            self._mirrors[lesson_id] = lesson
            for connection, (_, unsubscribe, lid, _) in list(self._stand_ins.items()):
                if lid == lesson_id:  # its node attaches it again at the adopter
                    del self._stand_ins[connection]
                    unsubscribe()
            for key in [key for key in self._roster if key[0] == lesson_id]:
                for attendee in self._roster.pop(key):
                    connection = secrets.token_hex(8)
                    self._away[connection] = attendee
                    self._away_of[attendee] = (lesson_id, key[1], connection)
                    self._node.spawn(self._reattach(lesson_id, key[1], connection))
        self._metrics.lessons_moved.labels("given_up").inc()
        self.moved_here(lesson_id)
        # This node's recording of it ends here (the adopter records the next segment),
        # before the relay lets the lesson go.
        for listener in self.give_up_listeners:
            await self._adopted(listener, lesson_id)
        await self._play(lesson_id, [media_cues.EndLesson()])

    async def _reattach(self, lesson_id: str, participant_id: str, connection: str) -> None:
        args = {"participant": participant_id, "node": self._node.id, "connection": connection}
        try:
            await self._ask(lesson_id, "attach", args)
        except (NodeGone, DomainError, RedisError, OSError) as exc:
            log.warning("could not attach %s at the lesson's new node: %s", connection, exc)
