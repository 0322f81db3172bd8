"""The fuzzers' short tier: scripts/fuzz_ws's mutated messages and offers, a few thousand,
against the app served in this process. The long run is `python -m scripts.fuzz_ws`."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from media.relay.relay import Relay
from media.settings import RelaySettings
from scripts.fuzz_ws import Fuzz, Stats, base_offers, fuzz_limits
from signaling.settings import Settings
from tests.signaling.conftest import ADMIN, Clock, Running, serve
from tests.signaling.fakes import FakeMedia

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def offers() -> dict[str, str]:
    return await base_offers()


async def _fuzz(srv: Running, offers: dict[str, str], messages: int, offer_count: int) -> Stats:
    async def new_lesson() -> dict[str, str]:
        body = {"title": "fuzz", "classrooms": ["Village A", "Village B"]}
        made = (await srv.http.post("/api/lessons", json=body, headers=ADMIN)).json()
        tokens = {"teacher": made["teacher"]["token"], "observer": made["observer"]["token"]}
        tokens |= {room["id"]: room["token"] for room in made["classrooms"]}
        return dict(tokens)

    # One worker and a fixed seed: the same frames in the same order on every run.
    fuzz = Fuzz(srv.ws_url, new_lesson, offers, 24, messages, offer_count, time.monotonic() + 180)
    return await fuzz.run(workers=1)


def _server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture
async def fuzzed(settings: Settings, media: FakeMedia, clock: Clock) -> AsyncIterator[Running]:
    async with serve(settings.model_copy(update=fuzz_limits()), media, clock) as running:
        yield running


async def test_fuzzed_messages_get_answers_and_reasons_never_failures(
    fuzzed: Running, offers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    stats = await _fuzz(fuzzed, offers, messages=5_000, offer_count=0)
    assert stats.messages == 5_000 and stats.joined > 0
    assert stats.internal_errors == 0, stats.samples
    assert stats.closes_without_reason == 0, stats.samples
    assert stats.unanswered == 0
    assert _server_errors(caplog) == []
    # The fuzzer reached past the parser: into the handlers and the closing paths.
    for code in ("bad_json", "unknown_type", "invalid_message", "not_allowed", "not_joined"):
        assert stats.errors[code] > 0, code
    assert any(reason.startswith("1008 bad_input") for reason in stats.closes)
    assert any(reason.startswith("1007 ") for reason in stats.closes)
    assert any(reason.startswith("1009 ") for reason in stats.closes)


async def test_mutated_offers_through_the_real_relay(
    tmp_path: Path, clock: Clock, offers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    from tests.signaling.conftest import make_settings

    relay = Relay(RelaySettings(host_addresses=("127.0.0.1",)))
    settings = make_settings(tmp_path, **fuzz_limits())
    async with serve(settings, relay, clock) as srv:  # type: ignore[arg-type]
        stats = await _fuzz(srv, offers, messages=0, offer_count=200)
    assert stats.offers == 200
    assert stats.answers > 0 and stats.errors["bad_sdp"] > 0
    assert stats.internal_errors == 0, stats.samples
    assert stats.closes_without_reason == 0, stats.samples
    assert _server_errors(caplog) == []
