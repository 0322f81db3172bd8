"""Who a request is: the credential it carries, and whether that is the admin key.

What a token says (lesson, participant, role) is signaling.tokens' job; this module
only reads the credential off the request, the same way for every route.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from signaling.errors import ApiError


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


def is_admin_key(credential: str, admin_key: str) -> bool:
    # Constant time: the comparison must not tell an attacker how much was right.
    return hmac.compare_digest(credential.encode(), admin_key.encode())
