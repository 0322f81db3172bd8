from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from classroom.roles import Role
from media.relay.relay import Relay
from media.settings import RelaySettings
from media.synthetic import MovingPicture, SyntheticParticipant

LESSON = "lesson-1"
Join = Callable[..., Awaitable[SyntheticParticipant]]


@pytest.fixture
def adaptive() -> bool:
    """Fan-out tests pin layers with set_layer; adaptation tests override this."""
    return False


@pytest.fixture
def report_interval_s() -> float:
    """The periodic link reports' interval; a test may parametrize this name."""
    return 1.0


@pytest.fixture
def allocation_interval_s() -> float:
    """How often the relay allocates every downlink; a test may parametrize this."""
    return 0.2


@pytest.fixture
async def relay(
    adaptive: bool, report_interval_s: float, allocation_interval_s: float
) -> AsyncIterator[Relay]:
    settings = RelaySettings(
        host_addresses=("127.0.0.1",),
        encoder_threads=2,
        adaptive=adaptive,
        allocation_interval_s=allocation_interval_s,
        report_interval_s=report_interval_s,
    )
    relay = Relay(settings)
    yield relay
    await relay.close()


@pytest.fixture
async def join(relay: Relay) -> AsyncIterator[Join]:
    """Connect a synthetic participant to the relay; every one is closed afterwards."""
    participants: list[SyntheticParticipant] = []

    async def join(participant_id: str, role: Role, **kwargs: object) -> SyntheticParticipant:
        if role is not Role.TEACHER:
            # Classrooms send a small picture: the tests' CPU goes to the relay.
            kwargs.setdefault("send_video", lambda: MovingPicture(320, 180, 15))
        participant = SyntheticParticipant(role, **kwargs)  # type: ignore[arg-type]
        participants.append(participant)
        answer = await relay.negotiate(LESSON, participant_id, role, await participant.offer())
        await participant.accept(answer)
        return participant

    yield join
    for participant in participants:
        await participant.close()
