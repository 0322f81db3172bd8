"""Who a request is: the credential it carries, and whether that is the admin key.

What a token says (lesson, participant, role) is signaling.tokens' job; this module
only reads the credential off the request, the same way for every route.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Request
from starlette.requests import HTTPConnection

from signaling.errors import ApiError
from signaling.limits import Buckets


def bearer(request: Request, query: str | None = None) -> str:
    """The credential of `Authorization: Bearer <credential>`, or ApiError 401.

    With `query`, a request without the header may carry the credential in that
    query parameter instead: a `<video src>` cannot send headers.
    """
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if query is not None and (from_query := request.query_params.get(query, "")):
        return from_query
    raise ApiError(401, "unauthorized", "send Authorization: Bearer <key or token>")


def client_address(request: HTTPConnection) -> str:
    """Whom per-address limits count: the peer's address (a reverse proxy's, unless
    uvicorn is told to trust its forwarded headers: `--forwarded-allow-ips`)."""
    return request.client.host if request.client else "?"


def is_admin_key(credential: str, admin_key: str) -> bool:
    # Constant time: the comparison must not tell an attacker how much was right.
    return hmac.compare_digest(credential.encode(), admin_key.encode())


class CredentialGuard:
    """Wrong credentials from one address: a few are mistakes, a stream is guessing.

    `check` before looking at the credential (429 once the address has spent its
    budget, even for a right one: guessing must stay slow), `wrong` when it opened
    nothing (a wrong admin key, a forged or another lesson's token, a forged link).
    """

    def __init__(self, table: Buckets, address: str, now: Callable[[], float]) -> None:
        self._table, self._address, self._now = table, address, now

    def check(self) -> None:
        if self._table.left(self._address, self._now()) < 1:
            raise ApiError(429, "too_many_attempts", "too many wrong keys or links; wait a minute")

    def wrong(self) -> None:
        self._table.take(self._address, self._now())
