"""The timetable, table-driven: weekly occurrences in a time zone, cancelled and moved
weeks, overlaps refused, and the window in which a teacher starts a lesson."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from classroom.directory import Directory, Held, Put
from classroom.errors import DomainError, InvalidCommand, InvalidTransition, NotFound, Overlap
from classroom.timetable import Entry, OccurrenceChange, first_overlap, occurrences
from tests.classroom.test_directory import NOW, TZ, district

MON_9 = datetime(2025, 3, 10, 9, 0)  # a Monday, wall-clock time in Shanghai


def weekly(until: date | None = date(2025, 3, 31), tz: str = TZ) -> Entry:
    return Entry("e", "数学", "t1", ("a1",), MON_9, 45, until, tz)


def test_weekly_occurrences_keep_their_local_time() -> None:
    occ = occurrences(weekly(), [])
    assert [o.on for o in occ] == [date(2025, 3, d) for d in (10, 17, 24, 31)]
    # 09:00 in Shanghai is 01:00 UTC, every week.
    assert {o.starts.astimezone(UTC).time().isoformat() for o in occ} == {"01:00:00"}
    assert occ[0].ends - occ[0].starts == timedelta(minutes=45)


def test_a_weekly_lesson_stays_at_nine_across_a_change_of_offset() -> None:
    # Europe/Berlin moves to summer time on 2025-03-30.
    occ = occurrences(weekly(date(2025, 4, 7), "Europe/Berlin"), [])
    assert {o.starts.strftime("%H:%M") for o in occ} == {"09:00"}
    assert [o.starts.astimezone(UTC).hour for o in occ] == [8, 8, 8, 7, 7]


def test_cancelled_and_moved_weeks() -> None:
    changes = [
        OccurrenceChange("e", date(2025, 3, 17), None),
        OccurrenceChange("e", date(2025, 3, 24), datetime(2025, 4, 2, 14, 0)),
        OccurrenceChange("other", date(2025, 3, 31), None),
    ]
    occ = occurrences(weekly(), changes)
    assert [(o.on, o.starts.strftime("%m-%d %H:%M"), o.moved) for o in occ] == [
        (date(2025, 3, 10), "03-10 09:00", False),
        (date(2025, 3, 31), "03-31 09:00", False),
        # A moved week keeps its name (the day it was due) and sorts by its new start.
        (date(2025, 3, 24), "04-02 14:00", True),
    ]


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ((9, 0, 45), (9, 45, 45), False),  # one ends as the other starts
        ((9, 0, 45), (9, 44, 45), True),
        ((9, 0, 45), (8, 0, 45), False),
        ((9, 0, 45), (8, 30, 45), True),
        ((9, 0, 45), (9, 10, 10), True),  # inside
    ],
)
def test_overlap_is_shared_time(
    a: tuple[int, int, int], b: tuple[int, int, int], overlap: bool
) -> None:
    def one(h: int, m: int, length: int) -> Entry:
        return Entry("x", "x", "t", ("r",), datetime(2025, 3, 10, h, m), length, None, TZ)

    found = first_overlap(occurrences(one(*a), []), occurrences(one(*b), []))
    assert (found is not None) == overlap


def add(d: Directory, rooms: list[str], **kw: object) -> None:
    args: dict[str, object] = {
        "entry_id": f"e{len(d.entries)}",
        "title": "数学",
        "teacher_id": "t1",
        "room_ids": rooms,
        "first": MON_9,
        "duration_min": 45,
        "weekly_until": date(2025, 6, 30),
        "time_zone": TZ,
        "now": NOW,
    }
    args.update(kw)
    d.apply(d.add_entry(**args))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"title": " "}, InvalidCommand, "title of 1 to 200"),
        ({"room_ids": []}, InvalidCommand, "1 to 100 rooms"),
        ({"room_ids": ["a1", "a1"]}, InvalidCommand, "named twice"),
        ({"duration_min": 4}, InvalidCommand, "5 to 240 minutes"),
        ({"duration_min": 241}, InvalidCommand, "5 to 240 minutes"),
        ({"first": datetime(2025, 3, 3, 7, 59)}, InvalidCommand, "in the past"),
        ({"weekly_until": date(2025, 3, 9)}, InvalidCommand, "before the first"),
        ({"weekly_until": date(2026, 3, 12)}, InvalidCommand, "a year ahead"),
        ({"time_zone": "Mars/Olympus"}, InvalidCommand, "not a known time zone"),
        ({"teacher_id": "nope"}, NotFound, "no such teacher"),
        ({"room_ids": ["zz"]}, InvalidCommand, "no room zz"),
        # Village B's room: the teacher's school is not paired with it.
        ({"room_ids": ["a1", "b1"]}, InvalidCommand, "another school's room"),
        # Same room, Monday 09:30 of a later week.
        (
            {"first": datetime(2025, 3, 24, 9, 30), "weekly_until": None},
            Overlap,
            "五年级 already has 数学 at 2025-03-24 09:00",
        ),
        # Another room, but the same teacher at that time.
        (
            {"room_ids": ["u1"], "first": datetime(2025, 3, 17, 9, 15)},
            Overlap,
            "the teacher already teaches",
        ),
    ],
)
def test_bad_entries_are_refused_and_change_nothing(
    kw: dict[str, object], error: type[DomainError], message: str
) -> None:
    d = district()
    add(d, ["a1"])
    before = dict(d.entries)
    with pytest.raises(error, match=message):
        add(d, ["a1"], **kw)
    assert d.entries == before


def test_rooms_of_its_own_school_and_paired_rooms_are_fine() -> None:
    d = district()
    add(d, ["u1", "a1"])
    # A lesson right after, or in another week, does not clash.
    add(d, ["a1"], first=datetime(2025, 3, 10, 9, 45))
    assert len(d.entries) == 2
    assert [o.on for _, o in d.timetable(room_id="a1")][:3] == [
        date(2025, 3, 10),
        date(2025, 3, 10),
        date(2025, 3, 17),
    ]


def test_a_moved_week_must_not_clash_and_may_not_go_to_the_past() -> None:
    d = district()
    add(d, ["a1"])
    add(d, ["a1"], first=datetime(2025, 3, 11, 9, 0))  # Tuesdays
    with pytest.raises(Overlap):
        d.change_occurrence("e0", date(2025, 3, 17), datetime(2025, 3, 18, 9, 20), NOW)
    with pytest.raises(InvalidCommand, match="in the past"):
        d.change_occurrence("e0", date(2025, 3, 17), datetime(2025, 3, 1, 9, 0), NOW)
    with pytest.raises(InvalidCommand, match="no lesson on 2025-03-18"):
        d.change_occurrence("e0", date(2025, 3, 18), None, NOW)
    # Moving a week within its own slot (a little later) is no clash with itself.
    d.apply(d.change_occurrence("e0", date(2025, 3, 17), datetime(2025, 3, 17, 9, 30), NOW))
    assert d.changes[("e0", date(2025, 3, 17))].moved_to == datetime(2025, 3, 17, 9, 30)
    # A week already begun stays as it was.
    late = datetime(2025, 3, 10, 1, 10, tzinfo=UTC)
    with pytest.raises(InvalidTransition, match="begun"):
        d.change_occurrence("e0", date(2025, 3, 10), None, late)


def test_a_cancelled_week_frees_its_room() -> None:
    d = district()
    add(d, ["a1"], weekly_until=None)
    with pytest.raises(Overlap):
        add(d, ["a1"], weekly_until=None, teacher_id="t1")
    d.apply(d.change_occurrence("e0", date(2025, 3, 10), None, NOW))
    add(d, ["a1"], weekly_until=None)
    with pytest.raises(Overlap):
        d.restore_occurrence("e0", date(2025, 3, 10), NOW)


@pytest.mark.parametrize(
    ("now", "ok"),
    [
        (datetime(2025, 3, 10, 0, 44, tzinfo=UTC), False),  # 16 min early
        (datetime(2025, 3, 10, 0, 45, tzinfo=UTC), True),  # 15 min early
        (datetime(2025, 3, 10, 1, 44, tzinfo=UTC), True),  # last minute
        (datetime(2025, 3, 10, 1, 45, tzinfo=UTC), False),  # over
    ],
)
def test_start_window(now: datetime, ok: bool) -> None:
    d = district()
    add(d, ["a1"])
    if ok:
        assert d.startable("e0", date(2025, 3, 10), now).held is None
    else:
        with pytest.raises(InvalidTransition):
            d.startable("e0", date(2025, 3, 10), now)


def test_a_started_occurrence_is_handed_back_and_cannot_be_changed() -> None:
    d = district()
    add(d, ["a1", "u1"])
    on = date(2025, 3, 10)
    now = datetime(2025, 3, 10, 1, 0, tzinfo=UTC)
    d.apply(d.hold("e0", on, "l1", [("a1", "classroom-1"), ("u1", "classroom-2")]))
    assert d.startable("e0", on, now).held == Held(
        "e0", on, "l1", (("a1", "classroom-1"), ("u1", "classroom-2"))
    )
    with pytest.raises(InvalidTransition):
        d.hold("e0", on, "l2", [])
    # An entry that held a lesson is archived, not deleted, and has no occurrences left.
    assert d.remove_entry("e0") == [
        Put(d.entries["e0"].__class__(**{**d.entries["e0"].__dict__, "archived": True}))
    ]
    d.apply(d.remove_entry("e0"))
    assert d.timetable(room_id="a1") == [] and d.held
