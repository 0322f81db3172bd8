"""Signed participant tokens: which lesson, which participant, which role, until when.

HS256 only. The algorithm is pinned on decode, so a token with `alg: none` or any
other algorithm is refused (the classic JWT downgrade). Expiry is checked against
the injected clock rather than PyJWT's, so tests can move time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jwt

from classroom.roles import Role

ALGORITHM = "HS256"


class TokenError(Exception):
    """A token that opens nothing. `code` is "bad_token" or "token_expired"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Claims:
    lesson_id: str
    participant_id: str
    role: Role
    expires: float


class TokenIssuer:
    def __init__(self, secret: str, ttl_s: float, now: Callable[[], float]) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret is too short (16 characters at least)")
        self._secret = secret
        self._ttl_s = ttl_s
        self._now = now

    def issue(self, lesson_id: str, participant_id: str, role: Role) -> str:
        now = self._now()
        payload = {
            "lesson": lesson_id,
            "sub": participant_id,
            "role": str(role),
            "iat": int(now),
            "exp": int(now + self._ttl_s),
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str, lesson_id: str | None = None) -> Claims:
        """The token's claims, or TokenError. With `lesson_id`, the token must be for it."""
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"verify_exp": False, "require": ["exp", "lesson", "sub", "role"]},
            )
        except jwt.InvalidTokenError:
            raise TokenError("bad_token", "this link or token is not valid") from None
        try:
            claims = Claims(
                lesson_id=str(payload["lesson"]),
                participant_id=str(payload["sub"]),
                role=Role(payload["role"]),
                expires=float(payload["exp"]),
            )
        except (ValueError, TypeError):
            raise TokenError("bad_token", "this link or token is not valid") from None
        if claims.expires <= self._now():
            raise TokenError("token_expired", "this link has expired; ask for a new one")
        if lesson_id is not None and claims.lesson_id != lesson_id:
            raise TokenError("bad_token", "this token belongs to another lesson")
        return claims
