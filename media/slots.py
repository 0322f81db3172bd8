"""The fixed media slots of each role's peer connection.

A participant's offer carries one m-line per slot, in exactly this order
(docs/protocol.md). Slots never change during a lesson: when the stage changes,
the relay swaps the source behind the stage slots, so no renegotiation happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from classroom.roles import Role


class Slot(StrEnum):
    # What a participant sends to the relay.
    CAMERA = "camera"
    MICROPHONE = "microphone"
    SCREEN = "screen"
    # What the relay sends to a participant.
    TEACHER_CAMERA = "teacher_camera"
    TEACHER_AUDIO = "teacher_audio"
    SLIDES = "slides"
    STAGE_VIDEO = "stage_video"
    STAGE_AUDIO = "stage_audio"
    # The teacher's view of the classrooms not on stage: one mosaic (media.pipeline.mosaic).
    CLASSROOMS = "classrooms"


Kind = Literal["audio", "video"]
Direction = Literal["sendonly", "recvonly"]


@dataclass(frozen=True)
class SlotSpec:
    slot: Slot
    kind: Kind
    # Direction as the participant (the offerer) sees it.
    direction: Direction


_TEACHER_IN = (
    SlotSpec(Slot.CAMERA, "video", "sendonly"),
    SlotSpec(Slot.MICROPHONE, "audio", "sendonly"),
    SlotSpec(Slot.SCREEN, "video", "sendonly"),
)
_LESSON_OUT = (
    SlotSpec(Slot.TEACHER_CAMERA, "video", "recvonly"),
    SlotSpec(Slot.TEACHER_AUDIO, "audio", "recvonly"),
    SlotSpec(Slot.SLIDES, "video", "recvonly"),
)
_STAGE_OUT = (
    SlotSpec(Slot.STAGE_VIDEO, "video", "recvonly"),
    SlotSpec(Slot.STAGE_AUDIO, "audio", "recvonly"),
)

SLOTS: dict[Role, tuple[SlotSpec, ...]] = {
    Role.TEACHER: (*_TEACHER_IN, *_STAGE_OUT, SlotSpec(Slot.CLASSROOMS, "video", "recvonly")),
    Role.CLASSROOM: (
        SlotSpec(Slot.CAMERA, "video", "sendonly"),
        SlotSpec(Slot.MICROPHONE, "audio", "sendonly"),
        *_LESSON_OUT,
        *_STAGE_OUT,
    ),
    Role.OBSERVER: _LESSON_OUT + _STAGE_OUT,
}
