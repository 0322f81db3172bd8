"""The FastAPI app, built by `create_app(settings, media, recorder=...)`.

All state (store, lessons, tokens, metrics) hangs off `app.state`; nothing is
global, so two apps (or two tests) never share anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from classroom import commands as c
from classroom.delivery import delivery_report
from classroom.directory import Directory
from classroom.errors import DomainError
from classroom.events import LessonEnded
from classroom.lesson import Lesson
from classroom.roles import ADMIN, Role
from media.gateway import MediaGateway
from signaling import keys
from signaling.admin_session import AdminCookie, AdminSessions
from signaling.admin_session import router as admin_session_router
from signaling.attendance import AttendanceDeps
from signaling.attendance import router as attendance_router
from signaling.auth import CredentialGuard, bearer, client_address, is_admin_key
from signaling.bus import LocalBus
from signaling.courseware import UPLOAD_PATH, CoursewareDeps, attach_entry_deck
from signaling.courseware import router as courseware_router
from signaling.decks import DeckLimits, Decks
from signaling.district import District
from signaling.edge.origin import EdgeMedia, FeedOrigin, school_route, serve_link
from signaling.edge.protocol import PATH as EDGE_PATH
from signaling.edge.revocations import FILE as REVOKED_EDGES
from signaling.edge.revocations import Revocations
from signaling.errors import ApiError, install_handlers
from signaling.http_guards import (
    BodyLimit,
    SecurityHeaders,
    content_security_policy,
    inline_script_hashes,
)
from signaling.ice import ice_servers
from signaling.lessons import LessonNotFound, LessonOver, Lessons
from signaling.limits import Limits, Policy
from signaling.metrics import CONTENT_TYPE_LATEST, Metrics
from signaling.page_pack import PackedPage, PackError, pack_page
from signaling.recordings import RecordingMedia, Recordings
from signaling.recordings import router as recordings_router
from signaling.schools import SchoolsDeps
from signaling.schools import router as schools_router
from signaling.settings import Settings
from signaling.store import DB_FILE, Store
from signaling.tokens import TokenError, TokenIssuer
from signaling.whip import Resources as WhipResources
from signaling.whip import router as whip_router
from signaling.ws import Connection, Services, StarletteTransport

if TYPE_CHECKING:
    from signaling.cluster import Cluster

log = logging.getLogger(__name__)

PAGES = {"teacher", "classroom", "observer", "join", "replay", "admin", "attendance", "room"}
PAGE_OF_ROLE = {Role.TEACHER: "teacher", Role.CLASSROOM: "classroom", Role.OBSERVER: "observer"}


class NewLesson(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    classrooms: list[Annotated[str, Field(min_length=1, max_length=80)]] = Field(
        min_length=1, max_length=100
    )


class JoinCode(BaseModel):
    code: str = Field(pattern=r"^\d{6}$")


@dataclass
class Runtime:
    """What the lifespan builds: alive between startup and shutdown."""

    store: Store
    lessons: Lessons
    tokens: TokenIssuer
    admin_key: str
    services: Services
    recordings: Recordings


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


# Module level: FastAPI resolves these annotations by name (postponed evaluation).
Rt = Annotated[Runtime, Depends(_runtime)]


def create_app(
    settings: Settings,
    media: MediaGateway,
    now: Callable[[], float] = time.time,
    recorder: RecordingMedia | None = None,
) -> FastAPI:
    """The app over `media`; lessons are recorded when `recorder` is given (usually the
    same relay as `media`), and not at all otherwise."""
    metrics = Metrics()
    # Rates and caps, shared by the HTTP routes and the WebSocket.
    limits = Limits(Policy.of(settings))

    # WHIP and WHEP resources: let go when their lesson's media moves (the lifespan).
    whip_resources = WhipResources()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        admin_key, created = keys.admin_key(settings)
        if created:
            log.warning("generated an admin key in %s", settings.data_dir / keys.ADMIN_KEY_FILE)
        tokens = TokenIssuer(keys.token_secret(settings), settings.token_ttl_s, now)
        store = Store(settings.data_dir / DB_FILE)
        await store.open()
        gateway = media
        edges: EdgeMedia | None = None
        if settings.edge_schools:
            # Some schools' classrooms get their media from a county edge (signaling.edge).
            feeds = cast("FeedOrigin", media)
            if not callable(getattr(media, "negotiate_feed", None)):
                raise RuntimeError(
                    "CLASSROOM_EDGE_SCHOOLS needs the media relay (this one has no edges)"
                )

            def directory() -> Directory | None:
                district: District | None = getattr(app.state, "district", None)
                return None if district is None else district.directory

            edges = EdgeMedia(media, feeds, school_route(directory, settings.edge_schools))
            gateway = edges
        app.state.edges = edges
        cluster: Cluster | None = None
        lessons: Lessons
        if settings.redis_url:
            from signaling import cluster as nodes  # redis is imported only for a cluster

            cluster = await nodes.join(
                settings.redis_url,
                store,
                gateway,
                now,
                metrics,
                settings.catch_up_max_events,
                ttl_s=settings.node_ttl_s,
                beat_s=settings.node_beat_s,
            )
            lessons = cluster.lessons
        else:
            lessons = Lessons(
                store, LocalBus(), gateway, now, metrics, settings.catch_up_max_events
            )
        recordings = Recordings(settings.data_dir / "recordings", recorder, lessons, now)
        lessons.event_listeners.append(recordings.on_events)
        lessons.publish_listeners.append(recordings.published)
        lessons.moved_listeners.append(whip_resources.moved)
        if cluster is not None:
            cluster.lessons.adopt_listeners.append(recordings.adopted)
            cluster.lessons.give_up_listeners.append(recordings.given_up)
        if hasattr(media, "on_moved"):
            # Relay workers (media.workers): a lesson whose worker died moves to a live one.
            async def moved(lesson_id: str) -> None:
                await recordings.media_lost(lesson_id)
                await lessons.media_moved(lesson_id)

            media.on_moved = moved
        if callable(counts := getattr(media, "counts", None)):
            metrics.count_relay_workers(counts)
        if hasattr(media, "on_peers_moved"):
            # A worker that served some of a lesson's classrooms for its home worker died
            # (media.workers.follower): they offer again, the rest of the lesson goes on.
            async def peers_moved(lesson_id: str, participants: frozenset[str]) -> None:
                await lessons.media_moved(lesson_id, participants)

            media.on_peers_moved = peers_moved
        links: asyncio.Task[None] | None = None
        try:
            # A recording left "recording" is another running node's, not a dead one's.
            if cluster is None or await cluster.alone():
                await recordings.load()
            await lessons.load()
            app.state.district = await District.open(store.db, now, settings.time_zone)
            services = Services(lessons, tokens, gateway, metrics, settings, now, limits)
            if cluster is not None:
                services = dataclasses.replace(
                    services, media=cluster.media, viewer_numbers=cluster.viewer_numbers()
                )
            app.state.runtime = Runtime(store, lessons, tokens, admin_key, services, recordings)
            app.state.admin_sessions = AdminSessions(admin_key, keys.token_secret(settings), now)
            app.state.attendance = AttendanceDeps(
                lessons, tokens, admin_key, app.state.district, store
            )
            links = asyncio.create_task(_follow_links(gateway, lessons))
            yield
        finally:
            lessons.closing = True
            await recordings.close()
            if links is not None:
                links.cancel()
                await asyncio.gather(links, return_exceptions=True)
            try:
                if cluster is not None:
                    await cluster.close()
                await gateway.close()
            finally:
                await store.close()

    app = FastAPI(title="classroom", version="0.1.0", lifespan=lifespan)
    app.state.metrics = metrics
    # The last added is the outermost: the security headers go on every answer, the
    # body limit's own 413 included. The admin's session cookie is read innermost.
    app.add_middleware(AdminCookie, public_url=settings.base_url)
    app.add_middleware(
        BodyLimit, max_bytes=settings.http_max_body_bytes, own_limit=UPLOAD_PATH.match
    )
    # With no STUN or TURN server to hand out, a page needs nothing from the welcome to
    # make its offer: the classroom page then offers right behind its join.
    hints = {} if ice_servers(settings, "page", 0.0) else {"ice-servers": "none"}
    packed = _pack_pages(settings.web_client_dir, hints)
    hashes = inline_script_hashes(settings.web_client_dir)
    csp = content_security_policy(hashes + sorted(p.script_hash for p in packed.values()))
    app.add_middleware(SecurityHeaders, csp=csp)

    install_handlers(app)

    def actor(request: Request, rt: Runtime, lesson_id: str | None) -> str:
        """ADMIN for the admin key, else the participant id of a token of that lesson."""
        credential = bearer(request)
        guard = CredentialGuard(limits.wrong_credentials, client_address(request), now)
        guard.check()
        if is_admin_key(credential, rt.admin_key):
            return ADMIN
        if lesson_id is None:
            guard.wrong()
            raise ApiError(403, "not_allowed", "this needs the admin key")
        try:
            return rt.tokens.verify(credential, lesson_id).participant_id
        except TokenError as exc:
            if exc.code == "bad_token":
                guard.wrong()
            raise ApiError(403 if exc.code == "bad_token" else 401, exc.code, exc.message) from None

    def creating(request: Request) -> None:
        """A request that makes something (a lesson, a token, a share link)."""
        if not limits.creations.take(client_address(request), now()):
            raise ApiError(429, "rate_limited", "too many requests; wait a little")

    def link(role: Role, token: str) -> str:
        return f"{settings.base_url()}/{PAGE_OF_ROLE[role]}#token={token}"

    async def lesson_or_404(rt: Runtime, lesson_id: str) -> Lesson:
        lesson = await rt.lessons.get(lesson_id)
        if lesson is None:
            raise ApiError(404, "not_found", "there is no such lesson")
        return lesson

    @app.post("/api/lessons", status_code=201)
    async def create_lesson(body: NewLesson, request: Request, rt: Rt) -> dict[str, Any]:
        actor(request, rt, None)
        creating(request)
        try:
            created = await rt.lessons.create(body.title, body.classrooms)
        except DomainError as exc:
            raise ApiError(422, exc.code, exc.message) from None
        lesson_id = created.lesson.lesson_id

        def grant(pid: str, role: Role) -> dict[str, str]:
            token = rt.tokens.issue(lesson_id, pid, role)
            return {"token": token, "url": link(role, token)}

        by_role = {p.participant_id: p for p in created.participants}
        return {
            "id": lesson_id,
            "title": created.lesson.title,
            "teacher": grant("teacher", Role.TEACHER),
            "observer": grant("observer", Role.OBSERVER),
            "classrooms": [
                {"id": p.participant_id, "name": p.name, "code": p.join_code}
                | grant(p.participant_id, Role.CLASSROOM)
                for p in by_role.values()
                if p.role == Role.CLASSROOM
            ],
        }

    @app.post("/api/join")
    async def join(body: JoinCode, request: Request, rt: Rt) -> dict[str, Any]:
        # A 6-digit code is guessable by brute force: each address gets a few wrong
        # codes, then 429 for a while, even for a right code. A right code does not
        # wipe the count, or one known code would let a guesser go on forever.
        address = client_address(request)
        if limits.wrong_join_codes.left(address, now()) < 1:
            raise ApiError(429, "too_many_attempts", "too many wrong codes; wait a minute")
        found = rt.lessons.by_code(body.code)
        if found is None:
            limits.wrong_join_codes.take(address, now())
            raise ApiError(404, "unknown_code", "no running lesson has this code")
        creating(request)
        lesson, pid = found
        participant = lesson.participants[pid]
        token = rt.tokens.issue(lesson.lesson_id, pid, participant.role)
        return {
            "lesson_id": lesson.lesson_id,
            "participant_id": pid,
            "role": str(participant.role),
            "name": participant.name,
            "token": token,
            "url": link(participant.role, token),
        }

    @app.get("/api/lessons/{lesson_id}")
    async def get_lesson(lesson_id: str, request: Request, rt: Rt) -> dict[str, Any]:
        actor(request, rt, lesson_id)
        return (await lesson_or_404(rt, lesson_id)).snapshot()

    @app.get("/api/lessons/{lesson_id}/delivery")
    async def get_delivery(lesson_id: str, request: Request, rt: Rt) -> dict[str, Any]:
        """What each classroom received: seconds at each layer, from the relay's
        own decisions (delivery_changed events) while the classroom was connected."""
        actor(request, rt, lesson_id)
        lesson = await lesson_or_404(rt, lesson_id)
        ended = next((e.at for e in reversed(lesson.log) if isinstance(e, LessonEnded)), None)
        until = ended if ended is not None else round(now() - lesson.origin, 3)
        classrooms = {p.participant_id: p.name for p in lesson.classrooms()}
        return {
            "lesson_id": lesson.lesson_id,
            "state": str(lesson.state),
            "until_s": until,
            "classrooms": [r.to_dict() for r in delivery_report(lesson.log, until, classrooms)],
        }

    @app.post("/api/lessons/{lesson_id}/end")
    async def end_lesson(lesson_id: str, request: Request, rt: Rt) -> dict[str, Any]:
        by = actor(request, rt, lesson_id)
        await lesson_or_404(rt, lesson_id)
        try:
            await rt.lessons.execute(lesson_id, c.EndLesson(), by)
        except LessonOver:
            raise ApiError(409, "lesson_ended", "the lesson has ended already") from None
        except LessonNotFound:
            raise ApiError(404, "not_found", "there is no such lesson") from None
        except DomainError as exc:
            status = 403 if exc.code == "not_allowed" else 409
            raise ApiError(status, exc.code, exc.message) from None
        return (await lesson_or_404(rt, lesson_id)).snapshot()

    @app.get("/healthz")
    async def healthz(rt: Rt) -> dict[str, str]:
        await rt.store.ping()
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        address = client_address(ws)
        if not limits.ws_opens.take(address, now()):
            # Refused before the upgrade: cheaper than a connection, and a clear answer.
            metrics.errors.labels("rate_limited").inc()
            body = {"code": "rate_limited", "message": "too many connections; wait a little"}
            await ws.send_denial_response(JSONResponse(body, status_code=429))
            return
        await ws.accept()
        rt: Runtime = ws.app.state.runtime
        await Connection(StarletteTransport(ws), rt.services, address).run()

    @app.websocket(EDGE_PATH)
    async def edge_link(ws: WebSocket) -> None:
        rt: Runtime = ws.app.state.runtime
        guard = CredentialGuard(limits.wrong_credentials, client_address(ws), now)
        await serve_link(
            ws,
            ws.app.state.edges,
            rt.tokens,
            guard,
            settings.join_timeout_s,
            Revocations(settings.data_dir / REVOKED_EDGES),
        )

    app.include_router(
        recordings_router(
            get_recordings=lambda r: _runtime(r).recordings,
            get_tokens=lambda r: _runtime(r).tokens,
            get_admin_key=lambda r: _runtime(r).admin_key,
            base_url=settings.base_url,
            limits=limits,
            now=now,
        )
    )
    app.include_router(schools_router(_schools_deps, settings.base_url))
    app.include_router(
        admin_session_router(lambda r: r.app.state.admin_sessions, settings.base_url, limits, now)
    )
    app.include_router(attendance_router(lambda r: r.app.state.attendance, limits, now))
    app.include_router(whip_router(lambda r: _runtime(r).services, whip_resources, limits))
    deck_limits = DeckLimits(
        max_bytes=settings.deck_max_mb * 1024 * 1024, max_pages=settings.deck_max_pages
    )
    decks = Decks(settings.data_dir / "decks", deck_limits)
    app.state.decks = decks

    def courseware_deps(request: Request) -> CoursewareDeps:
        rt = _runtime(request)
        district: District = request.app.state.district
        entries = district.directory.entries
        return CoursewareDeps(rt.lessons, decks, rt.tokens, rt.admin_key, entries.__contains__)

    app.include_router(courseware_router(courseware_deps, limits, now))
    _serve_web_client(app, settings.web_client_dir, packed)
    return app


def _schools_deps(request: Request) -> SchoolsDeps:
    rt = _runtime(request)
    decks: Decks = request.app.state.decks

    async def on_held(entry_id: str, lesson_id: str) -> None:
        await attach_entry_deck(decks, rt.lessons, entry_id, lesson_id)

    return SchoolsDeps(request.app.state.district, rt.lessons, rt.tokens, rt.admin_key, on_held)


async def _follow_links(media: MediaGateway, lessons: Lessons) -> None:
    """Pass the relay's link reports on, for as long as the relay gives them."""
    try:
        async for report in media.link_reports():
            try:
                await lessons.note_link(report)
            except Exception:
                log.exception("could not pass on a link report")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("the relay's link reports stopped")


class _WebClientFiles(StaticFiles):
    """The web client's folder, minus the Python files that make it a package."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path.endswith((".py", ".pyc")) or "__pycache__" in path:
            raise HTTPException(404)
        return await super().get_response(path, scope)


def _pack_pages(root: Path, hints: dict[str, str]) -> dict[str, PackedPage]:
    """Every page the server serves, packed into one answer, with the server's `hints`
    (page_pack.pack_page); a page the packer cannot handle is served as it is, without
    them (tests/signaling/test_page_pack.py packs them all)."""
    packed = {}
    for name in sorted({"index", *PAGES}):
        path = root / f"{name}.html"
        if not path.is_file():
            continue
        try:
            packed[name] = pack_page(
                path.read_text(encoding="utf-8"),
                lambda sub: (root / sub).read_text(encoding="utf-8"),
                hints,
            )
        except (PackError, OSError) as error:
            log.warning("%s.html is served unpacked: %s", name, error)
    return packed


def _serve_web_client(app: FastAPI, root: Path, packed: dict[str, PackedPage]) -> None:
    def page(name: str) -> Callable[[Request], Any]:
        async def serve(request: Request) -> Response:
            # no-store: a page must not be cached across upgrades of the protocol.
            headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
            ready = packed.get(name)
            if ready is not None:
                if "gzip" in request.headers.get("accept-encoding", ""):
                    headers["Content-Encoding"] = "gzip"
                    return Response(ready.gzipped, media_type="text/html", headers=headers)
                return Response(ready.html, media_type="text/html", headers=headers)
            path = root / f"{name}.html"
            if not path.is_file():
                raise ApiError(404, "not_found", f"{name}.html is not installed")
            return FileResponse(path, headers={"Cache-Control": "no-store"})

        return serve

    app.get("/", include_in_schema=False)(page("index"))
    for name in sorted(PAGES):
        app.get(f"/{name}", include_in_schema=False)(page(name))
    # Compressed: the classroom page's scripts and styles are a fifth of their size
    # in gzip, which on a 256 kbit/s satellite link is seconds of loading.
    files = GZipMiddleware(_WebClientFiles(directory=root, check_dir=False), minimum_size=500)
    app.mount("/static", files, name="static")
