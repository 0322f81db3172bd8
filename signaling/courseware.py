"""The courseware's HTTP API: a deck uploaded to a lesson, its page images served.

`POST /api/lessons/{id}/deck` takes the file as the request body (no multipart: it is
streamed to disk as it arrives, and refused as soon as it passes the size limit);
signaling.decks checks and renders it, and the lesson gets an `AttachDeck` command,
whose `deck_attached` event tells every classroom to fetch the pages ahead of time.
Page images are immutable (their folder is the file's SHA-256): cached for a year,
answered with HTTP Range (206) so that an interrupted fetch resumes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse

from classroom import commands as c
from classroom.errors import DomainError
from classroom.events import DeckAttached
from classroom.roles import ADMIN, Role
from signaling.auth import CredentialGuard, bearer, client_address, is_admin_key
from signaling.decks import DeckRefused, Decks, StoredDeck
from signaling.errors import ApiError
from signaling.lessons import LessonNotFound, LessonOver, Lessons
from signaling.limits import Limits
from signaling.tokens import TokenError, TokenIssuer

# The upload's own path: the app's 64 KiB body limit leaves it to the deck's limit.
UPLOAD_PATH = re.compile(r"^/api/(lessons|timetable)/[^/]+/deck$")
_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


@dataclass(frozen=True)
class CoursewareDeps:
    lessons: Lessons
    decks: Decks
    tokens: TokenIssuer
    admin_key: str
    # Whether a timetable entry of that id exists (signaling.district).
    entry_exists: Callable[[str], bool]


def router(
    deps: Callable[[Request], CoursewareDeps], limits: Limits, now: Callable[[], float]
) -> APIRouter:
    api = APIRouter()
    # (lesson, deck) pairs known to go together: a page request of an ended lesson
    # would otherwise read its whole log back, twenty times for twenty pages.
    attached: set[tuple[str, str]] = set()

    def who(request: Request, d: CoursewareDeps, lesson_id: str, query: bool) -> str:
        """ADMIN, or the role of a token of this lesson (a replay link's included)."""
        credential = bearer(request, query="access" if query else None)
        guard = CredentialGuard(limits.wrong_credentials, client_address(request), now)
        guard.check()
        if is_admin_key(credential, d.admin_key):
            return ADMIN
        # In a URL (an <img src> of the replay) only a replay link: a participant's token
        # never goes where access logs and browser histories keep it.
        in_url = query and not request.headers.get("authorization")
        error = TokenError("bad_token", "a page's URL carries a replay link only")
        if not in_url:
            try:
                return str(d.tokens.verify(credential, lesson_id).role)
            except TokenError as exc:
                error = exc
        if query:
            try:
                if d.tokens.replay_lesson(credential) == lesson_id:
                    return "replay"
            except TokenError:
                pass
        if error.code == "bad_token":
            guard.wrong()
        raise ApiError(401 if error.code == "token_expired" else 403, error.code, error.message)

    @api.post("/api/lessons/{lesson_id}/deck", status_code=201, response_model=None)
    async def upload(
        lesson_id: str, request: Request, name: str = "deck.pdf"
    ) -> dict[str, object] | JSONResponse:
        d = deps(request)
        role = who(request, d, lesson_id, query=False)
        if role not in (ADMIN, str(Role.TEACHER)):
            raise ApiError(403, "not_allowed", "only the teacher or the school attaches a deck")
        lesson = await d.lessons.get(lesson_id)
        if lesson is None:
            raise ApiError(404, "not_found", "there is no such lesson")
        if d.lessons.live(lesson_id) is None:
            raise ApiError(409, "lesson_ended", "the lesson has ended")
        deck = await receive(request, d, name)
        if isinstance(deck, JSONResponse):
            return deck
        by = ADMIN if role == ADMIN else "teacher"
        try:
            await d.lessons.execute(lesson_id, _attach(deck), by)
        except LessonOver:
            raise ApiError(409, "lesson_ended", "the lesson has ended") from None
        except LessonNotFound:
            raise ApiError(404, "not_found", "there is no such lesson") from None
        except DomainError as exc:
            # The same deck again is no error for the person uploading it.
            if exc.code != "invalid_transition":
                raise ApiError(422, exc.code, exc.message) from None
        attached.add((lesson_id, deck.deck_id))
        return {"lesson_id": lesson_id, **_describe(deck)}

    @api.post("/api/timetable/{entry_id}/deck", status_code=201, response_model=None)
    async def upload_for_entry(
        entry_id: str, request: Request, name: str = "deck.pdf"
    ) -> dict[str, object] | JSONResponse:
        """A deck for every lesson of a timetable entry: attached to each as it starts."""
        d = deps(request)
        credential = bearer(request)
        guard = CredentialGuard(limits.wrong_credentials, client_address(request), now)
        guard.check()
        if not is_admin_key(credential, d.admin_key):
            guard.wrong()
            raise ApiError(403, "not_allowed", "this needs the admin key")
        if not d.entry_exists(entry_id):
            raise ApiError(404, "not_found", "there is no such timetable entry")
        received = await receive(request, d, name)
        if isinstance(received, JSONResponse):
            return received
        d.decks.set_entry_deck(entry_id, received.deck_id)
        return {"entry_id": entry_id, **_describe(received)}

    async def page_file(
        request: Request, lesson_id: str, deck_id: str, page: str, thumb: bool
    ) -> FileResponse:
        d = deps(request)
        who(request, d, lesson_id, query=True)
        if (lesson_id, deck_id) not in attached:
            lesson = await d.lessons.get(lesson_id)
            if lesson is None or not any(
                isinstance(ev, DeckAttached) and ev.deck_id == deck_id for ev in lesson.log
            ):
                raise ApiError(404, "not_found", "this lesson has no such deck")
            attached.add((lesson_id, deck_id))
        number = int(page) if page.isdigit() else 0
        path = d.decks.page_path(deck_id, number, thumb)
        if path is None or not path.is_file():
            raise ApiError(404, "not_found", "the deck has no such page")
        media = "image/png" if path.suffix == ".png" else "image/jpeg"
        # Immutable: the folder is the file's hash. FileResponse answers Range itself.
        headers = {"Cache-Control": "private, max-age=31536000, immutable"}
        return FileResponse(path, media_type=media, headers=headers)

    @api.get("/api/lessons/{lesson_id}/decks/{deck_id}/pages/{page}")
    async def page_image(lesson_id: str, deck_id: str, page: str, request: Request) -> FileResponse:
        return await page_file(request, lesson_id, deck_id, page, thumb=False)

    @api.get("/api/lessons/{lesson_id}/decks/{deck_id}/thumbs/{page}")
    async def thumb_image(
        lesson_id: str, deck_id: str, page: str, request: Request
    ) -> FileResponse:
        return await page_file(request, lesson_id, deck_id, page, thumb=True)

    return api


async def receive(request: Request, d: CoursewareDeps, name: str) -> StoredDeck | JSONResponse:
    """The request's body as a stored deck, or the refusal to answer with."""
    name = " ".join(_NAME.sub(" ", name).split())[:200] or "deck.pdf"
    declared = request.headers.get("content-length", "")
    try:
        return await d.decks.receive(
            request.stream(), name, int(declared) if declared.isdigit() else None
        )
    except DeckRefused as exc:
        if exc.status == 413:
            # The rest of the body is not wanted: close rather than read it to the end.
            body = {"code": exc.code, "message": exc.message}
            return JSONResponse(body, status_code=413, headers={"Connection": "close"})
        raise ApiError(exc.status, exc.code, exc.message) from None


def _describe(deck: StoredDeck) -> dict[str, object]:
    return {
        "id": deck.deck_id,
        "name": deck.name,
        "pages": len(deck.pages),
        "width": deck.width,
        "height": deck.height,
    }


async def attach_entry_deck(decks: Decks, lessons: Lessons, entry_id: str, lesson_id: str) -> None:
    """A timetable entry's lesson was created: its deck goes with it, before class."""
    deck = decks.entry_deck(entry_id)
    if deck is not None:
        await lessons.execute(lesson_id, _attach(deck), ADMIN)


def _attach(deck: StoredDeck) -> c.AttachDeck:
    return c.AttachDeck(deck.deck_id, deck.name, len(deck.pages), deck.width, deck.height)
