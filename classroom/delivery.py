"""What each classroom received over a lesson, folded from the lesson's events.

The relay notes every change of what it sends a participant as a
`DeliveryChanged` event (which layer on which slot). Summing the time between
those events, while the participant was connected, tells a teacher honestly how
much of the lesson each classroom saw in full, in low quality, with slides only,
or heard only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from classroom import events as e

OFF = "off"
# The slots that carry the lesson to a classroom, as media.slots names them.
CAMERA = "teacher_camera"
SLIDES = "slides"


def level(layers: dict[str, str]) -> str:
    """One word for what a classroom gets: full, low, slides_audio, audio_only."""
    camera = layers.get(CAMERA, OFF)
    slides = layers.get(SLIDES, OFF)
    if camera == OFF:
        return "audio_only" if slides == OFF else "slides_audio"
    return "low" if camera == "low" else "full"


@dataclass
class ClassroomDelivery:
    participant_id: str
    name: str
    connected_s: float = 0.0
    # Seconds per layer, per slot: {"teacher_camera": {"high": 120.5, "low": 30.0}}.
    layer_s: dict[str, dict[str, float]] = field(default_factory=dict)
    # Seconds per level (see `level`).
    level_s: dict[str, float] = field(default_factory=dict)
    downgrades: int = 0
    upgrades: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "participant_id": self.participant_id,
            "name": self.name,
            "connected_s": round(self.connected_s, 1),
            "layer_s": {
                slot: {layer: round(s, 1) for layer, s in by_layer.items()}
                for slot, by_layer in self.layer_s.items()
            },
            "level_s": {lvl: round(s, 1) for lvl, s in self.level_s.items()},
            "audio_only_s": round(self.level_s.get("audio_only", 0.0), 1),
            "downgrades": self.downgrades,
            "upgrades": self.upgrades,
        }


_RANK = {OFF: 0, "low": 1, "mid": 2, "high": 3}


def _score(layers: dict[str, str]) -> tuple[int, int]:
    return (_RANK.get(layers.get(SLIDES, OFF), 0), _RANK.get(layers.get(CAMERA, OFF), 0))


def delivery_report(
    events: Iterable[e.Event], until_at: float, classrooms: dict[str, str]
) -> list[ClassroomDelivery]:
    """Per classroom (id -> name), the time spent at each layer up to lesson time `until_at`."""
    out = {pid: ClassroomDelivery(pid, name) for pid, name in classrooms.items()}
    online_since: dict[str, float] = {}
    layers: dict[str, dict[str, str]] = defaultdict(dict)
    last_at: dict[str, float] = {}

    def account(pid: str, now: float) -> None:
        since = last_at.get(pid)
        if since is None or pid not in online_since:
            return
        span = max(0.0, min(now, until_at) - since)
        if span == 0:
            return
        report = out[pid]
        report.connected_s += span
        current = layers[pid]
        # Before the relay's first decision nothing is known of the layers.
        for slot in (CAMERA, SLIDES) if current else ():
            by_layer = report.layer_s.setdefault(slot, {})
            layer = current.get(slot, OFF)
            by_layer[layer] = by_layer.get(layer, 0.0) + span
        lvl = level(current) if current else "unknown"
        report.level_s[lvl] = report.level_s.get(lvl, 0.0) + span
        last_at[pid] = min(now, until_at)

    for event in events:
        if event.at > until_at:
            break
        match event:
            case e.ParticipantJoined(participant_id=pid) if pid in out:
                online_since[pid] = event.at
                last_at[pid] = event.at
                layers[pid] = {}
            case e.ParticipantLeft(participant_id=pid) if pid in out:
                account(pid, event.at)
                online_since.pop(pid, None)
            case e.DeliveryChanged(participant_id=pid, layers=new) if pid in out:
                account(pid, event.at)
                old = layers[pid]
                if old:
                    if _score(new) < _score(old):
                        out[pid].downgrades += 1
                    elif _score(new) > _score(old):
                        out[pid].upgrades += 1
                layers[pid] = dict(new)
            case e.LessonEnded():
                for pid in list(online_since):
                    account(pid, event.at)
                    online_since.pop(pid)
    for pid in list(online_since):
        account(pid, until_at)
    return list(out.values())
