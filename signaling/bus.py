"""Publish/subscribe of what a lesson's participants should receive.

In-process by default. The interface is what a Redis implementation fills when
several server nodes share lessons: messages are already serialized text, and a
subscriber is a plain callback that must not block (it puts the message in a
connection's bounded outbox).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Envelope:
    """One server message for some participants of a lesson.

    Everyone receives it unless `roles` or `participants` is set; then only those
    with one of those roles or ids do.
    """

    type: str
    text: str
    roles: frozenset[str] = field(default_factory=frozenset)
    participants: frozenset[str] = field(default_factory=frozenset)
    # The lesson ended with this message: connections close after sending it.
    final: bool = False
    # A state that a newer envelope of the same key replaces (a participant's link
    # report): one still waiting in a connection's outbox is overwritten, not queued
    # behind, so a client that reads slowly gets the newest, not a backlog.
    latest_of: str | None = None

    def for_(self, participant_id: str, role: str, media_id: str | None = None) -> bool:
        """`media_id`: the connection's own id at the relay (an observer's viewers
        share one participant id, and each has its own media connection)."""
        if not self.roles and not self.participants:
            return True
        return (
            role in self.roles
            or participant_id in self.participants
            or (media_id is not None and media_id in self.participants)
        )


Subscriber = Callable[[Envelope], None]
Unsubscribe = Callable[[], None]


class LessonBus(Protocol):
    def subscribe(self, lesson_id: str, subscriber: Subscriber) -> Unsubscribe: ...

    async def publish(self, lesson_id: str, envelope: Envelope) -> None: ...


class LocalBus:
    """Subscribers in this process, called in publish order."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Subscriber]] = {}

    def subscribe(self, lesson_id: str, subscriber: Subscriber) -> Unsubscribe:
        self._subscribers.setdefault(lesson_id, []).append(subscriber)

        def unsubscribe() -> None:
            subs = self._subscribers.get(lesson_id, [])
            if subscriber in subs:
                subs.remove(subscriber)
            if not subs:
                self._subscribers.pop(lesson_id, None)

        return unsubscribe

    async def publish(self, lesson_id: str, envelope: Envelope) -> None:
        # A copy: a subscriber may unsubscribe (or be dropped) while we iterate.
        for subscriber in list(self._subscribers.get(lesson_id, ())):
            subscriber(envelope)

    def subscriber_count(self, lesson_id: str) -> int:
        return len(self._subscribers.get(lesson_id, ()))
