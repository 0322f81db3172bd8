"""Courseware: a deck attached to a lesson, the page shown, the laser pointer and ink.

A deck is rendered to page images before class and fetched by every classroom ahead of
time; during the lesson only these small facts travel: which page, where the pointer is,
a stroke of ink. The rules here decide what the teacher's commands cause and what a
classroom's "courseware ready" report says; `Lesson` calls them and folds the events.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from classroom import commands as c
from classroom import events as e
from classroom.errors import InvalidCommand, InvalidTransition

# A deck's id is the SHA-256 of the file it was made from (content-addressed).
DECK_ID = re.compile(r"^[0-9a-f]{64}$")
MAX_DECK_PAGES = 300
MAX_DECK_NAME = 200
MAX_PAGE_PIXELS = 16384
# A stroke of ink is sent when the pen lifts: a few hundred points is a long stroke
# already (the page simplifies it first), and keeps the message a few kilobytes.
MAX_INK_POINTS = 200
# Ink stays on a page until it is cleared or the page is turned; a late joiner is sent
# the strokes of the page shown, so their number is bounded.
MAX_STROKES = 50
INK_COLORS = ("red", "blue", "green", "yellow", "black", "white")
# Coordinates are fractions of the page (0..1 from the top left), at this precision:
# 1/10000 of a 1920 px page is a fifth of a pixel.
_DIGITS = 4


@dataclass(frozen=True)
class Deck:
    deck_id: str
    name: str
    pages: int
    # The first page's size in pixels of the rendered images (the projector's width).
    width: int
    height: int


@dataclass(frozen=True)
class Stroke:
    color: str
    points: tuple[tuple[float, float], ...]


@dataclass
class DeckState:
    """The deck of a lesson as the room sees it now. `page` 0: put away (the slides
    video shows instead, for what is not a deck)."""

    deck: Deck
    page: int = 1
    pointer: tuple[float, float] | None = None
    ink: list[Stroke] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = self.deck
        return {
            "id": d.deck_id,
            "name": d.name,
            "pages": d.pages,
            "width": d.width,
            "height": d.height,
            "page": self.page,
            "pointer": None
            if self.pointer is None
            else {"x": self.pointer[0], "y": self.pointer[1]},
            "ink": [{"color": s.color, "points": [list(p) for p in s.points]} for s in self.ink],
        }


@dataclass(frozen=True)
class Readiness:
    """How much of the deck a classroom's browser holds (pages cached of pages)."""

    deck_id: str
    ready: int
    total: int

    def to_dict(self) -> dict[str, Any]:
        return {"deck_id": self.deck_id, "ready": self.ready, "total": self.total}


# -- deciding ---------------------------------------------------------------------------


def attach(current: DeckState | None, cmd: c.AttachDeck) -> list[e.Event]:
    if not DECK_ID.match(cmd.deck_id):
        raise InvalidCommand("a deck's id is the SHA-256 of its file, in hex")
    name = " ".join(cmd.name.split())
    if not name or len(name) > MAX_DECK_NAME:
        raise InvalidCommand(f"a deck's name has 1 to {MAX_DECK_NAME} characters")
    if not 1 <= cmd.pages <= MAX_DECK_PAGES:
        raise InvalidCommand(f"a deck has 1 to {MAX_DECK_PAGES} pages")
    if not (0 < cmd.width <= MAX_PAGE_PIXELS and 0 < cmd.height <= MAX_PAGE_PIXELS):
        raise InvalidCommand(f"a page is 1 to {MAX_PAGE_PIXELS} pixels wide and high")
    if current is not None and current.deck.deck_id == cmd.deck_id:
        raise InvalidTransition("this deck is attached to the lesson already")
    return [
        e.DeckAttached(
            deck_id=cmd.deck_id, name=name, pages=cmd.pages, width=cmd.width, height=cmd.height
        )
    ]


def turn(current: DeckState | None, page: int) -> list[e.Event]:
    state = _attached(current)
    if not 0 <= page <= state.deck.pages:
        raise InvalidCommand(f"the deck has pages 1 to {state.deck.pages} (0 puts it away)")
    if page == state.page:
        return []  # a double click: nothing changes, nothing to tell anyone
    return [e.PageTurned(deck_id=state.deck.deck_id, page=page)]


def point(current: DeckState | None, x: float | None, y: float | None) -> list[e.Event]:
    state = _shown(current)
    if x is None or y is None:
        if x is not None or y is not None:
            raise InvalidCommand("a pointer has both x and y, or neither (hidden)")
        if state.pointer is None:
            return []
        return [e.PointerMoved(deck_id=state.deck.deck_id, page=state.page, x=None, y=None)]
    at = _position(x, y)
    if at == state.pointer:
        return []
    return [e.PointerMoved(deck_id=state.deck.deck_id, page=state.page, x=at[0], y=at[1])]


def draw(current: DeckState | None, cmd: c.DrawInk) -> list[e.Event]:
    state = _shown(current)
    if cmd.color not in INK_COLORS:
        raise InvalidCommand(f"ink is {', '.join(INK_COLORS)}")
    if not 1 <= len(cmd.points) <= MAX_INK_POINTS:
        raise InvalidCommand(f"a stroke has 1 to {MAX_INK_POINTS} points")
    if len(state.ink) >= MAX_STROKES:
        raise InvalidTransition(f"a page holds {MAX_STROKES} strokes of ink; clear it first")
    points = [list(_position(x, y)) for x, y in cmd.points]
    return [e.InkDrawn(deck_id=state.deck.deck_id, page=state.page, color=cmd.color, points=points)]


def clear(current: DeckState | None) -> list[e.Event]:
    state = _shown(current)
    if not state.ink:
        return []
    return [e.InkCleared(deck_id=state.deck.deck_id, page=state.page)]


def report(
    current: DeckState | None, last: Readiness | None, by: str, cmd: c.ReportCourseware
) -> list[e.Event]:
    if not 0 <= cmd.ready <= cmd.total:
        raise InvalidCommand("a classroom holds 0 to all of the deck's pages")
    if current is None or current.deck.deck_id != cmd.deck_id:
        # A report on a deck replaced meanwhile: late, not wrong. Dropped.
        return []
    if cmd.total != current.deck.pages:
        raise InvalidCommand(f"the deck has {current.deck.pages} pages")
    if last == Readiness(cmd.deck_id, cmd.ready, cmd.total):
        return []
    return [
        e.CoursewareReported(
            participant_id=by, deck_id=cmd.deck_id, ready=cmd.ready, total=cmd.total
        )
    ]


def _attached(current: DeckState | None) -> DeckState:
    if current is None:
        raise InvalidTransition("no deck is attached to this lesson")
    return current


def _shown(current: DeckState | None) -> DeckState:
    state = _attached(current)
    if state.page == 0:
        raise InvalidTransition("the deck is put away: turn to a page first")
    return state


def _position(x: float, y: float) -> tuple[float, float]:
    if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= 1 and 0 <= y <= 1):
        raise InvalidCommand("a position on the page is x and y from 0 to 1")
    return round(x, _DIGITS), round(y, _DIGITS)


# -- folding ----------------------------------------------------------------------------


def fold(state: DeckState | None, event: e.Event) -> DeckState | None:
    """The deck after `event` (events are facts: no checks)."""
    match event:
        case e.DeckAttached():
            deck = Deck(event.deck_id, event.name, event.pages, event.width, event.height)
            return DeckState(deck)
        case e.PageTurned(page=page) if state is not None:
            return DeckState(state.deck, page)
        case e.PointerMoved(x=x, y=y) if state is not None:
            state.pointer = None if x is None or y is None else (x, y)
        case e.InkDrawn(color=color, points=points) if state is not None:
            state.ink.append(Stroke(color, tuple((p[0], p[1]) for p in points)))
        case e.InkCleared() if state is not None:
            state.ink = []
    return state
