"""The school admin's browser session: the admin key typed once, then a cookie.

`POST /api/admin/session {"key"}` checks the key and sets `classroom_admin`, a signed
cookie that expires (`SESSION_TTL_S`): HttpOnly (no script reads it), SameSite=Strict
(another site's page cannot make the browser send it), Secure when the server's
public URL is https, Path=/api (only the API sees it). `DELETE` signs out.

The API itself stays as it is: every admin route compares a bearer credential with
the admin key. `AdminCookie`, a plain ASGI middleware, lets a request that carries a
valid session cookie and no Authorization header through as if it carried the key,
so that one check serves the API's scripts (Bearer) and the browser (cookie) alike.
It also refuses a request that changes something (anything but GET/HEAD/OPTIONS)
with a session cookie and an `Origin` that is not this server: SameSite=Strict
already keeps the cookie off other sites' requests; the Origin check holds where a
browser does not honour SameSite.

The signing key is derived from the token secret *and* the admin key: a new admin
key ends every session. A signed-out cookie's nonce is remembered until it would have
expired (in memory: a restart forgets it, which matters only for a cookie copied
out of a browser before it signed out).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

import segno
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from signaling.auth import CredentialGuard, bearer, client_address, is_admin_key
from signaling.errors import ApiError
from signaling.limits import Limits

COOKIE = "classroom_admin"
SESSION_TTL_S = 8 * 3600
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# A device or teacher link is ~100 characters; a QR code of 500 is still readable.
MAX_QR_TEXT = 500


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class AdminSessions:
    """Issues and checks session cookies; `now` is the app's clock (Unix seconds)."""

    admin_key: str
    token_secret: str
    now: Callable[[], float]
    signed_out: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._key = hmac.new(
            self.token_secret.encode(), b"admin-session\0" + self.admin_key.encode(), "sha256"
        ).digest()

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def issue(self) -> tuple[str, int]:
        """A new cookie value and when it expires (Unix seconds)."""
        expires = int(self.now()) + SESSION_TTL_S
        body = f"{expires}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._sign(body)}", expires

    def check(self, value: str) -> int | None:
        """The expiry of a valid, unexpired, not signed-out cookie; None otherwise."""
        body, _, sig = value.rpartition(".")
        expires, _, nonce = body.partition(".")
        if not (expires.isdigit() and nonce and sig):
            return None
        if not hmac.compare_digest(sig, self._sign(body)):
            return None
        if int(expires) <= self.now() or nonce in self.signed_out:
            return None
        return int(expires)

    def sign_out(self, value: str) -> None:
        if self.check(value) is None:
            return
        body = value.rpartition(".")[0]
        expires, _, nonce = body.partition(".")
        now = self.now()
        self.signed_out = {n: t for n, t in self.signed_out.items() if t > now}
        self.signed_out[nonce] = float(expires)


def cookie_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:
                return None
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


def same_origin(origin: str, host: str, public_url: str) -> bool:
    """Whether a request's Origin is this server: its Host, or the public URL's host."""
    netloc = urlsplit(origin).netloc.lower()
    return bool(netloc) and netloc in {host.lower(), urlsplit(public_url).netloc.lower()}


def _refusal(status: int, code: str, message: str) -> Response:
    return JSONResponse({"code": code, "message": message}, status_code=status)


class AdminCookie:
    """Admits a request with a valid session cookie as the admin (see the module doc)."""

    def __init__(self, app: ASGIApp, public_url: Callable[[], str]) -> None:
        self.app = app
        self.public_url = public_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sessions: AdminSessions | None = getattr(
            getattr(scope.get("app"), "state", None), "admin_sessions", None
        )
        if scope["type"] != "http" or sessions is None:
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        value = cookie_of(headers)
        if value is None or any(name == b"authorization" for name, _ in headers):
            await self.app(scope, receive, send)
            return
        if scope["method"] not in _SAFE_METHODS:
            found = dict(headers)
            origin = found.get(b"origin", b"").decode("latin-1")
            host = found.get(b"host", b"").decode("latin-1")
            if origin and not same_origin(origin, host, self.public_url()):
                refusal = _refusal(
                    403, "cross_origin", "a request from another site may not change anything"
                )
                await refusal(scope, receive, send)
                return
        if sessions.check(value) is not None:
            auth = f"Bearer {sessions.admin_key}".encode()
            scope = {**scope, "headers": [*headers, (b"authorization", auth)]}
        await self.app(scope, receive, send)


class SignIn(BaseModel):
    key: str = Field(max_length=1000)


class QrText(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_QR_TEXT)


def router(
    get: Callable[[Request], AdminSessions],
    public_url: Callable[[], str],
    limits: Limits,
    now: Callable[[], float],
) -> APIRouter:
    api = APIRouter()

    def set_cookie(response: Response, value: str, max_age: int) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=max_age,
            path="/api",
            httponly=True,
            samesite="strict",
            secure=public_url().startswith("https://"),
        )

    @api.post("/api/admin/session")
    async def sign_in(body: SignIn, request: Request) -> Response:
        """The admin key, once: a session cookie for the browser from then on."""
        sessions = get(request)
        origin = request.headers.get("origin")
        if origin and not same_origin(origin, request.headers.get("host", ""), public_url()):
            raise ApiError(403, "cross_origin", "sign in on this server's own page")
        guard = CredentialGuard(limits.wrong_credentials, client_address(request), now)
        guard.check()
        if not is_admin_key(body.key.strip(), sessions.admin_key):
            guard.wrong()
            raise ApiError(403, "wrong_key", "this is not the admin key")
        value, expires = sessions.issue()
        response = JSONResponse({"signed_in": True, "expires_at": expires})
        set_cookie(response, value, SESSION_TTL_S)
        return response

    @api.get("/api/admin/session")
    async def whoami(request: Request) -> dict[str, Any]:
        """Whether this browser is signed in (the page asks before showing anything)."""
        sessions = get(request)
        value = request.cookies.get(COOKIE)
        expires = sessions.check(value) if value else None
        return {"signed_in": expires is not None, "expires_at": expires}

    @api.delete("/api/admin/session", status_code=204)
    async def sign_out(request: Request) -> Response:
        sessions = get(request)
        value = request.cookies.get(COOKIE)
        if value:
            sessions.sign_out(value)
        response = Response(status_code=204)
        set_cookie(response, "", 0)
        return response

    @api.post("/api/admin/qr")
    async def qr(body: QrText, request: Request) -> Response:
        """A QR code (SVG) of a link, for the projector PC to be set up by phone or to
        be printed. Made here with segno, so that the page needs no QR script and the
        link never leaves this server. The admin's only: the text is a secret link."""
        sessions = get(request)
        if not is_admin_key(bearer(request), sessions.admin_key):
            raise ApiError(403, "not_allowed", "this needs the admin key")
        out = io.BytesIO()
        segno.make(body.text, error="m").save(out, kind="svg", scale=6, border=2, title="QR")
        return Response(
            out.getvalue(),
            media_type="image/svg+xml",
            headers={"Cache-Control": "no-store"},
        )

    return api
