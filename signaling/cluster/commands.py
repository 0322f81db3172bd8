"""A lesson command as JSON, for the node that runs the lesson.

Commands are the domain's frozen dataclasses (classroom.commands); this is their one
wire form between nodes: the class name and its fields, the reception counters
nested as they are in the dataclasses.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from classroom import commands as c
from classroom.reception import AudioCounters, Picture, VideoCounters

_KINDS: dict[str, type[c.Command]] = {
    cls.__name__: cls
    for cls in vars(c).values()
    if isinstance(cls, type) and issubclass(cls, c.Command) and cls is not c.Command
}


def to_dict(command: c.Command) -> dict[str, Any]:
    return {"kind": type(command).__name__, "fields": dataclasses.asdict(command)}


def from_dict(data: dict[str, Any]) -> c.Command:
    cls = _KINDS.get(str(data.get("kind")))
    if cls is None:
        raise ValueError(f"unknown command {data.get('kind')!r}")
    fields = dict(data.get("fields") or {})
    if cls is c.ReportReception:
        video, audio = fields.get("video"), fields.get("audio")
        fields["video"] = None if video is None else VideoCounters(**video)
        fields["audio"] = None if audio is None else AudioCounters(**audio)
        fields["pictures"] = tuple(
            (slot, Picture(**picture)) for slot, picture in fields.get("pictures", ())
        )
    elif cls is c.NoteDelivery:
        fields["layers"] = tuple((slot, layer) for slot, layer in fields["layers"])
    elif cls is c.DrawInk:
        fields["points"] = tuple((x, y) for x, y in fields["points"])
    return cls(**fields)
