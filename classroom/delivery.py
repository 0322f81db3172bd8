"""What each classroom received over a lesson, folded from the lesson's events.

The relay notes every change of what it sends a participant as a
`DeliveryChanged` event (which layer on which slot). Summing the time between
those events, while the participant was connected, tells a teacher honestly how
much of the lesson each classroom saw in full, in low quality, with slides only,
or heard only.

What the relay sent is not what the pupils saw: the classroom's browser reports
freezes and sound gaps as `ReceptionReported` events (classroom.reception). A
classroom whose browser never reported is unknown (None), not perfect.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from classroom import events as e
from classroom.reception import AudioCounters, Tally, VideoCounters

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
    return "low" if camera in ("low", "min") else "full"


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
    # What the classroom's browser counted, summed over its peer connections; None
    # when it never reported that kind.
    reported: bool = False
    video: VideoCounters | None = None
    audio: AudioCounters | None = None

    @property
    def audio_concealed_ratio(self) -> float | None:
        """The share of the teacher's sound the browser had to make up."""
        if self.audio is None or self.audio.total_samples_received == 0:
            return None
        return self.audio.concealed_samples / self.audio.total_samples_received

    def to_dict(self) -> dict[str, Any]:
        video, audio, ratio = self.video, self.audio, self.audio_concealed_ratio
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
            "reported": self.reported,
            "freezes": None if video is None else video.freeze_count,
            "freeze_s": None if video is None else round(video.total_freezes_duration, 1),
            "audio_concealed_ratio": None if ratio is None else round(ratio, 4),
            "audio_gap_events": None if audio is None else audio.concealment_events,
        }


_RANK = {OFF: 0, "min": 1, "low": 2, "mid": 3, "high": 4}


def score(layers: dict[str, str]) -> tuple[int, int]:
    """How much of the lesson a set of layers shows: slides first, then the camera."""
    return (_RANK.get(layers.get(SLIDES, OFF), 0), _RANK.get(layers.get(CAMERA, OFF), 0))


def delivery_report(
    events: Iterable[e.Event], until_at: float, classrooms: dict[str, str]
) -> list[ClassroomDelivery]:
    """Per classroom (id -> name), the time spent at each layer up to lesson time `until_at`."""
    out = {pid: ClassroomDelivery(pid, name) for pid, name in classrooms.items()}
    online_since: dict[str, float] = {}
    layers: dict[str, dict[str, str]] = defaultdict(dict)
    last_at: dict[str, float] = {}
    video: dict[str, Tally[VideoCounters]] = defaultdict(Tally)
    audio: dict[str, Tally[AudioCounters]] = defaultdict(Tally)

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
                    if score(new) < score(old):
                        out[pid].downgrades += 1
                    elif score(new) > score(old):
                        out[pid].upgrades += 1
                layers[pid] = dict(new)
            case e.ReceptionReported(participant_id=pid, media_session=session) if pid in out:
                out[pid].reported = True
                if event.video is not None:
                    video[pid].add(session, VideoCounters.from_dict(event.video))
                if event.audio is not None:
                    audio[pid].add(session, AudioCounters.from_dict(event.audio))
            case e.LessonEnded():
                for pid in list(online_since):
                    account(pid, event.at)
                    online_since.pop(pid)
    for pid in list(online_since):
        account(pid, until_at)
    for pid, report in out.items():
        report.video = video[pid].total() if pid in video else None
        report.audio = audio[pid].total() if pid in audio else None
    return list(out.values())
