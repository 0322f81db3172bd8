"""The edge link's messages, and the request/answer channel both ends speak over it.

One WebSocket from the edge to the origin (`/edge/v1`) carries both ways: the origin
asks the edge to answer a classroom's offer, to close a classroom's connection, to
move the stage or end a lesson; the edge asks the origin for a lesson's layers
(`pull`, an SDP offer of media.relay.feed's m-lines), says which of them its
classrooms follow (`want`), gives it back (`release`), sends each of its
classrooms' camera and microphone up (`uplink`, media.relay.uplink), and sends its
classrooms' link reports. A request carries an `id` its answer
repeats. docs/protocol.md, "Edge relays", is the description; this is its code.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from media.gateway import LinkReport

log = logging.getLogger(__name__)

VERSION = 1
PATH = f"/edge/v{VERSION}"
# How long a request waits for its answer (ICE gathering included).
ASK_TIMEOUT_S = 20.0
# WebSocket close codes: a token refused, a version not spoken.
CLOSE_BAD_TOKEN = 4401
CLOSE_BAD_VERSION = 4400
CLOSE_NO_EDGES = 4403


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hello(_Msg):
    """The edge's first message."""

    type: Literal["hello"]
    version: int
    token: str


class Welcome(_Msg):
    type: Literal["welcome"]
    edge: str


class Negotiate(_Msg):
    """Origin -> edge: answer this classroom's offer."""

    type: Literal["negotiate"]
    id: int
    lesson_id: str
    participant_id: str
    role: str
    sdp: str


class Disconnect(_Msg):
    type: Literal["disconnect"]
    id: int
    lesson_id: str
    participant_id: str


class SetStage(_Msg):
    type: Literal["set_stage"]
    id: int
    lesson_id: str
    classroom_id: str | None


class CoverScreen(_Msg):
    """A deck page covers the screen share (media.gateway.MediaGateway.cover_screen)."""

    type: Literal["cover_screen"]
    id: int
    lesson_id: str
    covered: bool


class EndLesson(_Msg):
    type: Literal["end_lesson"]
    id: int
    lesson_id: str


class Pull(_Msg):
    """Edge -> origin: send me this lesson's layers (an offer of the feed's m-lines)."""

    type: Literal["pull"]
    id: int
    lesson_id: str
    sdp: str


class Want(_Msg):
    """Edge -> origin: send only these lines of my pull (indices of
    media.relay.feed.FEED), the layers some classroom of mine follows now."""

    type: Literal["want"]
    id: int
    lesson_id: str
    lines: list[int]


class Release(_Msg):
    """Edge -> origin: no classroom of mine is in this lesson any more."""

    type: Literal["release"]
    id: int
    lesson_id: str


class SendUp(_Msg):
    """Edge -> origin: this classroom of mine sends its camera and microphone up (an
    offer of media.relay.uplink's m-lines): its tile, and the stage when it has it."""

    type: Literal["uplink"]
    id: int
    lesson_id: str
    participant_id: str
    sdp: str


class Answer(_Msg):
    type: Literal["answer"]
    id: int
    sdp: str


class Done(_Msg):
    type: Literal["done"]
    id: int


class Refused(_Msg):
    type: Literal["refused"]
    id: int
    code: str
    message: str


class Report(_Msg):
    """Edge -> origin: a classroom's link, as media.gateway.LinkReport has it."""

    type: Literal["link_report"]
    lesson_id: str
    participant_id: str
    estimate_kbps: float
    sent_kbps: float
    loss: float
    rtt_ms: float | None
    layers: dict[str, str]
    server_load: str

    @classmethod
    def of(cls, report: LinkReport) -> Report:
        return cls(
            type="link_report",
            lesson_id=report.lesson_id,
            participant_id=report.participant_id,
            estimate_kbps=report.estimate_kbps,
            sent_kbps=report.sent_kbps,
            loss=report.loss,
            rtt_ms=report.rtt_ms,
            layers=dict(report.layers),
            server_load=report.server_load,
        )

    def link_report(self) -> LinkReport:
        return LinkReport(
            self.lesson_id,
            self.participant_id,
            self.estimate_kbps,
            self.sent_kbps,
            self.loss,
            self.rtt_ms,
            dict(self.layers),
            server_load=self.server_load,
        )


Request = (
    Negotiate | Disconnect | SetStage | CoverScreen | EndLesson | Pull | Want | Release | SendUp
)
Reply = Answer | Done | Refused
Message = Annotated[
    Hello | Welcome | Request | Reply | Report,
    Field(discriminator="type"),
]
_MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)


def parse(text: str | bytes) -> Message:
    """A message, or ValueError (not JSON, or no such message)."""
    try:
        return _MESSAGE.validate_json(text)
    except ValidationError as exc:
        raise ValueError(f"not an edge link message: {exc.errors()[0]['msg']}") from None


class RequestRefused(Exception):
    """The other end refused a request; `code` and `message` are its own."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LinkClosed(Exception):
    """The edge link closed before a request was answered."""


Handler = Callable[[Any], Awaitable[Reply]]


class Channel:
    """Requests and answers over one link, in both directions.

    `send` writes one message (the connection's writer); `handle` is fed each
    message read. Requests are served in tasks of their own: a negotiation that
    waits for ICE gathering does not hold up the next message.
    """

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        serve: Handler,
        on_report: Callable[[Report], None] | None = None,
    ) -> None:
        self._send = send
        self._serve = serve
        self._on_report = on_report
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._work: set[asyncio.Task[None]] = set()
        self.closed = False

    def next_id(self) -> int:
        return next(self._ids)

    async def ask(self, request: Request, timeout_s: float = ASK_TIMEOUT_S) -> Reply:
        """Send `request` (its `id` from `next_id()`) and wait for its answer."""
        if self.closed:
            raise LinkClosed("the edge link is closed")
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[request.id] = future
        try:
            await self._send(request.model_dump_json())
            reply = await asyncio.wait_for(future, timeout_s)
        finally:
            self._pending.pop(request.id, None)
        if isinstance(reply, Refused):
            raise RequestRefused(reply.code, reply.message)
        return reply

    async def notify(self, report: Report) -> None:
        if not self.closed:
            await self._send(report.model_dump_json())

    def handle(self, message: Message) -> None:
        if isinstance(message, Answer | Done | Refused):
            future = self._pending.get(message.id)
            if future is not None and not future.done():
                future.set_result(message)
        elif isinstance(message, Report):
            if self._on_report is not None:
                self._on_report(message)
        elif isinstance(
            message,
            Negotiate
            | Disconnect
            | SetStage
            | CoverScreen
            | EndLesson
            | Pull
            | Want
            | Release
            | SendUp,
        ):
            task = asyncio.create_task(self._answer(message))
            self._work.add(task)
            task.add_done_callback(self._work.discard)

    async def _answer(self, request: Request) -> None:
        try:
            reply = await self._serve(request)
        except RequestRefused as exc:
            reply = Refused(type="refused", id=request.id, code=exc.code, message=exc.message)
        except Exception:
            log.exception("edge link: %s failed", request.type)
            reply = Refused(
                type="refused", id=request.id, code="internal", message=f"{request.type} failed"
            )
        with contextlib.suppress(Exception):
            await self._send(reply.model_dump_json())

    def close(self) -> None:
        """The link is gone: waiting requests fail, requests being served stop."""
        self.closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(LinkClosed("the edge link closed"))
        for task in self._work:
            task.cancel()
