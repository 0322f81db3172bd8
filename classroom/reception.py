"""What a classroom's browser received, as the browser itself counted it.

The relay knows what it *sent* (the delivery report's layers); only the browser
knows whether the pictures froze and the sound had gaps. A classroom page reads
its peer connection's statistics (W3C webrtc-stats, RTCInboundRtpStreamStats,
https://www.w3.org/TR/webrtc-stats/#inboundrtpstats-dict*) and reports them as
cumulative counters, per peer connection (`media_session`): each new peer
connection, after a reconnect, counts from zero again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

from classroom.errors import InvalidCommand

# Bounds of what a report may say. A day-long peer connection at 48 kHz is 4.1e9 audio
# samples and a few million frames; anything past these is no browser's count.
MAX_COUNT = 10**12
MAX_SECONDS = 10.0**6
MAX_SESSION_ID = 64
# What a report may say of a picture decoded now (`Picture`): the teacher's pictures
# a classroom receives, the states a page tells apart (web_client/js/status.js), and
# bounds no real picture reaches.
PICTURE_SLOTS = ("teacher_camera", "slides")
PICTURE_STATES = ("waiting", "live", "frozen", "paused")
MAX_PIXELS = 16384
MAX_FPS = 240.0
# The server keeps at most one report per classroom per this many seconds. The page
# sends one every 10 s; the leeway is for network jitter, so that a report sent 10 s
# after the last is not dropped for arriving 9.5 s after it.
REPORT_INTERVAL_S = 8.0


@dataclass(frozen=True)
class _Counters:
    def __add__(self, other: Self) -> Self:
        return type(self)(
            **{
                f.name: getattr(self, f.name) + getattr(other, f.name)
                for f in dataclasses.fields(self)
            }
        )

    def went_back(self, before: Self) -> bool:
        """A counter is lower than `before`: the browser started counting again."""
        return any(
            getattr(self, f.name) < getattr(before, f.name) for f in dataclasses.fields(self)
        )

    def check(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            limit = MAX_SECONDS if f.type in ("float", float) else MAX_COUNT
            if not 0 <= value <= limit:
                raise InvalidCommand(f"{f.name} must be between 0 and {limit:g}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class VideoCounters(_Counters):
    """The lesson's pictures (the teacher's camera and the slides, summed):
    `freezeCount`, `totalFreezesDuration` (seconds), `framesDecoded`."""

    freeze_count: int = 0
    total_freezes_duration: float = 0.0
    frames_decoded: int = 0


@dataclass(frozen=True)
class AudioCounters(_Counters):
    """The teacher's sound: `concealedSamples` (samples the browser had to invent
    because packets were missing), `totalSamplesReceived`, `concealmentEvents`
    (runs of concealed samples: each one a gap a pupil could hear)."""

    concealed_samples: int = 0
    total_samples_received: int = 0
    concealment_events: int = 0

    def check(self) -> None:
        super().check()
        # webrtc-stats: totalSamplesReceived includes the concealed samples.
        if self.concealed_samples > self.total_samples_received:
            raise InvalidCommand("concealed_samples cannot exceed total_samples_received")


@dataclass(frozen=True)
class Picture:
    """One of the teacher's pictures as the classroom's browser decodes it now:
    `state` (waiting, live, frozen: no new frame for a while, paused: the relay
    switched it off), `frameWidth` x `frameHeight` and `framesPerSecond` (webrtc-stats
    inbound-rtp). Not a counter: the latest report says how it is; nothing adds up."""

    state: str
    width: int
    height: int
    fps: float

    def check(self) -> None:
        if self.state not in PICTURE_STATES:
            raise InvalidCommand(f"a picture's state is one of {', '.join(PICTURE_STATES)}")
        for name in ("width", "height"):
            if not 0 <= getattr(self, name) <= MAX_PIXELS:
                raise InvalidCommand(f"{name} must be between 0 and {MAX_PIXELS}")
        if not 0 <= self.fps <= MAX_FPS:
            raise InvalidCommand(f"fps must be between 0 and {MAX_FPS:g}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


C = TypeVar("C", bound=_Counters)


class Tally(Generic[C]):
    """One classroom's counters of one kind, over all its media sessions.

    Each session's last report holds everything that session counted; the sessions
    add up. A report lower than the one before in the same session (a stream the
    browser re-created, a buggy client) means counting started again: what was
    reached before is kept, and the new counts add to it, so nothing counted is lost.
    """

    def __init__(self) -> None:
        self._banked: dict[str, C] = {}
        self._last: dict[str, C] = {}

    def add(self, session: str, counters: C) -> None:
        last = self._last.get(session)
        if last is not None and counters.went_back(last):
            banked = self._banked.get(session)
            self._banked[session] = last if banked is None else banked + last
        self._last[session] = counters

    def total(self) -> C | None:
        """The sum, or None when no session reported this kind."""
        total: C | None = None
        for part in (*self._banked.values(), *self._last.values()):
            total = part if total is None else total + part
        return total
