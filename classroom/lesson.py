"""A lesson: its participants, lifecycle, hand queue, stage and log.

`Lesson.handle()` decides: it checks a command against the permission table and
the current state and returns the events it causes, or raises a DomainError and
changes nothing. `Lesson.apply()` folds one event into the state. A lesson read
back from storage is `Lesson.replay(events)`: the same fold; `Lesson.resume(events)` is
that fold as a restarted server sees it, with nobody connected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from classroom import commands as c
from classroom import courseware
from classroom import events as e
from classroom.errors import InvalidCommand, InvalidTransition, NotAllowed
from classroom.reception import MAX_SESSION_ID, PICTURE_SLOTS, REPORT_INTERVAL_S
from classroom.roles import ADMIN, SYSTEM, Role, may

MAX_STUDENT_NAME = 40
MAX_CHAT_TEXT = 500
MAX_TITLE = 200


class LessonState(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


class RecordingState(StrEnum):
    OFF = "off"
    RECORDING = "recording"
    PAUSED = "paused"


@dataclass
class Participant:
    participant_id: str
    role: Role
    name: str
    online: bool = False


@dataclass(frozen=True)
class Hand:
    classroom_id: str
    student: str
    raised_at: float


@dataclass(frozen=True)
class StageHolder:
    classroom_id: str
    student: str | None
    since: float


@dataclass
class Lesson:
    lesson_id: str
    title: str
    origin: float
    participants: dict[str, Participant]
    state: LessonState = LessonState.SCHEDULED
    hands: list[Hand] = field(default_factory=list)
    stage: StageHolder | None = None
    delivery: dict[str, dict[str, str]] = field(default_factory=dict)
    recording_id: str | None = None
    recording: RecordingState = RecordingState.OFF
    # Lesson time of each classroom's last kept reception report.
    reported_at: dict[str, float] = field(default_factory=dict)
    # The deck attached (classroom.courseware) and how much of it each classroom holds.
    deck: courseware.DeckState | None = None
    courseware: dict[str, courseware.Readiness] = field(default_factory=dict)
    log: list[e.Event] = field(default_factory=list)

    # -- creation and replay ---------------------------------------------------------

    @staticmethod
    def schedule(
        lesson_id: str,
        title: str,
        participants: Iterable[e.ParticipantSpec],
        now: float,
    ) -> Lesson:
        title = title.strip()
        if not title or len(title) > MAX_TITLE:
            raise InvalidCommand(f"a lesson needs a title of 1 to {MAX_TITLE} characters")
        specs = tuple(participants)
        ids = [p.participant_id for p in specs]
        if len(set(ids)) != len(ids):
            raise InvalidCommand("participant ids must be unique")
        if sum(p.role is Role.TEACHER for p in specs) != 1:
            raise InvalidCommand("a lesson has exactly one teacher")
        names = [p.name.strip() for p in specs if p.role is Role.CLASSROOM]
        if any(not n for n in names):
            raise InvalidCommand("every classroom needs a name")
        if len(set(names)) != len(names):
            raise InvalidCommand("two classrooms have the same name")
        event = e.LessonScheduled(
            seq=1, at=0.0, lesson_id=lesson_id, title=title, origin=now, participants=specs
        )
        return Lesson.replay([event])

    @staticmethod
    def replay(events: Iterable[e.Event]) -> Lesson:
        it = iter(events)
        first = next(it, None)
        if not isinstance(first, e.LessonScheduled):
            raise ValueError("a lesson's log starts with lesson_scheduled")
        lesson = Lesson(
            lesson_id=first.lesson_id,
            title=first.title,
            origin=first.origin,
            participants={
                p.participant_id: Participant(p.participant_id, p.role, p.name)
                for p in first.participants
            },
            log=[first],
        )
        for event in it:
            lesson.apply(event)
        return lesson

    @staticmethod
    def resume(events: Iterable[e.Event]) -> Lesson:
        """The lesson as a server that (re)starts finds it: the fold, with nobody connected.

        Presence (`online`) and what the relay sends each participant (`delivery`)
        belong to connections, which do not outlive the server; the stage, the hands
        and the recording do. The log gets no ParticipantLeft for the restart (a Leave
        would take the floor from the classroom on stage): it shows the restart only by
        the next participant_joined.
        """
        lesson = Lesson.replay(events)
        return dataclasses.replace(
            lesson,
            participants={
                pid: dataclasses.replace(p, online=False) for pid, p in lesson.participants.items()
            },
            delivery={},
        )

    # -- queries -------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """Sequence number of the last event."""
        return self.log[-1].seq

    @property
    def teacher(self) -> Participant:
        return next(p for p in self.participants.values() if p.role is Role.TEACHER)

    def classrooms(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.role is Role.CLASSROOM]

    def hand_of(self, classroom_id: str) -> Hand | None:
        return next((h for h in self.hands if h.classroom_id == classroom_id), None)

    def latest_since(
        self, seq: int, limit: int, keep: Callable[[e.Event], bool] = lambda _: True
    ) -> tuple[list[e.Event], bool]:
        """At most `limit` of the newest events after `seq` that `keep` accepts, in
        order, and whether older ones were left out. Read from the end of the log:
        the cost is the tail's, not the lesson's length."""
        kept: list[e.Event] = []
        for event in reversed(self.log):
            if event.seq <= seq:
                return kept[::-1], False
            if keep(event):
                if len(kept) == limit:
                    return kept[::-1], True
                kept.append(event)
        return kept[::-1], False

    def snapshot(self) -> dict[str, Any]:
        """The lesson as a client first sees it; JSON-ready."""
        return {
            "id": self.lesson_id,
            "title": self.title,
            "state": str(self.state),
            "seq": self.seq,
            "origin": self.origin,
            "participants": [
                {
                    "id": p.participant_id,
                    "role": str(p.role),
                    "name": p.name,
                    "online": p.online,
                }
                for p in self.participants.values()
            ],
            "hands": [
                {"classroom_id": h.classroom_id, "student": h.student, "raised_at": h.raised_at}
                for h in self.hands
            ],
            "stage": None
            if self.stage is None
            else {
                "classroom_id": self.stage.classroom_id,
                "student": self.stage.student,
                "since": self.stage.since,
            },
            "delivery": {pid: dict(layers) for pid, layers in self.delivery.items()},
            "recording": None
            if self.recording_id is None
            else {"id": self.recording_id, "state": str(self.recording)},
            "deck": None if self.deck is None else self.deck.to_dict(),
            "courseware": {pid: r.to_dict() for pid, r in self.courseware.items()},
        }

    # -- deciding ------------------------------------------------------------------

    def handle(self, command: c.Command, by: str, now: float) -> list[e.Event]:
        """Decide what `command` from actor `by` causes, apply it and return the events.

        `by` is a participant id, ADMIN or SYSTEM. Raises DomainError (and changes
        nothing) when the command is refused.
        """
        role = self._role_of(by)
        name = type(command).__name__
        if not may(role, name):
            raise NotAllowed(f"a {role} may not {_VERBS.get(name, name)}")
        if self.state is LessonState.ENDED:
            raise InvalidTransition("the lesson has ended")
        at = round(max(0.0, now - self.origin), 3)
        out: list[e.Event] = []
        for seq, decided in enumerate(self._decide(command, by, at), start=self.seq + 1):
            # The one place where events are numbered and stamped with lesson time.
            event = dataclasses.replace(decided, seq=seq, at=at)
            self.apply(event)
            out.append(event)
        return out

    def _role_of(self, actor: str) -> str:
        if actor in (ADMIN, SYSTEM):
            return actor
        participant = self.participants.get(actor)
        if participant is None:
            raise NotAllowed("you are not a participant of this lesson")
        return str(participant.role)

    def _decide(self, command: c.Command, by: str, at: float) -> list[e.Event]:
        """The events `command` causes, not yet stamped (`handle` numbers them)."""
        match command:
            case c.Join():
                return self._join(by)
            case c.Leave():
                return self._leave(by)
            case c.RaiseHand(student=student):
                return self._raise(by, student)
            case c.LowerHand():
                hand = self.hand_of(by)
                if hand is None:
                    raise InvalidTransition("your hand is not raised")
                return [e.HandLowered(classroom_id=by, student=hand.student)]
            case c.DismissHand(classroom_id=cid):
                hand = self.hand_of(cid)
                if hand is None:
                    raise InvalidTransition(f"{self._name(cid)} has no hand raised")
                return [e.HandDismissed(classroom_id=cid, student=hand.student)]
            case c.GrantFloor(classroom_id=cid):
                return self._grant(cid)
            case c.RevokeFloor():
                if self.stage is None:
                    raise InvalidTransition("no classroom has the floor")
                return [e.FloorRevoked(classroom_id=self.stage.classroom_id, reason="revoked")]
            case c.PostChat(text=text):
                text = text.strip()
                if not text or len(text) > MAX_CHAT_TEXT:
                    raise InvalidCommand(f"a chat message has 1 to {MAX_CHAT_TEXT} characters")
                who = self.participants[by]
                return [e.ChatPosted(participant_id=by, name=who.name, text=text)]
            case c.StartRecording(recording_id=rid):
                if self.state is not LessonState.LIVE:
                    raise InvalidTransition("a recording starts once the lesson is live")
                if rid == self.recording_id:
                    raise InvalidTransition("this recording has started already")
                return [e.RecordingStarted(recording_id=rid)]
            case c.PauseRecording():
                current = self.recording_id
                if self.recording is not RecordingState.RECORDING or current is None:
                    raise InvalidTransition("the lesson is not being recorded")
                return [e.RecordingPaused(recording_id=current)]
            case c.ResumeRecording():
                current = self.recording_id
                if self.recording is not RecordingState.PAUSED or current is None:
                    raise InvalidTransition("the recording is not paused")
                return [e.RecordingResumed(recording_id=current)]
            case c.EndLesson():
                events: list[e.Event] = []
                # A recording is never on without its id (RecordingStarted sets both).
                if self.recording is not RecordingState.OFF and self.recording_id is not None:
                    events.append(
                        e.RecordingStopped(recording_id=self.recording_id, reason="ended")
                    )
                if self.stage is not None:
                    events.append(
                        e.FloorRevoked(classroom_id=self.stage.classroom_id, reason="ended")
                    )
                events.append(e.LessonEnded(by=by))
                return events
            case c.NoteDelivery(participant_id=pid, layers=layers, estimate_kbps=kbps):
                if pid not in self.participants:
                    raise InvalidCommand("no such participant")
                return [
                    e.DeliveryChanged(participant_id=pid, layers=dict(layers), estimate_kbps=kbps)
                ]
            case c.ReportReception() as report:
                return self._reception(by, report, at)
            case c.AttachDeck() as attach:
                return courseware.attach(self.deck, attach)
            case c.TurnPage(page=page):
                return courseware.turn(self.deck, page)
            case c.PointAt(x=x, y=y):
                return courseware.point(self.deck, x, y)
            case c.DrawInk() as ink:
                return courseware.draw(self.deck, ink)
            case c.ClearInk():
                return courseware.clear(self.deck)
            case c.ReportCourseware() as ready:
                return courseware.report(self.deck, self.courseware.get(by), by, ready)
        raise InvalidCommand(f"unknown command {type(command).__name__}")

    def _name(self, participant_id: str) -> str:
        p = self.participants.get(participant_id)
        return p.name if p else participant_id

    def _join(self, by: str) -> list[e.Event]:
        who = self.participants[by]
        if who.online:
            raise InvalidTransition(f"{who.name} is already connected")
        events: list[e.Event] = []
        # The lesson goes live when its teacher first connects.
        if who.role is Role.TEACHER and self.state is LessonState.SCHEDULED:
            events.append(e.LessonStarted())
        events.append(e.ParticipantJoined(participant_id=by, role=str(who.role), name=who.name))
        return events

    def _leave(self, by: str) -> list[e.Event]:
        who = self.participants[by]
        if not who.online:
            raise InvalidTransition(f"{who.name} is not connected")
        events: list[e.Event] = []
        # A classroom that leaves cannot be heard: it loses the floor. Its raised
        # hand stays, so that a reconnect finds it still raised.
        if self.stage is not None and self.stage.classroom_id == by:
            events.append(e.FloorRevoked(classroom_id=by, reason="left"))
        events.append(e.ParticipantLeft(participant_id=by, role=str(who.role), name=who.name))
        return events

    def _raise(self, by: str, student: str) -> list[e.Event]:
        student = " ".join(student.split())
        if not student or len(student) > MAX_STUDENT_NAME:
            raise InvalidCommand(f"a student's name has 1 to {MAX_STUDENT_NAME} characters")
        hand = self.hand_of(by)
        if hand is not None:
            raise InvalidTransition(f"your hand is already raised for {hand.student}")
        if self.stage is not None and self.stage.classroom_id == by:
            raise InvalidTransition("your classroom already has the floor")
        return [e.HandRaised(classroom_id=by, student=student)]

    def _reception(self, by: str, report: c.ReportReception, at: float) -> list[e.Event]:
        session = report.media_session
        if not 0 < len(session) <= MAX_SESSION_ID:
            raise InvalidCommand(f"a media session id has 1 to {MAX_SESSION_ID} characters")
        if report.video is None and report.audio is None:
            raise InvalidCommand("a reception report needs video or audio counters")
        for counters in (report.video, report.audio):
            if counters is not None:
                counters.check()
        for slot, picture in report.pictures:
            if slot not in PICTURE_SLOTS:
                raise InvalidCommand(f"a reception report tells of {', '.join(PICTURE_SLOTS)}")
            picture.check()
        last = self.reported_at.get(by)
        if last is not None and at - last < REPORT_INTERVAL_S:
            # Too soon: dropped without a word. The counters are cumulative, so the
            # next report carries everything this one said.
            return []
        return [
            e.ReceptionReported(
                participant_id=by,
                media_session=session,
                video=None if report.video is None else report.video.to_dict(),
                audio=None if report.audio is None else report.audio.to_dict(),
                pictures={slot: p.to_dict() for slot, p in report.pictures} or None,
            )
        ]

    def _grant(self, cid: str) -> list[e.Event]:
        target = self.participants.get(cid)
        if target is None or target.role is not Role.CLASSROOM:
            raise InvalidCommand("there is no such classroom in this lesson")
        if not target.online:
            raise InvalidTransition(f"{target.name} is not connected")
        if self.stage is not None and self.stage.classroom_id == cid:
            raise InvalidTransition(f"{target.name} already has the floor")
        events: list[e.Event] = []
        if self.stage is not None:
            events.append(e.FloorRevoked(classroom_id=self.stage.classroom_id, reason="replaced"))
        hand = self.hand_of(cid)
        events.append(e.FloorGranted(classroom_id=cid, student=hand.student if hand else None))
        return events

    # -- folding -------------------------------------------------------------------

    def apply(self, event: e.Event) -> None:
        """Fold one event into the state. Events are facts: no checks here."""
        match event:
            case e.LessonStarted():
                self.state = LessonState.LIVE
            case e.LessonEnded():
                self.state = LessonState.ENDED
                self.hands.clear()
                self.stage = None
                for p in self.participants.values():
                    p.online = False
            case e.ParticipantJoined(participant_id=pid):
                self.participants[pid].online = True
            case e.ParticipantLeft(participant_id=pid):
                self.participants[pid].online = False
                self.delivery.pop(pid, None)
            case e.HandRaised(classroom_id=cid, student=student):
                self.hands.append(Hand(cid, student, event.at))
            case e.HandLowered(classroom_id=cid) | e.HandDismissed(classroom_id=cid):
                self.hands = [h for h in self.hands if h.classroom_id != cid]
            case e.FloorGranted(classroom_id=cid, student=student):
                self.hands = [h for h in self.hands if h.classroom_id != cid]
                self.stage = StageHolder(cid, student, event.at)
            case e.FloorRevoked():
                self.stage = None
            case e.DeliveryChanged(participant_id=pid, layers=layers):
                self.delivery[pid] = dict(layers)
            case e.RecordingStarted(recording_id=rid):
                # A new recording after a restart keeps a pause the teacher asked for.
                if self.recording is not RecordingState.PAUSED:
                    self.recording = RecordingState.RECORDING
                self.recording_id = rid
            case e.RecordingPaused():
                self.recording = RecordingState.PAUSED
            case e.RecordingResumed():
                self.recording = RecordingState.RECORDING
            case e.RecordingStopped():
                self.recording = RecordingState.OFF
            case e.ReceptionReported(participant_id=pid):
                self.reported_at[pid] = event.at
            case e.DeckAttached():
                # A new deck: what the classrooms held was the old one's.
                self.deck = courseware.fold(self.deck, event)
                self.courseware.clear()
            case e.PageTurned() | e.PointerMoved() | e.InkDrawn() | e.InkCleared():
                self.deck = courseware.fold(self.deck, event)
            case e.CoursewareReported(participant_id=pid):
                self.courseware[pid] = courseware.Readiness(event.deck_id, event.ready, event.total)
        self.log.append(event)


_VERBS = {
    "RaiseHand": "raise a hand",
    "LowerHand": "lower a hand",
    "DismissHand": "dismiss a hand",
    "GrantFloor": "grant the floor",
    "RevokeFloor": "revoke the floor",
    "PostChat": "chat",
    "EndLesson": "end the lesson",
    "Join": "join",
    "Leave": "leave",
    "NoteDelivery": "report delivery",
    "StartRecording": "start the recording",
    "PauseRecording": "pause the recording",
    "ResumeRecording": "resume the recording",
    "ReportReception": "report what a classroom's browser received",
    "AttachDeck": "attach a deck",
    "TurnPage": "turn the deck's pages",
    "PointAt": "point at the deck",
    "DrawInk": "draw on the deck",
    "ClearInk": "clear the ink",
    "ReportCourseware": "report the courseware a classroom holds",
}
