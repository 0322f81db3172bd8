"""Schools, rooms, teachers and pairings, table-driven: requests in, changes out,
refusals that change nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest

from classroom.directory import Directory, Drop, Held, Put
from classroom.errors import Conflict, DomainError, InvalidCommand, NotFound
from classroom.schools import Pairing, Room, School, SchoolKind, Teacher

TZ = "Asia/Shanghai"
# 2025-03-03 is a Monday; 00:00 UTC is 08:00 in Shanghai.
NOW = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)


def district() -> Directory:
    """An urban school with a teacher and a room, two rural schools with rooms; the
    urban school teaches village A's room."""
    d = Directory()
    d.apply(d.add_school("U", "城关小学", "urban"))
    d.apply(d.add_school("A", "石桥小学", "rural"))
    d.apply(d.add_school("B", "河口小学", "rural"))
    d.apply(d.add_room("u1", "U", "Studio", "h-u1"))
    d.apply(d.add_room("a1", "A", "五年级", "h-a1"))
    d.apply(d.add_room("b1", "B", "五年级", "h-b1"))
    d.apply(d.add_teacher("t1", "U", "李老师", "h-t1"))
    d.apply(d.pair("U", "a1"))
    return d


def entry(d: Directory, rooms: list[str], when: datetime, until: date | None = None) -> None:
    d.apply(d.add_entry(f"e{len(d.entries)}", "数学", "t1", rooms, when, 45, until, TZ, NOW))


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (lambda d: d.add_school("X", "  ", "urban"), InvalidCommand, "name of 1 to 100"),
        (lambda d: d.add_school("X", "x" * 101, "urban"), InvalidCommand, "name of 1 to 100"),
        (lambda d: d.add_school("X", "Bad\x07", "urban"), InvalidCommand, "control character"),
        (lambda d: d.add_school("X", "New", "suburban"), InvalidCommand, '"urban" or "rural"'),
        (lambda d: d.add_school("X", "石桥小学", "rural"), Conflict, "named 石桥小学"),
        (lambda d: d.rename_school("B", "石桥小学"), Conflict, "named 石桥小学"),
        (lambda d: d.rename_school("nope", "X"), NotFound, "no such school"),
        (lambda d: d.add_room("x", "A", "五年级", "h"), Conflict, "room named 五年级"),
        (lambda d: d.add_room("x", "nope", "Room", "h"), NotFound, "no such school"),
        (lambda d: d.add_room("x", "A", "", "h"), InvalidCommand, "name of 1 to 80"),
        (lambda d: d.rename_room("nope", "x"), NotFound, "no such room"),
        (lambda d: d.add_teacher("x", "nope", "Wang", "h"), NotFound, "no such school"),
        (lambda d: d.pair("A", "b1"), InvalidCommand, "only an urban school"),
        (lambda d: d.pair("U", "u1"), InvalidCommand, "rural schools' rooms"),
        (lambda d: d.pair("U", "a1"), Conflict, "teaches this room already"),
        (lambda d: d.unpair("U", "b1", NOW), NotFound, "does not teach"),
        (lambda d: d.remove_school("A"), Conflict, "still has rooms"),
    ],
)
def test_refusals_change_nothing(
    request_: Callable[[Directory], object], error: type[DomainError], message: str
) -> None:
    d = district()
    before = (dict(d.schools), dict(d.rooms), dict(d.teachers), set(d.pairings))
    with pytest.raises(error, match=message):
        request_(d)
    assert (d.schools, d.rooms, d.teachers, d.pairings) == before


def test_names_are_trimmed_and_kinds_read() -> None:
    d = Directory()
    assert d.add_school("S", "  河口   小学 ", "rural") == [
        Put(School("S", "河口 小学", SchoolKind.RURAL))
    ]


def test_rename_keeps_the_rest() -> None:
    d = district()
    d.apply(d.rename_room("a1", "Grade 5"))
    assert d.rooms["a1"] == Room("a1", "A", "Grade 5", "h-a1")
    # A room's own name is not a clash with itself.
    assert d.rename_room("a1", "grade 5") == [Put(Room("a1", "A", "grade 5", "h-a1"))]


def test_device_link_rotates_and_revokes() -> None:
    d = district()
    d.apply(d.set_device("a1", "h-new"))
    assert d.rooms["a1"].device_hash == "h-new"
    d.apply(d.set_device("a1", None))
    assert d.rooms["a1"].device_hash is None


def test_a_room_without_history_is_deleted_with_its_pairings() -> None:
    d = district()
    changes = d.remove_room("a1", NOW)
    assert changes == [Drop(Pairing("U", "a1")), Drop(d.rooms["a1"])]
    d.apply(changes)
    assert "a1" not in d.rooms and not d.pairings


def test_a_room_that_held_a_lesson_is_archived_and_its_link_stops() -> None:
    d = district()
    d.apply([Put(Held("e0", date(2025, 3, 3), "l1", (("a1", "classroom-1"),)))])
    d.apply(d.remove_room("a1", NOW))
    assert d.rooms["a1"].archived and d.rooms["a1"].device_hash is None
    assert not d.pairings
    with pytest.raises(NotFound):
        d.room("a1")
    assert d.rooms_of("A") == []
    # Its name is free again for a new room.
    d.apply(d.add_room("a2", "A", "五年级", "h"))


def test_a_room_timetabled_ahead_is_not_removed() -> None:
    d = district()
    entry(d, ["a1"], datetime(2025, 3, 4, 9, 0))
    with pytest.raises(Conflict, match="timetabled for 数学"):
        d.remove_room("a1", NOW)
    # Once the lesson is over, the room goes to the archive: the entry names it.
    d.apply(d.remove_room("a1", datetime(2025, 3, 5, tzinfo=UTC)))
    assert d.rooms["a1"].archived


def test_teacher_removal_follows_the_same_rule() -> None:
    d = district()
    entry(d, ["a1"], datetime(2025, 3, 4, 9, 0))
    with pytest.raises(Conflict, match="timetabled"):
        d.remove_teacher("t1", NOW)
    d.apply(d.remove_teacher("t1", datetime(2025, 3, 5, tzinfo=UTC)))
    assert d.teachers["t1"] == Teacher("t1", "U", "李老师", None, archived=True)


def test_unpairing_a_room_still_taught_is_refused() -> None:
    d = district()
    entry(d, ["a1"], datetime(2025, 3, 4, 9, 0))
    with pytest.raises(Conflict, match="timetabled in this room"):
        d.unpair("U", "a1", NOW)
    assert Pairing("U", "a1") in d.pairings


def test_an_emptied_school_with_history_is_archived() -> None:
    d = district()
    d.apply([Put(Held("e0", date(2025, 3, 3), "l1", (("b1", "classroom-1"),)))])
    d.apply(d.remove_room("b1", NOW))
    d.apply(d.remove_school("B"))
    assert d.schools["B"].archived
    # Its name can be taken again.
    d.apply(d.add_school("B2", "河口小学", "rural"))


def test_an_empty_school_goes_with_the_pairings_it_taught() -> None:
    d = district()
    d.apply(d.remove_teacher("t1", NOW))
    d.apply(d.remove_room("u1", NOW))
    d.apply(d.remove_school("U"))
    assert "U" not in d.schools and not d.pairings
