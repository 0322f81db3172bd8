"""Which source feeds each outgoing slot of a lesson: pure functions of its session.

The teacher's camera, microphone and screen feed every participant's lesson
slots; the classroom on stage feeds everyone's stage slots but its own; the
mosaic of the classrooms not on stage feeds the teacher's. The latest teacher to
join is the one whose media the lesson carries; while a WHIP publisher (an
encoder such as OBS) publishes, its camera and microphone are the teacher's, and
the slides stay with the teacher's page.
"""

from __future__ import annotations

from typing import Any

from classroom.roles import Role
from media.pipeline.fanout import Publisher
from media.pipeline.ladder import Ladder
from media.recorder.recorder import Sources
from media.relay.sending import Source
from media.relay.session import Lesson, Participant
from media.slots import Slot

# Which incoming slot of whom feeds each outgoing slot.
FROM_TEACHER = {
    Slot.TEACHER_CAMERA: Slot.CAMERA,
    Slot.TEACHER_AUDIO: Slot.MICROPHONE,
    Slot.SLIDES: Slot.SCREEN,
}
FROM_STAGE = {Slot.STAGE_VIDEO: Slot.CAMERA, Slot.STAGE_AUDIO: Slot.MICROPHONE}

# Who feeds the teacher's slots (a WHIP publisher first, then the teacher's page),
# and the classroom on stage.
LessonSources = tuple[tuple[Participant, ...], Participant | None]


def lesson_sources(lesson: Lesson) -> LessonSources:
    """Who feeds the teacher's slots, first first, and the classroom on stage.

    Found once per lesson and passed to `source_for` for each slot: found per slot,
    they made every allocation tick cost the square of the classrooms."""
    teachers: list[Participant] = []
    for ingest in (True, False):
        mine = [
            p for p in lesson.participants.values() if p.role is Role.TEACHER and p.ingest is ingest
        ]
        if mine:
            teachers.append(max(mine, key=lambda p: p.joined_at))
    stage = lesson.participants.get(lesson.stage) if lesson.stage else None
    if stage is not None and stage.role is not Role.CLASSROOM:
        stage = None
    return tuple(teachers), stage


def _teachers(teachers: tuple[Participant, ...], slot: Slot) -> Ladder | None:
    """The ladder of the first of `teachers` that sends `slot`."""
    for teacher in teachers:
        ladder = teacher.ladders.get(slot)
        if ladder is not None:
            return ladder
    return None


def source_for(
    lesson: Lesson, sources: LessonSources, participant: Participant, slot: Slot
) -> Source | None:
    """The source that feeds `participant`'s outgoing `slot` now, if any."""
    if slot is Slot.CLASSROOMS:
        return lesson.mosaic
    if slot is Slot.SLIDES and lesson.screen_covered:
        # Drawn over by the deck on every page that receives it: not worth a bit.
        return None
    if lesson.upstream is not None:
        # An edge: the origin's layers feed every lesson slot; the stage's own
        # classroom does not get itself back.
        if slot in FROM_STAGE and participant.participant_id == lesson.stage:
            return None
        return lesson.upstream.get(slot)
    teachers, stage = sources
    if slot in FROM_TEACHER:
        return _teachers(teachers, FROM_TEACHER[slot])
    if slot in FROM_STAGE and stage is not None and stage is not participant:
        return stage.ladders.get(FROM_STAGE[slot])
    return None


def feed_source(sources: LessonSources, slot: Slot) -> Ladder | None:
    """What an edge's feed carries on `slot` (media.relay.feed): the teacher's sources,
    and the stage's whichever classroom is on it (the edge sorts out who gets it)."""
    teachers, stage = sources
    if slot in FROM_TEACHER:
        return _teachers(teachers, FROM_TEACHER[slot])
    if slot in FROM_STAGE and stage is not None:
        return stage.ladders.get(FROM_STAGE[slot])
    return None


def slot_sources(
    lesson: Lesson, sources: LessonSources, participant: Participant
) -> dict[Slot, Source | None]:
    """`source_for` each of the participant's outgoing slots."""
    return {
        slot: source_for(lesson, sources, participant, slot)
        for slot in participant.sending.outgoing
    }


def recorded_sources(lesson: Lesson) -> Sources:
    """The top layer of each source the recorder keeps: the teacher's camera,
    microphone and screen, and the stage classroom's camera and microphone."""
    teachers, stage = lesson_sources(lesson)

    def top(ladder: Ladder | None) -> Publisher | None:
        return None if ladder is None else ladder.layers[0]

    def staged(slot: Slot) -> Ladder | None:
        return None if stage is None else stage.ladders.get(slot)

    return Sources(
        camera=top(_teachers(teachers, Slot.CAMERA)),
        audio=top(_teachers(teachers, Slot.MICROPHONE)),
        slides=top(_teachers(teachers, Slot.SCREEN)),
        stage_video=top(staged(Slot.CAMERA)),
        stage_audio=top(staged(Slot.MICROPHONE)),
        stage_id=None if stage is None else stage.participant_id,
    )


def mosaic_frames(lesson: Lesson, now: float, live_within_s: float) -> dict[str, Any]:
    """What the teacher's mosaic shows: each classroom not on stage, in order of
    arrival, with its latest picture, or None while its camera sends nothing."""
    out: dict[str, Any] = {}
    rooms = sorted(lesson.participants.values(), key=lambda p: p.joined_at)
    for room in rooms:
        if room.role is not Role.CLASSROOM or room.participant_id == lesson.stage:
            continue
        camera = room.ladders.get(Slot.CAMERA)
        live = camera is not None and camera.live(now, within_s=live_within_s)
        out[room.participant_id] = camera.latest if live and camera else None
    return out
