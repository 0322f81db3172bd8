"""The lesson bus over Redis, and the lesson's event log as a Redis Stream.

A message published on a node reaches that node's subscribers at once (as
`LocalBus` does) and, through the lesson's Redis channel, every other node's. Each
event is also appended to the lesson's stream under the id `<seq>-0`, in the same
transaction as its PUBLISH: a rejoin with `since` on any node reads what it missed
as one range of the stream (`EventLog.since`), and what it reads agrees with what
the channel brings after.

Pub/sub, not a stream, carries the live messages: a node that loses its Redis
connection for a moment misses what was said meanwhile, and its clients catch up
with `since` as after any reconnect; a stream per lesson would cost every node a
blocked connection per lesson it serves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from classroom.events import Event
from signaling.bus import Envelope, Subscriber, Unsubscribe
from signaling.cluster.node import PREFIX, Node
from signaling.lessons import event_envelope

log = logging.getLogger(__name__)

# An ended lesson's stream is kept this long (nobody rejoins it; a replay reads SQLite).
ENDED_LOG_TTL_S = 3600
# Entries read at once when a whole stream is read.
READ_PAGE = 1000


def channel(lesson_id: str) -> str:
    return f"{PREFIX}lesson:{lesson_id}"


def log_key(lesson_id: str) -> str:
    return f"{PREFIX}lesson:{lesson_id}:log"


def _seq(envelope: Envelope) -> int | None:
    if envelope.type != "event":
        return None
    seq: int = json.loads(envelope.text)["event"]["seq"]
    return seq


class RedisBus:
    """`LessonBus` for several nodes; the node's subscribers are called in order."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._subscribers: dict[str, list[Subscriber]] = {}

    def subscribe(self, lesson_id: str, subscriber: Subscriber) -> Unsubscribe:
        subs = self._subscribers.setdefault(lesson_id, [])
        if not subs:
            self._node.listen(channel(lesson_id), lambda data: self._arrived(lesson_id, data))
        subs.append(subscriber)

        def unsubscribe() -> None:
            subs = self._subscribers.get(lesson_id, [])
            if subscriber in subs:
                subs.remove(subscriber)
            if not subs and self._subscribers.pop(lesson_id, None) is not None:
                self._node.unlisten(channel(lesson_id))

        return unsubscribe

    async def ready(self, lesson_id: str) -> None:
        """Once what other nodes publish for the lesson reaches this node's subscribers."""
        await self._node.listening(channel(lesson_id))

    def subscriber_count(self, lesson_id: str) -> int:
        return len(self._subscribers.get(lesson_id, ()))

    def _deliver(self, lesson_id: str, envelope: Envelope) -> None:
        # A copy: a subscriber may unsubscribe (or be dropped) while we iterate.
        for subscriber in list(self._subscribers.get(lesson_id, ())):
            subscriber(envelope)

    async def publish(self, lesson_id: str, envelope: Envelope) -> None:
        self._deliver(lesson_id, envelope)
        message = {
            "from": self._node.id,
            "type": envelope.type,
            "text": envelope.text,
            "roles": sorted(envelope.roles),
            "participants": sorted(envelope.participants),
            "final": envelope.final,
            "latest_of": envelope.latest_of,
        }
        seq = _seq(envelope)
        try:
            async with self._node.redis.pipeline(transaction=True) as pipe:
                if seq is not None:
                    fields = {"text": envelope.text, "roles": ",".join(sorted(envelope.roles))}
                    pipe.xadd(log_key(lesson_id), fields, id=f"{seq}-0")  # type: ignore[arg-type]
                pipe.publish(channel(lesson_id), json.dumps(message))
                if envelope.final:
                    pipe.expire(log_key(lesson_id), ENDED_LOG_TTL_S)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            # The lesson goes on here; other nodes' clients catch up when they rejoin.
            log.warning("lesson %s: could not pass on %s: %s", lesson_id, envelope.type, exc)

    def _arrived(self, lesson_id: str, data: str) -> None:
        message = json.loads(data)
        if message["from"] == self._node.id:
            return  # delivered here already, when it was published
        envelope = Envelope(
            message["type"],
            message["text"],
            roles=frozenset(message["roles"]),
            participants=frozenset(message["participants"]),
            final=bool(message["final"]),
            latest_of=message.get("latest_of"),
        )
        self._deliver(lesson_id, envelope)


class EventLog:
    """A lesson's events in its Redis Stream, written by the lesson's node."""

    def __init__(self, node: Node) -> None:
        self._redis = node.redis

    async def extend(self, lesson_id: str, events: list[Event]) -> None:
        """Append those of `events` the stream does not hold yet (a lesson created or
        resumed by this node: its first events were never published)."""
        last = _entries(await self._redis.xrevrange(log_key(lesson_id), count=1))
        after = int(last[0][0].split("-")[0]) if last else 0
        missing = [ev for ev in events if ev.seq > after]
        if not missing:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            for ev in missing:
                envelope = event_envelope(ev)
                fields = {"text": envelope.text, "roles": ",".join(sorted(envelope.roles))}
                pipe.xadd(log_key(lesson_id), fields, id=f"{ev.seq}-0")  # type: ignore[arg-type]
            await pipe.execute()

    async def events(self, lesson_id: str) -> list[Event]:
        """Every event the stream holds, in order (a node adopting the lesson rebuilds it
        from them). Read a page at a time: a long lesson holds thousands."""
        found: list[Event] = []
        low = "-"
        while True:
            page = _entries(await self._redis.xrange(log_key(lesson_id), min=low, count=READ_PAGE))
            found += [Event.from_dict(json.loads(f["text"])["event"]) for _, f in page]
            if len(page) < READ_PAGE:
                return found
            low = f"({page[-1][0]}"

    async def since(
        self, lesson_id: str, since: int, upto: int, limit: int, keep: Callable[[str], bool]
    ) -> tuple[list[Event], bool]:
        """As `Lesson.latest_since`, from the stream: at most `limit` of the newest events
        with `since < seq <= upto` whose audience (`keep(roles)`) takes them, in order, and
        whether older ones were left out. Read from the end, a page at a time."""
        kept: list[Event] = []
        high = str(upto)
        while since < upto:
            page = _entries(
                await self._redis.xrevrange(
                    log_key(lesson_id), max=high, min=str(since + 1), count=limit
                )
            )
            for entry_id, fields in page:
                if keep(fields.get("roles", "")):
                    if len(kept) == limit:
                        return kept[::-1], True
                    kept.append(Event.from_dict(json.loads(fields["text"])["event"]))
                high = f"({entry_id}"
            if len(page) < limit:
                break
        return kept[::-1], False


def _entries(page: Any) -> list[tuple[str, dict[str, str]]]:
    """A stream range as the client decodes it (decode_responses): ids and fields."""
    return [(str(entry_id), dict(fields or {})) for entry_id, fields in page or []]
