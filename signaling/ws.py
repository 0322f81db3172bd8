"""One WebSocket connection: an actor that owns its socket.

A reader task turns client messages into commands; a single writer task drains a
bounded outbox. Everyone else (the bus, the roster) only puts messages in the
outbox, without waiting: when it is full the client cannot keep up, and it is
dropped with `too_slow` so that memory stays bounded and the lesson goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from starlette.websockets import WebSocket, WebSocketState

from classroom import commands as c
from classroom.errors import DomainError
from classroom.events import Event
from classroom.reception import AudioCounters, Picture, VideoCounters
from classroom.roles import Role
from media.gateway import MediaError, MediaGateway, MediaUnavailable
from signaling import protocol as p
from signaling.bus import Envelope, Unsubscribe
from signaling.ice import ice_servers
from signaling.lessons import LessonOver, Lessons, viewer_media_id
from signaling.limits import Bucket, Limits
from signaling.metrics import Metrics
from signaling.settings import Settings
from signaling.tokens import Claims, TokenError, TokenIssuer

log = logging.getLogger(__name__)
T = TypeVar("T")

# Close codes: 1000 when the lesson ends, 1008 (policy violation) with the error code
# as the reason for every connection the server refuses or drops, 1011 with reason
# "internal" if the connection's own code failed. Every close carries a reason.
CLOSE_NORMAL = 1000
CLOSE_REFUSED = 1008
CLOSE_INTERNAL = 1011
LAST_WORDS_TIMEOUT_S = 2.0


class Transport(Protocol):
    async def receive(self) -> str | bytes | None:
        """The next frame, or None once the client is gone."""
        ...

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class StarletteTransport:
    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def receive(self) -> str | bytes | None:
        if self._ws.client_state is WebSocketState.DISCONNECTED:
            return None
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text: str | None = message.get("text")
        if text is not None:
            return text
        data: bytes = message.get("bytes") or b""
        return data

    async def send(self, text: str) -> None:
        await self._ws.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        if self._ws.application_state is not WebSocketState.DISCONNECTED:
            await self._ws.close(code, reason)


@dataclass(frozen=True)
class _Out:
    type: str
    text: str


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


@dataclass
class _Latest:
    """An outbox place for the newest message of a key (`Envelope.latest_of`): a newer
    one replaces `out` while it waits, and the writer sends whatever it holds then."""

    key: str
    out: _Out


_Item = _Out | _Close | list[_Out] | _Latest


@dataclass(frozen=True)
class Services:
    """What a connection works with; built once per app."""

    lessons: Lessons
    tokens: TokenIssuer
    media: MediaGateway
    metrics: Metrics
    settings: Settings
    now: Callable[[], float]
    # Rate limits and connection caps, shared with the HTTP routes of the same app.
    limits: Limits
    # Observer connections share one participant (the observer link) but each has its
    # own peer connection on the relay, named apart by a number: the app's own count,
    # so that two apps in one process (tests) do not number each other's viewers.
    viewer_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))


class Connection:
    def __init__(self, transport: Transport, services: Services, address: str = "?") -> None:
        self._t = transport
        self._s = services
        # The client's address, for what is limited before a token is seen.
        self._address = address
        self._outbox: asyncio.Queue[_Item] = asyncio.Queue(services.settings.outbox_size)
        self._stopped = asyncio.Event()
        self._drop_reason: str | None = None
        # The outbox places of keyed messages still waiting, by key (`_Latest`).
        self._waiting: dict[str, _Latest] = {}
        self._flush_then_close = False
        self._claims: Claims | None = None
        self._media_id: str | None = None
        self._unsubscribe: Unsubscribe | None = None
        # Bad input on this connection: past the burst, the connection is closed.
        self._bad_input = Bucket(services.limits.policy.bad_input_per_connection, services.now())
        self._refused = False
        # The connection slot of the participant (Limits.connections), once joined.
        self._slot: str | None = None

    # -- the actor -----------------------------------------------------------------

    async def run(self) -> None:
        metrics = self._s.metrics
        metrics.ws_connections.inc()
        writer = asyncio.create_task(self._write_loop())
        reader = asyncio.create_task(self._read_loop())
        stopper = asyncio.create_task(self._stopped.wait())
        try:
            await asyncio.wait({writer, reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if self._drop_reason is None and reader.done() and self._flush_then_close:
                # The reader refused the client: let the writer send the error and close.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(writer), LAST_WORDS_TIMEOUT_S)
        finally:
            for task in (reader, writer, stopper):
                task.cancel()
            results = await asyncio.gather(reader, writer, stopper, return_exceptions=True)
            failed = [r for r in results[:1] if isinstance(r, Exception)]
            for exc in failed:
                log.error("connection failed", exc_info=exc)
            if self._drop_reason is not None:
                metrics.dropped.labels(self._drop_reason).inc()
                await self._last_words(self._drop_reason)
            elif failed:
                await self._last_words("internal", CLOSE_INTERNAL)
            else:
                # Whatever else ended it (the client left, the writer failed on a dead
                # socket): a close that is still possible says so.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(LAST_WORDS_TIMEOUT_S):
                        await self._t.close(CLOSE_NORMAL, "closed")
            if self._slot is not None:
                self._s.limits.connections.release(self._slot)
            if self._unsubscribe is not None:
                self._unsubscribe()
            if self._claims is not None:
                # Shielded: a server that cancels the handler as the socket closes must
                # still record the leave, or the participant would look online forever.
                detach = self._s.lessons.detach(
                    self._claims.lesson_id, self._claims.participant_id, self
                )
                await asyncio.shield(asyncio.ensure_future(detach))
                if self._media_id != self._claims.participant_id and self._media_id:
                    # An observer's peer connection is its connection's own: the
                    # participant's Leave (on the last one) cannot name it.
                    with contextlib.suppress(Exception):
                        await self._s.media.disconnect(self._claims.lesson_id, self._media_id)
            metrics.ws_connections.dec()

    async def _last_words(self, reason: str, code: int = CLOSE_REFUSED) -> None:
        """Tell a dropped client why, if it still listens; never wait long for it."""
        messages = {
            "too_slow": "your connection could not keep up; reconnect to continue",
            "replaced": "you connected again elsewhere; this connection is closed",
            "internal": "the server failed on this connection; reconnect to continue",
        }
        error = p.ErrorMsg(code=reason, message=messages.get(reason, reason))
        self._s.metrics.errors.labels(reason).inc()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(LAST_WORDS_TIMEOUT_S):
                await self._t.send(p.encode(error))
        with contextlib.suppress(Exception):
            async with asyncio.timeout(LAST_WORDS_TIMEOUT_S):
                await self._t.close(code, reason)

    async def _write_loop(self) -> None:
        while True:
            item = await self._outbox.get()
            if isinstance(item, _Close):
                await self._t.close(item.code, item.reason)
                return
            if isinstance(item, _Latest):
                del self._waiting[item.key]
                item = item.out
            for out in item if isinstance(item, list) else [item]:
                await self._t.send(out.text)
                self._s.metrics.messages_out.labels(out.type).inc()

    # -- the outbox ----------------------------------------------------------------

    def _enqueue(self, item: _Item) -> None:
        if self._drop_reason is not None:
            return
        try:
            self._outbox.put_nowait(item)
        except asyncio.QueueFull:
            self._drop("too_slow")

    def _drop(self, reason: str) -> None:
        if self._drop_reason is None:
            self._drop_reason = reason
            self._stopped.set()

    def _send(self, message: p.AnswerMsg | p.PongMsg | p.ErrorMsg) -> None:
        if isinstance(message, p.ErrorMsg):
            self._s.metrics.errors.labels(message.code).inc()
        self._enqueue(_Out(message.type, p.encode(message)))

    def _error(self, code: str, message: str, ref: str | None = None) -> None:
        self._send(p.ErrorMsg(code=code, message=message, ref=ref))

    def _refuse(self, code: str, message: str) -> None:
        """Send an error, then close: the reader stops here."""
        self._error(code, message)
        self._enqueue(_Close(CLOSE_REFUSED, code))
        self._flush_then_close = True
        self._refused = True

    def _bad(self, code: str, message: str, ref: str | None = None) -> None:
        """Answer bad input, and count it: a stream of it closes the connection
        (`bad_input`), so that a client sending junk costs the server a bounded effort."""
        self._error(code, message, ref)
        if not self._bad_input.take(self._s.now()):
            self._refuse("bad_input", "too many bad messages; this connection is closed")

    # -- Attendee: called by Lessons and the bus ------------------------------------

    def welcome(self, snapshot: dict[str, Any], backlog: list[Event], cut: bool) -> None:
        assert self._claims is not None
        lesson = self._s.lessons.live(self._claims.lesson_id)
        me = lesson.participants[self._claims.participant_id] if lesson else None
        you = p.You(
            id=self._claims.participant_id,
            role=str(self._claims.role),
            name=me.name if me else "",
        )
        # When older missed events were left out (Settings.catch_up_max_events), the welcome
        # says from which one the backlog starts.
        missed_from = backlog[0].seq if cut and backlog else None
        servers = ice_servers(self._s.settings, self._claims.participant_id, self._s.now())
        welcome = p.WelcomeMsg(
            you=you, lesson=snapshot, missed_from=missed_from, ice_servers=servers or None
        )
        batch = [_Out("welcome", p.encode(welcome))]
        batch += [_Out("event", p.encode(p.EventMsg(event=ev.to_dict()))) for ev in backlog]
        # One outbox item, however long the backlog: a reconnect after a long gap
        # must not look like a slow client.
        self._enqueue(batch)

    def deliver(self, envelope: Envelope) -> None:
        claims = self._claims
        if claims is None or not envelope.for_(
            claims.participant_id, str(claims.role), self._media_id
        ):
            return
        out = _Out(envelope.type, envelope.text)
        key = envelope.latest_of
        if key is None:
            self._enqueue(out)
        elif key in self._waiting:
            self._waiting[key].out = out
        else:
            self._waiting[key] = _Latest(key, out)
            self._enqueue(self._waiting[key])
        if envelope.final:
            self._enqueue(_Close(CLOSE_NORMAL, "lesson_ended"))

    def replace(self) -> None:
        self._drop("replaced")

    # -- reading ---------------------------------------------------------------------

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._s.settings.join_timeout_s
        while self._claims is None:
            try:
                frame = await asyncio.wait_for(self._t.receive(), deadline - loop.time())
            except TimeoutError:
                self._refuse("join_timeout", "send a join message first")
                return
            if frame is None:
                return
            # Before a token is seen, what an address sends is limited by the address:
            # past it, frames are refused unread (each costs no parsing).
            if not self._s.limits.unjoined_messages.take(self._address, self._s.now()):
                self._bad("rate_limited", "too many messages from your address; slow down")
                if self._refused:
                    return
                continue
            msg = self._decode(frame)
            if msg is not None and not isinstance(msg, p.JoinMsg):
                self._bad("not_joined", "send a join message first", msg.ref)
            elif msg is not None and not await self._join(msg):
                return
            if self._refused:
                return
        while not self._refused:
            frame = await self._t.receive()
            if frame is None:
                return
            await self._handle(frame)

    def _count_in(self, kind: str) -> None:
        self._s.metrics.messages_in.labels(kind).inc()

    async def _join(self, msg: p.JoinMsg) -> bool:
        if msg.protocol != p.PROTOCOL_VERSION:
            self._refuse(
                "unsupported_protocol",
                f"this server speaks protocol {p.PROTOCOL_VERSION}, not {msg.protocol}",
            )
            return False
        try:
            claims = self._s.tokens.verify(msg.token, msg.lesson_id)
        except TokenError as exc:
            self._refuse(exc.code, exc.message)
            return False
        lessons = self._s.lessons
        lesson = await lessons.joinable(claims.lesson_id)
        if lesson is None:
            if await lessons.get(claims.lesson_id) is not None:
                self._refuse("lesson_ended", "the lesson has ended")
            else:
                self._refuse("bad_token", "this link is for a lesson that does not exist")
            return False
        me = lesson.participants.get(claims.participant_id)
        if me is None or me.role is not claims.role:
            self._refuse("bad_token", "this link is not valid for this lesson")
            return False
        # A join spends the participant's budget like any message: a token reconnecting
        # in a loop is slowed down, whatever number of connections it opens.
        if not self._rate_ok(claims):
            self._refuse("rate_limited", "too many messages; wait a little and reconnect")
            return False
        limits = self._s.limits
        slot = f"{claims.lesson_id}/{claims.participant_id}"
        cap = limits.policy.connections_per_participant
        if claims.role is Role.OBSERVER:
            cap = limits.policy.connections_per_observer_link
        if not limits.connections.acquire(slot, cap):
            self._refuse("too_many_connections", f"this link has {cap} connections open already")
            return False
        self._slot = slot
        self._claims = claims
        self._media_id = claims.participant_id
        if claims.role is Role.OBSERVER:
            self._media_id = viewer_media_id(claims.participant_id, next(self._s.viewer_numbers))
        try:
            self._unsubscribe = await to_the_end(
                lessons.attach(claims.lesson_id, claims.participant_id, self, msg.since)
            )
        except LessonOver:
            self._claims = None
            self._refuse("lesson_ended", "the lesson has ended")
            return False
        except DomainError as exc:
            # The lesson's node does not answer (signaling.cluster): said, not a failure.
            self._claims = None
            self._refuse(exc.code, exc.message)
            return False
        return True

    def _rate_ok(self, claims: Claims) -> bool:
        """Spend one of the participant's messages; all its connections share them."""
        limits = self._s.limits
        table = limits.observer_messages if claims.role is Role.OBSERVER else limits.messages
        return table.take(f"{claims.lesson_id}/{claims.participant_id}", self._s.now())

    def _decode(self, frame: str | bytes) -> p.ClientMessage | None:
        """A client frame as a message, counted; a bad one is answered and gives None."""
        try:
            msg = p.decode(
                frame,
                max_bytes=self._s.settings.ws_max_message_bytes,
                max_depth=self._s.settings.ws_max_json_depth,
            )
        except p.ProtocolError as exc:
            self._count_in("_invalid")
            self._bad(exc.code, exc.message, exc.ref)
            return None
        self._count_in(msg.type)
        return msg

    async def _handle(self, frame: str | bytes) -> None:
        assert self._claims is not None
        # Spent before the frame is read: a flood costs no parsing past the budget (so
        # its errors carry no `ref`).
        if not self._rate_ok(self._claims):
            self._bad("rate_limited", "too many messages; slow down")
            return
        msg = self._decode(frame)
        if msg is None:
            return
        lesson_id, me = self._claims.lesson_id, self._claims.participant_id
        try:
            match msg:
                case p.JoinMsg():
                    self._error("already_joined", "this connection has joined already", msg.ref)
                case p.PingMsg():
                    self._send(p.PongMsg(ref=msg.ref))
                case p.OfferMsg():
                    await self._negotiate(msg)
                case _:
                    await to_the_end(self._s.lessons.execute(lesson_id, _command(msg), me))
        except DomainError as exc:
            self._error(exc.code, exc.message, msg.ref)
        except Exception:
            log.exception("failed to handle %s from %s in %s", msg.type, me, lesson_id)
            self._error("internal", "the server failed to handle this message", msg.ref)

    async def _negotiate(self, msg: p.OfferMsg) -> None:
        assert self._claims is not None
        claims = self._claims
        if self._s.lessons.live(claims.lesson_id) is None:
            raise LessonOver()
        try:
            sdp = await within(
                self._s.media.negotiate(
                    claims.lesson_id, self._media_id or claims.participant_id, claims.role, msg.sdp
                ),
                self._s.settings.negotiate_timeout_s,
            )
        except MediaUnavailable as exc:
            self._s.metrics.media_failures.labels("negotiate").inc()
            self._error("media_unavailable", str(exc), msg.ref)
            return
        except MediaError as exc:
            self._error("bad_sdp", str(exc) or "the offer cannot be used", msg.ref)
            return
        except TimeoutError:
            self._s.metrics.media_failures.labels("negotiate").inc()
            self._error("media_unavailable", "the media relay did not answer in time", msg.ref)
            return
        except Exception:
            self._s.metrics.media_failures.labels("negotiate").inc()
            log.exception("negotiate failed for %s", claims.participant_id)
            self._error("media_unavailable", "the media relay failed on this offer", msg.ref)
            return
        self._send(p.AnswerMsg(sdp=sdp, ref=msg.ref))
        await to_the_end(
            self._s.lessons.published(claims.lesson_id, claims.participant_id, claims.role)
        )


# Work that goes on after its waiter left (below): held here until it ends, because
# the event loop keeps only weak references to tasks (the asyncio documentation's
# "save a reference" for background tasks), and one collected while pending is lost.
_running_on: set[asyncio.Task[Any]] = set()


def _go_on(work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    task = asyncio.ensure_future(work)
    _running_on.add(task)
    task.add_done_callback(_running_on.discard)
    # Whoever stopped waiting, an error at the end is retrieved, not left to the
    # event loop's "exception was never retrieved".
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


async def within(work: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """`work`'s result, or TimeoutError after `timeout_s`, *then*: unlike wait_for, this
    does not wait for the cancelled work to wind down. A relay that takes its time to
    unwind a cancelled negotiation must not hold the client's connection (every message
    after the offer waited with it)."""
    task = _go_on(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        raise TimeoutError
    return task.result()


async def to_the_end(work: Coroutine[Any, Any, T]) -> T:
    """`work`, finished even if the connection is torn down while it runs (the client
    left: its handler is cancelled). A command cut between its state change and its
    store append left the lesson reloading from a log that the store's thread might
    still be writing; finished, it is stored and published like any other."""
    return await asyncio.shield(_go_on(work))


def _command(msg: p.ClientMessage) -> c.Command:
    match msg:
        case p.RaiseHandMsg(student=student):
            return c.RaiseHand(student)
        case p.LowerHandMsg():
            return c.LowerHand()
        case p.DismissHandMsg(classroom_id=cid):
            return c.DismissHand(cid)
        case p.GrantFloorMsg(classroom_id=cid):
            return c.GrantFloor(cid)
        case p.RevokeFloorMsg():
            return c.RevokeFloor()
        case p.ChatMsg(text=text):
            return c.PostChat(text)
        case p.EndLessonMsg():
            return c.EndLesson()
        case p.PauseRecordingMsg():
            return c.PauseRecording()
        case p.ResumeRecordingMsg():
            return c.ResumeRecording()
        case p.ReceptionMsg(media_session=session, video=video, audio=audio, pictures=pics):
            return c.ReportReception(
                session,
                None if video is None else VideoCounters(**video.model_dump()),
                None if audio is None else AudioCounters(**audio.model_dump()),
                tuple((slot, Picture(**pic.model_dump())) for slot, pic in (pics or {}).items()),
            )
        case p.TurnPageMsg(page=page):
            return c.TurnPage(page)
        case p.PointMsg(x=x, y=y):
            return c.PointAt(x, y)
        case p.InkMsg(points=points, color=color):
            return c.DrawInk(tuple(points), color)
        case p.ClearInkMsg():
            return c.ClearInk()
        case p.CoursewareMsg(deck_id=deck_id, ready=ready, total=total):
            return c.ReportCourseware(deck_id, ready, total)
    raise ValueError(f"{msg.type} is not a lesson command")
