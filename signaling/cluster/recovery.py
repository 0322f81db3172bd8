"""The log a node that adopts a lesson rebuilds it from: its Redis Stream and the store.

Both hold the lesson's events, each written by the lesson's node as a command is run:
the store first, then the stream (with the PUBLISH that tells the other nodes). A command
acknowledged to a participant is in both; one cut short by the node's death may be in the
store alone, and a stream whose Redis write failed (logged, the lesson went on) may lack
some. So the adopter takes the union by `seq`, from 1 up to the first gap, the store's
copy where both have one; it appends to the store what only the stream kept, and to the
stream what follows its last entry (`EventLog.extend`): no event either kept is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from classroom.events import Event


@dataclass(frozen=True)
class Rebuilt:
    events: list[Event]
    missing_in_store: list[Event]


def rebuild(stream: list[Event], stored: list[Event]) -> Rebuilt:
    by_seq = {ev.seq: ev for ev in stream} | {ev.seq: ev for ev in stored}
    in_store = {ev.seq for ev in stored}
    events: list[Event] = []
    while len(events) + 1 in by_seq:
        events.append(by_seq[len(events) + 1])
    return Rebuilt(events, [ev for ev in events if ev.seq not in in_store])
