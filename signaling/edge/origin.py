"""The origin's side of its edge relays: who is linked, and the gateway that routes
a classroom's media to its school's edge.

`EdgeMedia` is the `MediaGateway` signaling drives when some schools are served by
an edge (`Settings.edge_schools`). A classroom of such a school keeps its WebSocket,
its hand and its events here; its SDP offer is asked of its edge over the edge's
link and the edge's answer returned, so its media flows with the edge. The edge
pulls each lesson once (`Pull` -> the relay's `negotiate_feed`): the origin's cost
is one peer connection per edge and lesson, whatever the villages behind it. Each
classroom's own camera and microphone come up from the edge on an uplink of their
own (`SendUp` -> the relay's `negotiate_uplink`), so that here it has its mosaic
tile and can take the stage. While the edge is not linked, its classrooms are
served here as any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

from classroom.directory import Directory
from classroom.roles import Role
from media.gateway import LinkReport, MediaError, MediaGateway
from media.relay.reports import LinkReports
from signaling.auth import CredentialGuard
from signaling.edge.protocol import (
    CLOSE_BAD_TOKEN,
    CLOSE_BAD_VERSION,
    CLOSE_NO_EDGES,
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
from signaling.edge.revocations import Revocations
from signaling.errors import ApiError
from signaling.tokens import TokenError, TokenIssuer

log = logging.getLogger(__name__)

# How often an open link looks whether its token was revoked (`classroom edge-token
# --revoke` runs in a process of its own and only writes the data directory's file).
REVOCATION_CHECK_S = 2.0
REVOKED = "this edge token was revoked; ask the origin's admin for a new one"

# (lesson id, participant id) -> the edge that should serve it, or None.
Route = Callable[[str, str], str | None]


def school_route(directory: Callable[[], Directory | None], edges: Mapping[str, str]) -> Route:
    """The edge of a classroom's school (`Settings.edge_schools`, school id -> edge
    name): the room a lesson's classroom is, from the held lesson's rooms (a lesson
    made by hand has no rooms, and no edge)."""

    def route(lesson_id: str, participant_id: str) -> str | None:
        found = directory()
        if found is None:
            return None
        for held in found.held.values():
            if held.lesson_id != lesson_id:
                continue
            for room_id, pid in held.classrooms:
                room = found.rooms.get(room_id)
                if pid == participant_id and room is not None:
                    return edges.get(room.school_id)
        return None

    return route


class FeedOrigin(Protocol):
    """What the origin's relay offers its edges (media.relay.relay.Relay)."""

    async def negotiate_feed(self, lesson_id: str, edge_id: str, offer_sdp: str) -> str: ...

    async def drop_feed(self, lesson_id: str, edge_id: str) -> None: ...

    def want_feed(self, lesson_id: str, edge_id: str, lines: Collection[int]) -> None: ...

    async def negotiate_uplink(
        self, lesson_id: str, participant_id: str, offer_sdp: str
    ) -> str: ...


class EdgeMedia:
    """`MediaGateway` over the local relay and the linked edges."""

    def __init__(self, local: MediaGateway, feeds: FeedOrigin, route: Route) -> None:
        self._local = local
        self._feeds = feeds
        self._route = route
        self._links: dict[str, Channel] = {}
        # Who was answered by which edge, and which lessons each edge pulls.
        self._placed: dict[tuple[str, str], str] = {}
        self._pulled: dict[str, set[str]] = {}
        self._reports = LinkReports()
        self._forwarding: asyncio.Task[None] | None = None

    # -- links -------------------------------------------------------------------------

    def linked(self) -> tuple[str, ...]:
        return tuple(self._links)

    def attach(self, edge: str, channel: Channel) -> None:
        """An edge linked (a second link of the same edge replaces the first)."""
        old = self._links.get(edge)
        self._links[edge] = channel
        if old is not None and old is not channel:
            old.close()
        log.info("edge %s linked", edge)

    async def detach(self, edge: str, channel: Channel) -> None:
        """An edge's link closed: its pulls end; its classrooms reconnect (to it once
        it is back, to this relay meanwhile)."""
        if self._links.get(edge) is not channel:
            return
        del self._links[edge]
        for key in [k for k, e in self._placed.items() if e == edge]:
            del self._placed[key]
            # Its uplink, if the edge sent one up.
            await self._local.disconnect(*key)
        for lesson_id in self._pulled.pop(edge, set()):
            await self._feeds.drop_feed(lesson_id, edge)
        log.info("edge %s unlinked", edge)

    async def serve(self, edge: str, request: Request) -> Reply:
        """What an edge asks of the origin."""
        if isinstance(request, Pull):
            try:
                sdp = await self._feeds.negotiate_feed(request.lesson_id, edge, request.sdp)
            except MediaError as exc:
                raise RequestRefused("bad_sdp", str(exc)) from None
            self._pulled.setdefault(edge, set()).add(request.lesson_id)
            return Answer(type="answer", id=request.id, sdp=sdp)
        if isinstance(request, Want):
            self._feeds.want_feed(request.lesson_id, edge, request.lines)
            return Done(type="done", id=request.id)
        if isinstance(request, SendUp):
            # Only a classroom this edge serves: an edge cannot speak for another's.
            if self._route(request.lesson_id, request.participant_id) != edge:
                raise RequestRefused("not_allowed", "that classroom is not served by this edge")
            try:
                sdp = await self._feeds.negotiate_uplink(
                    request.lesson_id, request.participant_id, request.sdp
                )
            except MediaError as exc:
                raise RequestRefused("bad_sdp", str(exc)) from None
            return Answer(type="answer", id=request.id, sdp=sdp)
        if isinstance(request, Release):
            self._pulled.get(edge, set()).discard(request.lesson_id)
            await self._feeds.drop_feed(request.lesson_id, edge)
            return Done(type="done", id=request.id)
        raise RequestRefused("not_allowed", f"an edge cannot ask for {request.type}")

    def on_report(self, edge: str, report: Report) -> None:
        """An edge's classroom's link: shown to the teacher as any other's."""
        if self._placed.get((report.lesson_id, report.participant_id)) == edge:
            self._reports.broadcast(report.link_report())

    # -- the gateway -------------------------------------------------------------------

    def _edge_for(self, lesson_id: str, participant_id: str, role: Role) -> Channel | None:
        if role is not Role.CLASSROOM:
            return None
        edge = self._route(lesson_id, participant_id)
        return None if edge is None else self._links.get(edge)

    async def negotiate(
        self, lesson_id: str, participant_id: str, role: Role, offer_sdp: str, *, whip: bool = False
    ) -> str:
        key = (lesson_id, participant_id)
        channel = None if whip else self._edge_for(lesson_id, participant_id, role)
        previous = self._placed.pop(key, None)
        if channel is None:
            if previous is not None:
                await self._ask_edge(previous, lambda c: _disconnect(c, lesson_id, participant_id))
            return await self._local.negotiate(
                lesson_id, participant_id, role, offer_sdp, whip=whip
            )
        if self._local.has_peer(lesson_id, participant_id):
            await self._local.disconnect(lesson_id, participant_id)
        edge = self._route(lesson_id, participant_id)
        assert edge is not None
        request = Negotiate(
            type="negotiate",
            id=channel.next_id(),
            lesson_id=lesson_id,
            participant_id=participant_id,
            role=str(role),
            sdp=offer_sdp,
        )
        try:
            reply = await channel.ask(request)
        except RequestRefused as exc:
            if exc.code == "bad_sdp":
                raise MediaError(exc.message) from None
            # The edge cannot serve it now (its pull failed): the classroom is served
            # here rather than not at all.
            log.warning("edge %s refused %s: %s; served here", edge, participant_id, exc)
            return await self._local.negotiate(lesson_id, participant_id, role, offer_sdp)
        except (LinkClosed, TimeoutError) as exc:
            log.warning(
                "edge %s did not answer for %s (%r); served here", edge, participant_id, exc
            )
            return await self._local.negotiate(lesson_id, participant_id, role, offer_sdp)
        assert isinstance(reply, Answer)
        self._placed[key] = edge
        return reply.sdp

    def has_peer(self, lesson_id: str, participant_id: str) -> bool:
        edge = self._placed.get((lesson_id, participant_id))
        if edge is not None:
            return edge in self._links
        return self._local.has_peer(lesson_id, participant_id)

    async def set_stage(self, lesson_id: str, classroom_id: str | None) -> None:
        await self._local.set_stage(lesson_id, classroom_id)
        for edge in self._edges_in(lesson_id):
            await self._ask_edge(
                edge,
                lambda c: c.ask(
                    SetStage(
                        type="set_stage",
                        id=c.next_id(),
                        lesson_id=lesson_id,
                        classroom_id=classroom_id,
                    )
                ),
            )

    async def cover_screen(self, lesson_id: str, covered: bool) -> None:
        await self._local.cover_screen(lesson_id, covered)
        for edge in self._edges_in(lesson_id):
            await self._ask_edge(
                edge,
                lambda c: c.ask(
                    CoverScreen(
                        type="cover_screen", id=c.next_id(), lesson_id=lesson_id, covered=covered
                    )
                ),
            )

    async def disconnect(self, lesson_id: str, participant_id: str) -> None:
        edge = self._placed.pop((lesson_id, participant_id), None)
        # Here: the classroom's connection, or its uplink from its edge.
        await self._local.disconnect(lesson_id, participant_id)
        if edge is not None:
            await self._ask_edge(edge, lambda c: _disconnect(c, lesson_id, participant_id))

    async def end_lesson(self, lesson_id: str) -> None:
        edges = self._edges_in(lesson_id)
        for key in [k for k in self._placed if k[0] == lesson_id]:
            del self._placed[key]
        for edge in edges:
            await self._ask_edge(
                edge,
                lambda c: c.ask(EndLesson(type="end_lesson", id=c.next_id(), lesson_id=lesson_id)),
            )
            self._pulled.get(edge, set()).discard(lesson_id)
        await self._local.end_lesson(lesson_id)

    def link_reports(self) -> AsyncIterator[LinkReport]:
        if self._forwarding is None:
            self._forwarding = asyncio.create_task(self._forward_local(), name="edge-reports")
        return self._reports.stream()

    async def close(self) -> None:
        if self._forwarding is not None:
            self._forwarding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._forwarding
        for channel in self._links.values():
            channel.close()
        await self._local.close()

    # -- helpers -----------------------------------------------------------------------

    def _edges_in(self, lesson_id: str) -> set[str]:
        placed = {e for (lesson, _), e in self._placed.items() if lesson == lesson_id}
        pulled = {e for e, lessons in self._pulled.items() if lesson_id in lessons}
        return (placed | pulled) & set(self._links)

    async def _ask_edge(self, edge: str, ask: Callable[[Channel], Awaitable[object]]) -> None:
        """A request whose failure leaves nothing to undo here (the edge is gone, or
        has already forgotten what is asked)."""
        channel = self._links.get(edge)
        if channel is None:
            return
        try:
            await ask(channel)
        except (RequestRefused, LinkClosed, TimeoutError) as exc:
            log.warning("edge %s: %s", edge, exc)

    async def _forward_local(self) -> None:
        async for report in self._local.link_reports():
            self._reports.broadcast(report)


async def _disconnect(channel: Channel, lesson_id: str, participant_id: str) -> Reply:
    return await channel.ask(
        Disconnect(
            type="disconnect",
            id=channel.next_id(),
            lesson_id=lesson_id,
            participant_id=participant_id,
        )
    )


async def serve_link(
    ws: WebSocket,
    edges: EdgeMedia | None,
    tokens: TokenIssuer,
    guard: CredentialGuard,
    hello_timeout_s: float,
    revocations: Revocations | None = None,
) -> None:
    """One edge's link (`/edge/v1`), from its hello to its close (or its token's
    revocation: `revocations` is looked at every REVOCATION_CHECK_S while it is open)."""
    await ws.accept()
    if edges is None:
        await ws.close(CLOSE_NO_EDGES, "this server routes no school to an edge")
        return
    try:
        guard.check()
        hello = parse(await asyncio.wait_for(ws.receive_text(), hello_timeout_s))
    except (ApiError, TimeoutError, ValueError, WebSocketDisconnect) as exc:
        with contextlib.suppress(Exception):
            await ws.close(CLOSE_BAD_TOKEN, getattr(exc, "message", "") or "say hello first")
        return
    if not isinstance(hello, Hello):
        await ws.close(CLOSE_BAD_TOKEN, "say hello first")
        return
    if hello.version != VERSION:
        await ws.close(CLOSE_BAD_VERSION, f"this origin speaks edge link version {VERSION}")
        return
    try:
        edge, issued_at = tokens.verify_edge_grant(hello.token)
    except TokenError as exc:
        guard.wrong()
        await ws.close(CLOSE_BAD_TOKEN, exc.message)
        return

    def revoked() -> bool:
        return revocations is not None and revocations.refuses(edge, issued_at)

    if revoked():
        guard.wrong()
        await ws.close(CLOSE_BAD_TOKEN, REVOKED)
        return
    lock = asyncio.Lock()

    async def send(text: str) -> None:
        async with lock:
            await ws.send_text(text)

    async def serve(request: Request) -> Reply:
        return await edges.serve(edge, request)

    channel = Channel(send, serve, lambda report: edges.on_report(edge, report))
    await send(Welcome(type="welcome", edge=edge).model_dump_json())
    edges.attach(edge, channel)

    async def watch() -> None:
        while not revoked():
            await asyncio.sleep(REVOCATION_CHECK_S)
        log.warning("edge %s: its token was revoked; its link is closed", edge)
        # Requests from here fail as over a closed link from now on.
        channel.close()
        async with lock:
            await ws.close(CLOSE_BAD_TOKEN, REVOKED)

    watching = asyncio.create_task(watch(), name="edge-revocation")
    try:
        while True:
            text = await ws.receive_text()
            try:
                message = parse(text)
            except ValueError as exc:
                log.warning("edge %s sent what is not a message: %s", edge, exc)
                continue
            channel.handle(message)
    except WebSocketDisconnect:
        pass
    finally:
        watching.cancel()
        channel.close()
        await edges.detach(edge, channel)
