"""Participant tokens and replay links: one issuer, one key, neither opens the other's door."""

from __future__ import annotations

import jwt
import pytest

from classroom.roles import Role
from signaling.tokens import TokenError, TokenIssuer
from tests.signaling.conftest import Clock

SECRET = "a-token-secret-long-enough-for-hs256"


@pytest.fixture
def issuer(clock: Clock) -> TokenIssuer:
    return TokenIssuer(SECRET, ttl_s=3600, now=clock)


def refused(call: object, code: str) -> str:
    assert callable(call)
    with pytest.raises(TokenError) as caught:
        call()
    assert caught.value.code == code
    return caught.value.message


def test_a_participant_token_opens_its_lesson(issuer: TokenIssuer, clock: Clock) -> None:
    token = issuer.issue("l1", "classroom-1", Role.CLASSROOM)
    claims = issuer.verify(token, "l1")
    assert (claims.participant_id, claims.role) == ("classroom-1", Role.CLASSROOM)
    refused(lambda: issuer.verify(token, "l2"), "bad_token")
    clock.t += 3600
    refused(lambda: issuer.verify(token, "l1"), "token_expired")


def test_a_replay_link_opens_its_recording(issuer: TokenIssuer, clock: Clock) -> None:
    token, expires = issuer.issue_replay("r1", "l1", ttl_s=60)
    assert expires == int(clock.t + 60)
    assert issuer.verify_replay(token, "r1") == expires
    assert "recording" in refused(lambda: issuer.verify_replay(token, "r2"), "bad_token")
    clock.t += 60
    refused(lambda: issuer.verify_replay(token, "r1"), "token_expired")


def test_neither_shape_opens_the_other(issuer: TokenIssuer) -> None:
    replay, _ = issuer.issue_replay("r1", "l1", ttl_s=60)
    participant = issuer.issue("l1", "teacher", Role.TEACHER)
    refused(lambda: issuer.verify(replay, "l1"), "bad_token")
    refused(lambda: issuer.verify_replay(participant, "r1"), "bad_token")


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(
            {"typ": "replay", "rec": "r1", "exp": 2**40}, "another-secret-long-enough-for-hs256"
        ),
        jwt.encode({"typ": "replay", "rec": "r1", "exp": 2**40}, "", algorithm="none"),
        "not a token",
    ],
)
def test_a_forged_or_unsigned_link_is_refused(issuer: TokenIssuer, token: str) -> None:
    refused(lambda: issuer.verify_replay(token, "r1"), "bad_token")
    refused(lambda: issuer.verify(token), "bad_token")
