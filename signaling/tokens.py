"""Signed tokens: a participant's (which lesson, participant, role, until when) and a
replay link's (which recording, until when). One secret, one algorithm, one verify path.

HS256 only. The algorithm is pinned on decode, so a token with `alg: none` or any
other algorithm is refused (the classic JWT downgrade). Expiry is checked against
the injected clock rather than PyJWT's, so tests can move time.

The shapes never open each other's doors: a replay link carries `typ` "replay"
and role "replay", which is no participant role; an edge relay's token carries `typ`
"edge" and no lesson nor role; a participant token has no `typ` and no recording.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from classroom.roles import Role

ALGORITHM = "HS256"
# A replay link's `typ` and role: read only, one recording.
REPLAY_ROLE = "replay"
# An edge relay's token (signaling.edge): which edge, until when; no lesson.
EDGE_TYPE = "edge"


class TokenError(Exception):
    """A token that opens nothing. `code` is "bad_token" or "token_expired"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_NOT_VALID = "this link or token is not valid"


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

    # -- participants ----------------------------------------------------------------

    def issue(self, lesson_id: str, participant_id: str, role: Role) -> str:
        now = self._now()
        return self._sign(
            {
                "lesson": lesson_id,
                "sub": participant_id,
                "role": str(role),
                "iat": int(now),
                "exp": int(now + self._ttl_s),
            }
        )

    def verify(self, token: str, lesson_id: str | None = None) -> Claims:
        """The token's claims, or TokenError. With `lesson_id`, the token must be for it."""
        payload = self._decode(token, ["exp", "lesson", "sub", "role"])
        try:
            claims = Claims(
                lesson_id=str(payload["lesson"]),
                participant_id=str(payload["sub"]),
                role=Role(payload["role"]),
                expires=float(payload["exp"]),
            )
        except (ValueError, TypeError):
            raise TokenError("bad_token", _NOT_VALID) from None
        if claims.expires <= self._now():
            raise TokenError("token_expired", "this link has expired; ask for a new one")
        if lesson_id is not None and claims.lesson_id != lesson_id:
            raise TokenError("bad_token", "this token belongs to another lesson")
        return claims

    # -- replay links ----------------------------------------------------------------

    def issue_replay(self, recording_id: str, lesson_id: str, ttl_s: float) -> tuple[str, float]:
        """A link to one recording, read only, for `ttl_s`; and when it expires."""
        now = self._now()
        exp = int(now + ttl_s)
        token = self._sign(
            {
                "typ": REPLAY_ROLE,
                "role": REPLAY_ROLE,
                "rec": recording_id,
                "lesson": lesson_id,
                "iat": int(now),
                "exp": exp,
            }
        )
        return token, float(exp)

    def verify_replay(self, token: str, recording_id: str) -> float:
        """The replay link's expiry, or TokenError."""
        payload = self._decode(token, ["exp", "rec", "typ"])
        if payload.get("typ") != REPLAY_ROLE:
            raise TokenError("bad_token", _NOT_VALID)
        expires = self._unexpired(payload, "this replay link has expired; ask for a new one")
        if payload["rec"] != recording_id:
            raise TokenError("bad_token", "this link is for another recording")
        return expires

    def replay_lesson(self, token: str) -> str:
        """The lesson of a valid replay link (its recording's pictures need the deck's
        pages too), or TokenError."""
        payload = self._decode(token, ["exp", "rec", "typ", "lesson"])
        if payload.get("typ") != REPLAY_ROLE:
            raise TokenError("bad_token", _NOT_VALID)
        self.verify_replay(token, str(payload["rec"]))
        return str(payload["lesson"])

    # -- county edge relays ------------------------------------------------------------

    def issue_edge(self, edge_name: str, ttl_s: float) -> tuple[str, float]:
        """An edge relay's token (`classroom edge-token`): it names the edge, for `ttl_s`."""
        now = self._now()
        exp = int(now + ttl_s)
        token = self._sign({"typ": EDGE_TYPE, "sub": edge_name, "iat": int(now), "exp": exp})
        return token, float(exp)

    def verify_edge(self, token: str) -> str:
        """The edge's name, or TokenError (a participant's or a replay token is refused)."""
        return self.verify_edge_grant(token)[0]

    def verify_edge_grant(self, token: str) -> tuple[str, float]:
        """The edge's name and when its token was issued (a revocation refuses the
        tokens issued before it, signaling.edge.revocations), or TokenError."""
        payload = self._decode(token, ["exp", "iat", "sub", "typ"])
        if payload.get("typ") != EDGE_TYPE or "lesson" in payload or "role" in payload:
            raise TokenError("bad_token", _NOT_VALID)
        self._unexpired(payload, "this edge token has expired; make a new one")
        try:
            issued = float(payload["iat"])
        except (ValueError, TypeError):
            raise TokenError("bad_token", _NOT_VALID) from None
        return str(payload["sub"]), issued

    def _unexpired(self, payload: dict[str, Any], expired: str) -> float:
        """The token's expiry, or TokenError: `expired` if it has passed."""
        try:
            expires = float(payload["exp"])
        except (ValueError, TypeError):
            raise TokenError("bad_token", _NOT_VALID) from None
        if expires <= self._now():
            raise TokenError("token_expired", expired)
        return expires

    # -- the one signing key ---------------------------------------------------------

    def _sign(self, payload: dict[str, Any]) -> str:
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def _decode(self, token: str, required: list[str]) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"verify_exp": False, "require": required},
            )
        except jwt.InvalidTokenError:
            raise TokenError("bad_token", _NOT_VALID) from None
        return payload
