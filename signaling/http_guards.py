"""What every HTTP request and response passes: a body size limit on the way in, security
headers on the way out. Plain ASGI middleware, so they hold for every route, the static
files and the errors alike (WebSockets pass untouched: their frames have their own limit).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.I)


def inline_script_hashes(pages: Path) -> list[str]:
    """CSP hashes of the inline scripts of the pages in `pages` (the "this browser is too
    old" fallbacks), so that they may run while no other inline script may."""
    hashes = set()
    for page in sorted(pages.glob("*.html")):
        for body in _INLINE_SCRIPT.findall(page.read_text(encoding="utf-8")):
            digest = hashlib.sha256(body.encode("utf-8")).digest()
            hashes.add(f"'sha256-{base64.b64encode(digest).decode()}'")
    return sorted(hashes)


def content_security_policy(script_hashes: list[str]) -> str:
    """The pages load their scripts, styles and media from this server only, talk to it
    only (HTTP and its WebSocket; WebRTC media is not governed by CSP), and may not be
    framed by another site (clickjacking a teacher into ending a lesson).

    `'unsafe-inline'` beside the hashes is for browsers of CSP level 1 only: a browser
    that knows hashes ignores it (CSP level 2), so modern ones run only the hashed
    fallbacks. Inline `style` attributes in the pages need `style-src 'unsafe-inline'`.
    """
    scripts = " ".join(["'self'", *script_hashes, "'unsafe-inline'"])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class SecurityHeaders:
    """Adds the security headers to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            # Tokens live in URL fragments, which are never sent; this covers the rest.
            (b"referrer-policy", b"no-referrer"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuses a request body over `max_bytes` (Settings.http_max_body_bytes) with 413
    `too_large`: at once when its Content-Length says so, else as soon as the bytes read
    pass it (a chunked body); the route then reads a disconnect, and whatever it answers
    is dropped."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        own_limit: Callable[[str], object] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Paths whose route streams its body and holds a limit of its own (a deck upload).
        self.own_limit = own_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        own = self.own_limit is not None and self.own_limit(scope.get("path", ""))
        if scope["type"] != "http" or own:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        read = 0
        started = refused = False

        async def limited_receive() -> Message:
            nonlocal read, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.max_bytes:
                    refused = True
                    if not started:
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, tracking_send)

    async def _refuse(self, send: Send) -> None:
        message = f"a request body may be at most {self.max_bytes} bytes"
        body = json.dumps({"code": "too_large", "message": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
