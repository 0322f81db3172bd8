"""Every lesson command survives the trip to the lesson's node (signaling.cluster.commands)."""

from __future__ import annotations

import json

import pytest

from classroom import commands as c
from classroom.reception import AudioCounters, Picture, VideoCounters
from signaling.cluster.commands import _KINDS, from_dict, to_dict

VIDEO = VideoCounters(**{name: 1 for name in VideoCounters.__dataclass_fields__})
AUDIO = AudioCounters(**{name: 2 for name in AudioCounters.__dataclass_fields__})
PICTURE = Picture("live", 640, 360, 14.5)

CASES: list[c.Command] = [
    c.Join(),
    c.Leave(),
    c.RaiseHand("Zhao Lei"),
    c.LowerHand(),
    c.DismissHand("classroom-2"),
    c.GrantFloor("classroom-1"),
    c.RevokeFloor(),
    c.PostChat("谢谢老师"),
    c.EndLesson(),
    c.StartRecording("r1"),
    c.PauseRecording(),
    c.ResumeRecording(),
    c.NoteDelivery("classroom-1", (("teacher_camera", "mid"), ("slides", "high")), 420.5),
    c.ReportReception("pc-1", VIDEO, None),
    c.ReportReception("pc-2", None, AUDIO, (("teacher_camera", PICTURE), ("slides", PICTURE))),
    c.AttachDeck("ab" * 32, "第三课.pdf", 24, 1920, 1080),
    c.TurnPage(3),
    c.PointAt(0.25, 0.5),
    c.PointAt(None, None),
    c.DrawInk(((0.1, 0.2), (0.3, 0.4)), "blue"),
    c.ClearInk(),
    c.ReportCourseware("ab" * 32, 12, 24),
]


@pytest.mark.parametrize("command", CASES, ids=lambda cmd: type(cmd).__name__)
def test_a_command_round_trips_through_json(command: c.Command) -> None:
    assert from_dict(json.loads(json.dumps(to_dict(command)))) == command


def test_every_command_has_a_case() -> None:
    assert set(_KINDS) == {type(cmd).__name__ for cmd in CASES}


def test_an_unknown_command_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown command"):
        from_dict({"kind": "Teleport", "fields": {}})
