"""`classroom edge`: a county edge relay, linked to its origin.

The edge keeps one WebSocket to the origin (`/edge/v1`, signaling.edge.protocol),
reconnecting by itself. The origin asks it to answer its classrooms' offers; for
the first classroom of a lesson the edge pulls the lesson's layers from the origin
over one peer connection (media.relay.upstream) and its own relay serves every
classroom of the lesson from them, each with its own allocator. When the last of
its classrooms leaves, it gives the pull back. The edge has no HTTP server and no
database: the classrooms' pages, hands and events stay with the origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from classroom.roles import Role
from media.gateway import MediaError
from media.relay.relay import Relay
from media.relay.uplink import Uplink
from media.relay.upstream import Upstream
from media.settings import RelaySettings
from signaling.edge.protocol import (
    PATH,
    VERSION,
    Answer,
    Channel,
    CoverScreen,
    Disconnect,
    Done,
    EndLesson,
    Hello,
    LinkClosed,
    Negotiate,
    Pull,
    Release,
    Reply,
    Report,
    Request,
    RequestRefused,
    SendUp,
    SetStage,
    Want,
    Welcome,
    parse,
)

log = logging.getLogger(__name__)

# Waits between attempts to reach the origin: doubled from the first to the last.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
# The origin's messages are offers and answers: a few tens of kilobytes at most.
MAX_MESSAGE_BYTES = 1 << 20


def link_url(origin: str) -> str:
    """The origin's edge link address: http(s)://host[:port][/prefix] -> ws(s)://.../edge/v1."""
    parts = urlsplit(origin)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"{origin!r} is not an http(s):// address of the origin")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + PATH, "", ""))


class LinkRefused(Exception):
    """The origin closed the link at its hello (a bad token, another version)."""


class EdgeRelay:
    """The edge's relay, its pulls and its link (see the module docstring)."""

    def __init__(self, origin: str, token: str, settings: RelaySettings) -> None:
        self.url = link_url(origin)
        self._token = token
        self._settings = settings
        self.relay = Relay(settings, edge=True)
        self._upstreams: dict[str, Upstream] = {}
        # Each classroom's camera and microphone on their way up, by (lesson, classroom).
        self._uplinks: dict[tuple[str, str], Uplink] = {}
        self._pulling: dict[str, asyncio.Lock] = {}
        self._channel: Channel | None = None
        self._wants: set[asyncio.Task[None]] = set()
        self.name: str | None = None
        # Set while the link is up (tests, the log).
        self.linked = asyncio.Event()

    async def run(self) -> None:
        """Stay linked to the origin until cancelled; a refused token stops it."""
        wait = RETRY_FIRST_S
        while True:
            started = time.monotonic()
            try:
                await self.link_once()
            except LinkRefused:
                raise
            except (OSError, WebSocketException, TimeoutError, ValueError) as exc:
                log.warning("edge link to %s: %s", self.url, exc or type(exc).__name__)
            if time.monotonic() - started > RETRY_MAX_S:
                wait = RETRY_FIRST_S
            await asyncio.sleep(wait)
            wait = min(wait * 2, RETRY_MAX_S)

    async def link_once(self) -> None:
        """One link, from hello to close."""
        async with connect(self.url, max_size=MAX_MESSAGE_BYTES, open_timeout=10) as ws:
            await ws.send(Hello(type="hello", version=VERSION, token=self._token).model_dump_json())
            try:
                welcome = parse(await asyncio.wait_for(ws.recv(), 10))
            except WebSocketException:
                raise LinkRefused(f"the origin refused this edge: {ws.close_reason}") from None
            if not isinstance(welcome, Welcome):
                raise LinkRefused("the origin did not welcome this edge")
            self.name = welcome.edge
            await self._linked(ws)

    async def _linked(self, ws: ClientConnection) -> None:
        async def send(text: str) -> None:
            await ws.send(text)

        channel = Channel(send, self.serve)
        self.use(channel)
        reports = asyncio.create_task(self._send_reports(channel), name="edge-reports")
        self.linked.set()
        log.info("edge %s linked to %s", self.name, self.url)
        try:
            async for text in ws:
                try:
                    channel.handle(parse(text))
                except ValueError as exc:
                    log.warning("the origin sent what is not a message: %s", exc)
        finally:
            self.linked.clear()
            channel.close()
            self._channel = None
            reports.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reports
            # The origin forgets this edge's classrooms when the link goes: so does the
            # edge (they reconnect through the origin, which routes them afresh).
            for lesson_id in list(self._upstreams):
                await self._forget(lesson_id)

    def use(self, channel: Channel) -> None:
        """Ask the origin over `channel` from now on (the link's; a test's pair)."""
        self._channel = channel

    async def close(self) -> None:
        for task in list(self._wants):
            task.cancel()
        for lesson_id in list(self._upstreams):
            await self._forget(lesson_id)
        await self.relay.close()

    # -- what the origin asks ------------------------------------------------------------

    async def serve(self, request: Request) -> Reply:
        """What the origin asks of the edge."""
        if isinstance(request, Negotiate):
            await self._pull(request.lesson_id)
            try:
                sdp = await self.relay.negotiate(
                    request.lesson_id, request.participant_id, Role(request.role), request.sdp
                )
            except MediaError as exc:
                await self._release_if_unused(request.lesson_id)
                raise RequestRefused("bad_sdp", str(exc) or "the offer cannot be used") from None
            if Role(request.role) is Role.CLASSROOM:
                # After the answer: the classroom's own media does not wait for it.
                self._later(self._send_up(request.lesson_id, request.participant_id))
            return Answer(type="answer", id=request.id, sdp=sdp)
        if isinstance(request, Disconnect):
            await self._drop_uplink(request.lesson_id, request.participant_id)
            await self.relay.disconnect(request.lesson_id, request.participant_id)
            await self._release_if_unused(request.lesson_id)
        elif isinstance(request, SetStage):
            await self.relay.set_stage(request.lesson_id, request.classroom_id)
            for (lesson_id, _), uplink in self._uplinks.items():
                if lesson_id == request.lesson_id:
                    self._follow(uplink)
        elif isinstance(request, CoverScreen):
            await self.relay.cover_screen(request.lesson_id, request.covered)
        elif isinstance(request, EndLesson):
            await self._forget(request.lesson_id)
        else:
            raise RequestRefused("not_allowed", f"an origin cannot ask for {request.type}")
        return Done(type="done", id=request.id)

    async def _pull(self, lesson_id: str) -> Upstream:
        """The lesson's feed from the origin: pulled once, again if it failed."""
        async with self._pulling.setdefault(lesson_id, asyncio.Lock()):
            upstream = self._upstreams.get(lesson_id)
            if upstream is not None and not upstream.failed:
                return upstream
            if upstream is not None:
                await upstream.close()
            channel = self._channel
            if channel is None:
                raise RequestRefused("media_unavailable", "the edge is not linked to its origin")
            upstream = Upstream(lesson_id, self._settings, time.monotonic)
            try:
                offer = await upstream.offer()
                reply = await channel.ask(
                    Pull(type="pull", id=channel.next_id(), lesson_id=lesson_id, sdp=offer)
                )
                assert isinstance(reply, Answer)
                await upstream.accept(reply.sdp)
            except (RequestRefused, LinkClosed, TimeoutError, MediaError) as exc:
                await upstream.close()
                raise RequestRefused(
                    "media_unavailable", f"the edge could not pull the lesson: {exc}"
                ) from None
            self._upstreams[lesson_id] = upstream
            upstream.on_wanted = lambda lines: self._want(lesson_id, lines)

            @upstream.pc.on("connectionstatechange")
            def on_state() -> None:
                # The backbone failed, or the origin closed the pull (it restarted its
                # relay): pulled again, for the classrooms still here.
                if upstream.failed and self._upstreams.get(lesson_id) is upstream:
                    task = asyncio.create_task(self._pull_again(lesson_id, upstream))
                    self._wants.add(task)
                    task.add_done_callback(self._wants.discard)

            self.relay.set_upstream(lesson_id, upstream.sources)
            log.info("edge pulls lesson %s", lesson_id)
            return upstream

    async def _send_up(self, lesson_id: str, participant_id: str) -> None:
        """Send a classroom's camera and microphone up to the origin (media.relay.uplink):
        its tile in the teacher's mosaic, and the stage when it has the floor. A new
        connection of the classroom replaces its uplink."""
        await self._drop_uplink(lesson_id, participant_id)
        channel = self._channel
        if channel is None or participant_id not in self.relay.participants(lesson_id):
            return
        uplink = Uplink(lesson_id, participant_id, self._settings, time.monotonic)
        self._uplinks[(lesson_id, participant_id)] = uplink
        try:
            offer = await uplink.offer()
            reply = await channel.ask(
                SendUp(
                    type="uplink",
                    id=channel.next_id(),
                    lesson_id=lesson_id,
                    participant_id=participant_id,
                    sdp=offer,
                )
            )
            assert isinstance(reply, Answer)
            await uplink.accept(reply.sdp)
        except (RequestRefused, LinkClosed, TimeoutError, MediaError) as exc:
            log.warning("edge could not send %s up to the origin: %s", participant_id, exc)
            if self._uplinks.get((lesson_id, participant_id)) is uplink:
                del self._uplinks[(lesson_id, participant_id)]
            await uplink.close()
            return
        if self._uplinks.get((lesson_id, participant_id)) is not uplink:
            return  # replaced or dropped meanwhile
        self._follow(uplink)
        log.info("edge sends %s of lesson %s up", participant_id, lesson_id)

        @uplink.pc.on("connectionstatechange")
        def on_state() -> None:
            # The backbone failed or the origin closed it: sent up again, while the
            # classroom is still here (one closed here is no longer in `_uplinks`).
            if uplink.failed and self._uplinks.get((lesson_id, participant_id)) is uplink:
                self._later(self._send_up_again(uplink))

    async def _send_up_again(self, lost: Uplink) -> None:
        await asyncio.sleep(RETRY_FIRST_S)
        if self._uplinks.get((lost.lesson_id, lost.participant_id)) is lost:
            log.warning("edge lost the uplink of %s: sending it up again", lost.participant_id)
            await self._send_up(lost.lesson_id, lost.participant_id)

    def _follow(self, uplink: Uplink) -> None:
        lesson_id, participant_id = uplink.lesson_id, uplink.participant_id
        uplink.follow(
            self.relay.forwarded(lesson_id, participant_id),
            self.relay.stage(lesson_id) == participant_id,
        )

    async def _drop_uplink(self, lesson_id: str, participant_id: str) -> None:
        uplink = self._uplinks.pop((lesson_id, participant_id), None)
        if uplink is not None:
            await uplink.close()

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._wants.add(task)
        task.add_done_callback(self._wants.discard)

    async def _pull_again(self, lesson_id: str, lost: Upstream) -> None:
        await asyncio.sleep(RETRY_FIRST_S)
        if self._upstreams.get(lesson_id) is not lost:
            return
        if not self.relay.participants(lesson_id):
            await self._forget(lesson_id)
            return
        log.warning("edge lost its pull of lesson %s: pulling it again", lesson_id)
        try:
            await self._pull(lesson_id)
        except RequestRefused as exc:
            log.warning("edge could not pull lesson %s again: %s", lesson_id, exc.message)

    def _want(self, lesson_id: str, lines: tuple[int, ...]) -> None:
        """Tell the origin which lines of the pull this edge's classrooms follow. Sent
        in the order the changes happen (each task writes its message first)."""
        channel = self._channel
        if channel is None:
            return
        want = Want(type="want", id=channel.next_id(), lesson_id=lesson_id, lines=list(lines))

        async def send() -> None:
            with contextlib.suppress(RequestRefused, LinkClosed, TimeoutError):
                await channel.ask(want)

        task = asyncio.create_task(send(), name="edge-want")
        self._wants.add(task)
        task.add_done_callback(self._wants.discard)

    async def _release_if_unused(self, lesson_id: str) -> None:
        if self.relay.participants(lesson_id) or lesson_id not in self._upstreams:
            return
        channel = self._channel
        await self._forget(lesson_id)
        if channel is not None:
            with contextlib.suppress(RequestRefused, LinkClosed, TimeoutError):
                await channel.ask(
                    Release(type="release", id=channel.next_id(), lesson_id=lesson_id)
                )

    async def _forget(self, lesson_id: str) -> None:
        for key in [k for k in self._uplinks if k[0] == lesson_id]:
            await self._drop_uplink(*key)
        upstream = self._upstreams.pop(lesson_id, None)
        await self.relay.end_lesson(lesson_id)
        if upstream is not None:
            await upstream.close()
        self._pulling.pop(lesson_id, None)

    async def _send_reports(self, channel: Channel) -> None:
        async for report in self.relay.link_reports():
            with contextlib.suppress(Exception):
                await channel.notify(Report.of(report))
