"""`CLASSROOM_NODE_TTL_S` / `CLASSROOM_NODE_BEAT_S`: a node's liveness in Redis."""

from __future__ import annotations

import pytest

from signaling.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("env", "ttl", "beat"),
    [
        ({}, 2.0, 0.5),
        ({"CLASSROOM_NODE_TTL_S": "1.2", "CLASSROOM_NODE_BEAT_S": "0.3"}, 1.2, 0.3),
        ({"CLASSROOM_NODE_TTL_S": "6"}, 6.0, 0.5),
        ({"CLASSROOM_NODE_TTL_S": "1.5", "CLASSROOM_NODE_BEAT_S": "0.5"}, 1.5, 0.5),
    ],
)
def test_node_timings(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], ttl: float, beat: float
) -> None:
    for name in ("CLASSROOM_NODE_TTL_S", "CLASSROOM_NODE_BEAT_S"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert (settings.node_ttl_s, settings.node_beat_s) == (ttl, beat)


@pytest.mark.parametrize(
    ("env", "named", "reason"),
    [
        # A beat that does not fit three times in the TTL: one late beat would pass
        # for a dead node.
        ({"CLASSROOM_NODE_TTL_S": "1"}, "CLASSROOM_NODE_BEAT_S", "at most 0.333333 s"),
        ({"CLASSROOM_NODE_BEAT_S": "1"}, "CLASSROOM_NODE_BEAT_S", "fit 3 times"),
        ({"CLASSROOM_NODE_TTL_S": "0"}, "CLASSROOM_NODE_TTL_S", "greater than or equal"),
        ({"CLASSROOM_NODE_BEAT_S": "0.01"}, "CLASSROOM_NODE_BEAT_S", "greater than or equal"),
        ({"CLASSROOM_NODE_TTL_S": "nan"}, "CLASSROOM_NODE_TTL_S", "finite"),
        ({"CLASSROOM_NODE_BEAT_S": "soon"}, "CLASSROOM_NODE_BEAT_S", "number"),
    ],
)
def test_node_timings_that_cannot_be_used_stop_the_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str, reason: str
) -> None:
    for name in ("CLASSROOM_NODE_TTL_S", "CLASSROOM_NODE_BEAT_S"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=named) as raised:
        load_settings()
    assert reason in str(raised.value)
