"""The WebSocket wire protocol: one discriminated union per direction, on `type`.

docs/protocol.md is the description clients follow; these models are its code.
Unknown fields are ignored (a newer client may send more); missing or mistyped
ones are an `invalid_message` error.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from classroom.courseware import MAX_DECK_PAGES, MAX_INK_POINTS
from classroom.reception import MAX_COUNT, MAX_FPS, MAX_PIXELS, MAX_SECONDS, MAX_SESSION_ID

PROTOCOL_VERSION = 1
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _ClientMessage(_Message):
    # Echoed in the `answer`, `pong` or `error` this message causes, so that a client
    # can tell which of its messages was refused.
    ref: str | None = Field(default=None, max_length=64)


# -- client -> server -----------------------------------------------------------------


class JoinMsg(_ClientMessage):
    type: Literal["join"]
    token: str = Field(max_length=4096)
    protocol: int = PROTOCOL_VERSION
    since: int | None = Field(default=None, ge=0)
    # Optional: when given, the token must be for this lesson.
    lesson_id: str | None = None


class RaiseHandMsg(_ClientMessage):
    type: Literal["raise_hand"]
    student: str = Field(max_length=200)


class LowerHandMsg(_ClientMessage):
    type: Literal["lower_hand"]


class DismissHandMsg(_ClientMessage):
    type: Literal["dismiss_hand"]
    classroom_id: str = Field(max_length=200)


class GrantFloorMsg(_ClientMessage):
    type: Literal["grant_floor"]
    classroom_id: str = Field(max_length=200)


class RevokeFloorMsg(_ClientMessage):
    type: Literal["revoke_floor"]


class ChatMsg(_ClientMessage):
    type: Literal["chat"]
    text: str = Field(max_length=2000)


class EndLessonMsg(_ClientMessage):
    type: Literal["end_lesson"]


class OfferMsg(_ClientMessage):
    type: Literal["offer"]
    sdp: str = Field(min_length=1)


class PingMsg(_ClientMessage):
    type: Literal["ping"]


class PauseRecordingMsg(_ClientMessage):
    type: Literal["pause_recording"]


class ResumeRecordingMsg(_ClientMessage):
    type: Literal["resume_recording"]


# Counters are whole numbers as browsers give them (strict: no "5", no 5.0, no true).
_Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]
_Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]


class VideoReception(_Message):
    """webrtc-stats inbound-rtp video, summed over teacher_camera and slides."""

    freeze_count: _Count
    total_freezes_duration: _Seconds
    frames_decoded: _Count


class AudioReception(_Message):
    """webrtc-stats inbound-rtp audio of teacher_audio."""

    concealed_samples: _Count
    total_samples_received: _Count
    concealment_events: _Count


_Pixels = Annotated[int, Field(ge=0, le=MAX_PIXELS, strict=True)]


class PictureNow(_Message):
    """webrtc-stats inbound-rtp of one picture now, with the page's verdict on it."""

    state: Literal["waiting", "live", "frozen", "paused"]
    width: _Pixels
    height: _Pixels
    fps: Annotated[float, Field(ge=0, le=MAX_FPS, allow_inf_nan=False)]


class ReceptionMsg(_ClientMessage):
    type: Literal["reception"]
    # Random per peer connection: the browser's counters start again with each one.
    media_session: str = Field(pattern=rf"^[A-Za-z0-9_-]{{1,{MAX_SESSION_ID}}}$")
    video: VideoReception | None = None
    audio: AudioReception | None = None
    pictures: dict[Literal["teacher_camera", "slides"], PictureNow] | None = None

    @model_validator(mode="after")
    def _says_something(self) -> ReceptionMsg:
        if self.video is None and self.audio is None:
            raise ValueError("give video or audio counters")
        return self


# -- courseware: the teacher turns the deck's pages, points and draws; a classroom says
# how much of the deck its browser holds (classroom.courseware checks the values).

_Fraction = Annotated[float, Field(allow_inf_nan=False)]


class TurnPageMsg(_ClientMessage):
    type: Literal["turn_page"]
    page: int = Field(ge=0, le=MAX_DECK_PAGES, strict=True)


class PointMsg(_ClientMessage):
    type: Literal["point"]
    # Fractions of the page from its top left; both null: the pointer is hidden.
    x: _Fraction | None = None
    y: _Fraction | None = None


class InkMsg(_ClientMessage):
    type: Literal["ink"]
    points: list[tuple[_Fraction, _Fraction]] = Field(min_length=1, max_length=MAX_INK_POINTS)
    color: str = Field(default="red", max_length=16)


class ClearInkMsg(_ClientMessage):
    type: Literal["clear_ink"]


class CoursewareMsg(_ClientMessage):
    type: Literal["courseware"]
    deck_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    ready: int = Field(ge=0, le=MAX_DECK_PAGES, strict=True)
    total: int = Field(ge=1, le=MAX_DECK_PAGES, strict=True)


ClientMessage = Annotated[
    JoinMsg
    | RaiseHandMsg
    | LowerHandMsg
    | DismissHandMsg
    | GrantFloorMsg
    | RevokeFloorMsg
    | ChatMsg
    | EndLessonMsg
    | OfferMsg
    | PingMsg
    | PauseRecordingMsg
    | ResumeRecordingMsg
    | ReceptionMsg
    | TurnPageMsg
    | PointMsg
    | InkMsg
    | ClearInkMsg
    | CoursewareMsg,
    Field(discriminator="type"),
]

_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
CLIENT_TYPES = frozenset(
    m.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for m in (
        JoinMsg,
        RaiseHandMsg,
        LowerHandMsg,
        DismissHandMsg,
        GrantFloorMsg,
        RevokeFloorMsg,
        ChatMsg,
        EndLessonMsg,
        OfferMsg,
        PingMsg,
        PauseRecordingMsg,
        ResumeRecordingMsg,
        ReceptionMsg,
        TurnPageMsg,
        PointMsg,
        InkMsg,
        ClearInkMsg,
        CoursewareMsg,
    )
)


# -- server -> client -----------------------------------------------------------------


class You(_Message):
    id: str
    role: str
    name: str


class WelcomeMsg(_Message):
    type: Literal["welcome"] = "welcome"
    protocol: int = PROTOCOL_VERSION
    you: You
    lesson: dict[str, Any]
    # Set when the events missed since `since` were more than a rejoin is sent: the
    # seq of the first one that follows (older ones are in the snapshot only).
    missed_from: int | None = None
    # STUN and TURN servers for the participant's peer connection (signaling.ice);
    # absent when the server has none to give.
    ice_servers: list[dict[str, Any]] | None = None


class EventMsg(_Message):
    type: Literal["event"] = "event"
    event: dict[str, Any]


class AnswerMsg(_Message):
    type: Literal["answer"] = "answer"
    sdp: str
    ref: str | None = None


class LinkMsg(_Message):
    type: Literal["link"] = "link"
    participant_id: str
    estimate_kbps: float
    sent_kbps: float
    loss: float
    rtt_ms: float | None
    layers: dict[str, str]
    # Only in the teacher's own report: the classrooms mosaic's tiles, row by row
    # (a participant id, or null for an empty tile), and the tiles per row.
    previews: list[str | None] | None = None
    preview_columns: int | None = None
    # The relay's own load: "ok", "strained" or "overloaded" (it sheds its own work,
    # the mosaic's rate first, then the top layers, before a classroom's).
    server_load: str = "ok"


class PongMsg(_Message):
    type: Literal["pong"] = "pong"
    ref: str | None = None


class ErrorMsg(_Message):
    type: Literal["error"] = "error"
    code: str
    message: str
    ref: str | None = None


class MediaMovedMsg(_Message):
    """The lesson's media now runs on another node (the one that held it died): the
    client's peer connection leads nowhere, and it sends a new offer at once."""

    type: Literal["media_moved"] = "media_moved"


ServerMessage = Annotated[
    WelcomeMsg | EventMsg | AnswerMsg | LinkMsg | PongMsg | ErrorMsg | MediaMovedMsg,
    Field(discriminator="type"),
]


def encode(
    message: WelcomeMsg | EventMsg | AnswerMsg | LinkMsg | PongMsg | ErrorMsg | MediaMovedMsg,
) -> str:
    return message.model_dump_json()


class ProtocolError(Exception):
    """A client message that cannot be read. `code` goes on the wire."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


def decode(text: str | bytes, *, max_bytes: int, max_depth: int) -> ClientMessage:
    """Parse one client message, or raise ProtocolError with a code a client can act on.

    The limits are the server's settings (ws_max_message_bytes, ws_max_json_depth). The
    depth is checked before the JSON parser and pydantic see the message: a 5,000-deep
    one costs a few string scans, not a recursion per level."""
    if isinstance(text, bytes):
        raise ProtocolError("bad_json", "messages are JSON text frames, not binary")
    if len(text) > max_bytes or len(text.encode("utf-8")) > max_bytes:
        raise ProtocolError("too_large", f"a message may be at most {max_bytes} bytes")
    if too_deep(text, max_depth):
        raise ProtocolError("bad_json", f"a message may nest at most {max_depth} levels")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_json", "the message is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_json", 'a message is a JSON object with a "type"')
    raw_ref = data.get("ref")
    ref = raw_ref if isinstance(raw_ref, str) and len(raw_ref) <= 64 else None
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}"[:200], ref)
    try:
        return _client_adapter.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError("invalid_message", _describe(kind, exc), ref) from None


def too_deep(text: str, limit: int) -> bool:
    """Whether `text` nests objects and arrays deeper than `limit` outside its strings
    (or is unbalanced, so no JSON at all). Every step is a C loop over the text, at most
    `limit` rounds of removing the innermost pairs: no Python code per character."""
    if text.count("[") + text.count("{") <= limit:
        return False  # too few brackets to nest that deep, whatever their order
    # Escaped backslashes, then escaped quotes, go first (JSON reads escapes left to
    # right, as str.replace does); the quotes left split strings from the rest.
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    outside = "".join(unescaped.split('"')[0::2])
    brackets = outside.encode("utf-8", "replace").translate(None, _NOT_BRACKETS)
    brackets = brackets.replace(b"{", b"[").replace(b"}", b"]")
    run = b"[" * (limit + 1)
    for _ in range(limit):
        if not brackets:
            return False
        if run in brackets:
            return True  # that many openers in a row: too deep, without more rounds
        brackets = brackets.replace(b"[]", b"")
    return bool(brackets)


def _describe(kind: str, exc: ValidationError) -> str:
    """A short readable reason, without echoing the client's input back."""
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"][1:]) or "message"
        parts.append(f"{where}: {err['msg']}")
    return f"{kind}: " + "; ".join(parts)
